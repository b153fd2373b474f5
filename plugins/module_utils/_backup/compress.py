# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a compressor over one stream: one process, or segments on every core.

Both kinds give the archive writer the same three things: ``stdin`` to write the tar stream into,
``read()`` for the compressed bytes in order, and ``finish()`` for the exit code and error text.

``Segmented`` makes a single-threaded compressor (gzip) use every core. It cuts the stream into
segments of ``segment_size`` bytes and compresses each one with its own compressor process,
``workers`` at a time. The outputs are concatenated in stream order. A gzip file may hold several
members one after another (RFC 1952, section 2.2), and every gzip reader (``gzip -d``, ``tar xzf``,
Python's gzip) decompresses them as one stream. So the result is an ordinary ``.tar.gz`` made by
the gzip program. Each segment starts with an empty dictionary, which costs well under 0.1 % in
size with segments of a few MiB (0.06 % with 4 MiB on the benchmark data).
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import subprocess
import threading

SEGMENT_SIZE = 4 * 1024 * 1024
# gzip segments in flight cost about 25 MiB each (measured with 4 MiB segments), so "every core"
# stops at 8 for gzip unless threads asks for more.
DEFAULT_MAX_WORKERS = 8
_EOF = object()


def usable_cores():
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Single:
    """One compressor process: the tar stream to its stdin, the compressed stream from its stdout."""

    def __init__(self, argv, stderr):
        self._stderr = stderr
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)  # noqa: S603 - argv list, no shell
        self.stdin = self._proc.stdin

    def read(self, size):
        return self._proc.stdout.read(size)

    def finish(self):
        """(exit code, error text) once the output has been read to its end."""
        code = self._proc.wait()
        self._stderr.seek(0)
        return code, self._stderr.read().decode(errors="replace").strip()

    def kill(self):
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


class _SegmentFailed(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class _Input:
    """The writable end: collects the stream and hands out whole segments."""

    def __init__(self, owner):
        self._owner = owner
        self._chunks = []
        self._have = 0
        self.closed = False

    def write(self, data):
        if self._owner.aborted:
            raise BrokenPipeError("the compressor stopped")
        self._chunks.append(bytes(data))
        self._have += len(data)
        size = self._owner.segment_size
        while self._have >= size:
            # One copy per segment: the join. The segment is a view of it; the rest (less than
            # one write) starts the next segment.
            blob = b"".join(self._chunks)
            self._owner.submit(memoryview(blob)[:size])
            self._chunks = [blob[size:]] if len(blob) > size else []
            self._have = len(blob) - size
        return len(data)

    def flush(self):
        """Segments are only cut at full size; the rest waits for more data or close()."""

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self._have and not self._owner.aborted:
            self._owner.submit(b"".join(self._chunks))
        self._chunks, self._have = [], 0
        self._owner.put(_EOF)


class Segmented:
    """Several compressor processes over consecutive segments of one stream, output in order."""

    def __init__(self, argv, workers, segment_size=None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.argv = list(argv)
        self.workers = workers
        self.segment_size = segment_size or SEGMENT_SIZE
        self.aborted = False
        self._code, self._message = 0, ""
        self._lock = threading.Lock()
        self._procs = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compress")
        # Bounded: at most `workers` segments wait behind the one being read, so memory stays near
        # 2 * (workers + 2) * segment_size however fast the tar stream is.
        self._order = queue.Queue(maxsize=workers)
        self.stdin = _Input(self)

    def _compress(self, segment):
        with self._lock:
            if self.aborted:
                raise _SegmentFailed(-9, "stopped")
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603 - argv list, no shell
                                    stderr=subprocess.PIPE)
            self._procs.add(proc)
        try:
            out, err = proc.communicate(segment)
        finally:
            with self._lock:
                self._procs.discard(proc)
        if proc.returncode != 0:
            raise _SegmentFailed(proc.returncode, err.decode(errors="replace").strip())
        return out

    def submit(self, segment):
        try:
            future = self._pool.submit(self._compress, segment)
        except RuntimeError as exc:  # the pool was shut down by kill()
            raise BrokenPipeError("the compressor stopped") from exc
        self.put(future)

    def put(self, item):
        while not self.aborted:
            try:
                self._order.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        if item is not _EOF:
            item.cancel()
            raise BrokenPipeError("the compressor stopped")

    def read(self, size=-1):
        """The next compressed segment (any size), b'' at the end or after a failure."""
        del size
        while True:
            if self.aborted:
                return b""
            try:
                item = self._order.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        if item is _EOF or self.aborted:
            return b""
        try:
            return item.result()
        except _SegmentFailed as exc:
            self._code, self._message = exc.code, exc.message
        except concurrent.futures.CancelledError:
            self._code, self._message = -9, "stopped"
        except OSError as exc:
            self._code, self._message = 127, f"cannot run {self.argv[0]}: {exc}"
        self.kill()
        return b""

    def finish(self):
        self._pool.shutdown(wait=True)
        return self._code, self._message

    def kill(self):
        with self._lock:
            self.aborted = True
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        # Unblock a writer waiting for room, then drop what was queued.
        while True:
            try:
                item = self._order.get_nowait()
            except queue.Empty:
                break
            if item is not _EOF:
                item.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
