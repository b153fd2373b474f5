#!/usr/bin/env python3
"""Where the archive step's time goes: create_archive() alone (no transfer), with and without encryption.

    .venv/bin/python benchmarks/backup/archive_step.py [--size-mb 1024] [--rounds 2] [--compression zstd]

Uses the data run.py generated (run it first). Each round archives the same data unencrypted and
encrypted (age to a throwaway ed25519 key, signed with it), alternating the order; prints the wall
time, the CPU time of the programs (tar, compressor, integrity test, age) and of this Python process.
"""

from __future__ import annotations

import argparse
import datetime
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".build" / "collections"))

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import create_archive  # noqa: E402

BASE = Path("/var/tmp/streamcloud-bench-backup")


def cpu(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compression", default="zstd")
    args = parser.parse_args()
    data, out = BASE / f"data-{args.size_mb}m", BASE / "archive-step"
    if not (data / ".complete").exists():
        raise SystemExit(f"{data} is missing: run benchmarks/backup/run.py --size-mb {args.size_mb} first")
    keys = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(keys / "k")], check=True)
    crypto = {"recipients": [(keys / "k.pub").read_text().strip()], "sign_key": str(keys / "k")}
    seq = 0
    try:
        for r in range(args.rounds):
            for encrypt in ((False, True) if r % 2 == 0 else (True, False)):
                shutil.rmtree(out, ignore_errors=True)
                seq += 1
                when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seq)
                children, own, start = cpu(resource.RUSAGE_CHILDREN), cpu(resource.RUSAGE_SELF), time.monotonic()
                made = create_archive([str(data)], str(out), "bench", compression=args.compression, now=when,
                                      **(crypto if encrypt else {}))
                print(f"round {r + 1} encrypt={encrypt!s:5} wall {time.monotonic() - start:6.2f} s  programs "
                      f"{cpu(resource.RUSAGE_CHILDREN) - children:6.2f} CPU-s  python "
                      f"{cpu(resource.RUSAGE_SELF) - own:6.2f} CPU-s  size {made['size']}", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(keys, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
