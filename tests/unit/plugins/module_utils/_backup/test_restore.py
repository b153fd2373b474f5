"""Restore: archive real files, destroy them, restore, compare bytes; corrupted archives refused."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import restore as rs
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import create_archive
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import sha256_file
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import write_sidecar

WHEN = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)


def entries(top, hashed=False):
    """(path, lstat, content) of every entry below top: a link's target, a file's bytes (or their SHA-256)."""
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            content = None
            if os.path.islink(path):
                content = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest() if hashed else handle.read()
            yield path, st, content


def snapshot(top):
    return {os.path.relpath(path, top): (st.st_mode, content) for path, st, content in entries(top)}


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


# --- issue 10: metadata, runtime-owned paths, names that are not UTF-8, a failed apply ----------

def acl_xattr(entries):
    """The kernel's binary POSIX ACL (version 2) for [(tag, perm, id)]: what setfacl writes."""
    import struct

    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


def full_state(top):
    """lstat fields, contents, xattrs (ACLs included) and blocks on disk of every entry below top."""
    out = {}
    for path, st, content in entries(top, hashed=True):
        link = os.path.islink(path)
        xattrs = {} if link else {
            n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
        out[os.path.relpath(os.fsencode(path), os.fsencode(top))] = (
            st.st_mode, st.st_uid, st.st_gid, st.st_size, None if link else st.st_mtime_ns, st.st_nlink, content,
            xattrs, st.st_blocks)
    return out


@pytest.fixture
def rich_tree(tmp_path):
    """Defect 4: xattrs, an ACL, a sparse file, a FIFO, setuid, hard links, odd names and times."""
    top = tmp_path / "rich"
    (top / "dir").mkdir(parents=True)
    sparse = top / "dir" / "sparse.img"
    with open(sparse, "wb") as handle:
        handle.seek(256 * 1024 * 1024)
        handle.write(b"end")
    os.setxattr(sparse, "user.origin", b"camera-\xff-7")
    (top / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(top / "tool", 0o4755)  # noqa: S103 - setuid is what the test is about
    os.link(top / "tool", top / "tool-hardlink")
    (top / "shared").write_text("acl")
    os.setxattr(top / "shared", "system.posix_acl_access",
                acl_xattr([(0x01, 6, 0xFFFFFFFF), (0x02, 4, 65534), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
                           (0x20, 0, 0xFFFFFFFF)]))
    (top / "inherits").mkdir()  # a default ACL only: the access ACL is the mode alone
    os.setxattr(top / "inherits", "system.posix_acl_default",
                acl_xattr([(0x01, 7, 0xFFFFFFFF), (0x02, 5, 65534), (0x04, 5, 0xFFFFFFFF), (0x10, 5, 0xFFFFFFFF),
                           (0x20, 5, 0xFFFFFFFF)]))
    os.mkfifo(top / "queue")
    odd = os.path.join(os.fsencode(top), b"caf\xc3\xa9 new\nline \xff\xfe")
    with open(odd, "wb") as handle:
        handle.write(b"odd")
    os.utime(odd, ns=(0, -86400 * 365 * 10 * 10**9))  # 1960
    os.utime(top / "shared", ns=(0, 4102444800 * 10**9 + 5))  # 2100, with nanoseconds
    os.utime(top / "dir", ns=(0, 1_000_000_000 * 10**9))  # a directory's own time, set last
    return top


def test_metadata_survives_the_round_trip(rich_tree, tmp_path):
    before = full_state(rich_tree)
    made = create_archive([str(rich_tree)], str(tmp_path / "o"), "web1", now=WHEN)
    target = tmp_path / "t"
    rs.restore(made["archive"], target=str(target))
    after = full_state(target / str(rich_tree).lstrip("/"))
    assert after == before
    sparse = after[b"dir/sparse.img"]
    assert sparse[3] == 256 * 1024 * 1024 + 3 and sparse[8] < 1024  # still sparse: blocks, not 256 MiB


def test_manifest_records_every_field(rich_tree, tmp_path):
    made = create_archive([str(rich_tree)], str(tmp_path / "o"), "web1", now=WHEN)
    manifest, _members = rs.verify(made["archive"])
    rel = str(rich_tree).lstrip("/")
    entries = manifest["files"]
    assert entries[f"{rel}/queue"]["type"] == "fifo"
    assert entries[f"{rel}/tool"]["mode"] == 0o4755
    assert entries[f"{rel}/tool-hardlink"] == dict(entries[f"{rel}/tool-hardlink"], type="hardlink",
                                                   link=f"{rel}/tool")
    assert entries[f"{rel}/dir/sparse.img"]["xattrs"] == {"user.origin": "Y2FtZXJhLf8tNw=="}
    assert "user:65534:r--" in entries[f"{rel}/shared"]["acl"]["access"].replace(":nobody:", ":65534:")
    assert entries[f"{rel}/shared"]["mtime_ns"] == 4102444800 * 10**9 + 5
    assert set(entries[f"{rel}/dir/sparse.img"]) >= {"type", "mode", "uid", "gid", "size", "mtime_ns", "link",
                                                     "xattrs", "sha256"}


def test_a_changed_xattr_after_restore_is_reported(rich_tree, tmp_path):
    made = create_archive([str(rich_tree)], str(tmp_path / "o"), "web1", now=WHEN)
    manifest, _members = rs.verify(made["archive"])
    rel = str(rich_tree).lstrip("/")
    os.setxattr(rich_tree / "dir" / "sparse.img", "user.origin", b"changed")
    assert rs.check_on_disk("/", [f"{rel}/dir/sparse.img"], manifest["files"]) == {f"{rel}/dir/sparse.img": ["xattrs"]}


def fake_mountinfo(tmp_path, target):
    lines = [
        "22 1 0:21 / / rw,relatime - overlay overlay rw",
        f"23 22 0:5 / {target}/proc rw,nosuid - proc proc rw",
        f"24 22 254:1 /docker/containers/x/hosts {target}/etc/hosts rw - ext4 /dev/vda rw",
        f"25 22 0:6 / {target}/srv/with\\040space rw - tmpfs tmpfs rw",
    ]
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_runtime_owned_paths_are_found_in_mountinfo(tmp_path):
    target = tmp_path / "root"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (target / "srv" / "with space").mkdir(parents=True)
    owned = rs.runtime_owned(str(target), fake_mountinfo(tmp_path, target))
    assert owned == {"proc": "proc mount", "etc/hosts": "bind-mounted file (ext4)"}


def test_in_place_restore_skips_and_reports_runtime_owned_files(tmp_path):
    """Defect 2: a bind-mounted file is skipped and listed; the rest is restored and checked."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("archived hosts\n")
    (root / "etc" / "app.conf").write_text("archived\n")
    made = create_archive([str(root / "etc")], str(tmp_path / "o"), "web1", now=WHEN)
    (root / "etc" / "hosts").write_text("runtime hosts\n")
    (root / "etc" / "app.conf").write_text("damaged\n")
    rel = str(root).lstrip("/")
    result = rs.restore(made["archive"], target="/", mountinfo=fake_mountinfo(tmp_path, root))
    assert result["skipped_runtime"] == [f"{rel}/etc/hosts"]
    assert (root / "etc" / "hosts").read_text() == "runtime hosts\n"
    assert (root / "etc" / "app.conf").read_text() == "archived\n"


def test_restore_of_one_path_only(tree, tmp_path):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    (tree / "etc" / "app.conf").write_text("damaged")
    (tree / "media" / "clip.bin").write_bytes(b"also damaged")
    rs.restore(made["archive"], target="/", paths=[str(tree / "etc")])
    assert (tree / "etc" / "app.conf").read_text() == "listen 8080\n"
    assert (tree / "media" / "clip.bin").read_bytes() == b"also damaged"


def test_cli_report_is_utf8_whatever_the_names(tmp_path):
    """Defect 6: a name that is not UTF-8 must not make the report unreadable (restore.yml said FAILED)."""
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup import cli as backup_cli

    top = tmp_path / "names"
    top.mkdir()
    with open(os.path.join(os.fsencode(top), b"bad-\xff-name"), "wb") as handle:
        handle.write(b"x")
    made = create_archive([str(top)], str(tmp_path / "o"), "web1", now=WHEN)
    out = io.StringIO()
    assert backup_cli.main(["restore", "--archive", made["archive"], "--target", str(tmp_path / "t")], out=out) == 0
    line = out.getvalue()
    report = json.loads(line)
    json.dumps(report).encode("utf-8")  # what Ansible does with a module's or a command's result
    assert any(name.endswith("bad-\\xff-name") for name in report["files"])
    for value in report["files"]:
        value.encode("utf-8")


def test_a_failed_apply_says_what_was_applied(tree, tmp_path):
    made = create_archive([str(tree)], str(tmp_path / "o"), "web1", now=WHEN)
    target = tmp_path / "t"
    blocker = target / str(tree).lstrip("/") / "media" / "clip.bin"
    (blocker / "inside").mkdir(parents=True)  # a non-empty directory where a file must go
    with pytest.raises(BackupError, match=r"entr\(y/ies\) were applied before it stopped, listed in") as failure:
        rs.restore(made["archive"], target=str(target))
    report = str(failure.value).split("listed in ")[1].split(".applied")[0] + ".applied"
    with open(report, encoding="utf-8") as handle:
        applied = handle.read()
    assert "etc/app.conf" in applied
