"""The backup_rotate module: options, check mode, bad input."""

from __future__ import annotations

import datetime
import hashlib
import os

import pytest
from ansible_collections.streamcloud.platform.plugins.modules import backup_rotate

END = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def store(tmp_path):
    for source in ("web1", "db1"):
        d = tmp_path / source
        d.mkdir()
        for day in range(60):
            name = f"{source}-{END - datetime.timedelta(days=day):%Y%m%dT%H%M%SZ}.tar.gz"
            (d / name).write_bytes(name.encode())
            (d / (name + ".sha256")).write_text(hashlib.sha256(name.encode()).hexdigest() + "\n")
    return tmp_path


OPTIONS = [
    pytest.param({"path": "web1", "keep_last": 5}, 5, 55, id="keep_last"),
    pytest.param({"path": "web1", "keep_daily": 10}, 10, 50, id="keep_daily"),
    pytest.param({"path": "web1", "keep_weekly": 3}, 3, 57, id="keep_weekly"),
    pytest.param({"path": "web1", "keep_monthly": 2}, 2, 58, id="keep_monthly"),
    pytest.param({"path": "web1", "keep_last": 1, "verify_newest": False}, 1, 59, id="verify_newest-off"),
    pytest.param({"path": ".", "recurse": True, "keep_last": 2}, 4, 116, id="recurse"),
]


@pytest.mark.parametrize(("extra", "kept", "deleted"), OPTIONS)
def test_options(run_module, store, extra, kept, deleted):
    args = dict(extra, path=str(store / extra["path"]))
    result, failed = run_module(backup_rotate, args)
    assert not failed, result
    assert (len(result["kept"]), len(result["deleted"])) == (kept, deleted)
    assert all(not os.path.exists(p) for p in result["deleted"])


def test_check_mode(run_module, store):
    result, failed = run_module(backup_rotate, {"path": str(store / "web1"), "keep_last": 1}, check_mode=True)
    assert not failed and result["changed"] and len(result["deleted"]) == 59
    assert len(os.listdir(store / "web1")) == 120


BAD = [
    ({}, "every retention rule is 0"),
    ({"keep_last": -3}, "keep_last must be 0 or a positive whole number, got -3"),
    ({"keep_daily": "many"}, "keep_daily"),
    ({"path": "/nonexistent/store", "keep_last": 1}, "is not a directory on the backup host"),
    ({"recurse": "perhaps", "keep_last": 1}, "recurse"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _args, m in BAD])
def test_bad_input(run_module, store, extra, message):
    result, failed = run_module(backup_rotate, dict({"path": str(store / "web1")}, **extra))
    assert failed and message in result["msg"]
    assert len(os.listdir(store / "web1")) == 120
