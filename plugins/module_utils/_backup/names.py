# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive names: ``<source>-<UTC timestamp>.tar.<ext>[.age]``, and file names made printable."""

from __future__ import annotations

import datetime
import re

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.compressors import COMPRESSORS
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

# .age: encrypted with age at the source (crypt.py).
ARCHIVE_RE = re.compile(r"^(?P<source>[A-Za-z0-9][A-Za-z0-9._-]{0,62})-(?P<stamp>\d{8}T\d{6}Z)"
                        r"\.tar\.(?P<ext>gz|zst)(?P<sealed>\.age)?\Z")
# \Z, not $: "$" also matches before a final newline, and "web\n" is not a name.
SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def check_source(source, where="source") -> str:
    if not isinstance(source, str) or not SOURCE_RE.match(source):
        raise BackupError(f"{where} {source!r} is not a valid name: use letters, digits, '.', '_' or '-' (at most 63, "
                          "starting with a letter or digit)")
    return source


def archive_name(source: str, when: datetime.datetime, compression: str) -> str:
    check_source(source)
    if compression not in COMPRESSORS:
        raise BackupError(f"compression {compression!r} is unknown: choose one of {', '.join(sorted(COMPRESSORS))}")
    stamp = when.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)
    return f"{source}-{stamp}.tar.{COMPRESSORS[compression][0]}"


def parse_archive_name(name: str):
    """(source, datetime) for a valid archive name, None otherwise."""
    match = ARCHIVE_RE.match(name)
    if not match:
        return None
    return match.group("source"), parse_stamp(match.group("stamp"))


def parse_stamp(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)


def printable(name) -> str:
    """A file name as valid UTF-8 text for reports and logs: undecodable bytes become \\xNN."""
    raw = name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")
