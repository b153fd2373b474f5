"""backup_compress: the real gzip and zstd programs, one process or segments on several workers."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import tempfile
import threading

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import compress as bc


def stream_of(size, seed=7):
    """Half text, half random bytes: both kinds of data a backup holds."""
    rng = random.Random(seed)  # noqa: S311 - test data
    words = [b"stream", b"audio", b"video", b"live", b"segment", b"player", b"buffer"]
    text = b" ".join(rng.choice(words) for _word in range(size // 12))[: size // 2]
    return text + rng.randbytes(size - len(text))


def run(comp, data, piece=10_000):
    """Writes data in pieces from a thread (as the tar writer does) and reads the output in order."""

    def write():
        try:
            for i in range(0, len(data), piece):
                comp.stdin.write(data[i:i + piece])
        except BrokenPipeError:
            pass
        finally:
            comp.stdin.close()

    writer = threading.Thread(target=write)
    writer.start()
    out = []
    while True:
        block = comp.read(1 << 20)
        if not block:
            break
        out.append(block)
    writer.join(timeout=30)
    assert not writer.is_alive(), "the writer was left blocked"
    return b"".join(out), comp.finish()


@pytest.mark.parametrize(("workers", "segment", "size"), [
    (1, 4096, 100_000),
    (2, 4096, 100_000),
    (3, 1000, 54_321),
    (4, 1 << 20, 100_000),  # one short segment
    (2, 25_000, 100_000),  # the stream ends exactly on a segment boundary
])
def test_segments_concatenate_to_one_gzip_stream(gzip_members, workers, segment, size):
    data = stream_of(size)
    out, (code, message) = run(bc.Segmented(["gzip", "-c"], workers, segment), data)
    assert (code, message) == (0, "")
    assert gzip_members(out) == -(-size // segment)
    assert gzip.decompress(out) == data
    assert subprocess.run(["gzip", "-dc"], input=out, capture_output=True, check=True).stdout == data
    subprocess.run(["gzip", "-t"], input=out, check=True)


def test_level_flag_reaches_every_segment():
    data = stream_of(200_000)
    fast, _fast_status = run(bc.Segmented(["gzip", "-c", "-1"], 2, 20_000), data)
    best, _best_status = run(bc.Segmented(["gzip", "-c", "-9"], 2, 20_000), data)
    assert gzip.decompress(fast) == gzip.decompress(best) == data
    assert len(best) < len(fast)


def test_zstd_frames_concatenate_too():
    data = stream_of(60_000)
    out, (code, _message) = run(bc.Segmented(["zstd", "-q", "-c"], 2, 7_000), data)
    assert code == 0
    assert subprocess.run(["zstd", "-q", "-dc"], input=out, capture_output=True, check=True).stdout == data


def test_empty_stream_gives_no_output():
    out, (code, _message) = run(bc.Segmented(["gzip", "-c"], 2, 1000), b"")
    assert (out, code) == (b"", 0)


def test_single_process_gives_one_member(gzip_members):
    data = stream_of(50_000)
    with tempfile.TemporaryFile() as err:
        out, (code, message) = run(bc.Single(["gzip", "-c"], err), data)
    assert (code, message) == (0, "")
    assert gzip_members(out) == 1
    assert gzip.decompress(out) == data


@pytest.mark.parametrize("kind", ["single", "segmented"])
def test_failing_compressor_reports_its_code_and_message(failing_gzip, kind):
    data = stream_of(100_000)
    with tempfile.TemporaryFile() as err:
        argv = [str(failing_gzip)]
        comp = bc.Single(argv, err) if kind == "single" else bc.Segmented(argv, 2, 5_000)
        _out, (code, message) = run(comp, data)
    assert code == 3
    assert "No space left" in message


def test_missing_program_is_reported():
    out, (code, message) = run(bc.Segmented(["/nonexistent/gzip"], 2, 1000), stream_of(10_000))
    assert out == b""
    assert code == 127
    assert "cannot run /nonexistent/gzip" in message


def test_kill_unblocks_a_writer_waiting_for_room():
    # Nobody reads: the writer fills the bounded queue and waits; kill() must release it.
    comp = bc.Segmented(["gzip", "-c"], 1, 1000)
    failures = []

    def write():
        try:
            for _segment in range(100):
                comp.stdin.write(b"x" * 1000)
        except BrokenPipeError as exc:
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=1)
    assert writer.is_alive(), "the queue should have filled up"
    comp.kill()
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert failures
    comp.stdin.close()
    assert comp.read() == b""


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        bc.Segmented(["gzip"], 0)


def test_usable_cores_follows_the_affinity(monkeypatch):
    assert bc.usable_cores() >= 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert bc.usable_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert bc.usable_cores() == 1
