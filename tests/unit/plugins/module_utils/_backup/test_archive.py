"""backup_archive: real files, real tar/gzip/pigz/zstd, the archive checked with GNU tar."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import archive as ba
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.compressors import compressor_argv
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.dumps import resolve_dump_command
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import sha256_file
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.manifest import MANIFEST_NAME
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import read_sidecar

WHEN = datetime.datetime(2026, 11, 27, 2, 0, 0, tzinfo=datetime.timezone.utc)


def members(archive):
    decompress = "zstd" if archive.endswith(".zst") else "gzip"
    out = subprocess.run(f"{decompress} -dc {archive} | tar -t", shell=True, check=True,  # noqa: S602 - test
                         capture_output=True, text=True).stdout
    return {m.rstrip("/") for m in out.split()}


def manifest_of(archive):
    decompress = "zstd" if archive.endswith(".zst") else "gzip"
    raw = subprocess.run(f"{decompress} -dc {archive} | tar -xO {MANIFEST_NAME}", shell=True,  # noqa: S602 - test
                         check=True, capture_output=True).stdout
    return json.loads(raw)


COMPRESSIONS = [
    pytest.param("gzip", None, ".tar.gz", id="gzip-default"),
    pytest.param("gzip", 1, ".tar.gz", id="gzip-1"),
    pytest.param("pigz", 6, ".tar.gz", id="pigz-6",
                 marks=pytest.mark.skipif(not shutil.which("pigz"), reason="pigz not installed")),
    pytest.param("zstd", 3, ".tar.zst", id="zstd-3"),
    pytest.param("zstd", None, ".tar.zst", id="zstd-default"),
]


@pytest.mark.parametrize(("compression", "level", "suffix"), COMPRESSIONS)
def test_archive_holds_every_file_with_its_checksum(tree, tmp_path, compression, level, suffix):
    out = tmp_path / "outbox"
    result = ba.create_archive([str(tree)], str(out), "web1", compression=compression, compression_level=level,
                               excludes=["*.tmp"], now=WHEN)
    archive = result["archive"]
    assert archive == str(out / f"web1-20261127T020000Z{suffix}")
    assert sorted(os.listdir(out)) == sorted([os.path.basename(archive), os.path.basename(archive) + ".sha256"])
    assert read_sidecar(archive) == sha256_file(archive) == result["sha256"]
    assert result["size"] == os.path.getsize(archive)
    names = members(archive)
    rel = str(tree).lstrip("/")
    assert {f"{rel}/etc/app.conf", f"{rel}/media/clip.bin", f"{rel}/link", f"{rel}/empty", MANIFEST_NAME} <= names
    assert f"{rel}/media/skip.tmp" not in names
    manifest = manifest_of(archive)
    clip = (tree / "media" / "clip.bin").read_bytes()
    expected = {"sha256": hashlib.sha256(clip).hexdigest(), "size": len(clip)}
    assert expected.items() <= manifest["files"][f"{rel}/media/clip.bin"].items()
    assert manifest["source"] == "web1"
    assert result["files"] == 2


@pytest.mark.parametrize("threads", [1, 3, 0, None])
def test_gzip_on_any_number_of_threads_is_one_ordinary_archive(tree, tmp_path, gzip_members, threads):
    result = ba.create_archive([str(tree)], str(tmp_path / "o"), "h", threads=threads, excludes=["*.tmp"], now=WHEN)
    assert gzip_members(Path(result["archive"]).read_bytes()) == 1
    extracted = tmp_path / "x"
    extracted.mkdir()
    subprocess.run(["tar", "xzf", result["archive"], "-C", str(extracted)], check=True)
    copy = extracted / str(tree).lstrip("/")
    assert (copy / "media" / "clip.bin").read_bytes() == (tree / "media" / "clip.bin").read_bytes()
    assert (copy / "etc" / "app.conf").read_text() == "listen 8080\n"
    assert manifest_of(result["archive"])["files"][f"{str(tree).lstrip('/')}/media/clip.bin"]["size"] == 300_000


CORES = min(os.cpu_count() or 1, 16)


@pytest.mark.parametrize(("compression", "threads", "argv"), [
    # gzip on more than one thread is pigz (the segmented gzip it replaced is gone, issue 11); on one, gzip.
    ("gzip", 1, ["gzip", "-c"]), ("gzip", 4, ["pigz", "-c", "-p", "4"]), ("gzip", 0, ["pigz", "-c", "-p", str(CORES)]),
    ("gzip", None, ["pigz", "-c", "-p", str(CORES)]), ("pigz", 3, ["pigz", "-c", "-p", "3"]),
    ("pigz", 1, ["pigz", "-c", "-p", "1"]), ("zstd", 2, ["zstd", "-q", "-c", "-T2"]),
    ("zstd", None, ["zstd", "-q", "-c", "-T0"]),
])
def test_threads_reach_the_compressor(monkeypatch, compression, threads, argv):
    monkeypatch.setattr(shutil, "which", lambda program: f"/usr/bin/{program}")
    assert compressor_argv(compression, None, threads)[0] == argv


def test_symlink_and_modes_are_kept(tree, tmp_path):
    (tree / "etc" / "app.conf").chmod(0o640)
    result = ba.create_archive([str(tree)], str(tmp_path / "o"), "h", now=WHEN)
    rel = str(tree).lstrip("/")
    with tarfile.open(result["archive"]) as tar:
        assert tar.getmember(f"{rel}/link").issym()
        assert tar.getmember(f"{rel}/link").linkname == "etc/app.conf"
        assert tar.getmember(f"{rel}/etc/app.conf").mode & 0o777 == 0o640


@pytest.mark.parametrize(("pattern", "gone"), [
    ("*.bin", "media/clip.bin"),
    ("media", "media/clip.bin"),
    ("*/etc/app.conf", "etc/app.conf"),
    ("link", "link"),
])
def test_excludes_match_base_name_or_full_path(tree, tmp_path, pattern, gone):
    result = ba.create_archive([str(tree)], str(tmp_path / "o"), "h", excludes=[pattern], now=WHEN)
    assert f"{str(tree).lstrip('/')}/{gone}" not in members(result["archive"])


def test_outbox_inside_archived_path_is_not_archived(tree):
    outbox = tree / "outbox"
    result = ba.create_archive([str(tree)], str(outbox), "h", now=WHEN)
    rel = str(tree).lstrip("/")
    assert not any(m.startswith(f"{rel}/outbox") for m in members(result["archive"]))
    assert f"{rel}/etc/app.conf" in members(result["archive"])


def test_dump_runs_first_and_is_archived(tree, tmp_path):
    hook = tmp_path / "dump.sh"
    hook.write_text('#!/bin/sh\necho "rows" > "$1/app.dump"\n')
    hook.chmod(0o755)
    dumps = tmp_path / "db"
    result = ba.create_archive([str(tree)], str(tmp_path / "o"), "db1", db_dump_command=[str(hook)],
                               dump_dir=str(dumps), now=WHEN)
    assert result["databases"] == ["app.dump"]
    assert f"{str(dumps).lstrip('/')}/app.dump" in members(result["archive"])
    manifest = manifest_of(result["archive"])
    assert manifest["dump_dir"] == str(dumps)
    assert manifest["databases"] == ["app.dump"]


@pytest.mark.parametrize(("script", "message"), [
    ('#!/bin/sh\necho "cannot connect" >&2\nexit 3\n', "failed with exit code 3: cannot connect"),
    ("#!/bin/sh\nexit 0\n", "wrote nothing"),
])
def test_failed_dump_makes_no_archive(tree, tmp_path, script, message):
    hook = tmp_path / "dump.sh"
    hook.write_text(script)
    hook.chmod(0o755)
    out = tmp_path / "o"
    with pytest.raises(BackupError, match=message):
        ba.create_archive([str(tree)], str(out), "db1", db_dump_command=[str(hook)], dump_dir=str(tmp_path / "db"),
                          now=WHEN)
    assert not out.exists() or os.listdir(out) == []


def test_check_mode_writes_nothing(tree, tmp_path):
    out = tmp_path / "o"
    result = ba.create_archive([str(tree)], str(out), "h", excludes=["*.tmp"], check_mode=True, now=WHEN)
    assert result["changed"] is True
    assert result["files"] == 2
    assert result["archive"].endswith("h-20261127T020000Z.tar.gz")
    assert not out.exists()


@pytest.mark.parametrize(("threads", "program"), [(1, "gzip"), (2, "pigz")])
def test_failed_compressor_leaves_no_part(tree, tmp_path, wrap, threads, program):
    # A compressor that dies (it reads its input, reports a full disk and exits 3): the .part is removed
    # and nothing is declared good.
    for name in ("gzip", "pigz"):
        wrap(name, "cat >/dev/null\necho 'gzip: No space left on device' >&2\nexit 3")
    out = tmp_path / "o"
    with pytest.raises(BackupError, match=f"{program} failed with exit code 3: gzip: No space left on device"):
        ba.create_archive([str(tree)], str(out), "h", threads=threads, now=WHEN)
    assert os.listdir(out) == []


def test_same_second_twice_is_refused(tree, tmp_path):
    ba.create_archive([str(tree)], str(tmp_path / "o"), "h", now=WHEN)
    with pytest.raises(BackupError, match="already exists"):
        ba.create_archive([str(tree)], str(tmp_path / "o"), "h", now=WHEN)


BAD = [
    ({"paths": []}, "paths is empty"),
    ({"paths": ["relative/dir"]}, "is not an absolute path"),
    ({"paths": ["/nonexistent/backup/path"]}, "does not exist on this host"),
    ({"dest": "outbox"}, "dest: 'outbox' is not an absolute path"),
    ({"source": "bad name"}, "is not a valid name"),
    ({"source": ""}, "is not a valid name"),
    ({"compression": "bzip2"}, "compression 'bzip2' is unknown"),
    ({"compression": "gzip", "compression_level": 12}, "out of range for gzip: use 1 to 9"),
    ({"compression": "zstd", "compression_level": 0}, "out of range for zstd: use 1 to 19"),
    ({"excludes": [""]}, "is not a non-empty pattern"),
    ({"threads": -1}, "threads -1 must be 0"),
    ({"threads": True}, "threads True must be 0"),
    ({"db_dump_command": ["/bin/true"], "dump_dir": None}, "dump_dir is not"),
    ({"dump_dir": "db"}, "dump_dir: 'db' is not an absolute path"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[m for _args, m in BAD])
def test_bad_input_is_refused_before_any_change(tree, tmp_path, override, message):
    args = {"paths": [str(tree)], "dest": str(tmp_path / "o"), "source": "h", "now": WHEN}
    args.update(override)
    with pytest.raises(BackupError, match=message):
        ba.create_archive(**args)
    assert not (tmp_path / "o").exists()


def test_dest_that_is_a_file_is_refused(tree, tmp_path):
    (tmp_path / "o").write_text("")
    with pytest.raises(BackupError, match="is not a directory"):
        ba.create_archive([str(tree)], str(tmp_path / "o"), "h", now=WHEN)


def test_missing_compressor_is_named(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError, match="needs the program 'zstd', which is not installed"):
        ba.create_archive([str(tree)], str(tmp_path / "o"), "h", compression="zstd", now=WHEN)


def test_resolve_auto_without_a_published_hook(tmp_path):
    assert resolve_dump_command("auto", str(tmp_path / "missing.json")) is None


def test_resolve_auto_uses_the_published_hook_wherever_it_is(tmp_path):
    """Defect 1: the postgresql role's postgresql_dump_command may move the hook; the backup follows."""
    hooks = tmp_path / "database-hooks.json"
    hooks.write_text('{"engine": "postgresql", "dump": "/opt/db/bin/dump", "restore": "/opt/db/bin/restore"}')
    assert resolve_dump_command("auto", str(hooks)) == ["/opt/db/bin/dump"]


def test_a_broken_hooks_file_is_a_clear_error(tmp_path):
    hooks = tmp_path / "database-hooks.json"
    hooks.write_text('{"dump": "relative"}')
    with pytest.raises(BackupError, match="must be absolute paths"):
        resolve_dump_command("auto", str(hooks))
