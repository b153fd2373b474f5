#!/usr/bin/env python3
"""No-op runs of a scenario's converge.yml with the roles of two commits, in turn, on the same hosts.

    benchmarks/tests/noop_ab.py SCENARIO [--base main] [--rounds 3] [--top 12]

A is the base commit's collection (default main, exported with `git archive` as ab.py does), B the
working tree. On hosts Molecule has converged already (`molecule converge -s SCENARIO`), each round
runs converge.yml once with A's roles and once with B's (A B A B ...), with Molecule's own
ansible.cfg, inventory and log settings, so that the load of the shared machine falls on both alike.
Every run must change nothing: a change means the two roles do not leave the same state, and the
comparison stops there. Prints each run's seconds and the load before it, the mean of each side and
B/A, and, for the last round, the slowest tasks of each side as profile_tasks timed them.

The idempotence step of `molecule test` is such a run; so is every re-run of the role on a platform
that is up (the lab's `make lab`, site.yml on AWS).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ab import export, load
from levers import ephemeral

ROOT = Path(__file__).resolve().parents[2]
# profile_tasks' summary lines: "Role : task name ------ 1.23s".
PROFILE = re.compile(r"^(.*?) -{3,} (\d+\.\d+)s$")


def run(tree: Path, scenario: str, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    argv = ["ansible-playbook", "-i", str(Path(env["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"),
            str(tree / "molecule" / scenario / "converge.yml")]
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return time.monotonic() - started, result


def changed(result: subprocess.CompletedProcess) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", result.stdout))


def slowest(result: subprocess.CompletedProcess, top: int) -> list[tuple[str, float]]:
    found = [(m.group(1).strip(), float(m.group(2))) for m in map(PROFILE.match, result.stdout.splitlines()) if m]
    return found[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario")
    parser.add_argument("--base", default="main", help="commit or branch for A (default main)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="slowest tasks shown per side")
    args = parser.parse_args()

    state = ephemeral(args.scenario)
    scratch = Path(tempfile.mkdtemp(prefix="noop-ab-"))
    sides = {"A": export(args.base, scratch), "B": ROOT}
    base_env = dict(os.environ, ANSIBLE_CONFIG=str(state / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
                    ANSIBLE_NOCOLOR="true", MOLECULE_EPHEMERAL_DIRECTORY=str(state),
                    MOLECULE_SCENARIO_DIRECTORY=str(ROOT / "molecule" / args.scenario))
    base_env.pop("ANSIBLE_LOG_PATH", None)  # the scenario's log is for its tests, not for these runs
    seconds: dict[str, list[float]] = {"A": [], "B": []}
    last: dict[str, subprocess.CompletedProcess] = {}
    print(f"{args.scenario}: no-op converge.yml, A = {args.base}, B = working tree of {ROOT.name}, "
          f"state {state}", flush=True)
    try:
        for n in range(1, args.rounds + 1):
            for side, tree in sides.items():
                env = dict(base_env, ANSIBLE_COLLECTIONS_PATH=str(tree / ".build" / "collections"))
                before = load()
                took, result = run(tree, args.scenario, env)
                seconds[side].append(took)
                last[side] = result
                print(f"round {n} {side}: {took:6.1f} s  rc {result.returncode}  changed {changed(result)}  "
                      f"load {before}", flush=True)
                if result.returncode or changed(result):
                    print(result.stdout[-4000:], result.stderr[-2000:], file=sys.stderr)
                    return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    mean = {side: sum(v) / len(v) for side, v in seconds.items()}
    print(f"mean A {mean['A']:.1f} s, B {mean['B']:.1f} s, B/A = {mean['B'] / mean['A']:.2f} (load now {load()})")
    for side, result in last.items():
        print(f"slowest tasks, {side}, last round:")
        for name, took in slowest(result, args.top):
            print(f"  {took:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
