# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore one archive: verify it whole before touching anything, extract, reload the dumps.

1. the archive's SHA-256 must match the recorded one;
2. one pass decompresses it and hashes every member; every file must match the manifest inside
   the archive (so a corrupted or truncated archive is refused before anything is written);
3. GNU tar extracts it (owners, modes, times kept) to / or a target directory;
4. database dumps found in the manifest's dump directory are loaded with pg_restore.
A dry run stops after step 2 and lists what would be restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile

from ansible_collections.streamcloud.platform.plugins.module_utils.backup_common import (
    CHUNK,
    MANIFEST_NAME,
    BackupError,
    decompressor_for,
    read_sidecar,
    sha256_file,
)


def inspect(archive):
    """Decompresses the archive once; returns (manifest, {member: sha256}, [member names])."""
    proc = subprocess.Popen([*decompressor_for(archive), archive], stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603 - argv list, no shell
    hashes, members, manifest = {}, [], None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|", bufsize=CHUNK) as tar:
            for info in tar:
                if info.name == MANIFEST_NAME:
                    manifest = json.loads(tar.extractfile(info).read().decode())
                    continue
                members.append(info.name)
                if info.isreg():
                    digest = hashlib.sha256()
                    handle = tar.extractfile(info)
                    while True:
                        block = handle.read(CHUNK)
                        if not block:
                            break
                        digest.update(block)
                    hashes[info.name] = digest.hexdigest()
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
    return manifest, hashes, members


def verify(archive, sha256=None):
    """Checks the archive against its checksum and its manifest; returns (manifest, members)."""
    if not os.path.isfile(archive):
        raise BackupError(f"archive {archive} does not exist")
    expected = sha256 or read_sidecar(archive)
    if expected is None:
        raise BackupError(f"{archive}: no SHA-256 given and no .sha256 sidecar: cannot verify it, nothing was restored")
    actual = sha256_file(archive)
    if actual != expected:
        raise BackupError(f"{archive} is corrupted: SHA-256 is {actual}, expected {expected}; nothing was restored")
    manifest, hashes, members = inspect(archive)
    bad = sorted(name for name, meta in manifest.get("files", {}).items() if hashes.get(name) != meta.get("sha256"))
    if bad:
        raise BackupError(f"{archive} is corrupted: {len(bad)} file(s) differ from the manifest "
                          f"({', '.join(bad[:5])}); nothing was restored")
    return manifest, members


def restore(archive, sha256=None, target="/", dry_run=False, databases=True,
            db_runner=("runuser", "-u", "postgres", "--")):
    if not target.startswith("/"):
        raise BackupError(f"target {target!r} is not an absolute path")
    manifest, members = verify(archive, sha256)
    dump_dir = manifest.get("dump_dir")
    dumps = list(manifest.get("databases") or []) if databases and dump_dir else []
    result = {"archive": archive, "source": manifest.get("source"), "created": manifest.get("created"),
              "target": target, "files": sorted(manifest.get("files", {})), "members": len(members),
              "databases": dumps, "changed": not dry_run}
    if dry_run:
        return result
    os.makedirs(target, exist_ok=True)
    decompress = subprocess.Popen([*decompressor_for(archive), archive], stdout=subprocess.PIPE)  # noqa: S603 - argv list, no shell
    untar = subprocess.run(  # noqa: S603 - argv list, no shell
        ["tar", "-x", "-p", "--same-owner", "--numeric-owner", "-f", "-", "-C", target,  # noqa: S607 - tar from PATH
         f"--exclude={MANIFEST_NAME}"],
        stdin=decompress.stdout, capture_output=True, text=True, check=False,
    )
    decompress.stdout.close()
    if decompress.wait() != 0 or untar.returncode != 0:
        raise BackupError(f"extracting {archive} into {target} failed: {untar.stderr.strip()}")
    changed = []
    for name, meta in sorted(manifest.get("files", {}).items()):
        path = os.path.join(target, name)
        if not os.path.isfile(path) or sha256_file(path) != meta["sha256"]:
            changed.append(name)
    if changed:
        raise BackupError(f"after extraction {len(changed)} file(s) differ from the manifest: {', '.join(changed[:5])}")
    result["restored_databases"] = restore_dumps(os.path.join(target, dump_dir.lstrip("/")), dumps,
                                                 list(db_runner)) if dumps else []
    return result


def restore_dumps(directory, files, runner):
    """globals.sql first (errors for roles that exist are expected), then each <db>.dump."""
    done = []
    if "globals.sql" in files:
        with open(os.path.join(directory, "globals.sql"), "rb") as handle:
            subprocess.run([*runner, "psql", "-X", "-q", "-d", "postgres"], stdin=handle, capture_output=True,  # noqa: S603 - argv list, no shell
                           check=False)
    for name in files:
        if not name.endswith(".dump"):
            continue
        with open(os.path.join(directory, name), "rb") as handle:
            result = subprocess.run([*runner, "pg_restore", "--clean", "--if-exists", "--create", "-d", "postgres"],  # noqa: S603 - argv list, no shell
                                    stdin=handle, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BackupError(f"pg_restore of {name} failed: {result.stderr.strip()[-500:]}")
        done.append(name[: -len(".dump")])
    return done
