# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files that go with a stored archive: its ``.sha256``, the backup host's ``.received`` record, the
source's ``.sig``; and the quarantine a corrupted or suspect archive is moved to with them."""

from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import (
    atomic_write_text,
    fsync_dir,
    sha256_file,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import STAMP_FORMAT, parse_stamp

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
QUARANTINE = ".quarantine"


def sidecar_path(archive: str) -> str:
    return archive + ".sha256"


def received_path(archive: str) -> str:
    return archive + ".received"


def signature_path(archive: str) -> str:
    return archive + ".sig"


def sidecars(archive: str) -> tuple:
    return (sidecar_path(archive), received_path(archive), signature_path(archive))


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


def write_received(archive: str, when, sha256: str, size: int) -> None:
    """The backup host's own record of when it received an archive (rotation dates archives by it)."""
    record = {"received": when.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT), "sha256": sha256, "size": size}
    atomic_write_text(received_path(archive), json.dumps(record, sort_keys=True) + "\n", mode=0o600)


def read_received(archive: str):
    """When the backup host received an archive (UTC datetime), or None when it kept no record."""
    try:
        with open(received_path(archive), encoding="utf-8") as handle:
            return parse_stamp(json.load(handle)["received"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{received_path(archive)}: not a receive record: {exc}") from exc


def check_stored(archive: str):
    """None when the archive's SHA-256 still matches its sidecar, else why not (what rotation and the scrub
    quarantine an archive for)."""
    recorded = read_sidecar(archive)
    if recorded is None:
        return "no .sha256 sidecar: it cannot be verified"
    actual = sha256_file(archive)
    return None if actual == recorded else f"checksum mismatch: recorded {recorded}, read {actual}"


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
