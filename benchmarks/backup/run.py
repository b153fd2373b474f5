#!/usr/bin/env python3
"""Backup pipeline benchmark: our archive + transfer + far-side verification against `tar czf` + `scp`.

    .venv/bin/python benchmarks/backup/run.py [--size-mb 1024] [--rounds 2]

Data: about 1 GiB of mixed data generated once under /var/tmp/streamcloud-bench-backup/data-<size>m
(text, logs, already-compressed media as random bytes), never in the repository.
Target: a private sshd started by this script on a free port of 127.0.0.1 (host key, keys and config in a
temporary directory; stopped at the end). Needs the Debian package openssh-server on the controller
(/usr/sbin/sshd; the runner does not install it), and age for --encrypt. Our pipeline logs in with a
key whose forced command is the real receiver (put, with SHA-256 verification on the far side); the
baseline logs in with another key and uses plain scp with OpenSSH's default cipher order; our
transfer puts AES-GCM first (transfer.CIPHERS), and that choice is part of what is measured. Same
machine, same data, alternating order.
Rotation: 10,000 archives rotated by our rotate() against a naive `find -mtime +N -delete`.
Results: printed as a Markdown table, and JSON in benchmarks/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import create_archive  # noqa: E402
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.rotate import rotate  # noqa: E402
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.transfer import Remote, ship  # noqa: E402

BASE = Path("/var/tmp/streamcloud-bench-backup")


def free_port() -> int:
    """A port nothing listens on now (a fixed one collided with the lab's SFTP port, 2222)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PORT = free_port()
WORDS = [
    "stream", "video", "audio", "live", "concert", "news", "morning", "channel", "player", "buffer", "segment",
    "the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "as", "at", "by", "from", "this", "that",
    "server", "client", "request", "response", "error", "warning", "session", "user", "content", "title",
    "playlist", "bitrate", "codec", "frame", "keyframe", "latency", "viewer", "minute", "hour", "schedule",
]


def generate(data: Path, size_mb: int) -> None:
    marker = data / ".complete"
    if marker.exists() and marker.read_text().strip() == str(size_mb):
        return
    shutil.rmtree(data, ignore_errors=True)
    rng = random.Random(42)  # noqa: S311 - test data
    mib = 1024 * 1024
    vocab = WORDS + ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 11)))
                     for _ in range(4000)]
    chunks = [" ".join(rng.choices(vocab, k=700_000)).encode() for _ in range(8)]
    budget = {"text": size_mb * 30 // 100, "logs": size_mb * 40 // 100}
    budget["media"] = size_mb - budget["text"] - budget["logs"]
    (data / "text").mkdir(parents=True)
    written, n = 0, 0
    while written < budget["text"] * mib:
        size = min(rng.randint(1, 8) * mib, budget["text"] * mib - written)
        parts, have = [], 0
        while have < size:
            chunk = rng.choice(chunks)
            start = rng.randrange(len(chunk) - 65536)
            part = chunk[start:start + rng.randint(4096, 65536)]
            parts.append(part)
            have += len(part)
        (data / "text" / f"doc{n:04d}.txt").write_bytes(b"".join(parts)[:size])
        written, n = written + size, n + 1
    (data / "logs").mkdir()
    written, n = 0, 0
    stamp = datetime.datetime(2026, 11, 1)
    while written < budget["logs"] * mib:
        lines = []
        for i in range(200_000):
            t = stamp + datetime.timedelta(milliseconds=37 * (n * 200_000 + i))
            lines.append(f"{t:%Y-%m-%dT%H:%M:%S.%f}Z web{rng.randint(1, 4)} nginx[{rng.randint(900, 999)}]: "
                         f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} GET /live/{rng.choice(WORDS)}/"
                         f"{rng.randint(1, 99999)}.ts {rng.choice((200, 200, 200, 206, 304, 404))} "
                         f"{rng.randint(200, 900000)} {rng.randint(1, 900)}ms\n")
        body = "".join(lines).encode()
        (data / "logs" / f"access{n:03d}.log").write_bytes(body)
        written, n = written + len(body), n + 1
    (data / "media").mkdir()
    written, n = 0, 0
    while written < budget["media"] * mib:
        size = min(rng.randint(8, 40) * mib, budget["media"] * mib - written)
        (data / "media" / f"clip{n:03d}.webm").write_bytes(os.urandom(size))
        written, n = written + size, n + 1
    marker.write_text(str(size_mb))


class LocalSshd:
    """A private sshd on 127.0.0.1:PORT: key 'receiver' forced to the real receiver, key 'plain' for scp."""

    def __init__(self, tmp: Path, receive_dir: Path):
        self.tmp = tmp
        for name in ("host", "receiver", "plain"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
        wrapper = tmp / "receive.py"
        wrapper.write_text(
            f"import os, sys\nsys.path.insert(0, {str(COLLECTIONS)!r})\n"
            "from ansible_collections.streamcloud.platform.plugins.module_utils._backup.receiver import main\n"
            f"sys.exit(main(['-c', os.environ.get('SSH_ORIGINAL_COMMAND', '')], base={str(receive_dir)!r}))\n")
        (tmp / "authorized_keys").write_text(
            f'restrict,command="{sys.executable} {wrapper}" {(tmp / "receiver.pub").read_text()}'
            f"{(tmp / 'plain.pub').read_text()}")
        (tmp / "known_hosts").write_text(f"[127.0.0.1]:{PORT} {(tmp / 'host.pub').read_text()}")
        (tmp / "sshd_config").write_text(
            f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host'}\nAuthorizedKeysFile {tmp}/authorized_keys\n"
            f"PidFile {tmp}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nSubsystem sftp /usr/lib/openssh/sftp-server\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")],
                                     stderr=subprocess.DEVNULL)
        for _ in range(50):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", PORT)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the benchmark sshd did not start")

    def ssh_options(self, key: str) -> list[str]:
        return ["-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.tmp / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-i", str(self.tmp / key), "-o", "IdentitiesOnly=yes"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_baseline(data: Path, work: Path, sshd: LocalSshd, far: Path) -> tuple[float, int]:
    out = work / "baseline.tar.gz"
    start = time.monotonic()
    subprocess.run(["tar", "czf", str(out), "-C", str(data), "."], check=True)
    subprocess.run(["scp", "-q", "-P", str(PORT), *sshd.ssh_options("plain"), str(out),
                    f"root@127.0.0.1:{far}/baseline.tar.gz"], check=True)
    out.unlink()
    elapsed = time.monotonic() - start
    size = (far / "baseline.tar.gz").stat().st_size
    (far / "baseline.tar.gz").unlink()
    return elapsed, size


def run_pipeline(data: Path, work: Path, sshd: LocalSshd, far: Path, compression: str, seq: int,
                 encrypt: bool = False) -> tuple[float, int]:
    outbox = work / "outbox"
    remote = Remote("127.0.0.1", "root", identity_file=str(sshd.tmp / "receiver"), port=PORT,
                    known_hosts_file=str(sshd.tmp / "known_hosts"))
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seq)
    start = time.monotonic()
    # Encrypted (age) to a recipient and signed (ssh-keygen -Y sign) with the source's key, as the role's
    # default is; the key pair is the sshd's throwaway "receiver" key, an ed25519 key that age takes.
    crypto = ({"recipients": [(sshd.tmp / "receiver.pub").read_text().strip()], "sign_key": str(sshd.tmp / "receiver")}
              if encrypt else {})
    made = create_archive([str(data)], str(outbox), "bench", compression=compression, now=when, **crypto)
    shipped = ship(str(outbox), remote)
    elapsed = time.monotonic() - start
    if shipped["failed"] or shipped["deleted_local"] != [made["name"]]:
        raise RuntimeError(f"the pipeline did not ship and verify: {shipped}")
    published = far / made["name"]
    if published.stat().st_size != made["size"]:
        raise RuntimeError(f"{published} has the wrong size")
    for stored in far.glob(made["name"] + "*"):  # the archive, its .sha256 and (encrypted) its .sig
        stored.unlink()
    return elapsed, made["size"]


def bench_rotation(work: Path, count: int = 10_000, rounds: int = 3) -> dict:
    src = work / "rotation-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    end = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)
    for i in range(count):
        when = end - datetime.timedelta(hours=i)
        name = f"web1-{when:%Y%m%dT%H%M%SZ}.tar.gz"
        body = name.encode()
        (src / name).write_bytes(body)
        (src / (name + ".sha256")).write_text(hashlib.sha256(body).hexdigest() + "  " + name + "\n")
        mtime = when.timestamp()
        os.utime(src / name, (mtime, mtime))
    policy = {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}
    ours, naive = [], []
    for r in range(rounds):
        for kind in (("ours", "find") if r % 2 == 0 else ("find", "ours")):
            copy = work / "rotation"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(src, copy)
            start = time.monotonic()
            if kind == "ours":
                result = rotate(str(copy), policy)
                kept = len(result["kept"])
            else:
                subprocess.run(["find", str(copy), "-name", "*.tar.gz", "-mtime", "+30", "-delete"], check=True)
            elapsed = time.monotonic() - start
            (ours if kind == "ours" else naive).append(elapsed)
    shutil.rmtree(work / "rotation", ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    return {"archives": count, "ours_s": statistics.median(ours), "find_s": statistics.median(naive), "kept": kept}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="baseline,gzip,pigz,zstd")
    parser.add_argument("--encrypt", action="store_true",
                        help="our pipeline encrypts with age and signs with ssh-keygen, as the role does by default")
    args = parser.parse_args()
    data, work = BASE / f"data-{args.size_mb}m", BASE / "work"
    generate(data, args.size_mb)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # The receiver takes the source name from its directory (the account), as on the backup host.
    far = work / "bench"
    far.mkdir()
    input_bytes = du(data)
    subprocess.run(f"cat $(find {data} -type f) > /dev/null", shell=True, check=True)  # noqa: S602 - warm cache
    variants = args.variants.split(",")
    times = {v: [] for v in variants}
    sizes = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-sshd-"))
    sshd = LocalSshd(tmp, far)
    try:
        seq = 0
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else list(reversed(variants))
            for variant in order:
                seq += 1
                if variant == "baseline":
                    elapsed, size = run_baseline(data, work, sshd, far)
                else:
                    elapsed, size = run_pipeline(data, work, sshd, far, variant, seq, args.encrypt)
                times[variant].append(elapsed)
                sizes[variant] = size
                print(f"round {r + 1} {variant:8s} {elapsed:7.2f} s  {size / input_bytes:.3f}", flush=True)
    finally:
        sshd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rotation = bench_rotation(work)
    shutil.rmtree(work, ignore_errors=True)
    mib = input_bytes / 1024 / 1024
    base = statistics.median(times["baseline"]) if "baseline" in times else None
    rows = []
    for variant in variants:
        t = statistics.median(times[variant])
        rows.append({"variant": variant, "median_s": round(t, 2), "mib_per_s": round(mib / t, 1),
                     "compressed_ratio": round(sizes[variant] / input_bytes, 3),
                     "speed_vs_baseline": round(base / t, 2) if base else None})
    result = {"input_mib": round(mib, 1), "rounds": args.rounds, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "encrypted": args.encrypt,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "pipeline": rows, "rotation": rotation}
    out_dir = REPO / "benchmarks" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "backup.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{mib:.0f} MiB, {args.rounds} rounds alternating, medians; {os.cpu_count()} cores\n")
    print("| pipeline | time (s) | MiB/s | size / input | speed vs baseline |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['median_s']} | {row['mib_per_s']} | {row['compressed_ratio']} | "
              f"{row['speed_vs_baseline']}x |")
    print(f"\nrotation of {rotation['archives']} archives: ours {rotation['ours_s']:.2f} s (kept {rotation['kept']}), "
          f"find -mtime -delete {rotation['find_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
