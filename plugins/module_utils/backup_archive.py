# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive configured paths: database dumps first, then one tar stream through a compressor.

The tar stream is written by Python (tarfile), which hashes every file as it reads it: the
manifest (SHA-256 of every file) is the last member of the archive. The compressed bytes are
written to ``<name>.part``, hashed, and fed at the same time to the compressor's own integrity
test (``gzip -t`` / ``zstd -t``); the file on disk is then hashed again and must match the stream
that passed the test. Only then is it renamed to its final name and given a ``.sha256`` sidecar.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading

from ansible_collections.streamcloud.platform.plugins.module_utils.backup_common import (
    CHUNK,
    MANIFEST_NAME,
    BackupError,
    archive_name,
    compressor_argv,
    fsync_dir,
    sha256_file,
    utcnow,
    write_sidecar,
)
from ansible_collections.streamcloud.platform.plugins.module_utils.backup_compress import (
    DEFAULT_MAX_WORKERS,
    Segmented,
    Single,
    usable_cores,
)

PG_DUMP_HOOK = "/usr/local/sbin/streamcloud-pg-dump"


class _HashingReader:
    """Reads exactly ``size`` bytes of a file and hashes them; pads with zeros if the file shrank."""

    def __init__(self, handle, size):
        self.handle = handle
        self.remaining = size
        self.digest = hashlib.sha256()
        self.short = False

    def read(self, n=-1):
        if self.remaining <= 0:
            return b""
        n = self.remaining if n is None or n < 0 else min(n, self.remaining)
        data = self.handle.read(n)
        if len(data) < n:
            self.short = True
            data += b"\0" * (n - len(data))
        self.remaining -= len(data)
        self.digest.update(data)
        return data


def _check_abs(kind, value):
    if not isinstance(value, str) or not value.startswith("/"):
        raise BackupError(f"{kind}: {value!r} is not an absolute path")
    return os.path.normpath(value)


def resolve_dump_command(setting):
    """The database dump argv (the dump directory is appended), or None.

    ``''``/``none``: no dumps. ``auto``: the postgresql role's hook when installed, else the
    built-in PostgreSQL dump when PostgreSQL is installed, else none. Anything else: a command line.
    """
    setting = (setting or "").strip()
    if setting in ("", "none"):
        return None
    if setting == "auto":
        if os.access(PG_DUMP_HOOK, os.X_OK):
            return [PG_DUMP_HOOK]
        if shutil.which("pg_dump") and shutil.which("psql") and _user_exists("postgres"):
            return ["builtin:postgresql"]
        return None
    argv = shlex.split(setting)
    if not argv:
        return None
    return argv


def _user_exists(name):
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def dump_postgresql(directory, runner=("runuser", "-u", "postgres", "--")):
    """Built-in dump: pg_dump -Fc of every connectable database but postgres, and the globals."""
    runner = list(runner)
    listing = subprocess.run(  # noqa: S603 - argv list, no shell
        [*runner, "psql", "-X", "-At", "-c",
         "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres'"
         " ORDER BY 1"],
        capture_output=True, text=True, check=False,
    )
    if listing.returncode != 0:
        raise BackupError(f"listing the PostgreSQL databases failed: {listing.stderr.strip()}")
    databases = [line for line in listing.stdout.splitlines() if line]
    jobs = [("globals.sql", [*runner, "pg_dumpall", "--globals-only"])]
    jobs += [(f"{db}.dump", [*runner, "pg_dump", "-Fc", "--", db]) for db in databases]
    for filename, argv in jobs:
        path = os.path.join(directory, filename)
        with open(path, "wb") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, check=False)  # noqa: S603 - argv list, no shell
        if result.returncode != 0:
            raise BackupError(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace').strip()}")
    return databases


def run_dumps(command, dump_dir):
    """Runs the dump command into a fresh dump_dir; returns the file names it produced."""
    if os.path.lexists(dump_dir):
        shutil.rmtree(dump_dir)
    os.makedirs(dump_dir, mode=0o700)
    if command == ["builtin:postgresql"]:
        dump_postgresql(dump_dir)
    else:
        try:
            result = subprocess.run([*command, dump_dir], capture_output=True, text=True, check=False)  # noqa: S603 - argv list, no shell
        except OSError as exc:
            raise BackupError(f"database dump command {command[0]!r} cannot run: {exc}") from exc
        if result.returncode != 0:
            raise BackupError(
                f"database dump command {' '.join(command)} failed with exit code {result.returncode}: "
                f"{result.stderr.strip()[-500:]}; no archive was made"
            )
    files = sorted(os.listdir(dump_dir))
    if not files:
        raise BackupError(f"database dump command {' '.join(command)} wrote nothing into {dump_dir}; "
                          "no archive was made")
    return files


def _excluded(path, patterns):
    base = os.path.basename(path)
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


def collect(paths, excludes, skip_dirs=()):
    """Every entry to archive, as (absolute path, lstat), in a stable order; plus what was skipped."""
    entries, skipped, seen = [], [], set()
    skip_dirs = [os.path.normpath(d) for d in skip_dirs]

    def add(path):
        if path in seen:
            return None
        if _excluded(path, excludes) or any(path == d or path.startswith(d + "/") for d in skip_dirs):
            return None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            skipped.append(path)
            return None
        seen.add(path)
        entries.append((path, st))
        return st

    for top in paths:
        st = add(top)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        for root, dirs, files in os.walk(top):
            dirs.sort()
            kept = []
            for name in dirs:
                full = os.path.join(root, name)
                st = add(full)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                add(os.path.join(root, name))
    return entries, skipped


def _write_tar(stream, entries, manifest, errors):
    """Thread body: the tar stream into the compressor's stdin."""
    try:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
            tar.copybufsize = CHUNK
            for path, _st in entries:
                arcname = path.lstrip("/") or "."
                info = tar.gettarinfo(path, arcname=arcname)
                if info is None:
                    manifest["skipped"].append(path)
                    continue
                if info.isreg():
                    with open(path, "rb") as handle:
                        reader = _HashingReader(handle, info.size)
                        tar.addfile(info, reader)
                    manifest["files"][arcname] = {"sha256": reader.digest.hexdigest(), "size": info.size}
                    if reader.short:
                        manifest["changed_while_reading"].append(arcname)
                else:
                    tar.addfile(info)
            body = json.dumps(manifest, sort_keys=True, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(body)
            info.mode = 0o600
            info.mtime = int(manifest["created_epoch"])
            tar.addfile(info, io.BytesIO(body))
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)
    finally:
        try:
            stream.close()
        except OSError as exc:
            errors.append(exc)


def create_archive(paths, dest, source, compression="gzip", compression_level=None, threads=None,
                   excludes=(), db_dump_command=None, dump_dir=None, check_mode=False, now=None):
    """Makes one verified archive in ``dest``; returns a dict describing it."""
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
    compress, test = compressor_argv(compression, compression_level, threads)
    when = now or utcnow()
    name = archive_name(source, when, compression)
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
        result.update(files=sum(1 for _path, st in entries if stat.S_ISREG(st.st_mode)), skipped=skipped,
                      would_dump=bool(db_dump_command))
        return result

    os.makedirs(dest, mode=0o700, exist_ok=True)
    if db_dump_command:
        result["databases"] = run_dumps(db_dump_command, dump_dir)
    entries, skipped = collect(archive_paths, list(excludes), [dest])
    manifest = {
        "format": 1, "source": source, "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_epoch": int(when.timestamp()), "compression": compression, "paths": paths,
        "dump_dir": dump_dir if db_dump_command else None, "databases": result["databases"],
        "files": {}, "skipped": list(skipped), "changed_while_reading": [],
    }
    result.update(_stream_to_disk(final, entries, manifest, compression, compress, test, threads))
    result.update(files=len(manifest["files"]), skipped=manifest["skipped"],
                  changed_while_reading=manifest["changed_while_reading"])
    return result


def start_compressor(compression, compress, threads, stderr):
    """The compressor for one archive: gzip on every core as segments, others as one process."""
    workers = threads or min(usable_cores(), DEFAULT_MAX_WORKERS)
    if compression == "gzip" and workers > 1:
        return Segmented(compress, workers)
    return Single(compress, stderr)


def _stream_to_disk(final, entries, manifest, compression, compress, test, threads):
    part = final + ".part"
    errors = []
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile() as comp_err, tempfile.TemporaryFile() as test_err:
        try:
            out = open(part, "wb")  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise BackupError(f"cannot write {part}: {exc}") from exc
        comp = tester = None
        try:
            comp = start_compressor(compression, compress, threads, comp_err)
            tester = subprocess.Popen(test, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=test_err)  # noqa: S603 - argv list, no shell
            writer = threading.Thread(target=_write_tar, args=(comp.stdin, entries, manifest, errors), daemon=True)
            writer.start()
            feeding = True
            while True:
                block = comp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                size += len(block)
                if feeding:
                    try:
                        tester.stdin.write(block)
                    except BrokenPipeError:
                        feeding = False
            writer.join()
            with contextlib.suppress(BrokenPipeError):
                tester.stdin.close()
            (comp_rc, comp_message), test_rc = comp.finish(), tester.wait()
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
                raise BackupError(f"reading the files to archive failed: {errors[0]}")
            on_disk = sha256_file(part)
            if on_disk != digest.hexdigest():
                raise BackupError(f"{part}: the file on disk does not match the stream that passed the integrity "
                                  "test (disk or file system error); the archive was discarded")
            os.replace(part, final)
            write_sidecar(final, on_disk)
            fsync_dir(os.path.dirname(final))
        except OSError as exc:
            _discard(part, out, comp, tester)
            raise BackupError(f"writing {part} failed: {exc}; the archive was discarded") from exc
        except BaseException:
            _discard(part, out, comp, tester)
            raise
    return {"sha256": digest.hexdigest(), "size": size}


def _discard(part, out, comp, tester):
    if comp is not None:
        comp.kill()
    if tester is not None and tester.poll() is None:
        tester.kill()
        tester.wait()
    if not out.closed:
        out.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)
