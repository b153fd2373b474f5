# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each compression choice means: the archive's extension and the programs that compress, test and read it.

``gzip`` is the .tar.gz format. On more than one thread (``threads`` 0, every core, or 2 and more) it is written by
pigz, the parallel gzip (``-p threads``; Debian's package, which the role installs); on one thread by gzip. Either
way it is one ordinary gzip stream that ``gzip -d`` and ``tar xzf`` read. ``pigz`` is pigz whatever the threads.
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

# name -> (archive extension, compress argv, test argv, decompress argv)
COMPRESSORS = {
    "gzip": ("gz", ["gzip", "-c"], ["gzip", "-t"], ["gzip", "-dc"]),
    "pigz": ("gz", ["pigz", "-c"], ["gzip", "-t"], ["gzip", "-dc"]),
    "zstd": ("zst", ["zstd", "-q", "-c"], ["zstd", "-q", "-t"], ["zstd", "-q", "-dc"]),
}
LEVELS = {"gzip": (1, 9), "pigz": (1, 9), "zstd": (1, 19)}
# More compression threads than this do not speed up a backup host's disks and network, and cost memory
# (issue 11: 64 threads were measured at 407 MB RSS).
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
    if compression == "gzip" and threads != 1:
        compress[0] = "pigz"
    if compress[0] == "pigz":
        compress += ["-p", str(threads or min(os.cpu_count() or 1, MAX_THREADS))]
    if compression == "zstd":
        compress.append(f"-T{threads or 0}")
    for program in sorted({compress[0], test[0]}):
        if shutil.which(program) is None:
            raise BackupError(
                f"compression {compression!r} needs the program {program!r}, which is not installed on this host: "
                "install it or choose another compression"
            )
    return compress, list(test)
