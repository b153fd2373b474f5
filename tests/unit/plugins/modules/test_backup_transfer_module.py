"""The backup_transfer module against the real receiver (local stand-in for ssh, see conftest)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import create_archive
from ansible_collections.streamcloud.platform.plugins.modules import backup_transfer

T0 = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def setup(tree, tmp_path, ssh_on_path):
    root = ssh_on_path
    out = tmp_path / "outbox"
    made = [create_archive([str(tree)], str(out), "web1", now=T0 + datetime.timedelta(hours=h))["name"]
            for h in range(3)]
    key = tmp_path / "id"
    key.write_text("unused\n")
    args = {"path": str(out), "host": "backup", "user": "bk-web1", "identity_file": str(key)}
    return args, made, root / "web1"


OPTIONS = [
    pytest.param({}, 3, 0, id="defaults"),
    pytest.param({"keep_local": 1}, 3, 1, id="keep_local-1"),
    pytest.param({"keep_local": 5}, 3, 3, id="keep_local-5"),
    pytest.param({"port": 2222, "connect_timeout": 3, "strict_host_key_checking": "accept-new",
                  "known_hosts_file": "/dev/null"}, 3, 0, id="ssh-options"),
    pytest.param({"only": 0}, 1, 2, id="one-archive"),
]


@pytest.mark.parametrize(("extra", "sent", "left"), OPTIONS)
def test_options(run_module, setup, extra, sent, left):
    args, made, far = setup
    extra = dict(extra)
    if "only" in extra:
        args = dict(args, path=os.path.join(args["path"], made[extra.pop("only")]))
    result, failed = run_module(backup_transfer, dict(args, **extra))
    assert not failed, result
    assert len(result["transferred"]) == sent
    assert all((far / t["name"]).exists() for t in result["transferred"])
    assert len(result["kept_local"]) == left


def test_check_mode_sends_nothing(run_module, setup):
    args, made, far = setup
    result, failed = run_module(backup_transfer, args, check_mode=True)
    assert not failed and result["pending"] == made and result["changed"]
    assert os.listdir(far) == []


def test_unreachable_fails_and_keeps(run_module, setup, monkeypatch):
    args, made = setup[:2]
    monkeypatch.setenv("BACKUP_TEST_DOWN", "1")
    result, failed = run_module(backup_transfer, args)
    assert failed
    assert "unreachable" in result["msg"] and "3 archive(s) kept in" in result["msg"]
    assert sorted(n for n in os.listdir(args["path"]) if n.endswith(".tar.gz")) == made


BAD = [
    ({"port": 0}, "port 0 must be 1-65535"),
    ({"user": "no body"}, "is not a valid account name"),
    ({"identity_file": "/nonexistent"}, "the dedicated backup key is missing"),
    ({"keep_local": -2}, "keep_local -2 must be 0 or a positive number"),
    ({"strict_host_key_checking": "off"}, "value of strict_host_key_checking must be one of"),
    ({"connect_timeout": -1}, "connect_timeout -1 must be a positive number"),
    ({"path": "/nonexistent/outbox"}, "outbox /nonexistent/outbox is not a directory"),
    ({"host": None}, "missing required arguments: host"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _args, m in BAD])
def test_bad_input(run_module, setup, extra, message):
    args, _made, far = setup
    args = dict(args, **extra)
    if args.get("host", 0) is None:
        args.pop("host")
    result, failed = run_module(backup_transfer, args)
    assert failed and message in result["msg"]
    assert os.listdir(far) == []


def test_the_old_name_redirects_to_this_module():
    """Renamed from scp_transfer (it speaks SSH to the receiver, not the scp protocol); the old name still works."""
    import yaml

    runtime = yaml.safe_load((Path(__file__).resolve().parents[4] / "meta" / "runtime.yml").read_text())
    assert runtime["plugin_routing"]["modules"]["scp_transfer"]["redirect"] == "streamcloud.platform.backup_transfer"
    assert "module: backup_transfer" in backup_transfer.DOCUMENTATION
