# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files written so that a crash leaves the old or the new one, never half of it; and their hashes."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1024 * 1024


def sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def copy_hashed(source, out, tee=None) -> tuple:
    """Copies ``source`` to ``out`` to its end, block by block (``tee`` gets each block too); returns
    the SHA-256 and the size of what was copied."""
    digest = hashlib.sha256()
    size = 0
    while block := source.read(CHUNK):
        out.write(block)
        digest.update(block)
        size += len(block)
        if tee is not None:
            tee(block)
    return digest.hexdigest(), size


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
