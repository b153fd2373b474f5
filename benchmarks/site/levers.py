#!/usr/bin/env python3
"""Ansible settings that may make the lab's no-op re-run cheaper, measured on a lab that is up.

    .venv/bin/python benchmarks/site/levers.py [--inventory inventories/lab] [--rounds 2] [--lever NAME]...

Runs `playbooks/lab.yml` again and again on the converged lab (`make lab` first), with the project's
ansible.cfg, once per lever in turn and round after round (base, lever 1, lever 2, base, ...), so that
the load of the machine falls on each alike. Every run must change nothing. Prints the seconds of each
run and, per lever, the ratio of its mean to the base's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
CHANGED = re.compile(r"^\S+\s+: ok=\d+\s+changed=(\d+)", re.MULTILINE)
# The loop that takes turns and prints the ratios is benchmarks/tests/levers.py's (loaded by path: this file
# has the same name).
_spec = importlib.util.spec_from_file_location("tests_levers", ROOT / "benchmarks" / "tests" / "levers.py")
_tests_levers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests_levers)
alternate = _tests_levers.alternate

# Lever -> environment over the project's ansible.cfg.
LEVERS = {
    "base": {},
    # Facts kept in memory only: lab.yml clears the lab's facts first anyway (fresh containers may have
    # new addresses), so the jsonfile cache is written and read back within the one run.
    "memory-cache": {"ANSIBLE_CACHE_PLUGIN": "memory"},
    # Facts only under ansible_facts, not also as ansible_* variables of every host.
    "no-inject": {"ANSIBLE_INJECT_FACT_VARS": "false"},
    # No per-task timing callback (the progress callback stays).
    "no-profile_tasks": {"ANSIBLE_CALLBACKS_ENABLED": "streamcloud.platform.progress"},
    # mitogen's own CPU placement (scripts/strategy/streamcloud_mitogen.py turns it off below four CPUs):
    # its multiplexer on CPU 0, Ansible's process and every worker on one other CPU.
    "pin-cpus": {"STREAMCLOUD_MITOGEN_PIN_CPUS": "1"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", type=Path, default=ROOT / "inventories/lab")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lever", action="append", choices=[k for k in LEVERS if k != "base"])
    args = parser.parse_args()
    levers = ["base", *(args.lever or [k for k in LEVERS if k != "base"])]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
               PATH=f"{BIN}:{os.environ['PATH']}")
    argv = [str(BIN / "ansible-playbook"), "-i", str(args.inventory), str(ROOT / "playbooks/lab.yml")]
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs", flush=True)

    def run(lever: str) -> tuple[subprocess.CompletedProcess, str, bool]:
        result = subprocess.run(argv, cwd=ROOT, env=dict(env, **LEVERS[lever]), capture_output=True, text=True,
                                check=False)
        changed = sum(int(c) for c in CHANGED.findall(result.stdout))
        return result, f"changed {changed}", result.returncode == 0 and changed == 0

    return alternate(levers, args.rounds, run)


if __name__ == "__main__":
    sys.exit(main())
