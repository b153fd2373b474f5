"""streamcloud.platform.pgtune: the formulas, their bounds, and the values the role's Jinja gave before."""

import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.streamcloud.platform.plugins.filter.pgtune import FilterModule, pgtune

JINJA_VALUES = json.loads((Path(__file__).parent / "pgtune_jinja_values.json").read_text())["cases"]


CASE_ID = "{memory_mb}MB-{cpus}cpu-{share}-{max_connections}-{storage}"


@pytest.mark.parametrize("case", JINJA_VALUES, ids=lambda c: CASE_ID.format(**c["in"]))
def test_same_values_as_the_jinja_formulas(case):
    given = case["in"]
    result = pgtune(given["memory_mb"], cpus=given["cpus"], memory_share=given["share"],
                    max_connections=given["max_connections"], storage=given["storage"])
    assert result == case["tuning"]
    # Same types too: the conf template quotes strings and writes numbers bare.
    assert {k: type(v) for k, v in result.items()} == {k: type(v) for k, v in case["tuning"].items()}


def test_one_gib_one_cpu():
    t = pgtune(1024, cpus=1)
    assert (t["shared_buffers"], t["effective_cache_size"], t["maintenance_work_mem"], t["work_mem"]) == (
        "192MB", "576MB", "48MB", "1966kB")
    assert (t["min_wal_size"], t["max_wal_size"]) == ("256MB", "1024MB")
    assert (t["max_worker_processes"], t["max_parallel_workers"], t["max_parallel_workers_per_gather"]) == (8, 1, 1)


def test_four_gib_two_cpus():
    t = pgtune(4096, cpus=2)
    assert (t["shared_buffers"], t["effective_cache_size"], t["maintenance_work_mem"], t["work_mem"]) == (
        "768MB", "2304MB", "192MB", "7864kB")
    assert (t["min_wal_size"], t["max_wal_size"]) == ("1024MB", "4096MB")
    assert (t["max_parallel_workers"], t["max_parallel_workers_per_gather"], t["max_parallel_maintenance_workers"]) == (
        2, 1, 1)


def test_sixteen_gib_sixteen_cpus():
    t = pgtune(16384, cpus=16)
    assert (t["shared_buffers"], t["effective_cache_size"], t["maintenance_work_mem"], t["work_mem"]) == (
        "3072MB", "9216MB", "768MB", "31457kB")
    assert (t["max_worker_processes"], t["max_parallel_workers"], t["max_parallel_workers_per_gather"]) == (16, 16, 8)


def test_caps_shared_buffers_and_maintenance_work_mem():
    t = pgtune(65536, cpus=4, memory_share=1)
    assert t["shared_buffers"] == "8192MB"  # not 16384MB
    assert t["maintenance_work_mem"] == "2048MB"  # not 4096MB
    assert t["effective_cache_size"] == "49152MB"


def test_floors_on_a_small_share():
    t = pgtune(256, cpus=1, memory_share=0.05, max_connections=5000)
    # 12 MB for PostgreSQL: the floors of 16 MB and 1 MB hold.
    assert (t["shared_buffers"], t["maintenance_work_mem"], t["work_mem"]) == ("16MB", "16MB", "1024kB")


def test_wal_grows_at_two_gib_of_host_memory():
    assert pgtune(2047, cpus=1)["max_wal_size"] == "1024MB"
    assert pgtune(2048, cpus=1)["max_wal_size"] == "4096MB"


def test_storage():
    assert {k: pgtune(4096, 2, storage="ssd")[k] for k in ("random_page_cost", "effective_io_concurrency")} == {
        "random_page_cost": 1.1, "effective_io_concurrency": 200}
    assert {k: pgtune(4096, 2, storage="hdd")[k] for k in ("random_page_cost", "effective_io_concurrency")} == {
        "random_page_cost": 4, "effective_io_concurrency": 2}


def test_reads_numbers_as_the_role_passes_them():
    # Extra vars and templated defaults arrive as strings.
    assert pgtune("4096", cpus="2", memory_share="0.75", max_connections="100") == pgtune(4096, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_mb": 255, "cpus": 1}, "memory_mb must be at least 256"),
        ({"memory_mb": "lots", "cpus": 1}, "memory_mb must be a number"),
        ({"memory_mb": 1024, "cpus": 0}, "cpus must be at least 1"),
        ({"memory_mb": 1024, "cpus": 1, "max_connections": 9}, "max_connections must be at least 10"),
        ({"memory_mb": 1024, "cpus": 1, "memory_share": 0}, "memory_share must be above 0 and at most 1"),
        ({"memory_mb": 1024, "cpus": 1, "memory_share": 1.01}, "memory_share must be above 0 and at most 1"),
        ({"memory_mb": 1024, "cpus": 1, "storage": "nvme"}, "storage must be one of ssd, hdd"),
    ],
)
def test_refuses_what_the_role_refuses(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        pgtune(**kwargs)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"pgtune": pgtune}
