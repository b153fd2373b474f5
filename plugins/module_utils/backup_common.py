# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the backup pipeline: names, checksums, atomic files, compressors.

No Ansible import here (nor in the other backup_* module_utils): the backup role installs these
files on every host and its cron entry point imports them, so the modules and the cron job run
the same code.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil

CHUNK = 1024 * 1024

# <source>-<UTC timestamp>.tar.<ext>[.age] (.age: encrypted with age at the source, backup_crypt).
ARCHIVE_RE = re.compile(r"^(?P<source>[A-Za-z0-9][A-Za-z0-9._-]{0,62})-(?P<stamp>\d{8}T\d{6}Z)"
                        r"\.tar\.(?P<ext>gz|zst)(?P<sealed>\.age)?\Z")
# \Z, not $: "$" also matches before a final newline, and "web\n" is not a name.
SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_NAME = ".streamcloud-backup-manifest.json"

# name -> (archive extension, compress argv, test argv, decompress argv)
COMPRESSORS = {
    "gzip": ("gz", ["gzip", "-c"], ["gzip", "-t"], ["gzip", "-dc"]),
    "pigz": ("gz", ["pigz", "-c"], ["gzip", "-t"], ["gzip", "-dc"]),
    "zstd": ("zst", ["zstd", "-q", "-c"], ["zstd", "-q", "-t"], ["zstd", "-q", "-dc"]),
}
LEVELS = {"gzip": (1, 9), "pigz": (1, 9), "zstd": (1, 19)}
# Compression threads: each gzip segment worker holds about 25 MiB (64 threads measured 407 MB RSS);
# more than 16 does not speed up a backup host's disks and network either.
MAX_THREADS = 16


class BackupError(Exception):
    """A failure with a message meant for the operator: what failed and what to do."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def archive_name(source: str, when: datetime.datetime, compression: str) -> str:
    if not SOURCE_RE.match(source or ""):
        raise BackupError(
            f"source {source!r} is not a valid name: use letters, digits, '.', '_' or '-' (at most 63, "
            "starting with a letter or digit)"
        )
    if compression not in COMPRESSORS:
        raise BackupError(f"compression {compression!r} is unknown: choose one of {', '.join(sorted(COMPRESSORS))}")
    stamp = when.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)
    return f"{source}-{stamp}.tar.{COMPRESSORS[compression][0]}"


def parse_archive_name(name: str):
    """(source, datetime) for a valid archive name, None otherwise."""
    match = ARCHIVE_RE.match(name)
    if not match:
        return None
    when = datetime.datetime.strptime(match.group("stamp"), STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    return match.group("source"), when


def decompressor_for(name: str) -> list:
    if name.endswith(".tar.zst"):
        return list(COMPRESSORS["zstd"][3])
    if name.endswith(".tar.gz"):
        return list(COMPRESSORS["gzip"][3])
    raise BackupError(f"{name}: not a .tar.gz or .tar.zst archive")


def compressor_argv(compression: str, level, threads=None) -> tuple:
    """(compress argv, test argv) for a compressor, checking that it is installed and the level fits."""
    if compression not in COMPRESSORS:
        raise BackupError(f"compression {compression!r} is unknown: choose one of {', '.join(sorted(COMPRESSORS))}")
    compress, test = COMPRESSORS[compression][1:3]
    compress = list(compress)
    if level is not None:
        low, high = LEVELS[compression]
        if not isinstance(level, int) or isinstance(level, bool) or not low <= level <= high:
            raise BackupError(f"compression_level {level!r} is out of range for {compression}: use {low} to {high}")
        compress.append(f"-{level}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or not 0 <= threads <= MAX_THREADS):
        raise BackupError(f"threads {threads!r} must be 0 (every core, at most {MAX_THREADS}) or a number of threads "
                          f"from 1 to {MAX_THREADS} (variable backup_compression_threads)")
    if compression == "pigz" and threads:
        compress += ["-p", str(threads)]
    if compression == "zstd":
        compress.append(f"-T{threads or 0}")
    for program in sorted({compress[0], test[0]}):
        if shutil.which(program) is None:
            raise BackupError(
                f"compression {compression!r} needs the program {program!r}, which is not installed on this host: "
                "install it or choose another compression"
            )
    return compress, list(test)


def sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sidecar_path(archive: str) -> str:
    return archive + ".sha256"


def write_sidecar(archive: str, sha256: str) -> None:
    """The archive's checksum in sha256sum format, written atomically next to it."""
    atomic_write_text(sidecar_path(archive), f"{sha256}  {os.path.basename(archive)}\n", mode=0o600)


def read_sidecar(archive: str):
    """The checksum recorded for an archive, or None when there is no sidecar."""
    try:
        with open(sidecar_path(archive), encoding="ascii") as handle:
            value = handle.read().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"{sidecar_path(archive)}: cannot read the checksum file: {exc}") from exc
    if not value or not SHA256_RE.match(value[0]):
        raise BackupError(f"{sidecar_path(archive)}: not a SHA-256 checksum file")
    return value[0]


def received_path(archive: str) -> str:
    return archive + ".received"


def sidecars(archive: str) -> tuple:
    """The files that go with a stored archive: its .sha256, its receive record, its signature."""
    return (sidecar_path(archive), received_path(archive), archive + ".sig")


def write_received(archive: str, when: datetime.datetime, sha256: str, size: int) -> None:
    """The backup host's own record of when it received an archive (rotation dates archives by it)."""
    record = {"received": when.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT), "sha256": sha256,
              "size": size}
    atomic_write_text(received_path(archive), json.dumps(record, sort_keys=True) + "\n", mode=0o600)


def read_received(archive: str):
    """When the backup host received an archive (UTC datetime), or None when it kept no record."""
    try:
        with open(received_path(archive), encoding="utf-8") as handle:
            stamp = json.load(handle)["received"]
        return datetime.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{received_path(archive)}: not a receive record: {exc}") from exc


QUARANTINE = ".quarantine"


def quarantine(archive: str, reason: str) -> str:
    """Moves an archive and its sidecars to .quarantine/ next to it (owned like its directory) with a
    .reason file; returns the new path. Nothing is deleted: the operator decides."""
    directory = os.path.dirname(os.path.abspath(archive))
    target = os.path.join(directory, QUARANTINE)
    if not os.path.isdir(target):
        os.makedirs(target, mode=0o700, exist_ok=True)
        owner = os.stat(directory)
        if os.geteuid() == 0:
            os.chown(target, owner.st_uid, owner.st_gid)
    moved = os.path.join(target, os.path.basename(archive))
    atomic_write_text(moved + ".reason", reason + "\n", mode=0o600)
    for extra in sidecars(archive):
        if os.path.exists(extra):
            os.replace(extra, os.path.join(target, os.path.basename(extra)))
    os.replace(archive, moved)
    fsync_dir(directory)
    return moved


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str, text: str, mode: int = 0o644) -> None:
    part = path + ".part"
    with open(part, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(part, mode)
    os.replace(part, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def printable(name) -> str:
    """A file name as valid UTF-8 text for reports and logs: undecodable bytes become \\xNN."""
    raw = name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def json_line(**fields) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))
