"""The cron entry point: installed as the role installs it, run as cron runs it."""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import archive as backup_archive
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import cli as backup_cli
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import transfer as backup_transfer
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

REPO = Path(__file__).resolve().parents[5]


@pytest.fixture
def config(tree, tmp_path, ssh_on_path):
    root = ssh_on_path
    key = tmp_path / "key"
    key.write_text("unused\n")
    data = {
        "source": "web1", "paths": [str(tree)], "excludes": ["*.tmp"], "outbox": str(tmp_path / "outbox"),
        "db_dump_command": "none", "host": "backup", "user": "bk-web1", "identity_file": str(key),
        "known_hosts_file": str(tmp_path / "known_hosts"), "status_file": str(tmp_path / "state" / "status.json"),
        "log_file": str(tmp_path / "log" / "backup.log"), "lock_file": str(tmp_path / "lock"),
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path, data, root / "web1"


def test_run_archives_ships_and_reports(config):
    path, data, far = config
    out = io.StringIO()
    assert backup_cli.main(["run", "--config", str(path)], out=out) == 0
    line = json.loads(out.getvalue())
    assert line["status"] == "ok" and line["transferred"] == [line["archive"]]
    assert (far / line["archive"]).exists()
    assert os.listdir(data["outbox"]) == []
    status = json.loads(Path(data["status_file"]).read_text())
    assert status["status"] == "ok" and status["sha256"] == line["sha256"]
    assert json.loads(Path(data["log_file"]).read_text().splitlines()[-1]) == line


def test_unreachable_fails_loudly_and_next_run_ships_both(config, monkeypatch, capsys):
    path, _data, far = config
    monkeypatch.setenv("BACKUP_TEST_DOWN", "1")
    out = io.StringIO()
    assert backup_cli.main(["run", "--config", str(path)], out=out) == 1
    line = json.loads(out.getvalue())
    assert line["status"] == "failed" and "unreachable" in line["error"] and "kept in" in line["error"]
    assert "FAILED" in capsys.readouterr().err
    first = line["archive"]
    monkeypatch.delenv("BACKUP_TEST_DOWN")
    # A second later, the next run ships its own archive and the one left behind.
    import time

    time.sleep(1.1)
    out = io.StringIO()
    assert backup_cli.main(["run", "--config", str(path)], out=out) == 0
    line = json.loads(out.getvalue())
    assert line["transferred"] == [first, line["archive"]]
    assert (far / first).exists()


def test_second_run_while_locked_exits_cleanly(config):
    path, data, _far = config
    with open(data["lock_file"], "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        out = io.StringIO()
        assert backup_cli.main(["run", "--config", str(path)], out=out) == 0
    line = json.loads(out.getvalue())
    assert line["status"] == "skipped"
    assert not os.path.exists(data["outbox"])


@pytest.mark.parametrize(("change", "message"), [
    ({"host": None}, "host is not set"),
    ({"user": ""}, "user is not set"),
    ({"colour": "blue"}, "unknown setting"),
])
def test_bad_configuration(config, change, message):
    path, data, _far = config
    data.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(BackupError, match=message):
        backup_cli.load_config(str(path))


def test_threads_above_the_bound_fail_clearly_and_write_nothing(config, capsys):
    """Finding 6: threads had no upper bound (64 threads: 407 MB RSS)."""
    path, data, far = config
    data["compression_threads"] = 64
    path.write_text(json.dumps(data))
    out = io.StringIO()
    assert backup_cli.main(["run", "--config", str(path)], out=out) == 1
    line = json.loads(out.getvalue())
    assert "threads 64 must be" in line["error"] and "backup_compression_threads" in line["error"]
    assert not os.path.exists(data["outbox"]) or os.listdir(data["outbox"]) == []
    assert not far.exists() or [n for n in os.listdir(far) if n.endswith(".tar.gz")] == []


def test_a_part_left_by_a_killed_run_is_removed_by_the_next_run(config):
    """Finding 3: a run killed while archiving left a .part in the outbox; the next run deletes it
    (no live process holds it), while a .part being written (locked by its writer) is left alone."""
    path, data, _far = config
    outbox = Path(data["outbox"])
    outbox.mkdir()
    dead = outbox / "web1-20261126T020000Z.tar.gz.part"
    dead.write_bytes(os.urandom(300_000))
    alive = outbox / "web1-20261126T030000Z.tar.gz.part"
    alive.write_bytes(b"being written")
    notes = outbox / "notes.part"  # not an archive's .part: never touched
    notes.write_text("mine")
    with open(alive, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)
        out = io.StringIO()
        assert backup_cli.main(["run", "--config", str(path)], out=out) == 0
    assert json.loads(out.getvalue())["removed_leftovers"] == [dead.name]
    assert not dead.exists()
    assert alive.exists() and notes.exists()


def test_unreadable_configuration(tmp_path, capsys):
    assert backup_cli.main(["run", "--config", str(tmp_path / "missing.json")]) == 1
    assert "cannot read the configuration" in capsys.readouterr().err


def test_cli_and_modules_call_the_same_functions(config, monkeypatch):
    """One code path: the modules call these functions with their parameters, and so does the CLI with its
    configuration, named alike (options.py)."""
    from ansible_collections.streamcloud.platform.plugins.modules import backup_archive as archive_module
    from ansible_collections.streamcloud.platform.plugins.modules import backup_rotate as rotate_module
    from ansible_collections.streamcloud.platform.plugins.modules import backup_transfer as transfer_module

    assert archive_module.archive is backup_archive.archive
    assert transfer_module.transfer is backup_transfer.transfer
    assert rotate_module.rotate is backup_cli.rotate.rotate
    calls = []
    for owner, name in ((backup_archive, "archive"), (backup_transfer, "transfer")):
        real = getattr(owner, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    path = config[0]
    assert backup_cli.main(["run", "--config", str(path)], out=io.StringIO()) == 0
    assert calls == ["archive", "transfer"]


# --- issue 10, defect 7: names, empty archives, the outbox behind a link, the splay ---------------

@pytest.mark.parametrize("source", ["web\n", "web\nx", ""])
def test_a_source_name_with_a_newline_is_refused(config, source):
    path, data, _far = config
    data["source"] = source or 5
    path.write_text(json.dumps(data))
    with pytest.raises(BackupError, match="is not a valid name"):
        backup_cli.load_config(str(path))
    with pytest.raises(BackupError, match="is not a valid name"):
        backup_archive.archive_name("web\n", __import__("datetime").datetime.now(), "gzip")


def test_a_manual_run_does_not_sleep_but_the_cron_run_does(config, monkeypatch):
    path, data, _far = config
    data["splay"] = 300
    path.write_text(json.dumps(data))
    slept = []
    monkeypatch.setattr(backup_cli.time, "sleep", slept.append)
    assert backup_cli.main(["run", "--config", str(path)], out=io.StringIO()) == 0
    assert slept == []
    assert backup_cli.main(["run", "--config", str(path), "--cron"], out=io.StringIO()) == 0
    assert len(slept) == 1 and 0 <= slept[0] <= 300


@pytest.mark.parametrize("how", ["exclude-all", "dest-is-source"])
def test_an_archive_with_no_file_is_an_error(config, how):
    path, data, _far = config
    if how == "exclude-all":
        data["excludes"] = ["*"]
    else:
        data["outbox"] = data["paths"][0]
    path.write_text(json.dumps(data))
    out = io.StringIO()
    assert backup_cli.main(["run", "--config", str(path)], out=out) == 1
    line = json.loads(out.getvalue())
    assert line["status"] == "failed" and "nothing to archive" in line["error"]


def test_an_empty_archive_is_accepted_when_allowed(tree, tmp_path):
    made = backup_archive.create_archive([str(tree)], str(tmp_path / "o"), "web1", excludes=["*"], allow_empty=True)
    assert made["files"] == 0


def test_the_outbox_behind_a_symlink_is_never_archived(tree, tmp_path):
    (tree / "real").mkdir()
    (tree / "via").symlink_to(tree / "real")
    outbox = tree / "via" / "outbox"  # the configured outbox reaches tree/real/outbox through a link
    first = backup_archive.create_archive([str(tree)], str(outbox), "web1")
    import time

    time.sleep(1.1)
    second = backup_archive.create_archive([str(tree)], str(outbox), "web1")
    names = subprocess.run(["tar", "-tzf", second["archive"]], capture_output=True, text=True, check=True).stdout
    assert not [n for n in names.splitlines() if "/real/outbox" in n or first["name"] in n]
    assert any(n.endswith("/real") or n.endswith("/real/") for n in names.splitlines())


def test_choose_prints_the_archive_a_restore_takes(tmp_path, capsys):
    """The command the restore entry point runs on the backup host: one JSON line."""
    d = tmp_path / "web1"
    d.mkdir()
    for hour, name in ((1, "web1-20261127T020000Z.tar.gz"), (2, "web1-20000101T000000Z.tar.gz")):
        (d / name).write_bytes(name.encode())
        (d / (name + ".sha256")).write_text(f"{hashlib.sha256(name.encode()).hexdigest()}  {name}\n")
        when = datetime.datetime(2026, 11, 27, hour, tzinfo=datetime.timezone.utc)
        (d / (name + ".received")).write_text(json.dumps({"received": f"{when:%Y%m%dT%H%M%SZ}"}) + "\n")
    out = io.StringIO()
    assert backup_cli.main(["choose", "--path", str(d), "--source", "web1"], out=out) == 0
    assert json.loads(out.getvalue())["name"] == "web1-20000101T000000Z.tar.gz"
    bad = ["choose", "--path", str(d), "--source", "web1", "--archive", "soon"]
    assert backup_cli.main(bad, out=io.StringIO()) == 1
    assert "use latest, a day" in capsys.readouterr().err
