"""The backup_archive module: every option, check mode, every bad input (through AnsibleModule)."""

from __future__ import annotations

import os
import shutil

import pytest
from ansible_collections.streamcloud.platform.plugins.modules import backup_archive


@pytest.fixture
def base(tree, tmp_path):
    return {"paths": [str(tree)], "dest": str(tmp_path / "outbox"), "source": "web1"}


OPTIONS = [
    pytest.param({}, ".tar.gz", 3, id="defaults"),
    pytest.param({"compression": "gzip", "compression_level": 9}, ".tar.gz", 3, id="gzip-9"),
    pytest.param({"compression": "pigz", "threads": 2}, ".tar.gz", 3, id="pigz-threads",
                 marks=pytest.mark.skipif(not shutil.which("pigz"), reason="pigz not installed")),
    pytest.param({"compression": "zstd", "compression_level": 19}, ".tar.zst", 3, id="zstd-19"),
    pytest.param({"compression": "zstd", "threads": 1}, ".tar.zst", 3, id="zstd-threads"),
    pytest.param({"threads": 1}, ".tar.gz", 3, id="gzip-one-thread"),
    pytest.param({"threads": 2}, ".tar.gz", 3, id="gzip-two-threads"),
    pytest.param({"excludes": ["*.tmp", "*.bin"]}, ".tar.gz", 1, id="excludes"),
    pytest.param({"db_dump_command": "none"}, ".tar.gz", 3, id="dump-none"),
    # The dump and the dump directory's marker (.streamcloud-dump) join the three files.
    pytest.param({"db_dump_command": "HOOK", "dump_dir": "DUMPS"}, ".tar.gz", 5, id="dump-command"),
]


@pytest.mark.parametrize(("extra", "suffix", "files"), OPTIONS)
def test_options(run_module, base, tmp_path, extra, suffix, files):
    extra = dict(extra)
    if extra.get("db_dump_command") == "HOOK":
        hook = tmp_path / "hook.sh"
        hook.write_text('#!/bin/sh\necho dump > "$1/app.dump"\n')
        hook.chmod(0o755)
        extra.update(db_dump_command=str(hook), dump_dir=str(tmp_path / "dumps"))
    result, failed = run_module(backup_archive, dict(base, **extra))
    assert not failed, result
    assert result["changed"] is True
    assert result["archive"].endswith(suffix) and os.path.exists(result["archive"])
    assert os.path.exists(result["archive"] + ".sha256")
    assert result["files"] == files


def test_check_mode(run_module, base):
    result, failed = run_module(backup_archive, base, check_mode=True)
    assert not failed and result["changed"] is True
    assert not os.path.exists(base["dest"])


BAD = [
    ({"paths": []}, "paths is empty"),
    ({"paths": ["/no/such/dir"]}, "/no/such/dir does not exist on this host"),
    ({"source": "web 1"}, "source 'web 1' is not a valid name"),
    ({"compression": "xz"}, "value of compression must be one of: gzip, pigz, zstd"),
    ({"compression_level": 30}, "compression_level 30 is out of range for gzip: use 1 to 9"),
    ({"compression_level": "high"}, "compression_level"),
    ({"excludes": [""]}, "is not a non-empty pattern"),
    ({"threads": -2}, "threads -2 must be 0 (every core, at most 16) or a number of threads from 1 to 16"),
    ({"threads": 64}, "threads 64 must be 0 (every core, at most 16) or a number of threads from 1 to 16 "
                      "(variable backup_compression_threads)"),
    ({"threads": "many"}, "threads"),
    ({"db_dump_command": "/bin/false"}, "database dump command /bin/false failed with exit code 1"),
    ({"unknown": 1}, "Unsupported parameters"),
    ({"paths": None}, "paths"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _args, m in BAD])
def test_bad_input(run_module, base, extra, message):
    args = dict(base, **extra)
    if extra.get("paths", 0) is None:
        args.pop("paths")
    result, failed = run_module(backup_archive, args)
    assert failed
    assert message in result["msg"]
    assert not os.path.exists(base["dest"]) or os.listdir(base["dest"]) == []
