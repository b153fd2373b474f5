"""Helpers shared by every scenario's testinfra tests (pytest loads this for molecule/*/tests).

The tests drive real clients from the controller (this machine) against the containers, so they
need the containers' addresses, the keys made in prepare, and a way to re-run a playbook with bad
input to prove that it fails before changing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
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
                 check: bool = False, timeout: int = 600, tags: list[str] | None = None) -> subprocess.CompletedProcess:
    """Runs a playbook against the scenario's inventory, as Molecule would, and returns the result."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    argv = ["ansible-playbook", "-i", inventory, str(playbook)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if tags:
        argv += ["--tags", ",".join(tags)]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


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
def playbook():
    """playbook(path, extra_vars=None, check=False, tags=None) -> CompletedProcess, against the scenario inventory."""
    return run_playbook


def lynis_audit(host) -> dict:
    """Installs Debian's lynis in the container, audits the system, returns its report as a dict.

    Keys of interest: hardening_index (int), suggestion (list of "ID|text|..." lines), warning (list).
    """
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis >/dev/null 2>&1")
    host.run("lynis audit system --quick --no-colors --report-file /var/log/lynis-report.dat >/dev/null 2>&1")
    report: dict = {"suggestion": [], "warning": []}
    for line in host.file("/var/log/lynis-report.dat").content_string.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("[]"):
            report.setdefault(key[:-2], []).append(value)
        elif key:
            report[key] = value
    report["hardening_index"] = int(report.get("hardening_index", "0"))
    return report


@pytest.fixture(scope="session")
def lynis():
    """lynis(host) -> Lynis' report (hardening_index, suggestion, warning) of the container.

    Lynis runs once per host and session (it takes a minute); later calls reuse its report.
    """
    reports: dict[str, dict] = {}

    def audit(host) -> dict:
        name = host.backend.get_hostname()
        if name not in reports:
            reports[name] = lynis_audit(host)
        return reports[name]

    return audit
