"""Restore: archive real files, destroy them, restore, compare bytes; corrupted archives refused."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils import backup_restore as rs
from ansible_collections.streamcloud.platform.plugins.module_utils.backup_archive import create_archive
from ansible_collections.streamcloud.platform.plugins.module_utils.backup_common import (
    BackupError,
    sha256_file,
    write_sidecar,
)

WHEN = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)


def snapshot(top):
    out = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if os.path.islink(path):
                content = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    content = handle.read()
            else:
                content = None
            out[os.path.relpath(path, top)] = (st.st_mode, content)
    return out


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_restore_into_a_target_is_byte_identical(tree, tmp_path, compression):
    before = snapshot(tree)
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", compression=compression, now=WHEN)
    shutil.rmtree(tree)
    target = tmp_path / "restored"
    result = rs.restore(made["archive"], target=str(target))
    restored = target / str(tree).lstrip("/")
    assert snapshot(restored) == before
    assert result["source"] == "web1" and result["databases"] == []
    assert not (target / ".streamcloud-backup-manifest.json").exists()


def test_restore_to_original_path_overwrites_damage(tree, tmp_path):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    original = (tree / "etc" / "app.conf").read_bytes()
    (tree / "etc" / "app.conf").write_text("damaged")
    (tree / "media" / "clip.bin").unlink()
    rs.restore(made["archive"], target="/")
    assert (tree / "etc" / "app.conf").read_bytes() == original
    assert (tree / "media" / "clip.bin").exists()


def test_dry_run_lists_and_touches_nothing(tree, tmp_path):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    target = tmp_path / "t"
    result = rs.restore(made["archive"], target=str(target), dry_run=True)
    rel = str(tree).lstrip("/")
    assert result["files"] == sorted([f"{rel}/etc/app.conf", f"{rel}/media/clip.bin", f"{rel}/media/skip.tmp"])
    assert result["changed"] is False
    assert not target.exists()


def flip(path, offset):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x55]))


def test_corrupted_archive_is_refused_by_checksum(tree, tmp_path):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    flip(made["archive"], made["size"] // 2)
    target = tmp_path / "t"
    with pytest.raises(BackupError, match="is corrupted: SHA-256 is"):
        rs.restore(made["archive"], target=str(target))
    assert not target.exists()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_corruption_with_a_recomputed_checksum_is_still_caught(tree, tmp_path, compression):
    # Someone "fixed" the sidecar: decompression or the manifest still catches the damage.
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", compression=compression, now=WHEN)
    flip(made["archive"], made["size"] // 2)
    write_sidecar(made["archive"], sha256_file(made["archive"]))
    target = tmp_path / "t"
    with pytest.raises(BackupError, match="is corrupted"):
        rs.restore(made["archive"], target=str(target))
    assert not target.exists()


def test_truncated_archive_is_refused(tree, tmp_path):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    with open(made["archive"], "r+b") as handle:
        handle.truncate(made["size"] // 2)
    with pytest.raises(BackupError, match="is corrupted"):
        rs.restore(made["archive"], sha256=sha256_file(made["archive"]), target=str(tmp_path / "t"))


def test_archive_without_manifest_is_refused(tmp_path):
    (tmp_path / "x").write_text("x")
    archive = tmp_path / "web1-20261127T020000Z.tar.gz"
    subprocess.run(["tar", "czf", str(archive), "-C", str(tmp_path), "x"], check=True)
    with pytest.raises(BackupError, match="has no manifest"):
        rs.restore(str(archive), sha256=sha256_file(archive), target=str(tmp_path / "t"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target": "relative"}, "is not an absolute path"),
    ({"archive": "/nonexistent/web1-20261127T020000Z.tar.gz"}, "does not exist"),
    ({"sha256": None, "drop_sidecar": True}, "no .sha256 sidecar"),
    ({"archive_name": "notes.txt"}, "not a .tar.gz or .tar.zst archive"),
])
def test_bad_restore_input(tree, tmp_path, kwargs, message):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    archive = kwargs.pop("archive", made["archive"])
    if kwargs.pop("drop_sidecar", False):
        os.unlink(made["archive"] + ".sha256")
    name = kwargs.pop("archive_name", None)
    if name:
        archive = str(tmp_path / name)
        shutil.copy(made["archive"], archive)
        write_sidecar(archive, made["sha256"])
    with pytest.raises(BackupError, match=message):
        rs.restore(archive, **kwargs)
