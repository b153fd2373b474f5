#!/usr/bin/env python3
"""Runs `molecule test` for every scenario on every distro, several at a time, and summarises.

    scripts/molecule_all.py --distros "debian12 debian13" [--jobs 2] [--also NAME=COMMAND]... SCENARIO...

- Runs are queued scenario by scenario, first distro first; up to --jobs run at once (env
  MOLECULE_JOBS, default 3), never two runs of one scenario together (they share container names).
- A scenario whose driver is not docker (the moto-backed vpc scenario) runs once, on the first
  distro; a file molecule/<scenario>/distros limits a scenario to the distros it lists.
- molecule/<scenario>/host-packages lists Debian packages this machine needs for the scenario's
  tests (clients, scanners, a browser); they are installed, when missing, before any run.
- molecule/<scenario>/available, when present, runs first: when it exits non-zero the scenario is
  reported as skipped, with the first line it printed as the reason, never as passed.
- Each run's output goes to .build/test-logs/<scenario>-<distro>.log and is printed whole when the
  run ends, so parallel runs never interleave in the log.
- --also NAME=COMMAND queues another container-bound check (the reuse test, say) in the same lanes,
  so that it overlaps the scenarios instead of running before them; it is reported like a run.
- Each result is appended to the summary file (env TEST_SUMMARY) that `make test` prints at the end;
  the durations also go to .cache/molecule-durations.json so the next run starts the longest first.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".build" / "test-logs"
DURATIONS = ROOT / ".cache" / "molecule-durations.json"
# What a fresh checkout starts from (seconds per run, measured on this project's 2-core CI machine);
# each run's own figures replace them in DURATIONS.
ESTIMATES = ROOT / "scripts" / "molecule-durations.json"
# Molecule 26 looks for a `default` scenario on every run and logs its absence at CRITICAL level,
# then carries on ("default scenario not found, disabling shared state"). It is not a failure, so
# the line is kept out of the log rather than alarm whoever reads it.
NOISE = re.compile(r"'molecule/default/molecule\.yml' glob failed")
# Molecule announces each action of the sequence ("INFO     [common > converge] Executing" with
# NO_COLOR set, as here); the time between two announcements is what that action cost.
STEP = re.compile(r"\[[^\]>]+ > (\w+)\] Executing$")


@dataclass
class Run:
    scenario: str
    distro: str
    result: str = "queued"
    reason: str = ""
    seconds: int = 0
    started: float = 0.0
    steps: list[tuple[str, float]] = field(default_factory=list)
    command: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.scenario}-{self.distro}" if self.distro else self.scenario

    @property
    def title(self) -> str:
        return f"{self.scenario} ({self.distro})" if self.distro else self.scenario

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def scenario_file(scenario: str, name: str) -> Path:
    return ROOT / "molecule" / scenario / name


def runs_for(scenario: str, distros: list[str]) -> list[str]:
    config = scenario_file(scenario, "molecule.yml").read_text()
    wanted = distros
    if re.search(r"^\s*name:\s*(default|delegated)\s*$", config, re.MULTILINE):
        wanted = distros[:1]
    listed = scenario_file(scenario, "distros")
    if listed.exists():
        allowed = set(listed.read_text().split())
        wanted = [d for d in wanted if d in allowed]
    return wanted


def unavailable(scenario: str) -> str:
    """The reason a scenario cannot run here, from its `available` hook; empty when it can."""
    hook = scenario_file(scenario, "available")
    if not hook.exists():
        return ""
    done = subprocess.run([str(hook)], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else f"{hook.relative_to(ROOT)} exited {done.returncode}"


def install_host_packages(scenarios: list[str]) -> None:
    packages: list[str] = []
    for scenario in scenarios:
        listed = scenario_file(scenario, "host-packages")
        if listed.exists():
            packages += [p for p in listed.read_text().split() if p not in packages]
    if packages:
        subprocess.run(["bash", "-c", '. scripts/lib.sh && apt_install "$@"', "apt", *packages],
                       cwd=ROOT, check=True)


def known_durations() -> dict[str, int]:
    known: dict[str, int] = {}
    for source in (ESTIMATES, DURATIONS):
        with contextlib.suppress(OSError, ValueError):
            known.update(json.loads(source.read_text()))
    return known


def order(runs: list[Run]) -> list[Run]:
    """Longest runs first (they bound the total), from the last durations or the estimates."""
    known = known_durations()
    return sorted(runs, key=lambda r: -known.get(r.name, 0))


def copy_output(run: Run) -> None:
    """Writes the run's output to its log and notes when each action of the sequence starts."""
    with run.log.open("w", encoding="utf-8") as log:
        for line in run.proc.stdout:
            match = STEP.search(line)
            if match:
                run.steps.append((match.group(1), time.monotonic()))
            log.write(line)


def start(run: Run) -> None:
    env = dict(os.environ, NO_COLOR="1")
    if run.distro:
        env["MOLECULE_DISTRO"] = run.distro
    argv = ["bash", "-c", run.command] if run.command else ["molecule", "test", "-s", run.scenario]
    run.started = time.monotonic()
    run.proc = subprocess.Popen(argv, cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
    run.reader = threading.Thread(target=copy_output, args=(run,), daemon=True)
    run.reader.start()
    run.result = "running"
    say(f"start  {run.title}")


def step_times(run: Run, end: float) -> str:
    """'create 20s, converge 95s, ...': where the run's time went, action by action."""
    totals: dict[str, float] = {}
    for (name, at), (_, after) in itertools.pairwise([*run.steps, ("", end)]):
        totals[name] = totals.get(name, 0) + after - at
    return ", ".join(f"{name} {round(sec)}s" for name, sec in totals.items())


def finish(run: Run, code: int) -> None:
    end = time.monotonic()
    if run.reader:
        run.reader.join()
    run.seconds = round(end - run.started)
    run.result = "passed" if code == 0 else "FAILED"
    run.reason = step_times(run, end)
    out = sys.stderr
    out.write(f"\n--- {run.command or f'molecule test -s {run.scenario}'} ({run.distro or 'host'}) ---\n")
    with run.log.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            if not NOISE.search(line):
                out.write(line)
    out.write(f"--- {run.title}: {run.result} in {run.seconds} s ({run.reason}) ---\n")
    out.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distros", required=True, help="space-separated distros")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MOLECULE_JOBS", "3")))
    parser.add_argument("--also", action="append", default=[], metavar="NAME=COMMAND",
                        help="another check to run in the lanes (a shell command)")
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    distros = args.distros.split()

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    # Before the `available` hooks, which may use them (curl, say).
    install_host_packages(args.scenarios)
    runs: list[Run] = []
    for also in args.also:
        name, sep, command = also.partition("=")
        if not sep or not name or not command:
            parser.error(f"--also takes NAME=COMMAND, not {also!r}")
        runs.append(Run(name, "", command=command))
    for scenario in args.scenarios:
        reason = unavailable(scenario)
        for distro in runs_for(scenario, distros):
            run = Run(scenario, distro)
            if reason:
                run.result, run.reason = "skipped", reason
                say(f"skip   {scenario} ({distro}): {reason}")
            runs.append(run)

    queue = order([r for r in runs if r.result == "queued"])
    running: list[Run] = []
    try:
        while queue or running:
            busy = {r.scenario for r in running}
            ready = next((r for r in queue if r.scenario not in busy), None)
            if ready is not None and len(running) < args.jobs:
                queue.remove(ready)
                start(ready)
                running.append(ready)
                continue
            time.sleep(1)
            for run in list(running):
                code = run.proc.poll() if run.proc else 0
                if code is not None:
                    running.remove(run)
                    finish(run, code)
    except KeyboardInterrupt:
        for run in running:
            if run.proc:
                run.proc.terminate()
        raise

    record(runs)
    counts = {k: sum(r.result == k for r in runs) for k in ("passed", "FAILED", "skipped")}
    print(f"molecule: {counts['passed']} passed, {counts['FAILED']} failed, "
          f"{counts['skipped']} skipped", flush=True)
    return 1 if counts["FAILED"] else 0


def record(runs: list[Run]) -> None:
    summary = os.environ.get("TEST_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            for run in runs:
                label = f"molecule {run.title}" if run.distro else run.title
                out.write(f"{label}\t{run.result}: {run.reason}"
                          f"\t{run.seconds}\n")
    try:
        known = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        known = {}
    known.update({r.name: r.seconds for r in runs if r.result in ("passed", "FAILED")})
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
