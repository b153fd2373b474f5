#!/usr/bin/env python3
"""Checks that the platform's public doors answer, with real clients, as a person would use them.

    scripts/labcheck.py --web 127.0.0.1:8443 --ftp 127.0.0.1:2121 --sftp 127.0.0.1:2222 \
        --ca .build/lab/pki/ca.crt --user labuser --password-file .build/lab/secrets/ftp_labuser

`make lab-check` runs it against the lab's published ports; the `site` Molecule scenario imports the
same functions against its containers. Every check verifies TLS against the platform CA:
- the landing page over HTTPS, and each player's stream read through /live/ and identified by
  gst-discoverer-1.0 (container and codecs);
- a file uploaded over FTPS (explicit TLS, data connections resuming the control session, as ProFTPD
  requires), then read back through the web client at /files/ (nginx) and over SFTP (lftp).
Exit status 0 when every check passed; one line per check either way.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ftplib
import http.client
import io
import os
import re
import shlex
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# What gst-discoverer-1.0 prints for the containers and codecs the platform streams.
CONTAINERS = {"audio/ogg": "Ogg", "video/webm": "WebM"}


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def tls_context(ca_file: str | Path) -> ssl.SSLContext:
    """Verifies servers against the platform CA only (not the system's), TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def https_get(address: str, path: str, context: ssl.SSLContext, auth: tuple[str, str] | None = None,
              timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One GET; the certificate must carry the host part of address (a name or an IP address)."""
    host, port = split_address(address)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def landing_streams(address: str, context: ssl.SSLContext) -> list[tuple[str, str]]:
    """The landing page's players: (stream path, MIME type) of every <source> on the page."""
    status, _, body = https_get(address, "/", context)
    if status != 200:
        raise AssertionError(f"https://{address}/ answered {status}")
    page = body.decode()
    streams = re.findall(r'<source\s+src="([^"]+)"\s+type="([^"]+)"', page)
    if not streams:
        raise AssertionError(f"https://{address}/ has no player (<source src=... type=...>)")
    return streams


def record_stream(address: str, path: str, context: ssl.SSLContext, seconds: float, out: Path) -> int:
    """Listens to a live stream for a few seconds and keeps what arrived; returns the byte count."""
    host, port = split_address(address)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=20)
    size = 0
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        if response.status != 200:
            raise AssertionError(f"https://{address}{path} answered {response.status}")
        end = time.monotonic() + seconds
        with out.open("wb") as sink:
            while time.monotonic() < end:
                chunk = response.read1(65536)
                if not chunk:
                    break
                sink.write(chunk)
                size += len(chunk)
    finally:
        connection.close()
    return size


def discover(path: Path) -> str:
    """gst-discoverer-1.0's report of a recorded stream (container, audio and video codecs)."""
    found = subprocess.run(["gst-discoverer-1.0", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return found.stdout + found.stderr


def check_live(address: str, context: ssl.SSLContext, seconds: float = 4) -> dict[str, str]:
    """Every player of the landing page decodes: stream path -> gst-discoverer report (checked)."""
    reports = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path, mime in landing_streams(address, context):
            recording = Path(scratch) / path.rsplit("/", 1)[-1]
            size = record_stream(address, path, context, seconds, recording)
            report = discover(recording)
            expected = CONTAINERS.get(mime)
            if size < 4096 or (expected and f"container #0: {expected}" not in report):
                raise AssertionError(f"{path} ({mime}): {size} bytes in {seconds} s, decoder said:\n{report}")
            if mime.startswith("video/") and "video #" not in report:
                raise AssertionError(f"{path}: no video track:\n{report}")
            if "audio #" not in report:
                raise AssertionError(f"{path}: no audio track:\n{report}")
            reports[path] = report
    return reports


class ReusingFTPS(ftplib.FTP_TLS):
    """FTPS whose data connections resume the control connection's TLS session (ProFTPD insists)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


@contextlib.contextmanager
def ftps_session(address: str, context: ssl.SSLContext, user: str, password: str):
    host, port = split_address(address)
    session = ReusingFTPS(context=context, timeout=30)
    try:
        session.connect(host, port)
        session.login(user, password)
        session.prot_p()
        yield session
    finally:
        with contextlib.suppress(OSError, EOFError, ftplib.Error):
            session.quit()
        session.close()


def ftps_upload(address: str, context: ssl.SSLContext, user: str, password: str, name: str, data: bytes) -> None:
    with ftps_session(address, context, user, password) as session:
        session.storbinary(f"STOR {name}", io.BytesIO(data))
        if session.size(name) != len(data):
            raise AssertionError(f"FTPS: {name} has {session.size(name)} bytes on the server, sent {len(data)}")


def ftps_delete(address: str, context: ssl.SSLContext, user: str, password: str, name: str) -> None:
    with ftps_session(address, context, user, password) as session:
        session.delete(name)


def web_files_get(address: str, context: ssl.SSLContext, user: str, password: str, name: str) -> tuple[int, bytes]:
    """The file through the web client behind nginx (/files/), logged in as the FTP user."""
    status, _, body = https_get(address, f"/files/{name}", context, auth=(user, password), timeout=60)
    return status, body


def sftp_get(address: str, user: str, password: str, name: str, timeout: int = 60) -> bytes:
    """The file over SFTP with the user's password (lftp drives OpenSSH's ssh and answers its prompt)."""
    host, port = split_address(address)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "got"
        ssh = "ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o PubkeyAuthentication=no"
        script = (f"set sftp:connect-program {shlex.quote(ssh)}; set net:max-retries 1; set net:timeout 20; "
                  f"get {shlex.quote(name)} -o {shlex.quote(str(out))}; bye")
        result = subprocess.run(["lftp", "-u", f"{user},{password}", "-p", str(port), f"sftp://{host}", "-e", script],
                                capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0 or not out.exists():
            raise AssertionError(f"SFTP get {name} from {address}: {result.returncode} {result.stdout} {result.stderr}")
        return out.read_bytes()


def check_files(web: str, ftp: str, sftp: str, context: ssl.SSLContext, user: str, password: str) -> None:
    """Upload over FTPS; the same bytes through /files/ and over SFTP; then clean up."""
    name = f"labcheck-{os.getpid()}-{int(time.time())}.bin"
    data = os.urandom(256 * 1024 + 7)
    ftps_upload(ftp, context, user, password, name, data)
    try:
        status, body = web_files_get(web, context, user, password, name)
        if status != 200 or body != data:
            raise AssertionError(f"https://{web}/files/{name}: {status}, {len(body)} bytes (uploaded {len(data)})")
        if sftp_get(sftp, user, password, name) != data:
            raise AssertionError(f"SFTP {sftp}: {name} differs from the upload")
    finally:
        ftps_delete(ftp, context, user, password, name)


def run_checks(checks: list[tuple[str, Callable[[], object]]]) -> int:
    failed = 0
    for title, check in checks:
        try:
            check()
        except Exception as error:  # every failure is reported, then the next check runs
            failed += 1
            print(f"FAIL {title}: {str(error).strip()}", flush=True)
        else:
            print(f"ok   {title}", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--web", required=True, help="HTTPS address of the site, host:port")
    parser.add_argument("--ftp", required=True, help="FTPS control address, host:port")
    parser.add_argument("--sftp", required=True, help="SFTP address, host:port")
    parser.add_argument("--ca", required=True, help="the platform CA certificate (PEM)")
    parser.add_argument("--user", required=True, help="an FTP user of the platform")
    parser.add_argument("--password-file", required=True, help="file holding that user's password")
    args = parser.parse_args(argv)
    password = Path(args.password_file).read_text().split()[0]
    context = tls_context(args.ca)
    return run_checks([
        (f"https://{args.web}/ (verified with {args.ca})", lambda: landing_streams(args.web, context)),
        (f"https://{args.web}/live/ streams decode", lambda: check_live(args.web, context)),
        (f"FTPS {args.ftp} upload -> https://{args.web}/files/ and SFTP {args.sftp}",
         lambda: check_files(args.web, args.ftp, args.sftp, context, args.user, password)),
    ])


if __name__ == "__main__":
    sys.exit(main())
