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
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
CHANGED = re.compile(r"^\S+\s+: ok=\d+\s+changed=(\d+)", re.MULTILINE)

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
    seconds: dict[str, list[float]] = {k: [] for k in levers}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs", flush=True)
    for n in range(1, args.rounds + 1):
        for lever in levers:
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            started = time.monotonic()
            result = subprocess.run(argv, cwd=ROOT, env=dict(env, **LEVERS[lever]), capture_output=True, text=True,
                                    check=False)
            took = time.monotonic() - started
            changed = sum(int(c) for c in CHANGED.findall(result.stdout))
            print(f"round {n} {lever:18} {took:6.1f} s  rc {result.returncode}  changed {changed}  load {load}",
                  flush=True)
            if result.returncode or changed:
                print(result.stdout[-3000:], result.stderr[-2000:], file=sys.stderr)
                return 1
            seconds[lever].append(took)
    base = sum(seconds["base"]) / len(seconds["base"])
    for lever in levers:
        mean = sum(seconds[lever]) / len(seconds[lever])
        print(f"{lever:18} mean {mean:6.1f} s  ratio to base {mean / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
