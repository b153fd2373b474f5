"""FTPS (explicit, TLS required) and SFTP with real clients from this machine."""

from __future__ import annotations

import ftplib
import io
import os
import ssl
import subprocess

import pytest
import testinfra.utils.ansible_runner
from conftest import PASSIVE, USERS, platform_ca

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


def test_wrong_password_is_refused_and_attempts_are_limited(address, tls_context):
    session = ftplib.FTP_TLS(context=tls_context, timeout=30)
    session.connect(address, 21)
    session.auth()
    for _ in range(3):
        with pytest.raises(ftplib.error_perm, match="530"):
            session.login("alice", "not-the-password")
    # MaxLoginAttempts is 3: the server has hung up.
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        session.login("alice", USERS["alice"])


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


def test_sftp_with_a_key(address, keys_dir, tmp_path):
    payload = os.urandom(2 * 1024 * 1024)
    (tmp_path / "up.bin").write_bytes(payload)
    result = sftp(address, keys_dir, f"put {tmp_path}/up.bin sftp-up.bin\nls -l\nget sftp-up.bin {tmp_path}/down.bin\n"
                                     "rm sftp-up.bin\npwd\n")
    assert result.returncode == 0, result.stderr
    assert "sftp-up.bin" in result.stdout
    assert "Remote working directory: /" in result.stdout
    assert (tmp_path / "down.bin").read_bytes() == payload


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


def test_repeated_failures_ban_the_address(host, address, tls_context):
    """From inside the container (its own address is the client), so this machine is not banned."""
    own = host.check_output("hostname -I").split()[0]
    script = (
        "import ftplib, ssl\n"
        "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
        "for round in range(3):\n"
        "    s = ftplib.FTP_TLS(context=ctx, timeout=15)\n"
        "    try:\n"
        "        s.connect('{own}', 21); s.auth()\n"
        "        for i in range(3):\n"
        "            try: s.login('alice', 'wrong')\n"
        "            except ftplib.error_perm: pass\n"
        "    except (EOFError, OSError, ftplib.Error) as e: print('round', round, type(e).__name__, e)\n"
        "s = ftplib.FTP_TLS(context=ctx, timeout=15)\n"
        "try:\n"
        "    s.connect('{own}', 21); s.login('alice', '{password}'); print('LOGGED IN')\n"
        "except (EOFError, OSError, ftplib.Error) as e: print('refused', type(e).__name__, e)\n"
    ).format(own=own, password=USERS["alice"])
    out = host.check_output(f"python3 -c \"{script}\"")
    assert "refused" in out and "LOGGED IN" not in out, out
    assert own in host.file("/var/log/proftpd/ban.log").content_string
    # This machine is not affected.
    session = ftplib.FTP_TLS(timeout=30, context=tls_context)
    session.connect(address, 21)
    session.login("alice", USERS["alice"])
    session.close()
