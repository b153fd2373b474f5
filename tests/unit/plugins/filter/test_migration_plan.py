"""streamcloud.platform.migration_plan: pending, changed, missing and out-of-order migrations."""

import hashlib

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.streamcloud.platform.plugins.filter.migration_plan import FilterModule, migration_plan

FILES = ["/m/0001_create_users.sql", "/m/0002_create_contents.sql", "/m/0003_touch_updated_at.sql"]
SUMS = [hashlib.sha256(f"body of {f}".encode()).hexdigest() for f in FILES]


def row(version, checksum):
    return {"version": version, "name": "x", "checksum": checksum}


def test_first_run_applies_everything_in_order():
    plan = migration_plan(list(reversed(FILES)), list(reversed(SUMS)), [])
    names = ["0001_create_users.sql", "0002_create_contents.sql", "0003_touch_updated_at.sql"]
    assert [m["file"] for m in plan["pending"]] == names
    first = {"file": "0001_create_users.sql", "version": 1, "name": "create_users", "checksum": SUMS[0]}
    assert plan["pending"][0] == first
    assert (plan["changed"], plan["missing"], plan["applied_max"], plan["out_of_order"]) == ([], [], 0, [])


def test_applied_none_is_a_first_run():
    # In check mode on a new host the applied rows are not read at all.
    assert migration_plan(FILES, SUMS)["pending"] == migration_plan(FILES, SUMS, [])["pending"]


def test_converged_database_has_nothing_to_do():
    plan = migration_plan(FILES, SUMS, [row(1, SUMS[0]), row(2, SUMS[1]), row(3, SUMS[2])])
    assert plan["pending"] == []
    assert (plan["changed"], plan["missing"], plan["applied_max"], plan["out_of_order"]) == ([], [], 3, [])


def test_new_migration_above_the_newest_is_pending():
    plan = migration_plan(FILES, SUMS, [row(1, SUMS[0]), row(2, SUMS[1])])
    assert [m["version"] for m in plan["pending"]] == [3]
    assert plan["out_of_order"] == []


def test_edited_applied_migration_is_changed():
    plan = migration_plan(FILES, SUMS, [row(1, SUMS[0]), row(2, "0" * 64), row(3, SUMS[2])])
    assert plan["changed"] == ["0002_create_contents.sql"]
    assert plan["pending"] == []


def test_applied_migration_without_its_file_is_missing():
    plan = migration_plan(FILES[:2], SUMS[:2], [row(1, SUMS[0]), row(2, SUMS[1]), row(3, SUMS[2]), row(7, "f" * 64)])
    assert plan["missing"] == [3, 7]
    assert plan["applied_max"] == 7


def test_pending_below_the_newest_applied_is_out_of_order():
    plan = migration_plan(FILES, SUMS, [row(1, SUMS[0]), row(3, SUMS[2])])
    assert [m["file"] for m in plan["pending"]] == ["0002_create_contents.sql"]
    assert plan["out_of_order"] == ["0002_create_contents.sql"]


def test_versions_from_the_database_may_be_strings():
    plan = migration_plan(FILES, SUMS, [{"version": "1", "checksum": SUMS[0]}])
    assert [m["version"] for m in plan["pending"]] == [2, 3]


@pytest.mark.parametrize(
    ("files", "sums", "applied", "message"),
    [
        (["/m/1_users.sql"], ["a"], [], "not named NNNN_name.sql"),
        (["/m/0001_Users.sql"], ["a"], [], "not named NNNN_name.sql"),
        (["/m/0001_a.sql", "/m/0001_b.sql"], ["a", "b"], [], "share a number"),
        (FILES, SUMS[:2], [], "3 file\\(s\\) but 2 checksum\\(s\\)"),
        (FILES, SUMS, [{"checksum": "a"}], "each applied row needs an integer version"),
    ],
)
def test_refuses_bad_input(files, sums, applied, message):
    with pytest.raises(AnsibleFilterError, match=message):
        migration_plan(files, sums, applied)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"migration_plan": migration_plan}
