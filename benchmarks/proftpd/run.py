#!/usr/bin/env python3
"""1 GiB upload and download: ProFTPD's FTPS and SFTP against OpenSSH's sftp, in one container.

Runs against the converged `proftpd` Molecule scenario (`molecule converge -s proftpd`): the
container proftpd-ftp with the role applied. OpenSSH's sshd is installed in the same container as
the baseline (a bench account with a shell, since sftp-server needs one), so all three protocols
write to the same disk through the same network. The same client program drives each SFTP server
(OpenSSH's sftp); FTPS uses Python's ftplib with TLS session reuse (what mod_tls requires).
Rounds alternate the protocols (reversed order every other round); the figure to trust is the
ratio to OpenSSH in the same round.

Usage: benchmarks/proftpd/run.py [--size-mib 1024] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# FTPS that resumes the TLS session on data connections, as `make lab-check` uses it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from labcheck import ReusingFTPS

CONTAINER = "proftpd-ftp"
USER, PASSWORD = "alice", "Lab-only-alice-p4ssword"
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes"]


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def container_ip() -> str:
    networks = json.loads(sh("docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", CONTAINER).stdout)
    return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))


def molecule_dir() -> Path:
    found = sorted(Path.home().glob(".ansible/tmp/molecule.*.proftpd"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit("converge the proftpd scenario first: molecule converge -s proftpd")
    return found[-1]


def setup_openssh(key_pub: str) -> None:
    script = f"""set -e
command -v sshd >/dev/null || (apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null)
id benchssh >/dev/null 2>&1 || useradd -m -s /bin/bash benchssh
install -d -m 700 -o benchssh -g benchssh ~benchssh/.ssh
echo '{key_pub}' > ~benchssh/.ssh/authorized_keys
chown benchssh: ~benchssh/.ssh/authorized_keys
systemctl start ssh
"""
    sh("docker", "exec", CONTAINER, "bash", "-c", script)


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def ftps_session(ip, ca):
    """A logged-in FTPS session with a protected data channel (TLS session reuse required by the server)."""
    session = ReusingFTPS(context=ssl.create_default_context(cafile=ca), timeout=600)
    session.connect(ip, 21)
    session.login(USER, PASSWORD)
    session.prot_p()
    return session


def ftps_up(ip, ca, src):
    def run():
        session = ftps_session(ip, ca)
        with open(src, "rb") as handle:
            session.storbinary("STOR bench.bin", handle, blocksize=1 << 20)
        session.quit()
    return run


def ftps_down(ip, ca, dst):
    def run():
        session = ftps_session(ip, ca)
        with open(dst, "wb") as handle:
            session.retrbinary("RETR bench.bin", handle.write, blocksize=1 << 20)
        session.quit()
    return run


def sftp(ip, port, user, key, batch):
    def run():
        subprocess.run(["sftp", "-P", str(port), "-i", key, *SSH_OPTS, "-b", "-", f"{user}@{ip}"],
                       input=batch, check=True, capture_output=True, text=True, timeout=1200)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ip, mdir = container_ip(), molecule_dir()
    ca = str(mdir / "inventory" / "pki" / "lab" / "ca.crt")
    key = str(mdir / "id_alice")
    setup_openssh(Path(key + ".pub").read_text().strip())
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        src, dst = Path(tmp, "src.bin"), Path(tmp, "dst.bin")
        with open(src, "wb") as handle:
            for _ in range(args.size_mib):
                handle.write(os.urandom(1 << 20))
        cases = {
            "FTPS (ProFTPD)": (ftps_up(ip, ca, src), ftps_down(ip, ca, dst)),
            "SFTP (ProFTPD mod_sftp)": (sftp(ip, 2222, USER, key, f"put {src} bench.bin\n"),
                                        sftp(ip, 2222, USER, key, f"get bench.bin {dst}\nrm bench.bin\n")),
            "SFTP (OpenSSH)": (sftp(ip, 22, "benchssh", key, f"put {src} bench.bin\n"),
                               sftp(ip, 22, "benchssh", key, f"get bench.bin {dst}\nrm bench.bin\n")),
        }
        results: dict[str, dict[str, list[float]]] = {name: {"up": [], "down": []} for name in cases}
        for round_no in range(args.rounds):
            # Every other round runs the protocols in reverse order, so none always goes first.
            order = list(cases.items()) if round_no % 2 == 0 else list(reversed(cases.items()))
            for name, (up, down) in order:
                results[name]["up"].append(args.size_mib / timed(up))
                results[name]["down"].append(args.size_mib / timed(down))
                if dst.read_bytes() != src.read_bytes():
                    sys.exit(f"{name}: downloaded bytes differ")
                dst.unlink()
        # The last download leaves the file in alice's home (the FTPS case does not delete it).
        sftp(ip, 2222, USER, key, "-rm bench.bin\n")()
    print(f"uptime: {sh('uptime').stdout.strip()}")
    print(f"size: {args.size_mib} MiB, rounds: {args.rounds}, server: container {CONTAINER} ({ip})")
    base = results["SFTP (OpenSSH)"]
    print("| protocol | round | upload MiB/s | download MiB/s | upload vs OpenSSH | download vs OpenSSH |")
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        for i in range(args.rounds):
            print(f"| {name} | {i + 1} | {res['up'][i]:.1f} | {res['down'][i]:.1f} | "
                  f"{res['up'][i] / base['up'][i]:.2f} | {res['down'][i] / base['down'][i]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
