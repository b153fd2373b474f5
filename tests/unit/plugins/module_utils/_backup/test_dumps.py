"""Defects 1 and 3 of issue 10: the published hooks, and a dump_dir that can never delete anything else."""

from __future__ import annotations

import datetime
import os

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import create_archive
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.dumps import resolve_dump_command
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

# backup_dumps is imported inside the tests that need it, so that the tests of defect 3 (through
# create_archive) also run, and fail, on the code before the fix.
WHEN = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def hook(tmp_path):
    script = tmp_path / "dump.sh"
    script.write_text('#!/bin/sh\necho rows > "$1/app.dump"\n')
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def failing_hook(tmp_path):
    script = tmp_path / "fail.sh"
    script.write_text('#!/bin/sh\necho "server down" >&2\nexit 2\n')
    script.chmod(0o755)
    return str(script)


def test_dump_dir_equal_to_the_outbox_is_refused_and_the_unshipped_archive_kept(tree, tmp_path, hook):
    outbox = tmp_path / "o"
    made = create_archive([str(tree)], str(outbox), "db1", now=WHEN)
    with pytest.raises(BackupError, match="overlaps the outbox"):
        create_archive([str(tree)], str(outbox), "db1", db_dump_command=[hook], dump_dir=str(outbox),
                       now=WHEN + datetime.timedelta(seconds=1))
    assert os.path.exists(made["archive"])


def test_dump_dir_holding_the_outbox_is_refused(tree, tmp_path, hook):
    outbox = tmp_path / "spool" / "o"
    made = create_archive([str(tree)], str(outbox), "db1", now=WHEN)
    with pytest.raises(BackupError, match="overlaps the outbox"):
        create_archive([str(tree)], str(outbox), "db1", db_dump_command=[hook], dump_dir=str(tmp_path / "spool"),
                       now=WHEN + datetime.timedelta(seconds=1))
    assert os.path.exists(made["archive"])


def test_dump_dir_inside_a_backed_up_path_is_refused_and_the_files_kept(tree, tmp_path, hook):
    with pytest.raises(BackupError, match="overlaps the backed-up path"):
        create_archive([str(tree)], str(tmp_path / "o"), "db1", db_dump_command=[hook], dump_dir=str(tree / "etc"),
                       now=WHEN)
    assert (tree / "etc" / "app.conf").read_text() == "listen 8080\n"


def test_dump_dir_that_is_a_symlink_is_a_clear_error(tree, tmp_path, hook):
    (tmp_path / "real").mkdir()
    (tmp_path / "db").symlink_to(tmp_path / "real")
    with pytest.raises(BackupError, match="is a symbolic link"):
        create_archive([str(tree)], str(tmp_path / "o"), "db1", db_dump_command=[hook], dump_dir=str(tmp_path / "db"),
                       now=WHEN)
    assert (tmp_path / "real").is_dir()


@pytest.mark.parametrize("system", ["/", "/etc", "/var", "/var/lib", "/usr/local", "/var/backups/streamcloud"])
def test_system_directories_are_refused(system):
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup import dumps as bd

    with pytest.raises(BackupError, match="system directory"):
        bd.check_dump_dir(system, "/nonexistent/outbox", [])


def test_a_directory_of_other_files_is_refused(tmp_path):
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup import dumps as bd

    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match="holds files no dump wrote"):
        bd.check_dump_dir(str(tmp_path / "db"), str(tmp_path / "o"), [])
    assert (tmp_path / "db" / "notes.txt").exists()


def test_a_failing_dump_keeps_the_previous_dump(tree, tmp_path, hook, failing_hook):
    dumps = tmp_path / "db"
    create_archive([str(tree)], str(tmp_path / "o"), "db1", db_dump_command=[hook], dump_dir=str(dumps), now=WHEN)
    assert (dumps / "app.dump").read_text() == "rows\n"
    with pytest.raises(BackupError, match="the previous dump is kept"):
        create_archive([str(tree)], str(tmp_path / "o"), "db1", db_dump_command=[failing_hook], dump_dir=str(dumps),
                       now=WHEN + datetime.timedelta(seconds=1))
    assert (dumps / "app.dump").read_text() == "rows\n"
    assert sorted(os.listdir(tmp_path)) == ["data", "db", "dump.sh", "fail.sh", "o"]  # no fresh dir left behind


def test_each_dump_replaces_the_last_one_whole(tree, tmp_path, hook):
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup import dumps as bd

    dumps = tmp_path / "db"
    dumps.mkdir()
    (dumps / "old.dump").write_text("gone database")
    create_archive([str(tree)], str(tmp_path / "o"), "db1", db_dump_command=[hook], dump_dir=str(dumps), now=WHEN)
    assert sorted(os.listdir(dumps)) == [bd.MARKER, "app.dump"]


def test_restore_dumps_calls_the_published_command(tmp_path):
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup import dumps as bd

    seen = tmp_path / "seen"
    command = tmp_path / "restore.sh"
    command.write_text(f'#!/bin/sh\necho "$1" > {seen}\necho "app restored"\n')
    command.chmod(0o755)
    hooks = tmp_path / "hooks.json"
    hooks.write_text(f'{{"dump": "/bin/true", "restore": "{command}"}}')
    assert bd.restore_dumps(str(tmp_path / "dumps"), hooks_file=str(hooks)) == ["app restored"]
    assert seen.read_text() == f"{tmp_path / 'dumps'}\n"


def test_restore_without_a_published_command_says_what_to_do(tmp_path):
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup import dumps as bd

    with pytest.raises(BackupError, match="apply the postgresql role first"):
        bd.restore_dumps(str(tmp_path), hooks_file=str(tmp_path / "none.json"))


@pytest.mark.parametrize(("setting", "expected"), [
    ("", None), ("none", None), ("  none ", None), ("/usr/bin/dump --all", ["/usr/bin/dump", "--all"]),
    ("'/opt/my dump' -x", ["/opt/my dump", "-x"]),
])
def test_resolve_dump_command(setting, expected):
    assert resolve_dump_command(setting) == expected
