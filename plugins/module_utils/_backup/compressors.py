# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each compression choice means: the archive's extension and the programs that compress, test and read it."""

from __future__ import annotations

import shutil

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

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
