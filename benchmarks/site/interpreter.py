#!/usr/bin/env python3
"""The cost of a task on the lab's containers with the Python interpreter named or discovered.

    .venv/bin/python benchmarks/site/interpreter.py [--inventory inventories/lab] [--tasks 30] [--pairs 2]

Target: a lab that is up (`make lab`), reached as `make lab` reaches it: the project's ansible.cfg
(mitogen's strategy) and the community.docker.docker connection. One playbook, `--tasks` stat tasks on
every host of the inventory's groups (no facts), is run in two ways, taking turns:
- named:      the inventory as it is (`ansible_python_interpreter: /usr/bin/python3`);
- discovered: `-e ansible_python_interpreter=auto_silent`, the inventory before that line (and
              Ansible's default).
Over a docker connection mitogen looks for the interpreter again before every task, with a shell per
candidate in the container; named, it does not look. Printed per run: the wall time and the processes
started in the first host's container during the run (its PID counter), then the medians and
discovered / named.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def last_pid(container: str) -> int:
    """The container's most recent PID (the last field of /proc/loadavg, per PID namespace)."""
    out = subprocess.run(["docker", "exec", container, "cat", "/proc/loadavg"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=ROOT / "inventories/lab")
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    hosts_file = args.inventory / "hosts.yml" if args.inventory.is_dir() else args.inventory
    groups = yaml.safe_load(hosts_file.read_text())["all"]["children"]
    first = next(iter(next(iter(groups.values()))["hosts"]))
    tasks = [{"name": f"Stat {i}", "ansible.builtin.stat": {"path": "/etc/passwd"}} for i in range(args.tasks)]
    play = [{"name": "Stat tasks", "hosts": ":".join(groups), "gather_facts": False, "tasks": tasks}]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               PATH=f"{BIN}:{os.environ['PATH']}")
    ways = {"named": [], "discovered": ["-e", "ansible_python_interpreter=auto_silent"]}
    times: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as scratch:
        playbook = Path(scratch) / "stat.yml"
        playbook.write_text(yaml.safe_dump(play, sort_keys=False))
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}, {args.tasks} tasks on {', '.join(groups)}; processes counted in {first}")
        for pair in range(1, args.pairs + 1):
            for way in (["named", "discovered"] if pair % 2 else ["discovered", "named"]):
                before = last_pid(first)
                start = time.monotonic()
                result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(args.inventory), str(playbook),
                                         *ways[way]], cwd=ROOT, env=env, capture_output=True, text=True)
                seconds = time.monotonic() - start
                if result.returncode:
                    sys.exit(f"{way} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
                started = last_pid(first) - before - 1  # less the `docker exec cat` that read it
                times[way].append(seconds)
                per_task = started / args.tasks
                print(f"pair {pair} {way:10s} {seconds:6.1f} s, {per_task:5.1f} processes per task in {first}",
                      flush=True)
    named, discovered = (statistics.median(times[w]) for w in ("named", "discovered"))
    print(f"\nmedian: named {named:.1f} s, discovered {discovered:.1f} s; discovered / named {discovered / named:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
