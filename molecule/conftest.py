"""Helpers shared by every scenario's testinfra tests (pytest loads this for molecule/*/tests).

The tests drive real clients from the controller (this machine) against the containers, so they
need the containers' addresses, the keys made in prepare, and a way to re-run a playbook with bad
input to prove that it fails before changing anything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SSH_BASE = [
    "ssh",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "ConnectTimeout=10",
]


def ephemeral_dir() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def scenario_dir() -> Path:
    return Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])


def container_ip(name: str) -> str:
    """The container's address on its scenario network, as the controller reaches it."""
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", name],
        check=True, capture_output=True, text=True,
    ).stdout
    networks = json.loads(out)
    return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))


def ssh(address: str, user: str, command: str = "true", key: Path | None = None,
        options: list[str] | None = None, timeout: int = 30) -> subprocess.CompletedProcess:
    """Runs a command over a real SSH connection; never raises on a refused login."""
    argv = list(SSH_BASE)
    if key is not None:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    argv += options or []
    argv += [f"{user}@{address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def run_playbook(playbook: str | Path, extra_vars: dict | None = None,
                 check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs a playbook against the scenario's inventory, as Molecule would, and returns the result."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    argv = ["ansible-playbook", "-i", inventory, str(playbook)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@dataclass
class CaseRun:
    """What one ansible-playbook run of several bad-input cases printed, cut case by case."""

    returncode: int
    output: str
    sections: dict[str, str]
    recap: dict[str, int]

    def failed(self, case: str) -> bool:
        """True when the case's block failed (its rescue ran)."""
        return f"TASK [Case {case} failed]" in self.sections.get(case, "")

    def failed_task(self, case: str) -> str:
        """The case's last task before its rescue: the one that failed."""
        before_rescue = self.sections.get(case, "").split(f"TASK [Case {case} failed]")[0]
        return ([ln for ln in before_rescue.splitlines() if ln.startswith("TASK [")] or [""])[-1]

    def text(self, case: str) -> str:
        """The case's part of the output, whitespace folded (long messages wrap)."""
        return " ".join(self.sections.get(case, "").split())


def run_cases(hosts: str, role: str, cases: dict[str, dict], play_vars: dict | None = None, *,
              play: dict | None = None, inventory: str | None = None, timeout: int = 900) -> CaseRun:
    """Applies role to hosts once per case, the case's variables on top, in ONE ansible-playbook run.

    Each case is a block of its own: the role with the case's variables, and a rescue that only says
    the case failed, so the next case still runs. What the role prints between one case's marker and
    the next belongs to that case (failures are kept on stdout, in order). One run instead of one per
    case: the playbook starts and gathers facts once. `play` adds keys to the play (connection,
    vars_files, gather_facts); `inventory` replaces the scenario's.
    """
    tasks = []
    for case, variables in cases.items():
        tasks.append({
            "name": f"Case {case}",
            "block": [
                {"name": f"Case {case} starts", "ansible.builtin.debug": {"msg": f"case {case}"}},
                {"name": f"Case {case}: {role}", "ansible.builtin.include_role": {"name": role},
                 "vars": variables},
            ],
            "rescue": [{"name": f"Case {case} failed", "ansible.builtin.debug": {"msg": f"case {case} failed"}}],
        })
    whole = {"name": "Bad input, case by case", "hosts": hosts, "gather_facts": True,
             "vars": play_vars or {}, **(play or {}), "tasks": tasks}
    path = ephemeral_dir() / f"cases-{role.rsplit('.', 1)[-1]}.yml"
    path.write_text(json.dumps([whole], indent=1))
    inventory = inventory or os.environ["MOLECULE_INVENTORY_FILE"]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true", ANSIBLE_DISPLAY_FAILED_STDERR="false")
    result = subprocess.run(["ansible-playbook", "-i", inventory, str(path)], capture_output=True, text=True,
                            timeout=timeout, env=env, check=False)
    output = result.stdout + result.stderr
    marks = [(m.start(), m.group(1)) for m in re.finditer(r"^TASK \[Case (.+) starts\]", result.stdout, re.MULTILINE)]
    ends = [start for start, _ in marks[1:]] + [len(result.stdout)]
    sections = {case: result.stdout[start:end] for (start, case), end in zip(marks, ends, strict=True)}
    recap = {}
    for line in result.stdout.splitlines():
        if "changed=" in line and "rescued=" in line:
            for field in line.split(":", 1)[1].split():
                key, _, value = field.partition("=")
                recap[key] = recap.get(key, 0) + int(value)
    return CaseRun(result.returncode, output, sections, recap)


@pytest.fixture(scope="session")
def keys_dir() -> Path:
    """Where prepare.yml leaves the scenario's test keys (id_<user>, id_<user>.pub)."""
    return ephemeral_dir()


@pytest.fixture(scope="session")
def molecule_scenario_dir() -> Path:
    return scenario_dir()


@pytest.fixture(scope="session")
def address_of():
    """address_of(container_name) -> its IP address on the scenario network."""
    return container_ip


@pytest.fixture(scope="session")
def ssh_client():
    """ssh_client(address, user, command="true", key=None, options=None) -> CompletedProcess."""
    return ssh


@pytest.fixture(scope="session")
def role_cases():
    """role_cases(hosts, role, {case: vars}, play_vars=None) -> CaseRun: many bad inputs, one run."""
    return run_cases


@pytest.fixture(scope="session")
def playbook():
    """playbook(path, extra_vars=None, check=False) -> CompletedProcess, against the scenario inventory."""
    return run_playbook
