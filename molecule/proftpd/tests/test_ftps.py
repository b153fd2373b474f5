"""FTPS (explicit, TLS required) and SFTP with real clients from this machine."""

from __future__ import annotations

import base64
import ftplib
import io
import os
import ssl
import subprocess

import pytest
import testinfra.utils.ansible_runner
from conftest import PASSIVE, USERS, platform_ca

CTRLS_SOCKET = "/run/proftpd/proftpd.sock"

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("ftp")


def fetch(session: ftplib.FTP, name: str) -> bytes:
    buffer = io.BytesIO()
    session.retrbinary(f"RETR {name}", buffer.write)
    return buffer.getvalue()


def test_ftps_upload_list_download_delete_in_passive_mode(ftps):
    session = ftps("alice")
    assert session.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert session.passiveserver
    _, port = session.makepasv()
    assert port in PASSIVE
    payload = os.urandom(3 * 1024 * 1024 + 17)
    session.storbinary("STOR roundtrip.bin", io.BytesIO(payload))
    assert "roundtrip.bin" in session.nlst()
    session.voidcmd("TYPE I")
    assert session.size("roundtrip.bin") == len(payload)
    assert fetch(session, "roundtrip.bin") == payload
    session.delete("roundtrip.bin")
    assert "roundtrip.bin" not in session.nlst()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_are_accepted(address, version):
    context = ssl.create_default_context(cafile=str(platform_ca()))
    context.minimum_version = context.maximum_version = version
    session = ftplib.FTP_TLS(context=context, timeout=30)
    session.connect(address, 21)
    session.login("alice", USERS["alice"])
    assert session.sock.version() == version.name.replace("TLSv1_", "TLSv1.")
    session.close()


def test_data_connection_without_tls_session_reuse_is_refused(ftps):
    session = ftps("alice", cls=ftplib.FTP_TLS)
    with pytest.raises((ssl.SSLError, OSError, ftplib.Error)):
        session.storbinary("STOR noreuse.bin", io.BytesIO(b"x" * 1000))


def test_plaintext_login_is_refused(address):
    session = ftplib.FTP(timeout=30)
    session.connect(address, 21)
    with pytest.raises(ftplib.error_perm, match="TLS required"):
        session.login("alice", USERS["alice"])
    session.close()


def test_clear_data_channel_is_refused(ftps):
    session = ftps("alice")
    with pytest.raises(ftplib.error_perm):
        session.prot_c()
        session.nlst()


def test_anonymous_login_is_refused(address, tls_context):
    for user in ("anonymous", "ftp"):
        session = ftplib.FTP_TLS(context=tls_context, timeout=30)
        session.connect(address, 21)
        with pytest.raises(ftplib.error_perm):
            session.login(user, "guest@example.org")
        session.close()


def test_wrong_password_is_refused(address, tls_context):
    """From this machine: one wrong password is refused, and the right one then works on the same
    connection. It never runs out of attempts, so mod_ban has nothing to count against this machine
    (the limits are proven from a source address of their own, in test_repeated_failures_...)."""
    session = ftplib.FTP_TLS(context=tls_context, timeout=30)
    session.connect(address, 21)
    session.auth()
    with pytest.raises(ftplib.error_perm, match="530"):
        session.login("alice", "not-the-password")
    assert session.login("alice", USERS["alice"]).startswith("230")
    session.close()


def test_cwd_root_stays_in_the_home(ftps):
    bob = ftps("bob")
    bob.storbinary("STOR bob-secret.txt", io.BytesIO(b"bob's secret\n"))
    alice = ftps("alice")
    alice.cwd("/")
    assert alice.pwd() == "/"
    assert "bob-secret.txt" not in alice.nlst()
    alice.cwd("..")
    assert alice.pwd() == "/"
    for path in ("/srv/ftp/bob", "../bob", "/etc"):
        with pytest.raises(ftplib.error_perm):
            alice.cwd(path)
    for path in ("/srv/ftp/bob/bob-secret.txt", "../bob/bob-secret.txt", "/etc/shadow"):
        with pytest.raises(ftplib.error_perm):
            fetch(alice, path)


def test_copy_module_is_not_loaded(ftps):
    session = ftps("alice")
    session.storbinary("STOR source.txt", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match=r"^50[0-4]"):
        session.sendcmd("SITE CPFR source.txt")
    session.delete("source.txt")


def test_size_limit_applies_to_the_configured_user(ftps):
    bob = ftps("bob")
    bob.storbinary("STOR small.bin", io.BytesIO(b"s" * 100_000))
    # ProFTPD answers 552 and drops the data connection mid-transfer (the client may see either).
    with pytest.raises((ftplib.error_perm, ssl.SSLError, OSError)):
        bob.storbinary("STOR big.bin", io.BytesIO(b"b" * 2_000_000))
    listing = ftps("bob").nlst()
    assert "small.bin" in listing
    assert "big.bin" not in listing
    alice = ftps("alice")
    alice.storbinary("STOR big.bin", io.BytesIO(b"b" * 2_000_000))
    alice.delete("big.bin")


def sftp(address: str, keys_dir, batch: str, user: str = "alice", key: str = "id_alice") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sftp", "-P", "2222", "-i", str(keys_dir / key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-b", "-", f"{user}@{address}"],
        input=batch, capture_output=True, text=True, timeout=120, check=False,
    )


def test_sftp_with_a_key(host, address, keys_dir, tmp_path):
    """OpenSSH's sftp sends the local file's mode with every put (0644 here); the upload must work and
    the file get the role's Umask (027), as over FTPS, and an explicit chmod stays refused."""
    payload = os.urandom(2 * 1024 * 1024)
    (tmp_path / "up.bin").write_bytes(payload)
    (tmp_path / "up.bin").chmod(0o644)
    result = sftp(address, keys_dir, f"put {tmp_path}/up.bin sftp-up.bin\nls -l\nget sftp-up.bin {tmp_path}/down.bin\n"
                                     "pwd\n")
    assert result.returncode == 0, result.stderr
    assert "sftp-up.bin" in result.stdout
    assert "Remote working directory: /" in result.stdout
    assert (tmp_path / "down.bin").read_bytes() == payload
    uploaded = host.file("/srv/ftp/alice/sftp-up.bin")
    assert (uploaded.user, uploaded.group, uploaded.mode) == ("alice", "alice", 0o640)
    assert sftp(address, keys_dir, "chmod 0666 sftp-up.bin\n").returncode != 0
    assert host.file("/srv/ftp/alice/sftp-up.bin").mode == 0o640
    result = sftp(address, keys_dir, "mkdir sftp-dir\nrmdir sftp-dir\nrm sftp-up.bin\n")
    assert result.returncode == 0, result.stderr
    assert not host.file("/srv/ftp/alice/sftp-up.bin").exists


def test_sftp_refuses_a_key_that_is_not_listed(address, keys_dir):
    result = sftp(address, keys_dir, "ls\n", user="bob")
    assert result.returncode != 0
    assert "Permission denied" in result.stderr


def test_symlinks_a_user_makes_cannot_escape(address, keys_dir, ftps):
    result = sftp(address, keys_dir, "-rm escape-abs\n-rm escape-rel\n"
                                     "symlink /srv/ftp/bob escape-abs\nsymlink ../bob escape-rel\n")
    assert result.returncode == 0, result.stderr
    for batch in ("get escape-abs/bob-secret.txt /dev/null\n", "get escape-rel/bob-secret.txt /dev/null\n"):
        assert sftp(address, keys_dir, batch).returncode != 0, batch
    for batch in ("ls escape-abs/\n", "ls escape-rel/\n"):
        assert "bob-secret.txt" not in sftp(address, keys_dir, batch).stdout, batch
    session = ftps("alice")
    for path in ("escape-abs/bob-secret.txt", "escape-rel/bob-secret.txt"):
        with pytest.raises(ftplib.error_perm):
            fetch(session, path)


# Run inside the container: ftplib clients that all connect from SOURCE (a loopback address used by
# nothing else: the web client reaches SFTP from 127.0.0.1, this machine from the scenario network).
BAN_CLIENT = """
import ftplib, ssl, sys
source, password, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def session():
    s = ftplib.FTP_TLS(context=ctx, timeout=15, source_address=(source, 0))
    s.connect("127.0.0.1", 21)
    return s
for n in range(rounds):
    try:
        s = session(); s.auth()
        refused = 0
        for _ in range(3):
            try: s.login("alice", "wrong")
            except ftplib.error_perm: refused += 1
        print("round", n, "refused", refused, "then", end=" ")
        s.login("alice", password); print("LOGGED IN")
    except (EOFError, OSError, ftplib.Error) as e: print("cut", type(e).__name__, str(e).strip())
try:
    s = session(); s.login("alice", password); print("final LOGGED IN"); s.quit()
except (EOFError, OSError, ftplib.Error) as e: print("final refused", type(e).__name__, str(e).strip())
"""
BAN_SOURCE = "127.0.0.2"


def ban_client(host, rounds: int) -> str:
    script = base64.b64encode(BAN_CLIENT.encode()).decode()
    return host.check_output(f"echo {script} | base64 -d > /tmp/ban_client.py && "
                             f"python3 /tmp/ban_client.py {BAN_SOURCE} '{USERS['alice']}' {rounds}")


def test_repeated_failures_are_limited_and_ban_the_address(host, address, tls_context):
    """Three wrong passwords end a connection (MaxLoginAttempts); two such connections ban the address
    (mod_ban), even for the right password; other clients still log in; root lifts the ban with ftpdctl.
    The ban is lifted at the end, so the test (and the whole verify) can run again on the same host."""
    ctl = f"ftpdctl -s {CTRLS_SOCKET}"
    try:
        out = ban_client(host, rounds=2)
        lines = out.splitlines()
        # The first round always ends with the server hanging up after the third refusal; the second
        # may already be refused at connect (an earlier run's failures still count in the window).
        assert lines[0].startswith("round 0 refused 3 then cut"), out
        assert "LOGGED IN" not in out, out
        assert lines[-1].startswith("final refused") and "banned" in lines[-1], out
        assert BAN_SOURCE in host.check_output(f"{ctl} ban info")
        assert BAN_SOURCE in host.file("/var/log/proftpd/ban.log").content_string
        # This machine is not affected.
        session = ftplib.FTP_TLS(timeout=30, context=tls_context)
        session.connect(address, 21)
        assert session.login("alice", USERS["alice"]).startswith("230")
        session.close()
    finally:
        host.run(f"{ctl} permit host {BAN_SOURCE}")
    assert BAN_SOURCE not in host.check_output(f"{ctl} ban info")
    assert ban_client(host, rounds=0).strip() == "final LOGGED IN"
