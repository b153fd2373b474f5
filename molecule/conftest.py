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
from dataclasses import dataclass, field
from datetime import datetime
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
              play: dict | None = None, inventory: str | None = None, timeout: int = 900,
              tasks_from: str | None = None) -> CaseRun:
    """Applies role to hosts once per case, the case's variables on top, in ONE ansible-playbook run.

    Each case is a block of its own: the role with the case's variables, and a rescue that only says
    the case failed, so the next case still runs. What the role prints between one case's marker and
    the next belongs to that case (failures are kept on stdout, in order). One run instead of one per
    case: the playbook starts and gathers facts once. `play` adds keys to the play (connection,
    vars_files, gather_facts); `inventory` replaces the scenario's; `tasks_from` picks the role's entry point.
    """
    include = {"name": role, **({"tasks_from": tasks_from} if tasks_from else {})}
    tasks = []
    for case, variables in cases.items():
        tasks.append({
            "name": f"Case {case}",
            "block": [
                {"name": f"Case {case} starts", "ansible.builtin.debug": {"msg": f"case {case}"}},
                {"name": f"Case {case}: {role}", "ansible.builtin.include_role": include,
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


# --- Molecule's own runs, read back from Ansible's log ------------------------------------------
# A scenario that sets, in molecule.yml's provisioner env,
#   ANSIBLE_LOG_PATH: ${MOLECULE_EPHEMERAL_DIRECTORY}/ansible.log
#   ANSIBLE_CHECK_MODE_MARKERS: "true"
# has every ansible-playbook run of its sequence (create, prepare, converge, idempotence, check, and the
# tests' own runs, which inherit the env) appended to one file, which Molecule's destroy removes. Its
# tests assert on those runs instead of running converge.yml again.

# "2026-11-29 11:21:27,201 p=25014 u=root n=ansible INFO| TASK [b] ***"; a message of several lines
# continues on lines without that prefix.
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ p=(\d+) u=\S* n=\S+ \w+\| ?(.*)$")
_RECAP_LINE = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=\d+.*$")
# The verify step's own runs start after this: what the log held before was Molecule's steps.
SESSION_STARTED = datetime.now().replace(microsecond=0)


@dataclass
class AnsibleRun:
    """One ansible-playbook run found in the log (consecutive lines of one process id)."""

    pid: str
    started: datetime
    lines: list[str] = field(default_factory=list, repr=False)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def check_mode(self) -> bool:
        """Run with --check: ANSIBLE_CHECK_MODE_MARKERS marks its banners."""
        return any(line.startswith(("PLAY [", "DRY RUN")) and ("[CHECK MODE]" in line or line.startswith("DRY RUN"))
                   for line in self.lines)

    @property
    def plays(self) -> list[str]:
        return [m.group(1) for m in (re.match(r"^PLAY \[(.*?)\]", line) for line in self.lines) if m]

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """host -> {ok, changed, unreachable, failed, skipped, rescued, ignored} from PLAY RECAP."""
        hosts = {}
        for line in self.lines:
            found = _RECAP_LINE.match(line)
            if found:
                hosts[found.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}
        return hosts


@dataclass
class AnsibleLog:
    """The scenario's Ansible log: its whole text and its runs, in order."""

    path: Path
    text: str = field(repr=False)
    runs: list[AnsibleRun] = field(repr=False)

    def since_create(self) -> AnsibleLog:
        """The runs since the scenario's containers were last created (molecule/resources/create.yml's
        play `Create`): Molecule removes the log only after a whole sequence, so a log kept from
        earlier commands (`molecule converge` while iterating) may hold runs of an older state."""
        starts = [i for i, run in enumerate(self.runs) if "Create" in run.plays]
        runs = self.runs[starts[-1]:] if starts else self.runs
        return AnsibleLog(self.path, "\n".join(run.text for run in runs), runs)

    def before_verify(self) -> list[AnsibleRun]:
        """The runs of Molecule's steps: those that started before this pytest session."""
        return [run for run in self.runs if run.started < SESSION_STARTED]

    def last_check_on_converged_hosts(self, play: str) -> AnsibleRun:
        """Molecule's last check step whose playbook has the play, after a real run of that play."""
        runs = self.before_verify()
        converged = False
        found = None
        for run in runs:
            if play not in run.plays:
                continue
            if not run.check_mode and run.recap and all(r["failed"] == 0 and r["unreachable"] == 0
                                                        for r in run.recap.values()):
                converged = True
            elif run.check_mode and converged:
                found = run
        assert found is not None, (
            f"{self.path} holds no check-mode run of the play {play!r} after a successful real one "
            f"({len(runs)} runs before verify; check-mode runs: {sum(r.check_mode for r in runs)}). "
            "Molecule's check step writes it: run the whole sequence (`molecule test`), or "
            "`molecule converge` then `molecule check` before `molecule verify`.")
        return found

    def playbook_runs(self) -> list[AnsibleRun]:
        """The ansible-playbook runs. Not testinfra's reads of the inventory (`ansible-inventory`, no
        play), which print the inventory's variables, passwords included, by design."""
        return [run for run in self.runs if run.plays]

    def assert_no_secret(self, secrets: dict[str, str]) -> None:
        """No secret in what any playbook run printed, not even cut by a line wrap (blanks removed)."""
        runs = self.playbook_runs()
        assert runs, f"{self.path} holds no ansible-playbook run"
        folded = "".join("".join(run.text.split()) for run in runs)
        for name, secret in secrets.items():
            where = [f"run p={run.pid} ({', '.join(run.plays)}{', check mode' if run.check_mode else ''}): "
                     + line.replace(secret, "***")[:300]
                     for run in runs for line in run.lines if secret in line]
            assert not where and "".join(secret.split()) not in folded, (
                f"the secret {name} appears in {self.path} (no_log missing?): " + "; ".join(where or ["across a wrap"]))


def read_ansible_log(path: Path) -> AnsibleLog:
    """Parses the log Ansible writes with ANSIBLE_LOG_PATH into its runs."""
    text = path.read_text(errors="replace")
    runs: list[AnsibleRun] = []
    for raw in text.splitlines():
        found = _LOG_LINE.match(raw)
        if found is None:
            if runs:
                runs[-1].lines.append(raw)
            continue
        stamp, pid, message = found.groups()
        if not runs or runs[-1].pid != pid:
            runs.append(AnsibleRun(pid, datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")))
        runs[-1].lines.append(message)
    return AnsibleLog(path, text, runs)


@pytest.fixture()
def ansible_log() -> AnsibleLog:
    """The scenario's Ansible log as it is now (ANSIBLE_LOG_PATH in its molecule.yml), read afresh per test."""
    configured = os.environ.get("ANSIBLE_LOG_PATH", "")
    assert configured, ("ANSIBLE_LOG_PATH is not set: the scenario's molecule.yml must set it in provisioner env "
                        "(${MOLECULE_EPHEMERAL_DIRECTORY}/ansible.log), so that its tests can read what "
                        "converge, idempotence and check printed")
    path = Path(configured)
    log = read_ansible_log(path).since_create() if path.is_file() else None
    # testinfra's own reads of the inventory during this verify may have made the file: what counts is
    # what was there before it started.
    assert log is not None and [run for run in log.before_verify() if run.plays], (
        f"no ansible-playbook run from before this verify in {path}: the tests read what Molecule's "
        "converge, idempotence and check steps printed there, and these steps have not run since the "
        "scenario's containers were created (or they were created before the log was configured). Run "
        "`molecule test`, or `molecule destroy` then `molecule converge` and `molecule check`, before "
        "`molecule verify`.")
    return log


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
