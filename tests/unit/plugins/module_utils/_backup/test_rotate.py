"""Rotation: a synthetic 400-day history on disk, the expected survivors written out by hand."""

from __future__ import annotations

import datetime
import hashlib
import json
import os

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import rotate as br
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

END = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)  # a Friday


def history(directory, source="web1", days=400, end=END, per_day=1):
    directory.mkdir(parents=True, exist_ok=True)
    for day in range(days):
        for slot in range(per_day):
            when = end - datetime.timedelta(days=day) + datetime.timedelta(hours=slot * 4)
            name = f"{source}-{when:%Y%m%dT%H%M%SZ}.tar.gz"
            body = name.encode()
            (directory / name).write_bytes(body)
            (directory / (name + ".sha256")).write_text(f"{hashlib.sha256(body).hexdigest()}  {name}\n")


def dates(paths):
    return sorted(os.path.basename(p).split("-")[1][:8] for p in paths)


POLICY = {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}
# Worked out by hand for daily archives ending Friday 2026-11-27:
#   last 3: 25-27 Nov; daily 7: 21-27 Nov; weekly 4 (newest of each ISO week): 27, 22, 15, 8 Nov;
#   monthly 12 (newest of each month): 27 Nov, 31 Oct, 30 Sep, 31 Aug, 31 Jul, 30 Jun, 31 May,
#   30 Apr, 31 Mar, 28 Feb, 31 Jan 2026, 31 Dec 2025.
EXPECTED = sorted([
    "20261121", "20261122", "20261123", "20261124", "20261125", "20261126", "20261127",
    "20261115", "20261108",
    "20261031", "20260930", "20260831", "20260731", "20260630", "20260531", "20260430", "20260331",
    "20260228", "20260131", "20251231",
])


def test_400_days_keep_exactly_the_policy(tmp_path):
    history(tmp_path / "web1")
    result = br.rotate(str(tmp_path / "web1"), POLICY)
    assert dates(k["path"] for k in result["kept"]) == EXPECTED
    assert len(result["deleted"]) == 400 - len(EXPECTED)
    left = [n for n in os.listdir(tmp_path / "web1") if n.endswith(".tar.gz")]
    assert dates(left) == EXPECTED
    assert len([n for n in os.listdir(tmp_path / "web1") if n.endswith(".sha256")]) == len(EXPECTED)
    # Applying it again deletes nothing.
    assert br.rotate(str(tmp_path / "web1"), POLICY)["changed"] is False


def test_check_mode_lists_without_deleting(tmp_path):
    history(tmp_path / "web1")
    result = br.rotate(str(tmp_path / "web1"), POLICY, check_mode=True)
    assert len(result["deleted"]) == 400 - len(EXPECTED)
    assert len(os.listdir(tmp_path / "web1")) == 800


def test_reasons(tmp_path):
    history(tmp_path / "web1", days=40)
    kept = {os.path.basename(k["path"])[5:13]: k["reasons"] for k in br.rotate(str(tmp_path / "web1"), POLICY)["kept"]}
    assert kept["20261127"] == ["last", "daily", "weekly", "monthly", "newest verified"]
    assert kept["20261122"] == ["daily", "weekly"]
    assert kept["20261031"] == ["monthly"]


@pytest.mark.parametrize(("policy", "survivors"), [
    ({"keep_last": 2}, 2),
    ({"keep_daily": 3}, 3),
    ({"keep_weekly": 2}, 2),
    ({"keep_monthly": 3}, 3),
    ({"keep_last": 400}, 60),
    ({"keep_daily": 1, "keep_monthly": 1}, 1),
])
def test_single_rules(tmp_path, policy, survivors):
    history(tmp_path / "h", days=60)
    assert len(br.rotate(str(tmp_path / "h"), policy)["kept"]) == survivors


def test_several_archives_a_day_keep_the_newest_of_the_day(tmp_path):
    history(tmp_path / "h", days=3, per_day=4)
    kept = br.rotate(str(tmp_path / "h"), {"keep_daily": 3})["kept"]
    assert [os.path.basename(k["path"]) for k in kept] == [
        "web1-20261125T140000Z.tar.gz", "web1-20261126T140000Z.tar.gz", "web1-20261127T140000Z.tar.gz"]


def test_a_corrupted_newest_archive_is_quarantined_and_its_neighbour_kept(tmp_path):
    d = tmp_path / "h"
    history(d, days=5)
    newest = "web1-20261127T020000Z.tar.gz"
    (d / newest).write_bytes(b"corrupted after it was published")
    result = br.rotate(str(d), {"keep_last": 1})
    kept = sorted(os.path.basename(k["path"]) for k in result["kept"])
    assert kept == ["web1-20261126T020000Z.tar.gz"]
    assert result["protected"] == [str(d / "web1-20261126T020000Z.tar.gz")]
    assert [q["path"] for q in result["quarantined"]] == [str(d / ".quarantine" / newest)]
    assert "checksum mismatch" in result["quarantined"][0]["reason"]
    assert (d / ".quarantine" / newest).read_bytes() == b"corrupted after it was published"
    assert (d / ".quarantine" / (newest + ".sha256")).exists()
    assert "checksum mismatch" in (d / ".quarantine" / (newest + ".reason")).read_text()


def test_corrupted_archives_fill_no_slot_and_their_good_neighbours_stay(tmp_path):
    """Finding 2: corrupted archives in the daily and monthly slots; the good archive of the same
    period takes each slot instead, and nothing good is deleted because of them."""
    d = tmp_path / "h"
    history(d, days=400, per_day=2)  # 02:00 and 06:00 each day
    bad = ["web1-20261127T060000Z.tar.gz", "web1-20261031T060000Z.tar.gz", "web1-20260930T060000Z.tar.gz"]
    for name in bad:
        (d / name).write_bytes(b"bit rot")
    result = br.rotate(str(d), POLICY)
    kept = {os.path.basename(k["path"]) for k in result["kept"]}
    assert not kept & set(bad)
    # The good neighbour of each corrupted archive fills its slot.
    for name in ("web1-20261127T020000Z.tar.gz", "web1-20261031T020000Z.tar.gz", "web1-20260930T020000Z.tar.gz"):
        assert name in kept
    assert sorted(os.path.basename(q["path"]) for q in result["quarantined"]) == sorted(bad)
    assert sorted(os.listdir(d / ".quarantine")) == sorted(
        [n for b in bad for n in (b, b + ".reason", b + ".sha256")])
    # Every period of the policy still has its archive (keep_last takes two of 26 Nov).
    assert sorted(set(dates(kept))) == EXPECTED


def received(directory, name, when):
    record = {"received": when.strftime("%Y%m%dT%H%M%SZ"), "sha256": "x", "size": 1}
    (directory / (name + ".received")).write_text(json.dumps(record) + "\n")


def genuine(directory, days=60, end=END):
    """Archives as the receiver stores them: each with its receive record (received at its name's time)."""
    history(directory, days=days, end=end)
    for name in os.listdir(directory):
        if name.endswith(".tar.gz"):
            received(directory, name, br.parse_archive_name(name)[1])


def test_uploads_dated_2099_do_not_make_rotation_delete_genuine_archives(tmp_path):
    """Finding 1: 12 archives named 2099 received today (by a receiver without the skew check, or
    copied in) are set aside; the 60 genuine archives keep exactly the slots they had."""
    d = tmp_path / "web1"
    genuine(d)
    expected = sorted(os.path.basename(k["path"]) for k in br.rotate(str(d), POLICY, check_mode=True)["kept"])
    for month in range(1, 13):
        name = f"web1-2099{month:02d}01T000000Z.tar.gz"
        body = name.encode()
        (d / name).write_bytes(body)
        (d / (name + ".sha256")).write_text(f"{hashlib.sha256(body).hexdigest()}  {name}\n")
        received(d, name, END + datetime.timedelta(hours=1))
    result = br.rotate(str(d), POLICY)
    assert sorted(os.path.basename(k["path"]) for k in result["kept"]) == expected
    assert len(result["quarantined"]) == 12
    assert all("in the future" in q["reason"] for q in result["quarantined"])
    assert len(os.listdir(d / ".quarantine")) == 12 * 4


def test_a_client_clock_at_2000_does_not_lose_its_newest_archives(tmp_path):
    """Finding 1: the newest archives are named in 2000 (the client's clock went back) but were
    received last: they are the newest, and rotation keeps them."""
    d = tmp_path / "web1"
    genuine(d, days=400)
    late = []
    for hour in range(3):
        name = f"web1-20000101T0{hour}0000Z.tar.gz"
        body = name.encode()
        (d / name).write_bytes(body)
        (d / (name + ".sha256")).write_text(f"{hashlib.sha256(body).hexdigest()}  {name}\n")
        received(d, name, END + datetime.timedelta(hours=1 + hour))
        late.append(name)
    result = br.rotate(str(d), POLICY)
    kept = {os.path.basename(k["path"]): k["reasons"] for k in result["kept"]}
    for name in late:
        assert "last" in kept[name]
    assert result["protected"] == [str(d / late[-1])]
    assert result["quarantined"] == []


def test_an_archive_without_a_receive_record_is_dated_by_the_earlier_of_name_and_mtime(tmp_path):
    d = tmp_path / "web1"
    d.mkdir()
    name = "web1-20991231T000000Z.tar.gz"
    (d / name).write_bytes(b"x")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((br.received_at(str(d / name), br.parse_archive_name(name)[1]) - now).total_seconds()) < 60
    old = "web1-20200101T000000Z.tar.gz"
    (d / old).write_bytes(b"x")
    assert br.received_at(str(d / old), br.parse_archive_name(old)[1]).year == 2020


def test_recurse_never_follows_a_symlink_out_of_its_root(tmp_path):
    """Finding 6: a symlinked "host directory" pointing elsewhere is not rotated."""
    outside = tmp_path / "outside"
    history(outside, days=5)
    root = tmp_path / "root"
    history(root / "web1", days=5)
    (root / "evil").symlink_to(outside)
    (root / "web1" / "web1-20200101T000000Z.tar.gz").symlink_to(outside / "web1-20261127T020000Z.tar.gz")
    result = br.rotate(str(root), {"keep_last": 1}, recurse=True)
    assert len(os.listdir(outside)) == 10
    assert all(str(outside) not in p for p in result["deleted"])
    assert (root / "web1" / "web1-20200101T000000Z.tar.gz").is_symlink()
    with pytest.raises(BackupError, match="symlinks are not followed"):
        br.rotate(str(root / "evil"), {"keep_last": 1}, recurse=True)


def test_sources_are_rotated_separately_and_other_files_untouched(tmp_path):
    d = tmp_path / "mixed"
    history(d, source="web1", days=10)
    history(d, source="db-1", days=10)
    (d / "README").write_text("notes")
    (d / ".incoming").mkdir()
    (d / ".incoming" / "web1-20261128T020000Z.tar.gz.part").write_text("partial")
    result = br.rotate(str(d), {"keep_last": 2})
    assert len(result["kept"]) == 4
    assert (d / "README").exists() and (d / ".incoming" / "web1-20261128T020000Z.tar.gz.part").exists()


def test_recurse_rotates_every_host_directory(tmp_path):
    history(tmp_path / "web1", days=5)
    history(tmp_path / "db1", source="db1", days=5)
    result = br.rotate(str(tmp_path), {"keep_last": 1}, recurse=True)
    assert len(result["kept"]) == 2 and len(result["deleted"]) == 8


BAD = [
    ({}, "every retention rule is 0"),
    ({"keep_last": 0, "keep_daily": 0}, "every retention rule is 0"),
    ({"keep_last": -1}, "keep_last must be 0 or a positive whole number, got -1"),
    ({"keep_daily": "7"}, "keep_daily must be 0 or a positive whole number"),
    ({"keep_weekly": 1.5}, "keep_weekly must be"),
    ({"keep_monthly": True}, "keep_monthly must be"),
]


@pytest.mark.parametrize(("policy", "message"), BAD, ids=[m for _args, m in BAD])
def test_bad_policy_deletes_nothing(tmp_path, policy, message):
    history(tmp_path / "h", days=3)
    with pytest.raises(BackupError, match=message):
        br.rotate(str(tmp_path / "h"), policy)
    assert len(os.listdir(tmp_path / "h")) == 6


def test_missing_directory(tmp_path):
    with pytest.raises(BackupError, match="is not a directory on the backup host"):
        br.rotate(str(tmp_path / "nope"), {"keep_last": 1})


# --- choose: the archive a restore takes -----------------------------------------------------------

def stored(directory, name, when, body=None):
    """One archive as the receiver stores it: the file, its .sha256 and its receive record."""
    directory.mkdir(parents=True, exist_ok=True)
    body = name.encode() if body is None else body
    (directory / name).write_bytes(body)
    (directory / (name + ".sha256")).write_text(f"{hashlib.sha256(body).hexdigest()}  {name}\n")
    received(directory, name, when)


def test_latest_is_the_newest_received_not_the_newest_name(tmp_path):
    """The client's clock went back to 2000 for its last two runs: those archives were received last
    and hold the newest data; a restore of 'latest' takes the last one received."""
    d = tmp_path / "web1"
    genuine(d, days=10)
    stored(d, "web1-20000101T000000Z.tar.gz", END + datetime.timedelta(hours=1))
    stored(d, "web1-20000101T010000Z.tar.gz", END + datetime.timedelta(hours=2))
    answer = br.choose(str(d), "web1")
    assert answer["name"] == "web1-20000101T010000Z.tar.gz"
    assert answer["received"] == (END + datetime.timedelta(hours=2)).isoformat()
    assert answer["available"][:2] == ["web1-20000101T010000Z.tar.gz", "web1-20000101T000000Z.tar.gz"]
    assert answer["skipped"] == []


def test_a_corrupted_newest_archive_is_skipped_reported_and_left_in_place(tmp_path):
    d = tmp_path / "web1"
    genuine(d, days=3)
    newest = "web1-20261127T030000Z.tar.gz"
    stored(d, newest, END + datetime.timedelta(hours=1))
    (d / newest).write_bytes(b"rewritten on the backup host")
    answer = br.choose(str(d), "web1")
    assert answer["name"] == "web1-20261127T020000Z.tar.gz"
    assert [s["name"] for s in answer["skipped"]] == [newest]
    assert "checksum mismatch" in answer["skipped"][0]["reason"]
    # Read-only: the restore reports; verify and rotation quarantine.
    assert (d / newest).exists() and not (d / ".quarantine").exists()


def test_an_archive_without_its_sidecar_or_named_in_the_future_is_skipped(tmp_path):
    d = tmp_path / "web1"
    genuine(d, days=3)
    unsigned = "web1-20261127T030000Z.tar.gz"
    stored(d, unsigned, END + datetime.timedelta(hours=1))
    (d / (unsigned + ".sha256")).unlink()
    future = "web1-20991231T000000Z.tar.gz"
    stored(d, future, END + datetime.timedelta(hours=2))
    answer = br.choose(str(d), "web1", max_future_skew=3600)
    assert answer["name"] == "web1-20261127T020000Z.tar.gz"
    reasons = {s["name"]: s["reason"] for s in answer["skipped"]}
    assert "in the future" in reasons[future] and "no .sha256" in reasons[unsigned]


def test_quarantined_and_other_sources_archives_are_never_chosen(tmp_path):
    d = tmp_path / "web1"
    genuine(d, days=2)
    stored(d / ".quarantine", "web1-20261127T050000Z.tar.gz", END + datetime.timedelta(hours=5))
    stored(d, "db1-20261127T060000Z.tar.gz", END + datetime.timedelta(hours=6))
    assert br.choose(str(d), "web1")["name"] == "web1-20261127T020000Z.tar.gz"


def test_a_day_takes_the_newest_received_verified_archive_named_that_day(tmp_path):
    d = tmp_path / "web1"
    genuine(d, days=5)
    # Two more of 25 Nov; the last received is corrupted, so the one before it is taken.
    stored(d, "web1-20261125T010000Z.tar.gz", END + datetime.timedelta(hours=1))
    stored(d, "web1-20261125T000000Z.tar.gz", END + datetime.timedelta(hours=2))
    (d / "web1-20261125T000000Z.tar.gz").write_bytes(b"flipped")
    for day in ("2026-11-25", "20261125"):
        answer = br.choose(str(d), "web1", day)
        assert answer["name"] == "web1-20261125T010000Z.tar.gz", day
        assert [s["name"] for s in answer["skipped"]] == ["web1-20261125T000000Z.tar.gz"]
    missing = br.choose(str(d), "web1", "1999-01-01")
    assert missing["name"] is None and len(missing["available"]) == 7


def test_a_named_archive_is_taken_as_asked_and_a_missing_one_is_none(tmp_path):
    d = tmp_path / "web1"
    genuine(d, days=2)
    name = "web1-20261126T020000Z.tar.gz"
    (d / name).write_bytes(b"corrupted: the restore's own hash check refuses it")
    assert br.choose(str(d), "web1", name)["name"] == name
    assert br.choose(str(d), "web1", "web1-20200101T000000Z.tar.gz")["name"] is None


@pytest.mark.parametrize("wanted", ["yesterday", "2026-11", "../web2-20261126T020000Z.tar.gz"])
def test_choose_refuses_what_is_not_latest_a_day_or_a_name(tmp_path, wanted):
    genuine(tmp_path / "web1", days=1)
    with pytest.raises(BackupError, match="use latest, a day"):
        br.choose(str(tmp_path / "web1"), "web1", wanted)


def test_choose_of_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(BackupError, match="is not a directory on the backup host"):
        br.choose(str(tmp_path / "nobody"), "nobody")
