#!/usr/bin/env python3
"""Ansible settings that may make every scenario cheaper, measured on one converged scenario.

    benchmarks/tests/levers.py SCENARIO [--rounds 2] [--lever NAME]...

Runs the scenario's converge.yml again and again on hosts Molecule has already converged (so
every run is an idempotent one, as Molecule's idempotence step is), with Molecule's own
ansible.cfg and inventory, once per lever in turn and round after round (base, lever 1, lever 2,
base, lever 1, ...), so that the load of the machine falls on each alike. Prints the seconds of
each run and, per lever, the ratio of its mean to the base's.

Converge the scenario first (`molecule converge -s SCENARIO`) and destroy it after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lever -> environment on top of Molecule's (Ansible reads ANSIBLE_* over its ansible.cfg).
LEVERS = {
    "base": {},
    # Modules sent on the connection's stdin instead of copied into a temporary directory first.
    "pipelining": {"ANSIBLE_PIPELINING": "true"},
    # The per-task timing callback off (Molecule's config turns it on).
    "no-profile_tasks": {"ANSIBLE_CALLBACKS_ENABLED": ""},
    # Fewer forks than Molecule's 50 (two containers need two).
    "forks-5": {"ANSIBLE_FORKS": "5"},
    # Facts gathered once and kept in a cache: later runs skip the setup module (gathering=smart).
    "fact-cache": {"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "jsonfile",
                   "ANSIBLE_CACHE_PLUGIN_CONNECTION": ""},  # a new directory per invocation, set in main()
    # mitogen's strategy (pip install mitogen): one Python interpreter per host for the whole run instead
    # of one per task; it takes over the `docker` connection by its short name only (set in ARGV below).
    "mitogen": {"ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_STRATEGY_PLUGINS": ""},  # path set in main()
}
# With mitogen on in Molecule's config (.config/molecule/config.yml), Ansible's own linear strategy.
LEVERS["no-mitogen"] = {"ANSIBLE_STRATEGY": "linear"}
# Lever -> extra arguments to ansible-playbook.
ARGV = {"mitogen": ["-e", "ansible_connection=docker"]}


def alternate(levers: list[str], rounds: int, run) -> int:
    """Run `run(lever)` for each lever in turn, round after round (A B C A B C ...), so that the load of the
    machine falls on each alike. `run` returns (the finished process, a note to print, whether the run
    counts). Prints each run, then each lever's mean and its ratio to the first lever's. Returns 0, or 1 at
    the first run that does not count (its output is printed)."""
    seconds: dict[str, list[float]] = {k: [] for k in levers}
    for n in range(1, rounds + 1):
        for lever in levers:
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            started = time.monotonic()
            result, note, ok = run(lever)
            took = time.monotonic() - started
            print(f"round {n} {lever:18} {took:6.1f} s  rc {result.returncode}  load {load}  {note}", flush=True)
            if not ok:
                print(result.stdout[-3000:], result.stderr[-2000:], file=sys.stderr)
                return 1
            seconds[lever].append(took)
    base = sum(seconds[levers[0]]) / len(seconds[levers[0]])
    for lever in levers:
        mean = sum(seconds[lever]) / len(seconds[lever])
        print(f"{lever:18} mean {mean:6.1f} s  ratio to {levers[0]} {mean / base:.2f}")
    return 0


def ephemeral(scenario: str) -> Path:
    """Molecule's ephemeral directory of this worktree's scenario (named as Molecule names it)."""
    from molecule.text import checksum

    found = Path.home() / ".ansible" / "tmp" / f"molecule.{checksum(ROOT.name, 4)}.{scenario}"
    if not (found / "inventory").is_dir():
        sys.exit(f"no Molecule state for {scenario}: run `molecule converge -s {scenario}` first")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lever", action="append", choices=[k for k in LEVERS if k != "base"])
    args = parser.parse_args()
    state = ephemeral(args.scenario)
    LEVERS["fact-cache"]["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = tempfile.mkdtemp(prefix="levers-facts-")
    if "mitogen" in (args.lever or []):
        import ansible_mitogen

        plugins = Path(ansible_mitogen.__file__).parent / "plugins"
        LEVERS["mitogen"]["ANSIBLE_STRATEGY_PLUGINS"] = str(plugins / "strategy")
    levers = ["base", *(args.lever or [k for k in LEVERS if k != "base"])]
    env = dict(os.environ, ANSIBLE_CONFIG=str(state / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"), MOLECULE_EPHEMERAL_DIRECTORY=str(state))
    argv = ["ansible-playbook", "-i", str(state / "inventory"), str(ROOT / "molecule" / args.scenario / "converge.yml")]

    def run(lever: str) -> tuple[subprocess.CompletedProcess, str, bool]:
        result = subprocess.run(argv + ARGV.get(lever, []), env=dict(env, **LEVERS[lever]), capture_output=True,
                                text=True, check=False)
        recap = [ln for ln in result.stdout.splitlines() if "changed=" in ln]
        return result, " | ".join(recap), result.returncode == 0

    return alternate(levers, args.rounds, run)

if __name__ == "__main__":
    sys.exit(main())
