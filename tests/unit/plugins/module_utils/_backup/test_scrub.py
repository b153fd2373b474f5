"""The scrub on the backup host (issue 11): every stored archive of every source hashed again; a bad one
quarantined as rotation does; the outcome in a status file a monitoring agent reads; no key needed."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import cli, scrub

ARCHIVES = {"web1": ["web1-20261125T020000Z.tar.gz.age", "web1-20261126T020000Z.tar.gz.age"],
            "db1": ["db1-20261126T020000Z.tar.zst"]}


@pytest.fixture
def store(tmp_path):
    """One directory per source, archives with their .sha256 (ciphertext: the scrub never decrypts)."""
    root = tmp_path / "srv"
    for source, names in ARCHIVES.items():
        (root / source).mkdir(parents=True)
        for name in names:
            body = os.urandom(2000)
            (root / source / name).write_bytes(body)
            (root / source / (name + ".sha256")).write_text(f"{hashlib.sha256(body).hexdigest()}  {name}\n")
            (root / source / (name + ".sig")).write_text("signature\n")
    return root


def run(root, status):
    out = io.StringIO()
    code = cli.main(["scrub", "--path", str(root), "--status-file", str(status)], out=out)
    return code, json.loads(out.getvalue()), json.loads(status.read_text())


def test_a_clean_store_is_reported_ok_and_left_as_it_was(store, tmp_path):
    before = sorted(str(p) for p in store.rglob("*"))
    code, line, status = run(store, tmp_path / "scrub.json")
    assert code == 0 and line == status
    assert status["status"] == "ok" and status["archives_checked"] == 3 and status["bad"] == []
    assert {"time", "duration_s"} <= set(status)
    assert sorted(str(p) for p in store.rglob("*")) == before


def test_a_corrupted_archive_is_quarantined_and_reported(store, tmp_path):
    victim = store / "web1" / ARCHIVES["web1"][0]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, _line, status = run(store, tmp_path / "scrub.json")
    assert code == cli.EXIT_BAD
    assert status["status"] == "bad" and status["archives_checked"] == 3
    assert [b["path"] for b in status["bad"]] == [str(victim)]
    assert "checksum mismatch" in status["bad"][0]["reason"]
    quarantined = store / "web1" / ".quarantine"
    assert status["bad"][0]["quarantined"] == str(quarantined / victim.name)
    assert sorted(os.listdir(quarantined)) == sorted(victim.name + s for s in ("", ".reason", ".sha256", ".sig"))
    assert "scrub: checksum mismatch" in (quarantined / (victim.name + ".reason")).read_text()
    # The next scrub finds nothing left to report; the good neighbour stayed.
    assert (store / "web1" / ARCHIVES["web1"][1]).exists()
    assert run(store, tmp_path / "scrub.json")[2]["bad"] == []


def test_an_archive_without_its_checksum_is_quarantined(store, tmp_path):
    (store / "db1" / (ARCHIVES["db1"][0] + ".sha256")).unlink()
    code, _line, status = run(store, tmp_path / "scrub.json")
    assert code == cli.EXIT_BAD and "no .sha256 sidecar" in status["bad"][0]["reason"]


def test_symlinks_are_not_followed(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "web9-20261126T020000Z.tar.gz").write_bytes(b"not ours")
    (store / "web9").symlink_to(outside)
    code, _line, status = run(store, tmp_path / "scrub.json")
    assert code == 0 and status["archives_checked"] == 3
    assert os.listdir(outside) == ["web9-20261126T020000Z.tar.gz"]


def test_an_archive_rotated_away_meanwhile_is_skipped(store, monkeypatch):
    gone = str(store / "web1" / ARCHIVES["web1"][0])
    real = scrub.check_stored

    def vanish(path):
        if path == gone:
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(scrub, "check_stored", vanish)
    assert scrub.scrub(str(store))["archives_checked"] == 2
