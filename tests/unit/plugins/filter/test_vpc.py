"""The vpc role's filters: subnet plan and checks, instance and volume plans, security group rules."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.streamcloud.platform.plugins.filter import vpc

ZONES = ["eu-west-3a", "eu-west-3b"]


def subnets(public=("10.20.0.0/24", "10.20.1.0/24"), private=("10.20.10.0/24", "10.20.11.0/24")):
    return vpc.vpc_subnets(list(public), list(private), "sc-dev", ZONES)


def test_subnets_are_named_by_tier_and_take_the_zones_in_turn():
    plan = subnets()
    assert [(s["name"], s["zone"], s["index"]) for s in plan] == [
        ("sc-dev-public-1", "eu-west-3a", 0), ("sc-dev-public-2", "eu-west-3b", 1),
        ("sc-dev-private-1", "eu-west-3a", 0), ("sc-dev-private-2", "eu-west-3b", 1)]


def test_more_subnets_than_zones_leave_the_zone_empty():
    assert subnets(public=("10.20.0.0/24", "10.20.1.0/24", "10.20.2.0/24"))[2]["zone"] == ""


@pytest.mark.parametrize(("cidr", "bad"), [
    ("10.20.0.0/24", False),
    ("10.20.0.5/24", True),      # host bits set
    ("10.99.0.0/24", True),      # outside the VPC
    ("10.20.0.0/28", False),     # the smallest AWS allows
    ("10.20.0.0/29", True),      # too small
    ("10.0.0.0/8", True),        # larger than the VPC
    ("10.20.255.240/28", False),  # the VPC's last block
])
def test_subnet_problems(cidr, bad):
    problems = vpc.vpc_subnet_problems(subnets(public=(cidr, "10.20.1.0/24")), "10.20.0.0/16")
    if bad:
        assert problems == [f"Subnet {cidr} (public) must be a network address (host bits zero), no smaller than /28, "
                            "inside vpc_cidr 10.20.0.0/16."]
    else:
        assert problems == []


def test_a_cidr_that_is_not_one_is_a_clear_error():
    with pytest.raises(AnsibleFilterError, match=r"vpc_cidr: '10\.20\.0\.0/40' is not an IPv4 CIDR"):
        vpc.vpc_subnet_problems(subnets(), "10.20.0.0/40")


def test_overlaps_name_each_pair_once():
    plan = subnets(private=("10.20.0.128/25", "10.20.11.0/24"))
    assert vpc.vpc_overlaps(plan) == ["10.20.0.0/24 (public) and 10.20.0.128/25 (private)"]
    assert vpc.vpc_overlaps(subnets()) == []
    # Adjacent ranges touch but do not overlap; a range inside another does.
    assert vpc.vpc_overlaps(subnets(public=("10.20.0.0/25", "10.20.0.128/25"), private=("10.20.0.0/16",))) == [
        "10.20.0.0/25 (public) and 10.20.0.0/16 (private)", "10.20.0.128/25 (public) and 10.20.0.0/16 (private)"]


INSTANCES = {
    "bastion": {"count": 1, "tier": "public"},
    "web": {"count": 2, "tier": "public", "instance_type": {"dev": "t3.small"}},
    "database": {"count": 1, "volume_size": 40, "volume_type": "io2"},
    "streaming": {"count": 0},
    "backup_server": {},
}
TYPES = {"dev": "t2.micro", "prod": "t2.medium"}


def plan(environment="dev", zone_count=2):
    protected = ["database", "backup_server"]
    return vpc.vpc_instance_plan(INSTANCES, "sc-dev", zone_count, environment, TYPES, "gp3", protected)


def test_instance_plan_public_first_zones_in_turn_per_tier():
    rows = [(h["name"], h["tier"], h["subnet_index"]) for h in plan()]
    assert rows == [("sc-dev-bastion-1", "public", 0), ("sc-dev-web-1", "public", 1), ("sc-dev-web-2", "public", 0),
                    ("sc-dev-database-1", "private", 0), ("sc-dev-backup_server-1", "private", 1)]


def test_instance_plan_defaults_and_overrides():
    hosts = {h["name"]: h for h in plan()}
    assert hosts["sc-dev-web-1"]["instance_type"] == "t3.small"
    assert hosts["sc-dev-bastion-1"]["instance_type"] == "t2.micro"
    assert (hosts["sc-dev-database-1"]["volume_size"], hosts["sc-dev-database-1"]["volume_type"]) == (40, "io2")
    assert (hosts["sc-dev-bastion-1"]["volume_size"], hosts["sc-dev-bastion-1"]["volume_type"]) == (16, "gp3")
    assert [h["service"] for h in plan() if h["protected"]] == ["database", "backup_server"]
    assert hosts["sc-dev-backup_server-1"]["dns_name"] == "backup-server-1"
    # A type missing for the environment is empty (assert.yml refuses it with the row's name).
    assert {h["instance_type"] for h in plan("staging")} == {""}
    # No zone known yet: every host in subnet 0 rather than a division by zero.
    assert {h["subnet_index"] for h in plan(zone_count=0)} == {0}


def test_data_volume_plan():
    volumes = vpc.vpc_data_volume_plan(plan(), {"database": {"size": 50, "mount": "/var/lib/postgresql"},
                                                "backup_server": {"size": "200"}})
    assert [(v["volume_name"], v["data_size"], v["mount"]) for v in volumes] == [
        ("sc-dev-database-1-data", 50, "/var/lib/postgresql"), ("sc-dev-backup_server-1-data", 200, "/srv/data")]


RULES = {
    "bastion": [{"ports": [22], "from": "admin"}],
    "web": [{"ports": [443, 80], "from": "world", "desc": "HTTPS"}, {"ports": [22], "from": ["bastion", "vpc"]}],
    "database": [{"ports": [5432], "from": ["web", "backup_server"], "proto": "tcp"}],
}


def test_rule_sources_each_once_in_order():
    assert vpc.vpc_rule_sources(RULES) == ["admin", "world", "bastion", "vpc", "web", "backup_server"]


def test_security_group_rules_one_per_source():
    ids = {"bastion": "sg-b", "web": "sg-w", "backup_server": "sg-k"}
    assert vpc.vpc_sg_rules(RULES["web"], ["203.0.113.0/24"], "10.20.0.0/16", ids) == [
        {"proto": "tcp", "ports": ["443", "80"], "rule_desc": "HTTPS", "cidr_ip": "0.0.0.0/0"},
        {"proto": "tcp", "ports": ["22"], "rule_desc": "bastion", "group_id": "sg-b"},
        {"proto": "tcp", "ports": ["22"], "rule_desc": "vpc", "cidr_ip": "10.20.0.0/16"}]
    assert vpc.vpc_sg_rules(RULES["bastion"], ["203.0.113.0/24"], "10.20.0.0/16", ids) == [
        {"proto": "tcp", "ports": ["22"], "rule_desc": "admin", "cidr_ip": ["203.0.113.0/24"]}]
    assert vpc.vpc_sg_rules(None, [], "10.20.0.0/16", ids) == []
