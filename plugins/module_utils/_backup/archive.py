# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive configured paths: database dumps first, then one GNU tar stream through a compressor.

GNU tar writes the archive (POSIX format: extended attributes, ACLs, sparse files, FIFOs, device
nodes, hard links, directory times, any file name). Its output passes through this process on
the way to the compressor and is read once more, as a tar stream, by a parser that hashes every
member and records what it is: the manifest (type, mode, owner, size, mtime, link target,
xattrs, ACLs, SHA-256 of every file) describes exactly the bytes in the archive. It is appended as
the last member, in place of GNU tar's end-of-archive blocks. The compressed bytes are fed to the
compressor's own integrity test (``gzip -t`` / ``zstd -t``) and, at the same time, written to
``<name>.part``, hashed as they are written; the file on disk is then hashed again and must match
the stream that passed the test. Only then is it renamed to its final name and given a ``.sha256``
sidecar.

With ``recipients`` (encryption on, the role's default), ``age`` sits in the same stream, between
the compressor and the disk: what is written (and hashed, and checked on disk) is the ciphertext,
``NAME.age.part``, while the integrity test still reads the compressed plaintext. The source signs
the ciphertext's name and hash (crypt.sign, ``NAME.age.sig``) before the rename. No plaintext
archive is ever written to disk, not even for a moment: a killed run, a full disk or a failed step
leaves nothing in clear in the outbox.
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
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.crypt import (
    SUFFIX,
    age_argv,
    check_sign_key,
    sign,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.dumps import (
    check_dump_dir,
    resolve_dump_command,
    run_dumps,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import (
    CHUNK,
    atomic_write_text,
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
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import signature_path, write_sidecar

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
    seal = None if recipients is None else (age_argv(recipients), check_sign_key(sign_key))
    when = now or utcnow()
    name = archive_name(source, when, compression) + (SUFFIX if seal else "")
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
    result.update(_stream_to_disk(final, entries, manifest, compress, test, seal))
    if seal:
        result["encrypted"] = True
    result.update(files=sum(1 for e in manifest["files"].values() if e["type"] == "file"),
                  entries=len(manifest["files"]), skipped=manifest["skipped"], warnings=manifest["warnings"])
    return result


def remove_leftovers(dest):
    """Deletes what killed runs left in the outbox; returns the names deleted.

    - ``<archive>.part`` files no live run holds (a run killed while archiving leaves one). One being
      written is locked by its writer and stays.
    - ``<archive>.sig`` files whose archive is neither there nor being written (a run killed between
      signing and the rename leaves one; a signature of no archive protects nothing).
    """
    removed = _remove_unheld_parts(dest)
    for entry in sorted(os.listdir(dest)):
        if not (entry.endswith(".sig") and ARCHIVE_RE.match(entry[:-len(".sig")])):
            continue
        archive = os.path.join(dest, entry[:-len(".sig")])
        if not os.path.lexists(archive) and not os.path.lexists(archive + ".part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(dest, entry))
                removed.append(entry)
    return sorted(removed)


def _remove_unheld_parts(dest):
    removed = []
    for entry in sorted(os.listdir(dest)):
        if not (entry.endswith(".part") and ARCHIVE_RE.match(entry[:-len(".part")])):
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


def _stream_to_disk(final, entries, manifest, compress, test, seal=None):
    """GNU tar -> pump and parser -> compressor [-> age] -> ``final.part``, hashed while written; the
    compressed stream is teed to the integrity test. ``seal``: (age's argv, the key that signs)."""
    part = final + ".part"
    errors = []
    with tempfile.TemporaryFile() as comp_err, tempfile.TemporaryFile() as test_err, \
            tempfile.TemporaryFile() as tar_err, tempfile.TemporaryFile() as age_err:
        try:
            out = open(part, "wb")  # noqa: SIM115 - closed in the finally below
            # Held (a duplicate of out's descriptor) until the archive is published or discarded: a
            # .part nobody holds was left by a killed run, and remove_leftovers() deletes it.
            held = os.dup(out.fileno())
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BackupError(f"cannot write {part}: {exc}") from exc
        comp = tester = tar_proc = age = None
        try:
            comp = subprocess.Popen(compress, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=comp_err)  # noqa: S603 - argv list, no shell
            tester = subprocess.Popen(test, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=test_err)  # noqa: S603 - argv list, no shell
            stream, tee, threads = comp.stdout, _Feed(tester.stdin), []
            if seal:  # the compressed stream to the test and to age (a thread); age's output to disk (here)
                age = subprocess.Popen(seal[0], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=age_err)  # noqa: S603 - argv list, no shell
                threads.append(threading.Thread(target=_relay, args=(comp.stdout, tee, _Feed(age.stdin)), daemon=True))
                stream = age.stdout
            tar_proc = subprocess.Popen(TAR_CREATE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603 - argv list, no shell
                                        stderr=tar_err, env=dict(os.environ, LC_ALL="C.UTF-8"))
            threads += [threading.Thread(target=_feed_names, args=(tar_proc.stdin, entries), daemon=True),
                        threading.Thread(target=_pump_with_warnings,
                                         args=(tar_proc, comp.stdin, manifest, errors, tar_err), daemon=True)]
            for thread in threads:
                thread.start()
            sha256, size = copy_hashed(stream, out, None if seal else tee)
            for thread in threads:
                thread.join()
            tee.close()
            out.flush()
            os.fsync(out.fileno())
            out.close()
            for proc, err, why in ((comp, comp_err, f"{compress[0]} failed"),
                                   (tester, test_err, f"integrity test ({' '.join(test)}) of the new archive failed"),
                                   (age, age_err, "age (encrypting to backup_age_recipients) failed")):
                if proc is not None and proc.wait() != 0:
                    err.seek(0)
                    raise BackupError(f"{why} with exit code {proc.returncode}: "
                                      f"{err.read().decode(errors='replace').strip()}")
            if errors:
                raise BackupError(f"reading the files to archive failed: {errors[0]} "
                                  f"{'; '.join(manifest['warnings'][-5:])}".strip())
            on_disk = sha256_file(part)
            if on_disk != sha256:
                raise BackupError(f"{part}: the file on disk does not match the stream that passed the integrity "
                                  "test (disk or file system error); the archive was discarded")
            if seal:
                atomic_write_text(signature_path(final), sign(os.path.basename(final), on_disk, seal[1]), mode=0o600)
            os.replace(part, final)
            write_sidecar(final, on_disk)
            fsync_dir(os.path.dirname(final))
        except OSError as exc:
            _discard(final, out, tar_proc, comp, tester, age)
            raise BackupError(f"writing {part} failed: {exc}; the archive was discarded") from exc
        except BaseException:
            _discard(final, out, tar_proc, comp, tester, age)
            raise
        finally:
            os.close(held)
    return {"sha256": sha256, "size": size}


class _Feed:
    """A program's standard input: each block until it stops reading (its exit code then says why)."""

    def __init__(self, stdin):
        self.stdin, self.reading = stdin, True

    def __call__(self, block):
        if self.reading:
            try:
                self.stdin.write(block)
            except BrokenPipeError:
                self.reading = False

    def close(self):
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()


def _relay(source, *feeds):
    """Thread body: the compressed archive to the integrity test and to age, to its end."""
    with contextlib.suppress(OSError):  # the compressor was stopped: its exit code or the test says why
        while block := source.read(CHUNK):
            for feed in feeds:
                feed(block)
    for feed in feeds:
        feed.close()


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


def _discard(final, out, *procs):
    """Stops the programs and deletes the ``.part`` and any signature: nothing of a failed run is left."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    if not out.closed:
        out.close()
    for leftover in (final + ".part", signature_path(final)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
