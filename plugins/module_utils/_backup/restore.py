# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore one archive: verify it whole before touching anything, then apply, then check.

1. the archive's SHA-256 must match the recorded one;
2. one pass decompresses it and compares every member with its manifest entry (type, mode,
   owner, size, mtime, link target, xattrs, ACLs, SHA-256), so a corrupted or truncated archive
   is refused before anything is written;
3. the selection (everything, or some paths) less the paths the running system owns (mount
   points of /proc, /sys, /dev and the like, files bind-mounted by the container runtime such as
   /etc/hosts) is extracted by GNU tar (owners, modes, times, xattrs, ACLs, sparse files); every
   applied entry is listed in a report file as tar applies it;
4. every extracted entry is compared with the manifest again, on disk;
5. the database dumps are extracted to a staging directory, checked, and loaded by the restore
   command the database role published (which never drops a live database first).
A dry run stops after step 2 and lists what would be restored and what would be skipped.
An encrypted archive (``NAME.age``) is checked against its SHA-256 first, then decrypted with the
age identity given (from the vault, through standard input) next to it, and that plaintext is
restored and deleted afterwards. Its signature is checked before, by the restore entry point on
the controller (backup_crypt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.compressors import decompressor_for
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.crypt import SUFFIX, decrypt
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.dumps import (
    HOOKS_FILE,
    resolve_restore_command,
    restore_dumps,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import CHUNK, sha256_file
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.manifest import (
    MANIFEST_NAME,
    disk_differences,
    hash_member,
    member_differences,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import printable
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import read_sidecar

# File systems the running kernel or container runtime provides: never restored into.
RUNTIME_FS = {
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "securityfs", "debugfs", "tracefs",
    "pstore", "bpf", "hugetlbfs", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "nsfs",
}
TAR_EXTRACT = [
    "tar", "--extract", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "--same-owner",
    "--preserve-permissions", "--no-recursion", "--null", "--no-unquote", "--verbatim-files-from",
    "--verbose", "--quoting-style=escape",
]
SHOWN = 10


def inspect(archive):
    """Decompresses the archive once; returns (manifest, {member: entry}) as read from the members."""
    proc = subprocess.Popen([*decompressor_for(archive), archive], stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603 - argv list, no shell
    found, manifest, infos = {}, None, {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|", bufsize=CHUNK, errors="surrogateescape") as tar:
            for info in tar:
                if info.name == MANIFEST_NAME:
                    manifest = json.loads(tar.extractfile(info).read().decode())
                    continue
                digest = hash_member(tar, info) if info.isreg() else None
                found[info.name] = digest
                infos[info.name] = info
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        proc.kill()
        proc.wait()
        raise BackupError(f"{archive} is corrupted: it cannot be read to the end ({exc}); "
                          "nothing was restored") from exc
    finally:
        proc.stdout.close()
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    if proc.wait() != 0:
        raise BackupError(f"{archive} is corrupted: decompression failed ({err}); nothing was restored")
    if manifest is None:
        raise BackupError(f"{archive} has no manifest: it was not made by streamcloud-backup or is truncated; "
                          "nothing was restored")
    return manifest, found, infos


def check_sha256(archive, sha256=None):
    """The archive's SHA-256 must match the one given or its sidecar."""
    if not os.path.isfile(archive):
        raise BackupError(f"archive {archive} does not exist")
    expected = sha256 or read_sidecar(archive)
    if expected is None:
        raise BackupError(f"{archive}: no SHA-256 given and no .sha256 sidecar: cannot verify it, nothing was restored")
    actual = sha256_file(archive)
    if actual != expected:
        raise BackupError(f"{archive} is corrupted: SHA-256 is {actual}, expected {expected}; nothing was restored")


def verify(archive, sha256=None):
    """Checks the archive against its checksum and its manifest; returns (manifest, member names)."""
    check_sha256(archive, sha256)
    manifest, found, infos = inspect(archive)
    entries = manifest.get("files", {})
    bad = sorted(name for name in set(entries) | set(found)
                 if name not in entries or name not in found
                 or member_differences(entries[name], infos[name], found[name]))
    if bad:
        raise BackupError(f"{archive} is corrupted: {len(bad)} entr(y/ies) differ from the manifest "
                          f"({', '.join(printable(b) for b in bad[:5])}); nothing was restored")
    return manifest, list(found)


def _unescape_mount(text):
    """Mount points in mountinfo escape space, tab, newline and backslash as \\ooo."""
    out, i = bytearray(), 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i:i + 1] == b"\\" and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def runtime_owned(target, mountinfo="/proc/self/mountinfo"):
    """Paths below ``target`` the running system owns, relative to it: {path: reason}.

    A mount of a kernel or runtime file system (proc, sysfs, devtmpfs, ...) owns its whole
    subtree; a mount point that is not a directory (Docker's bind-mounted /etc/hosts,
    /etc/hostname, /etc/resolv.conf) owns that file, which cannot be replaced.
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    target = os.path.normpath(target)
    owned = {}
    for line in lines:
        left, _sep, right = line.partition(" - ")
        fields, fs = left.split(), right.split()
        if len(fields) < 5 or not fs:
            continue
        point = _unescape_mount(fields[4])
        if point == target or not (target == "/" or point.startswith(target + "/")):
            continue
        rel = os.path.relpath(point, target)
        if fs[0] in RUNTIME_FS:
            owned[rel] = f"{fs[0]} mount"
        elif not os.path.isdir(point):
            owned[rel] = f"bind-mounted file ({fs[0]})"
    return owned


def _under(name, prefixes):
    return any(name == p or name.startswith(p + "/") for p in prefixes)


def select(members, paths=None, owned=()):
    """(members to apply, members skipped because the system owns them)."""
    wanted = members
    if paths:
        rels = [os.path.normpath(p).lstrip("/") for p in paths]
        wanted = [m for m in members if _under(m, rels)]
    skipped = [m for m in wanted if _under(m, owned)]
    return [m for m in wanted if m not in set(skipped)], skipped


def extract(archive, target, members, report):
    """GNU tar extracts ``members`` into ``target``; every applied name is appended to ``report``."""
    os.makedirs(target, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix="streamcloud-restore-", suffix=".list") as listing, \
            open(report, "ab") as applied, tempfile.TemporaryFile() as err:
        listing.write(b"".join(os.fsencode(m) + b"\0" for m in members))
        listing.flush()
        decompress = subprocess.Popen([*decompressor_for(archive), archive], stdout=subprocess.PIPE)  # noqa: S603 - argv list, no shell
        untar = subprocess.run(  # noqa: S603 - argv list, no shell
            # --directory first: GNU tar applies it to the names that follow it.
            [*TAR_EXTRACT, f"--directory={target}", f"--files-from={listing.name}", "--file=-"],
            stdin=decompress.stdout, stdout=applied, stderr=err, check=False, env=dict(os.environ, LC_ALL="C.UTF-8"),
        )
        decompress.stdout.close()
        decompressed = decompress.wait()
        err.seek(0)
        message = err.read().decode(errors="backslashreplace").strip()
    if decompressed != 0 or untar.returncode != 0:
        with open(report, "rb") as handle:
            count = sum(1 for _line in handle)
        raise BackupError(
            f"applying {os.path.basename(archive)} to {target} failed (tar: {message[-600:]}); "
            f"{count} entr(y/ies) were applied before it stopped, listed in {report}. The rest of the host is as it "
            "was; see docs/backup-runbook.md, 'A failed apply'"
        )


def check_on_disk(target, members, entries):
    """Names whose file on disk differs from the manifest, with the fields that differ."""
    differences = {}
    for name in members:
        diffs = disk_differences(os.path.join(target, name), entries[name], sha256_file, target)
        if diffs:
            differences[name] = diffs
    return differences


def restore(archive, sha256=None, target="/", dry_run=False, databases=True, files=True, paths=None,
            report=None, mountinfo="/proc/self/mountinfo", hooks_file=HOOKS_FILE, identity=None):
    if not isinstance(target, str) or not target.startswith("/"):
        raise BackupError(f"target {target!r} is not an absolute path")
    for path in paths or []:
        if not isinstance(path, str) or not path.startswith("/"):
            raise BackupError(f"paths: {path!r} is not an absolute path")
    options = {"target": os.path.normpath(target), "dry_run": dry_run, "databases": databases, "files": files,
               "paths": paths, "report": report, "mountinfo": mountinfo, "hooks_file": hooks_file}
    if not archive.endswith(SUFFIX):
        return _restore(archive, sha256, **options)
    check_sha256(archive, sha256)
    plain = archive[:-len(SUFFIX)]
    decrypt(archive, identity, plain)
    try:
        result = _restore(plain, sha256_file(plain), **options)
    finally:
        os.unlink(plain)
    result.update(archive=archive, encrypted=True)
    return result


def _restore(archive, sha256, target, dry_run, databases, files, paths, report, mountinfo, hooks_file):
    manifest, members = verify(archive, sha256)
    entries = manifest["files"]
    dump_dir = manifest.get("dump_dir")
    dump_rel = dump_dir.lstrip("/") if dump_dir else None
    dumps = list(manifest.get("databases") or []) if databases and dump_dir else []
    owned = runtime_owned(target, mountinfo) if files else {}
    chosen, skipped = select(members, paths, owned) if files else ([], [])
    result = {
        "archive": archive, "source": manifest.get("source"), "created": manifest.get("created"), "target": target,
        "files": sorted(printable(m) for m in chosen if entries[m]["type"] == "file"), "entries": len(chosen),
        "skipped_runtime": sorted(printable(m) for m in skipped), "databases": dumps, "changed": not dry_run,
        "report": None,
    }
    if dry_run:
        return result
    stage = os.path.dirname(os.path.abspath(archive))
    report = report or os.path.join(stage, os.path.basename(archive) + ".applied")
    with open(report, "wb"):
        pass
    result["report"] = report
    if chosen:
        extract(archive, target, chosen, report)
        differences = check_on_disk(target, chosen, entries)
        if differences:
            shown = "; ".join(f"{printable(n)}: {', '.join(d)}" for n, d in sorted(differences.items())[:SHOWN])
            raise BackupError(f"after extraction {len(differences)} entr(y/ies) differ from the manifest: {shown}; "
                              f"every applied entry is listed in {report}")
    result["restored_databases"] = _restore_databases(archive, members, dump_rel, stage, hooks_file) if dumps else []
    return result


def _restore_databases(archive, members, dump_rel, stage, hooks_file):
    """Extracts the dumps to a private staging directory and hands them to the published command."""
    command = resolve_restore_command(hooks_file)
    work = tempfile.mkdtemp(prefix="streamcloud-restore-db-", dir=stage)
    try:
        wanted = [m for m in members if _under(m, [dump_rel])]
        extract(archive, work, wanted, os.path.join(work, ".applied"))
        return restore_dumps(os.path.join(work, dump_rel), command)
    finally:
        shutil.rmtree(work, ignore_errors=True)
