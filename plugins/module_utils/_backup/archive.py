# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive configured paths: database dumps first, then one GNU tar stream through a compressor.

GNU tar writes the archive (POSIX format: extended attributes, ACLs, sparse files, FIFOs, device
nodes, hard links, directory times, any file name). Its output passes through this process on
the way to the compressor and is read once more, as a tar stream, by a parser that hashes every
member and records what it is: the manifest (type, mode, owner, size, mtime, link target,
xattrs, ACLs, SHA-256 of every file) describes exactly the bytes in the archive. It is appended as
the last member, in place of GNU tar's end-of-archive blocks. The compressed bytes are written to
``<name>.part``, hashed, and fed at the same time to the compressor's own integrity test
(``gzip -t`` / ``zstd -t``); the file on disk is then hashed again and must match the stream that
passed the test. Only then is it renamed to its final name and given a ``.sha256`` sidecar.

With ``recipients`` (encryption on, the role's default), the tested archive is written under a
hidden name (``.NAME``, never shipped) and sealed by backup_crypt: encrypted with age to
``NAME.age``, signed by the source's key (``NAME.age.sig``); the plaintext is then deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import stat
import subprocess
import tarfile
import tempfile
import threading

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.compressors import compressor_argv
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.crypt import SUFFIX, check_recipients, seal
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.dumps import (
    check_dump_dir,
    resolve_dump_command,
    run_dumps,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import (
    CHUNK,
    copy_hashed,
    fsync_dir,
    sha256_file,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.manifest import (
    MANIFEST_NAME,
    from_member,
    hash_member,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import (
    ARCHIVE_RE,
    archive_name,
    printable,
    utcnow,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import write_sidecar

BLOCK = tarfile.BLOCKSIZE
# GNU tar, one 512-byte block per record, so that its end-of-archive is exactly two zero blocks.
TAR_CREATE = [
    "tar", "--create", "--format=posix", "--blocking-factor=1", "--xattrs", "--xattrs-include=*", "--acls",
    "--sparse", "--numeric-owner", "--no-recursion", "--ignore-failed-read", "--pax-option=delete=atime,delete=ctime",
    "--directory=/", "--null", "--no-unquote", "--verbatim-files-from", "--files-from=-", "--file=-",
]


def _check_abs(kind, value):
    if not isinstance(value, str) or not value.startswith("/"):
        raise BackupError(f"{kind}: {value!r} is not an absolute path")
    return os.path.normpath(value)


def _excluded(path, patterns):
    base = os.path.basename(path)
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


def _identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def collect(paths, excludes, skip_dirs=()):
    """Every entry to archive, as (absolute path, lstat), in a stable order; plus what was skipped.

    The order is depth first: a directory, its other entries, then its subdirectories one by
    one, as GNU tar orders a tree itself, so that it sets each directory's time after its last
    entry is extracted.
    ``skip_dirs`` (the outbox) are recognised by identity (device and inode), so a path that
    reaches them through a symbolic link, or a link that names them, never brings them in.
    Sockets cannot be archived: they are listed as skipped.
    """
    entries, skipped, seen = [], [], set()
    skip_ids = {i for i in (_identity(d) for d in skip_dirs) if i is not None}

    def consider(path):
        """The entry's lstat when it is to be archived, else None."""
        if path in seen or _excluded(path, excludes):
            return None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) in skip_ids:
            return None
        if stat.S_ISSOCK(st.st_mode):
            skipped.append(path)
            return None
        seen.add(path)
        return st

    for top in paths:
        if _identity(os.path.realpath(top)) in skip_ids:
            continue
        st = consider(top)
        if st is None:
            continue
        entries.append((top, st))
        if not stat.S_ISDIR(st.st_mode):
            continue
        directories = {top: st}
        for root, dirs, files in os.walk(top):
            if root != top:
                entries.append((root, directories[root]))
            kept = []
            for name in sorted(dirs):
                full = os.path.join(root, name)
                st = consider(full)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    directories[full] = st
                    kept.append(name)
                else:  # a symbolic link to a directory: archived as the link
                    entries.append((full, st))
            dirs[:] = kept
            for name in sorted(files):
                full = os.path.join(root, name)
                st = consider(full)
                if st is not None:
                    entries.append((full, st))
    return entries, skipped


def _parse_members(stream, manifest, errors):
    """Thread body: reads the tar stream GNU tar wrote and records every member in the manifest."""
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK, errors="surrogateescape") as tar:
            for info in tar:
                digest = hash_member(tar, info) if info.isreg() else None
                manifest["files"][info.name] = from_member(info, digest)
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)
    finally:
        # Drain, so that the pump never blocks on a parser that stopped.
        with contextlib.suppress(OSError):
            while stream.read(CHUNK):
                pass
        stream.close()


def _manifest_member(manifest):
    body = json.dumps(manifest, sort_keys=True, indent=1).encode()
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size = len(body)
    info.mode = 0o600
    info.mtime = int(manifest["created_epoch"])
    padding = (BLOCK - len(body) % BLOCK) % BLOCK
    return info.tobuf(format=tarfile.PAX_FORMAT) + body + b"\0" * padding + b"\0" * (2 * BLOCK)


def _pump(tar_proc, sink, manifest, errors):
    """Thread body: GNU tar's output to the compressor and the parser, then the manifest, then the end.

    GNU tar's last two (zero) blocks are held back: the manifest goes in their place, so that it is
    the archive's last member; the parser gets them, so that it sees a complete archive.
    """
    read_fd, write_fd = os.pipe()
    parser_in = os.fdopen(write_fd, "wb")
    parser_errors = []
    parser = threading.Thread(target=_parse_members, args=(os.fdopen(read_fd, "rb"), manifest, parser_errors),
                              daemon=True)
    parser.start()
    tail = b""
    try:
        while True:
            block = tar_proc.stdout.read(CHUNK)
            if not block:
                break
            data = tail + block
            data, tail = data[:-2 * BLOCK], data[-2 * BLOCK:]
            if data:
                sink.write(data)
                parser_in.write(data)
        if tail != b"\0" * (2 * BLOCK):
            raise BackupError("GNU tar's output does not end with its end-of-archive blocks; no archive was made")
        parser_in.write(tail)
        parser_in.close()
        parser.join()
        if parser_errors:
            raise BackupError(f"reading back the tar stream failed: {parser_errors[0]}")
        code = tar_proc.wait()
        if code > 1:
            raise BackupError(f"GNU tar failed with exit code {code}")
        sink.write(_manifest_member(manifest))
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)
        with contextlib.suppress(OSError):
            tar_proc.kill()
    finally:
        with contextlib.suppress(OSError):
            parser_in.close()
        try:
            sink.close()
        except OSError as exc:
            errors.append(exc)


def archive(options, check_mode=False):
    """create_archive() with the options as the module and the cron configuration name them (options.ARCHIVE)."""
    dump = resolve_dump_command(options["db_dump_command"], options["db_hooks_file"])
    return create_archive(
        paths=options["paths"], dest=options["outbox"], source=options["source"], compression=options["compression"],
        compression_level=options["compression_level"], threads=options["compression_threads"],
        excludes=options["excludes"], db_dump_command=dump, dump_dir=options["dump_dir"], check_mode=check_mode,
        allow_empty=options["allow_empty"], recipients=options["recipients"], sign_key=options["sign_key"],
    )


def create_archive(paths, dest, source, compression="gzip", compression_level=None, threads=None,
                   excludes=(), db_dump_command=None, dump_dir=None, check_mode=False, now=None,
                   allow_empty=False, recipients=None, sign_key=None):
    """Makes one verified archive in ``dest`` (encrypted and signed with ``recipients``); returns a
    dict describing it."""
    if not paths:
        raise BackupError("paths is empty: give at least one absolute path to archive")
    paths = [_check_abs("paths", p) for p in paths]
    dest = _check_abs("dest", dest)
    if dump_dir is not None:
        dump_dir = _check_abs("dump_dir", dump_dir)
    if db_dump_command and dump_dir is None:
        raise BackupError("db_dump_command is set but dump_dir is not: give the directory the dumps are written to")
    for pattern in excludes:
        if not isinstance(pattern, str) or not pattern:
            raise BackupError(f"excludes: {pattern!r} is not a non-empty pattern")
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise BackupError(f"paths: {', '.join(missing)} does not exist on this host: fix the list or create it")
    if db_dump_command:
        check_dump_dir(dump_dir, dest, paths)
    compress, test = compressor_argv(compression, compression_level, threads)
    if recipients is not None:
        recipients = check_recipients(recipients)
        if not sign_key:
            raise BackupError("sign_key is not set: an encrypted archive is signed with the source's own SSH key "
                              "(variable backup_sign_key)")
    when = now or utcnow()
    name = archive_name(source, when, compression) + (SUFFIX if recipients else "")
    final = os.path.join(dest, name)
    if os.path.exists(final):
        raise BackupError(f"{final} already exists: an archive with the same name was made in the same second")
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise BackupError(f"dest {dest} exists and is not a directory")

    archive_paths = list(paths) + ([dump_dir] if db_dump_command else [])
    result = {"archive": final, "name": name, "source": source, "compression": compression,
              "databases": [], "changed": True}
    if check_mode:
        entries, skipped = collect([p for p in archive_paths if os.path.lexists(p)], list(excludes), [dest])
        _refuse_empty(entries, paths, allow_empty)
        result.update(files=sum(1 for _path, st in entries if stat.S_ISREG(st.st_mode)),
                      skipped=[printable(p) for p in skipped], would_dump=bool(db_dump_command))
        return result

    os.makedirs(dest, mode=0o700, exist_ok=True)
    result["removed_leftovers"] = remove_leftovers(dest)
    if db_dump_command:
        result["databases"] = run_dumps(db_dump_command, dump_dir, dest, paths)
    entries, skipped = collect(archive_paths, list(excludes), [dest])
    _refuse_empty(entries, paths, allow_empty)
    manifest = {
        "format": 2, "source": source, "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_epoch": int(when.timestamp()), "compression": compression, "paths": paths,
        "dump_dir": dump_dir if db_dump_command else None, "databases": result["databases"],
        "files": {}, "skipped": [printable(p) for p in skipped], "warnings": [],
    }
    if recipients:
        plain = os.path.join(dest, "." + name[:-len(SUFFIX)])
        _stream_to_disk(plain, entries, manifest, compress, test)
        sealed = seal(plain, final, recipients, sign_key)
        result.update(sha256=sealed["sha256"], size=sealed["size"], encrypted=True)
    else:
        result.update(_stream_to_disk(final, entries, manifest, compress, test))
    result.update(files=sum(1 for e in manifest["files"].values() if e["type"] == "file"),
                  entries=len(manifest["files"]), skipped=manifest["skipped"], warnings=manifest["warnings"])
    return result


def _leftover(entry):
    """An archive's ``.part``, or a hidden plaintext (``.NAME``, ``.NAME.sha256``, ``.NAME.part``) that
    a run killed before it sealed the archive left."""
    if entry.startswith("."):
        stem = entry[1:]
        for suffix in (".part", ".sha256"):
            stem = stem[:-len(suffix)] if stem.endswith(suffix) else stem
        return bool(ARCHIVE_RE.match(stem))
    return entry.endswith(".part") and bool(ARCHIVE_RE.match(entry[:-len(".part")]))


def remove_leftovers(dest):
    """Deletes the ``<archive>.part`` files in the outbox that no live run holds (a run killed while
    archiving leaves one), and hidden plaintexts a run killed before sealing left; returns their
    names. One being written is locked by its writer and stays."""
    removed = []
    for entry in sorted(os.listdir(dest)):
        if not _leftover(entry):
            continue
        path = os.path.join(dest, entry)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            os.unlink(path)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


def _refuse_empty(entries, paths, allow_empty):
    if not allow_empty and not any(stat.S_ISREG(st.st_mode) for _path, st in entries):
        raise BackupError(f"nothing to archive: {', '.join(paths)} hold no file once the excludes and the outbox are "
                          "left out; fix paths/excludes (or allow an empty archive)")


def _stream_to_disk(final, entries, manifest, compress, test):
    part = final + ".part"
    errors = []
    with tempfile.TemporaryFile() as comp_err, tempfile.TemporaryFile() as test_err, \
            tempfile.TemporaryFile() as tar_err:
        try:
            out = open(part, "wb")  # noqa: SIM115 - closed in the finally below
            # Held (a duplicate of out's descriptor) until the archive is published or discarded: a
            # .part nobody holds was left by a killed run, and remove_leftovers() deletes it.
            held = os.dup(out.fileno())
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BackupError(f"cannot write {part}: {exc}") from exc
        comp = tester = tar_proc = None
        try:
            comp = subprocess.Popen(compress, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=comp_err)  # noqa: S603 - argv list, no shell
            tester = subprocess.Popen(test, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=test_err)  # noqa: S603 - argv list, no shell
            tar_proc = subprocess.Popen(TAR_CREATE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603 - argv list, no shell
                                        stderr=tar_err, env=dict(os.environ, LC_ALL="C.UTF-8"))
            feeder = threading.Thread(target=_feed_names, args=(tar_proc.stdin, entries), daemon=True)
            feeder.start()
            writer = threading.Thread(target=_pump_with_warnings,
                                      args=(tar_proc, comp.stdin, manifest, errors, tar_err), daemon=True)
            writer.start()
            sha256, size = copy_hashed(comp.stdout, out, _Feed(tester.stdin))
            writer.join()
            feeder.join()
            with contextlib.suppress(BrokenPipeError):
                tester.stdin.close()
            comp_rc, test_rc = comp.wait(), tester.wait()
            comp_err.seek(0)
            comp_message = comp_err.read().decode(errors="replace").strip()
            out.flush()
            os.fsync(out.fileno())
            out.close()
            if comp_rc != 0:
                raise BackupError(f"{compress[0]} failed with exit code {comp_rc}: {comp_message}")
            if test_rc != 0:
                test_err.seek(0)
                raise BackupError(f"integrity test ({' '.join(test)}) of the new archive failed: "
                                  f"{test_err.read().decode(errors='replace').strip()}")
            if errors:
                raise BackupError(f"reading the files to archive failed: {errors[0]} "
                                  f"{'; '.join(manifest['warnings'][-5:])}".strip())
            on_disk = sha256_file(part)
            if on_disk != sha256:
                raise BackupError(f"{part}: the file on disk does not match the stream that passed the integrity "
                                  "test (disk or file system error); the archive was discarded")
            os.replace(part, final)
            write_sidecar(final, on_disk)
            fsync_dir(os.path.dirname(final))
        except OSError as exc:
            _discard(part, out, comp, tester, tar_proc)
            raise BackupError(f"writing {part} failed: {exc}; the archive was discarded") from exc
        except BaseException:
            _discard(part, out, comp, tester, tar_proc)
            raise
        finally:
            os.close(held)
    return {"sha256": sha256, "size": size}


class _Feed:
    """Each block to the compressor's integrity test, until it stops reading (its exit code then says why)."""

    def __init__(self, stdin):
        self.stdin = stdin

    def __call__(self, block):
        if self.stdin is not None:
            try:
                self.stdin.write(block)
            except BrokenPipeError:
                self.stdin = None


def _feed_names(stdin, entries):
    """Thread body: the member names, NUL-separated and relative to /, to GNU tar's --files-from."""
    try:
        for path, _st in entries:
            stdin.write(os.fsencode(path.lstrip("/") or ".") + b"\0")
    except OSError:
        pass  # tar stopped; the pump reports why
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def _pump_with_warnings(tar_proc, sink, manifest, errors, tar_err):
    try:
        _pump(tar_proc, sink, manifest, errors)
    finally:
        tar_proc.wait()
        tar_err.seek(0)
        manifest["warnings"].extend(printable(line) for line in tar_err.read().splitlines() if line.strip())


def _discard(part, out, comp, tester, tar_proc=None):
    for proc in (tar_proc, comp, tester):
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    if not out.closed:
        out.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)
