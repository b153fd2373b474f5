"""Transfer and receiver: the real receiver behind a local stand-in for ssh (see tests/unit/conftest.py)."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import subprocess

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import receiver as rx
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import create_archive
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import sha256_file
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.transfer import Remote, ship

T0 = datetime.datetime(2026, 11, 27, 2, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def outbox(tree, tmp_path):
    out = tmp_path / "outbox"
    for hours in (0, 1):
        create_archive([str(tree)], str(out), "web1", now=T0 + datetime.timedelta(hours=hours))
    return out


@pytest.fixture
def remote(local_ssh, tmp_path):
    program, root = local_ssh
    (root / "web1").mkdir()
    key = tmp_path / "id_ed25519"
    key.write_text("not used by the local transport\n")
    return Remote("backup", "bk-web1", identity_file=str(key), ssh_program=program), root / "web1"


def names(directory):
    return sorted(os.listdir(directory))


def test_ship_publishes_verified_copies_then_deletes_local(outbox, remote):
    far, far_dir = remote
    local = {n: sha256_file(outbox / n) for n in names(outbox) if n.endswith(".tar.gz")}
    result = ship(str(outbox), far)
    assert [t["name"] for t in result["transferred"]] == sorted(local)
    assert result["deleted_local"] == sorted(local)
    assert names(outbox) == []
    for name, digest in local.items():
        assert sha256_file(far_dir / name) == digest
        assert (far_dir / (name + ".sha256")).read_text().split()[0] == digest
    assert os.listdir(far_dir / ".incoming") == []


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_keep_local_keeps_the_newest_shipped(outbox, remote, keep):
    far = remote[0]
    archives = sorted(n for n in names(outbox) if n.endswith(".tar.gz"))
    result = ship(str(outbox), far, keep_local=keep)
    assert result["kept_local"] == archives[-keep:]
    assert result["deleted_local"] == archives[:-keep]
    # A second run sends nothing again.
    again = ship(str(outbox), far, keep_local=keep)
    assert again["transferred"] == [] and again["changed"] is False


def test_unreachable_host_keeps_everything_and_next_run_ships_both(outbox, remote, monkeypatch):
    far, far_dir = remote
    before = names(outbox)
    monkeypatch.setenv("BACKUP_TEST_DOWN", "1")
    result = ship(str(outbox), far)
    assert "unreachable" in result["failed"][0]["error"]
    assert len(result["pending"]) == 2
    assert names(outbox) == before
    monkeypatch.delenv("BACKUP_TEST_DOWN")
    result = ship(str(outbox), far)
    assert len(result["transferred"]) == 2 and result["failed"] == []
    assert len([n for n in names(far_dir) if n.endswith(".tar.gz")]) == 2


def test_a_killed_receiver_is_not_reported_as_unreachable(outbox, remote, monkeypatch):
    """Finding 6: ssh exits 255 when the far side's receiver is killed; that is not "unreachable"."""
    far, _far_dir = remote
    before = names(outbox)
    monkeypatch.setenv("BACKUP_TEST_KILL", "1")
    result = ship(str(outbox), far)
    assert len(result["failed"]) == 2  # not unreachable: the next archive is tried too
    for failure in result["failed"]:
        assert "the receiver stopped without an answer" in failure["error"]
        assert "unreachable" not in failure["error"]
    assert names(outbox) == before


def test_local_corruption_is_rejected_far_side_and_local_kept(outbox, remote):
    far, far_dir = remote
    first = sorted(n for n in names(outbox) if n.endswith(".tar.gz"))[0]
    with open(outbox / first, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = ship(str(outbox), far)
    assert "checksum mismatch" in result["failed"][0]["error"]
    assert first in result["kept_local"]
    assert not (far_dir / first).exists()
    assert os.listdir(far_dir / ".incoming") == []
    assert len(result["transferred"]) == 1  # the good one still went


def test_an_archive_published_before_the_client_marked_it_is_not_sent_again(outbox, remote):
    far, far_dir = remote
    name = sorted(n for n in names(outbox) if n.endswith(".tar.gz"))[0]
    digest = sha256_file(outbox / name)
    with open(outbox / name, "rb") as handle:  # published, but the client died before marking it
        rx.put(str(far_dir), name, str(os.path.getsize(outbox / name)), handle, digest)
    result = ship(str(outbox), far)
    assert result["transferred"][0] == {"name": name, "sha256": digest, "size": os.path.getsize(far_dir / name),
                                        "already": True}


def test_check_mode_changes_nothing(outbox, remote):
    far, far_dir = remote
    before = names(outbox)
    result = ship(str(outbox), far, check_mode=True)
    assert len(result["pending"]) == 2 and result["changed"] is True
    assert names(outbox) == before
    assert names(far_dir) == []


def test_archive_without_sidecar_is_never_shipped_or_deleted(outbox, remote):
    far = remote[0]
    name = sorted(n for n in names(outbox) if n.endswith(".tar.gz"))[0]
    os.unlink(outbox / (name + ".sha256"))
    result = ship(str(outbox), far)
    assert name not in [t["name"] for t in result["transferred"]]
    assert (outbox / name).exists()


BAD_REMOTE = [
    ({"host": ""}, "is not a host name"),
    ({"host": "a b"}, "is not a host name"),
    ({"user": ""}, "is not a valid account name"),
    ({"user": "bad user"}, "is not a valid account name"),
    ({"port": 0}, "must be 1-65535"),
    ({"port": 70000}, "must be 1-65535"),
    ({"strict_host_key_checking": "maybe"}, "use yes, accept-new or no"),
    ({"identity_file": "/nonexistent/key"}, "the dedicated backup key is missing"),
    ({"connect_timeout": 0}, "positive number of seconds"),
]


@pytest.mark.parametrize(("override", "message"), BAD_REMOTE, ids=[m for _args, m in BAD_REMOTE])
def test_bad_remote_settings(override, message):
    args = {"host": "backup", "user": "bk-web1"}
    args.update(override)
    with pytest.raises(BackupError, match=message):
        Remote(**args)


@pytest.mark.parametrize(("keep", "message"), [(-1, "keep_local -1"), (True, "keep_local True"), ("2", "keep_local")])
def test_bad_keep_local(outbox, remote, keep, message):
    with pytest.raises(BackupError, match=message):
        ship(str(outbox), remote[0], keep_local=keep)


def test_outbox_missing(tmp_path, remote):
    with pytest.raises(BackupError, match="is not a directory"):
        ship(str(tmp_path / "nope"), remote[0])


def test_only_an_unknown_archive(outbox, remote):
    with pytest.raises(BackupError, match="is not a finished archive"):
        ship(str(outbox), remote[0], only="web1-20990101T000000Z.tar.gz")


# --- the receiver itself -------------------------------------------------------------------------

NAME = "web1-20261127T020000Z.tar.gz"


def call(base, command, data=b""):
    return rx.dispatch(str(base), command.split(), io.BytesIO(data), {"source": "web1"})


SHA = "0" * 64
REFUSED = [
    ("", "'' is not allowed"),
    ("bash -i", "'bash' is not allowed"),
    ("scp -t /etc", "'scp' is not allowed"),
    ("/usr/lib/openssh/sftp-server", "is not allowed"),
    (f"put ../other/web1-20261127T020000Z.tar.gz 3 {SHA}", "is not an archive name"),
    (f"put .ssh 3 {SHA}", "is not an archive name"),
    ("put web1-20261127T020000Z.tar.gz 3", "takes 3 or 4 argument"),
    ("put web1-20261127T020000Z.tar.gz 3 nothex", "is not a SHA-256"),
    (f"put web1-20261127T020000Z.tar.gz -1 {SHA}", "is not a byte count"),
    # Reached only by tests once, removed (issue 11): a client can store an archive and check one, nothing else.
    (f"commit web1-20261127T020000Z.tar.gz {SHA}", "'commit' is not allowed"),
    ("get web1-20261127T020000Z.tar.gz", "'get' is not allowed"),
    ("stat web1-20261127T020000Z.tar.gz", "'stat' is not allowed"),
    ("list", "'list' is not allowed"),
    # And verify (reached only by tests): the backup host's scrub re-hashes every archive itself (test_scrub.py).
    ("verify web1-20261127T020000Z.tar.gz", "'verify' is not allowed"),
]


@pytest.mark.parametrize(("command", "message"), REFUSED, ids=[c or "empty" for c, _msg in REFUSED])
def test_receiver_refuses(tmp_path, command, message):
    with pytest.raises(rx.Refused, match=message):
        call(tmp_path, command)


@pytest.mark.parametrize(("sent", "announced", "message"), [
    (b"abc", 10, "stopped after 3 of 10 bytes"),
    (b"abcdef", 3, "more than the announced 3 bytes"),
])
def test_receiver_refuses_a_short_or_long_upload(tmp_path, sent, announced, message):
    with pytest.raises(rx.Refused, match=message):
        call(tmp_path, f"put {NAME} {announced} {_digest(sent)}", sent)
    assert os.listdir(tmp_path / ".incoming") == []


def test_receiver_put_with_checksum_publishes_in_one_session(tmp_path):
    import hashlib

    data = os.urandom(3000)
    digest = hashlib.sha256(data).hexdigest()
    answer = call(tmp_path, f"put {NAME} {len(data)} {digest}", data)
    assert answer == {"name": NAME, "sha256": digest, "size": len(data), "already": False}
    assert (tmp_path / NAME).read_bytes() == data
    again = call(tmp_path, f"put {NAME} {len(data)} {digest}", data)
    assert again["already"] is True
    with pytest.raises(rx.Refused, match="never overwritten"):
        call(tmp_path, f"put {NAME} 3 {_digest(b'abc')}", b"abc")
    with pytest.raises(rx.Refused, match="checksum mismatch") as err:
        call(tmp_path, f"put web1-20261128T020000Z.tar.gz {len(data)} {'2' * 64}", data)
    assert err.value.code == rx.EXIT_MISMATCH
    assert os.listdir(tmp_path / ".incoming") == []


def test_receiver_main_refuses_interactive_login(tmp_path, capsys):
    assert rx.main([], base=str(tmp_path), handle_signals=False) == rx.EXIT_REFUSED
    assert "interactive logins are refused" in capsys.readouterr().err


def test_receiver_disk_full_keeps_nothing_partial(tmp_path):
    # /dev/full answers every write with ENOSPC, as a full file system would.
    (tmp_path / ".incoming").mkdir()
    (tmp_path / ".incoming" / (NAME + ".part")).symlink_to("/dev/full")
    with pytest.raises(rx.Refused, match="out of disk space") as err:
        call(tmp_path, f"put {NAME} 3 {_digest(b'abc')}", b"abc")
    assert err.value.code == rx.EXIT_NO_SPACE
    assert os.listdir(tmp_path / ".incoming") == []


@pytest.mark.parametrize(("original", "code", "message"), [
    ("", rx.EXIT_REFUSED, "'' is not allowed"),
    ("internal-sftp", rx.EXIT_REFUSED, "'internal-sftp' is not allowed"),
    ("sftp", rx.EXIT_REFUSED, "'sftp' is not allowed"),
    ("list", rx.EXIT_REFUSED, "'list' is not allowed"),
])
def test_receiver_under_force_command_reads_the_original_command(tmp_path, capsys, monkeypatch, original, code,
                                                                 message):
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", original)
    argv = ["-c", "/usr/local/sbin/streamcloud-backup-receive"]
    assert rx.main(argv, base=str(tmp_path), handle_signals=False) == code
    assert message in capsys.readouterr().err


# --- the backup host decides (issue 11) ------------------------------------------------------------

def _digest(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_receiver_refuses_twelve_uploads_dated_2099(tmp_path):
    """Finding 1: a client with its own key uploads archives named in 2099: every one is refused
    before a byte is stored, with a message that names the clock and the setting."""
    for month in range(1, 13):
        name = f"web1-2099{month:02d}01T000000Z.tar.gz"
        with pytest.raises(rx.Refused, match="more than 3600 s after the backup host's clock") as err:
            call(tmp_path, f"put {name} 3 {_digest(b'abc')}", b"abc")
        assert "backup_server_max_future_skew" in str(err.value)
    assert [n for n in os.listdir(tmp_path) if n != ".incoming"] == []


def test_receiver_accepts_a_slow_clock_within_the_skew_and_records_the_receive_time(tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    soon = (now + datetime.timedelta(minutes=30)).strftime("%Y%m%dT%H%M%SZ")
    name = f"web1-{soon}.tar.gz"
    assert call(tmp_path, f"put {name} 3 {_digest(b'abc')}", b"abc")["already"] is False
    record = json.loads((tmp_path / (name + ".received")).read_text())
    received = datetime.datetime.strptime(record["received"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((received - now).total_seconds()) < 60
    assert record["sha256"] == _digest(b"abc") and record["size"] == 3
    # An archive named in 2000 (a client whose clock went back) is received now, and dated so.
    old = "web1-20000101T000000Z.tar.gz"
    call(tmp_path, f"put {old} 3 {_digest(b'xyz')}", b"xyz")
    assert json.loads((tmp_path / (old + ".received")).read_text())["received"][:4] == str(now.year)


def test_receiver_refuses_another_sources_name(tmp_path):
    with pytest.raises(rx.Refused, match="receives the archives of web1 only"):
        call(tmp_path, f"put db1-20261127T020000Z.tar.gz 3 {_digest(b'abc')}", b"abc")


def test_the_receiver_source_is_its_directory_name(tmp_path, capsys, monkeypatch):
    base = tmp_path / "db1"
    base.mkdir()
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"put {NAME} 3 {'0' * 64}")
    argv = ["-c", "/usr/local/sbin/streamcloud-backup-receive"]
    assert rx.main(argv, base=str(base), handle_signals=False, settings={}) == rx.EXIT_REFUSED
    assert "receives the archives of db1 only" in capsys.readouterr().err


NO_DELETE = [
    "put {name} 3 {other}",      # same name, other content
    "put {name} 3",              # same name, no checksum
    "commit {name} {other}",     # publish another part under that name (a command that no longer exists)
    "verify {name}",             # a command that no longer exists
]


@pytest.mark.parametrize("command", NO_DELETE)
def test_no_client_command_deletes_or_overwrites_a_stored_archive(tmp_path, command):
    """Finding 1: every command a client key can call, aimed at a published archive."""
    data = os.urandom(3000)
    call(tmp_path, f"put {NAME} {len(data)} {_digest(data)}", data)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n != ".incoming"}
    with contextlib.suppress(rx.Refused):
        call(tmp_path, command.format(name=NAME, other=_digest(b"abc")), b"abc")
    after = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n != ".incoming"}
    assert after == before


def test_publish_never_replaces_an_archive_that_appeared_meanwhile(tmp_path):
    """The final step links (fails when the name is taken) instead of renaming over it."""
    data = b"abc"
    (tmp_path / ".incoming").mkdir()
    part = tmp_path / ".incoming" / (NAME + ".part")
    part.write_bytes(data)
    (tmp_path / NAME).write_bytes(b"the stored archive")
    with pytest.raises(rx.Refused, match="never overwritten"):
        rx._publish(str(tmp_path), NAME, _digest(data), str(part))
    assert (tmp_path / NAME).read_bytes() == b"the stored archive"


def test_two_uploads_of_one_name_the_second_is_refused(tmp_path):
    """Finding 6: while one upload of a name holds its lock, a second is refused clearly."""
    import fcntl

    (tmp_path / ".incoming").mkdir()
    with open(tmp_path / ".incoming" / (NAME + ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(rx.Refused, match=f"another upload of {NAME} is in progress"):
            call(tmp_path, f"put {NAME} 3 {_digest(b'abc')}", b"abc")
    assert not (tmp_path / NAME).exists()
    # Once the first is gone, the name can be uploaded.
    assert call(tmp_path, f"put {NAME} 3 {_digest(b'abc')}", b"abc")["already"] is False


def test_a_killed_receivers_partial_upload_is_removed_by_the_next_put(tmp_path):
    """Finding 3: a .part left by a killed receiver (no process holds its lock) is deleted by the
    next upload; one whose upload is alive (lock held) is left alone."""
    import fcntl

    incoming = tmp_path / ".incoming"
    incoming.mkdir()
    dead = "web1-20261126T020000Z.tar.gz"
    alive = "web1-20261125T020000Z.tar.gz"
    (incoming / (dead + ".part")).write_bytes(b"x" * 1000)
    (incoming / (alive + ".part")).write_bytes(b"y" * 1000)
    with open(incoming / (alive + ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        call(tmp_path, f"put {NAME} 3 {_digest(b'abc')}", b"abc")
        assert sorted(os.listdir(incoming)) == [alive + ".lock", alive + ".part"]


# --- quota per source (issue 11, finding 4) ----------------------------------------------------------

@pytest.mark.parametrize(("settings", "variable"), [
    ({"quota_mb": 1}, "raise backup_server_quota_mb (or backup_server_quota_mb_by_source for this source)"),
    ({"quota_mb": 0, "quota_mb_by_source": {"web1": 1, "db1": 500}}, "raise backup_server_quota_mb_by_source['web1']"),
])
def test_quota_is_checked_with_a_clear_error(outbox, remote, monkeypatch, tmp_path, settings, variable):
    """One source cannot fill the shared disk: an upload that would take it over its quota is
    refused before a byte is written, and the client's error names the quota and the variable."""
    far, far_dir = remote
    (far_dir / "web1-20261101T000000Z.tar.gz").write_bytes(b"x" * (1024 * 1024 - 1000))
    config = tmp_path / "receiver.json"
    config.write_text(json.dumps(settings))
    monkeypatch.setenv("BACKUP_TEST_SETTINGS", str(config))
    before = names(outbox)
    result = ship(str(outbox), far)
    assert result["transferred"] == [] and len(result["failed"]) == 2
    error = result["failed"][0]["error"]
    assert "over its quota of 1 MiB" in error and variable in error
    assert names(outbox) == before
    assert os.listdir(far_dir / ".incoming") == []
    # Within the quota (the override raised for this source) the same archives go.
    config.write_text(json.dumps({"quota_mb": 1, "quota_mb_by_source": {"web1": 100}}))
    assert len(ship(str(outbox), far)["transferred"]) == 2


def test_quota_counts_what_the_source_already_holds(tmp_path):
    base = tmp_path / "web1"
    base.mkdir()
    data = os.urandom(600 * 1024)
    call(base, f"put {NAME} {len(data)} {_digest(data)}", data)
    with pytest.raises(rx.Refused, match="over its quota of 1 MiB") as err:
        rx.dispatch(str(base), f"put web1-20261128T020000Z.tar.gz {len(data)} {_digest(data)}".split(),
                    io.BytesIO(data), {"quota_mb": 1})
    assert err.value.code == rx.EXIT_QUOTA
    assert not (base / "web1-20261128T020000Z.tar.gz").exists()


@pytest.mark.parametrize(("content", "message"), [
    ({"max_future_skew": -1}, "max_future_skew -1 must be 0 or a positive whole number"),
    ({"quota_mb": "lots"}, "quota_mb 'lots' must be"),
    ({"quota_mb_by_source": {"web1": -5}}, "quota_mb_by_source must map"),
])
def test_receiver_settings_are_checked(tmp_path, content, message):
    path = tmp_path / "receiver.json"
    path.write_text(json.dumps(content))
    with pytest.raises(BackupError, match=message):
        rx.load_settings(str(path))


def test_ssh_prefers_aes_gcm_and_keeps_its_default_ciphers_behind(tmp_path):
    """OpenSSH's own reading of the options the transfer passes (ssh -G connects nowhere)."""
    key = tmp_path / "id_ed25519"
    key.write_text("unused\n")
    argv = Remote("backup", "bk-web1", identity_file=str(key)).argv
    done = subprocess.run(["ssh", "-G", *argv[1:]], capture_output=True, text=True, check=True)
    ciphers = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("ciphers "))
    assert ciphers.split(",")[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    assert "chacha20-poly1305@openssh.com" in ciphers.split(",")
