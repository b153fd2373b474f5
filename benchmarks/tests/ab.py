#!/usr/bin/env python3
"""One Molecule scenario at two commits, run in turn (A B A B ...), never side by side.

    benchmarks/tests/ab.py SCENARIO [--base main] [--rounds 2] [--step test|verify] [--reconverge]
                           [--setup "destroy create converge"] [--select EXPR]

A is the base commit (default main), exported with `git archive` into a scratch directory next to
this worktree's virtualenv and collection link; B is the working tree as it is. Both run in turn,
so that the load other people put on the machine falls on both alike; the ratio B/A is what
counts, the seconds are only what this machine did at that moment.

--step test    times a whole `molecule test` of each (the default).
--step verify  converges once, then times `molecule verify` of A and B on the same hosts (both
               share one ephemeral directory). --reconverge destroys, creates and converges again
               (untimed) before each verify, for scenarios whose verify changes what converge built
               (vpc's teardown tests). --setup names the untimed actions before (default destroy, create,
               converge); --select EXPR times only the tests pytest -k EXPR selects (PYTEST_ADDOPTS).
               With MOLECULE_EPHEMERAL_DIRECTORY set, both sides use that scenario state (--setup "" to
               verify hosts converged before).

Per run it prints the seconds, the time of each Molecule action, the load average before the run,
and at the end the mean of each side and the ratio. MOLECULE_DISTRO is passed through.
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

ROOT = Path(__file__).resolve().parents[2]
# Molecule's announcement of each action ("INFO     [vpc > converge] Executing" with NO_COLOR).
STEP = re.compile(r"\[[^\]>]+ > (\w+)\] Executing$")


def export(ref: str, parent: Path) -> Path:
    """ref's tree in parent/<name of this worktree>, with the venv and the collection link."""
    target = parent / ROOT.name
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    # Molecule finds .config/molecule/config.yml at the top of the git repository it runs in.
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())
    link = target / ".build" / "collections" / "ansible_collections" / "streamcloud" / "platform"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../../..")
    return target


def molecule(action: str, scenario: str, cwd: Path, env: dict, log) -> tuple[int, float, dict[str, float]]:
    """Runs one molecule action; returns its exit code, seconds and the seconds of each sub-action."""
    argv = [str(ROOT / ".venv" / "bin" / "molecule"), action, "-s", scenario]
    started = time.monotonic()
    marks: list[tuple[str, float]] = []
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, errors="replace") as proc:
        for line in proc.stdout:
            log.write(line)
            found = STEP.search(line.rstrip())
            if found:
                marks.append((found.group(1), time.monotonic()))
    end = time.monotonic()
    steps: dict[str, float] = {}
    for (name, at), (_, after) in zip(marks, [*marks[1:], ("", end)][:len(marks)], strict=True):
        steps[name] = steps.get(name, 0.0) + after - at
    return proc.returncode, end - started, steps


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario")
    parser.add_argument("--base", default="main", help="commit or branch for A (default main)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--step", choices=["test", "verify"], default="test")
    parser.add_argument("--reconverge", action="store_true", help="set up again before each verify")
    parser.add_argument("--setup", default="destroy create converge", help="untimed actions before verify")
    parser.add_argument("--select", default="", help="pytest -k expression for the verify step")
    parser.add_argument("--log", type=Path, default=None, help="Molecule's output (default: a temporary file)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="ab-"))
    log_path = args.log or scratch / "molecule.log"
    sides = {"A": export(args.base, scratch / "a"), "B": ROOT}
    env = dict(os.environ, NO_COLOR="1", ANSIBLE_FORCE_COLOR="false")
    env.pop("ANSIBLE_CONFIG", None)  # each side reads its own ansible.cfg (Molecule runs from its directory)
    if args.step == "verify":
        # Given: a scenario converged already (with --setup ""); else a new one for both sides.
        env.setdefault("MOLECULE_EPHEMERAL_DIRECTORY", str(scratch / "ephemeral"))
    if args.select:
        env["PYTEST_ADDOPTS"] = f"-k '{args.select}'"
    results: dict[str, list[float]] = {"A": [], "B": []}
    failed = False
    print(f"{args.scenario} ({env.get('MOLECULE_DISTRO', 'debian12')}), {args.step}: A = {args.base}, "
          f"B = working tree of {ROOT.name}; log {log_path}", flush=True)
    with log_path.open("w", encoding="utf-8") as log:
        try:
            if args.step == "verify" and not args.reconverge:
                for action in args.setup.split():
                    code, _, _ = molecule(action, args.scenario, sides["B"], env, log)
                    if code:
                        print(f"setup: molecule {action} failed", flush=True)
                        return 1
            for n in range(1, args.rounds + 1):
                for side, cwd in sides.items():
                    env_side = dict(env, ANSIBLE_CONFIG=str(cwd / "ansible.cfg"))
                    if args.step == "verify" and args.reconverge:
                        for action in args.setup.split():
                            code, _, _ = molecule(action, args.scenario, cwd, env_side, log)
                            failed |= code != 0
                    before = load()
                    code, seconds, steps = molecule(args.step, args.scenario, cwd, env_side, log)
                    failed |= code != 0
                    results[side].append(seconds)
                    detail = ", ".join(f"{k} {v:.0f}" for k, v in steps.items())
                    print(f"round {n} {side}: {seconds:7.1f} s  {'ok' if code == 0 else 'FAILED'}  load {before}"
                          f"  ({detail})", flush=True)
        finally:
            if args.step == "verify" and "destroy" in args.setup.split():
                molecule("destroy", args.scenario, sides["B"], env, log)
    mean = {side: sum(v) / len(v) for side, v in results.items() if v}
    if len(mean) == 2:
        print(f"mean A {mean['A']:.1f} s, B {mean['B']:.1f} s, B/A = {mean['B'] / mean['A']:.2f}"
              f"  (load now {load()})", flush=True)
    shutil.rmtree(scratch / "a", ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
