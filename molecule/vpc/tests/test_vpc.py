"""The AWS side of dev and prod, as moto's server holds it after converge.

Every resource and rule is read back with boto3 and compared with the design (roles/vpc), then the
inventory plugin, check mode, bad input and teardown are exercised with the real playbooks. The
teardown tests come last in this file: they remove dev, then prod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROVISION = REPO / "playbooks" / "provision.yml"
TEARDOWN = REPO / "playbooks" / "teardown.yml"
ENDPOINT = f"http://127.0.0.1:{os.environ.get('VPC_MOTO_PORT', '5055')}"
REGION = "eu-west-3"
SERVICES = ["web", "streaming", "database", "monitoring", "ftp", "backup_server", "bastion"]
PUBLIC = {"bastion", "web", "ftp"}
ADMIN_CIDRS = {"203.0.113.0/24", "198.51.100.7/32"}
ENVS = {
    "dev": {"cidr": "10.20.0.0/16", "public": {"10.20.0.0/24", "10.20.1.0/24"},
            "private": {"10.20.10.0/24", "10.20.11.0/24"}, "nat": 0, "type": "t2.micro"},
    "prod": {"cidr": "10.10.0.0/16", "public": {"10.10.0.0/24", "10.10.1.0/24"},
             "private": {"10.10.10.0/24", "10.10.11.0/24"}, "nat": 2, "type": "t2.medium"},
}


@pytest.fixture(scope="module")
def ec2():
    return boto3.client("ec2", endpoint_url=ENDPOINT, region_name=REGION)


def env_filter(env: str, project: str = "streamcloud") -> list[dict]:
    return [{"Name": "tag:Project", "Values": [project]}, {"Name": "tag:Environment", "Values": [env]}]


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def owned(items: list[dict], env: str, project: str = "streamcloud") -> list[dict]:
    """Checks the tags here too: moto ignores tag filters on some resource types."""
    return [i for i in items if tags(i).get("Project") == project and tags(i).get("Environment") == env]


def instances(ec2, env: str) -> list[dict]:
    res = ec2.describe_instances(Filters=[*env_filter(env), {"Name": "instance-state-name", "Values": ["running"]}])
    return owned([i for r in res["Reservations"] for i in r["Instances"]], env)


def vpc_of(ec2, env: str) -> dict:
    vpcs = owned(ec2.describe_vpcs(Filters=env_filter(env))["Vpcs"], env)
    assert len(vpcs) == 1, f"{env}: expected one VPC, found {len(vpcs)}"
    return vpcs[0]


def inventory(env: str) -> dict:
    """Everything the environment owns, by kind (ids), as the API lists it."""
    ec2 = boto3.client("ec2", endpoint_url=ENDPOINT, region_name=REGION)
    f = env_filter(env)
    return {
        "instances": sorted(i["InstanceId"] for i in instances(ec2, env)),
        "vpcs": sorted(v["VpcId"] for v in owned(ec2.describe_vpcs(Filters=f)["Vpcs"], env)),
        "subnets": sorted(s["SubnetId"] for s in owned(ec2.describe_subnets(Filters=f)["Subnets"], env)),
        "igws": sorted(g["InternetGatewayId"] for g in
                       owned(ec2.describe_internet_gateways(Filters=f)["InternetGateways"], env)),
        "nats": sorted(n["NatGatewayId"] for n in owned(ec2.describe_nat_gateways()["NatGateways"], env)
                       if n["State"] in ("pending", "available")),
        "eips": sorted(a["AllocationId"] for a in owned(ec2.describe_addresses(Filters=f)["Addresses"], env)),
        "route_tables": sorted(r["RouteTableId"] for r in
                               owned(ec2.describe_route_tables(Filters=f)["RouteTables"], env)),
        "security_groups": sorted(g["GroupId"] for g in
                                  owned(ec2.describe_security_groups(Filters=f)["SecurityGroups"], env)),
        "key_pairs": sorted(k["KeyName"] for k in owned(ec2.describe_key_pairs(Filters=f)["KeyPairs"], env)),
    }


def plain(value):
    """ansible-inventory --list marks values from the API as unsafe: {"__ansible_unsafe": value}."""
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def ansible_env() -> dict:
    return dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")


def run(playbook: Path, env: str, extra: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """The playbook as an operator runs it, with moto's endpoint on top."""
    extra_vars = {"vpc_environment": env, "vpc_aws_endpoint_url": ENDPOINT,
                  "vpc_ami_name_pattern": "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*", **(extra or {})}
    argv = ["ansible-playbook", "-i", "localhost,", str(playbook), "-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=ansible_env(), cwd=REPO)


def recap(result: subprocess.CompletedProcess) -> dict:
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("localhost") and "changed=" in ln)
    return {k: int(v) for k, v in (f.split("=") for f in line.split()[2:])}


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_vpc_with_dns(ec2, env):
    vpc = vpc_of(ec2, env)
    assert vpc["CidrBlock"] == ENVS[env]["cidr"]
    for attribute, key in (("enableDnsSupport", "EnableDnsSupport"), ("enableDnsHostnames", "EnableDnsHostnames")):
        value = ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute=attribute)[key]["Value"]
        assert value is True, f"{env}: {attribute} is off"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_subnets_public_and_private_in_two_zones(ec2, env):
    vpc = vpc_of(ec2, env)
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    by_tier = {"public": [], "private": []}
    for s in subnets:
        by_tier[tags(s)["Tier"]].append(s)
        assert s["MapPublicIpOnLaunch"] is (tags(s)["Tier"] == "public"), s["SubnetId"]
    for tier in ("public", "private"):
        assert {s["CidrBlock"] for s in by_tier[tier]} == ENVS[env][tier]
        assert len({s["AvailabilityZone"] for s in by_tier[tier]}) == 2, f"{env} {tier}: not in two zones"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_routes(ec2, env):
    vpc = vpc_of(ec2, env)
    igws = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])["InternetGateways"]
    assert len(igws) == 1
    igw = igws[0]["InternetGatewayId"]
    nats = [n for n in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["NatGateways"]
            if n["State"] == "available"]
    assert len(nats) == ENVS[env]["nat"]
    subnets = {s["SubnetId"]: s for s in
               ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]}
    in_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    tables = owned(ec2.describe_route_tables(Filters=in_vpc)["RouteTables"], env)
    seen = set()
    for table in tables:
        default = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        for assoc in table["Associations"]:
            subnet = subnets[assoc["SubnetId"]]
            seen.add(subnet["SubnetId"])
            if tags(subnet)["Tier"] == "public":
                assert [r.get("GatewayId") for r in default] == [igw]
            elif ENVS[env]["nat"] == 0:
                assert default == [], f"{env}: a private subnet has a default route without NAT"
            else:
                nat = next(n for n in nats if n["NatGatewayId"] == default[0]["NatGatewayId"])
                # per_az: each private subnet goes out through the NAT gateway of its own zone.
                nat_zone = next(s["AvailabilityZone"] for s in subnets.values() if s["SubnetId"] == nat["SubnetId"])
                assert nat_zone == subnet["AvailabilityZone"]
                assert tags(subnets[nat["SubnetId"]])["Tier"] == "public"
    assert seen == set(subnets), f"{env}: subnets without a route table of ours"


# --------------------------------------------------------------------------------------------
# Security groups
# --------------------------------------------------------------------------------------------
def rules_of(ec2, env: str) -> dict[str, set[tuple]]:
    """service -> {(proto, from_port, to_port, source)}; source is a CIDR or the source service."""
    vpc = vpc_of(ec2, env)
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["SecurityGroups"]
    name_of = {g["GroupId"]: tags(g).get("Service", g["GroupName"]) for g in groups}
    out = {}
    for g in groups:
        if "Service" not in tags(g):
            continue
        rules = set()
        for p in g["IpPermissions"]:
            key = (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"))
            rules |= {(*key, r["CidrIp"]) for r in p.get("IpRanges", [])}
            rules |= {(*key, name_of[r["GroupId"]]) for r in p.get("UserIdGroupPairs", [])}
            assert not p.get("Ipv6Ranges"), f"{env}: IPv6 rule on {g['GroupName']}"
        out[tags(g)["Service"]] = rules
    return out


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_security_groups_least_privilege(ec2, env):
    cidr = ENVS[env]["cidr"]
    ssh = lambda src: ("tcp", 22, 22, src)  # noqa: E731
    expected = {
        "bastion": {ssh(c) for c in ADMIN_CIDRS},
        "web": {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0"), ssh("bastion")},
        "streaming": {("tcp", 8000, 8000, "web"), ssh("bastion")},
        "database": {("tcp", 5432, 5432, "web"), ("tcp", 5432, 5432, "ftp"), ssh("bastion")},
        "monitoring": {("tcp", 9200, 9200, cidr), ("tcp", 5601, 5601, "web"), ssh("bastion")},
        "ftp": {("tcp", 21, 21, "0.0.0.0/0"), ("tcp", 2222, 2222, "0.0.0.0/0"),
                ("tcp", 49152, 49407, "0.0.0.0/0"), ssh("bastion")},
        "backup_server": {ssh(cidr)},
    }
    assert rules_of(ec2, env) == expected


# --------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_instances_per_service(ec2, env):
    found = instances(ec2, env)
    assert sorted(tags(i)["Service"] for i in found) == sorted(SERVICES)
    vpc = vpc_of(ec2, env)
    subnets = {s["SubnetId"]: s for s in
               ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]}
    groups = {g["GroupId"]: tags(g).get("Service") for g in
              ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["SecurityGroups"]}
    image = ec2.describe_images(ImageIds=[found[0]["ImageId"]])["Images"][0]
    assert image["OwnerId"] == "099720109477" and image["Name"].startswith("ubuntu/images/")
    for i in found:
        t = tags(i)
        service = t["Service"]
        assert i["InstanceType"] == ENVS[env]["type"], t["Name"]
        assert i["KeyName"] == f"streamcloud-{env}"
        assert t["Name"] == f"streamcloud-{env}-{service}-1"
        assert (t["Project"], t["Environment"]) == ("streamcloud", env)
        tier = "public" if service in PUBLIC else "private"
        assert tags(subnets[i["SubnetId"]])["Tier"] == tier == t["Tier"], t["Name"]
        assert [groups[g["GroupId"]] for g in i["SecurityGroups"]] == [service]
        assert bool(i.get("PublicIpAddress")) is (tier == "public"), t["Name"]
        assert i["MetadataOptions"]["HttpTokens"] == "required"
        root = next(b for b in i["BlockDeviceMappings"] if b["DeviceName"] == i["RootDeviceName"])
        volume = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
        assert volume["VolumeType"] == "gp3" and volume["Encrypted"] is True
    sizes = {tags(i)["Service"]: ec2.describe_volumes(VolumeIds=[
        next(b for b in i["BlockDeviceMappings"] if b["DeviceName"] == i["RootDeviceName"])["Ebs"]["VolumeId"]
    ])["Volumes"][0]["Size"] for i in found}
    assert sizes == {"bastion": 8, "web": 16, "ftp": 32, "streaming": 16, "database": 32,
                     "monitoring": 64, "backup_server": 200}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_resource_tagged(env):
    found = inventory(env)
    expected = {"instances": 7, "vpcs": 1, "subnets": 4, "igws": 1, "nats": ENVS[env]["nat"],
                "eips": ENVS[env]["nat"], "route_tables": 3, "security_groups": 7, "key_pairs": 1}
    assert {k: len(v) for k, v in found.items()} == expected


# --------------------------------------------------------------------------------------------
# Check mode and idempotence against the provisioned environments
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_check_mode_reports_nothing_to_do(env):
    before = inventory(env)
    result = run(PROVISION, env, check=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result)["changed"] == 0, result.stdout[-3000:]
    assert inventory(env) == before


def test_check_mode_on_a_new_environment_changes_nothing(ec2):
    result = run(PROVISION, "dev", extra={"vpc_project": "checkmode"}, check=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "would be created" in result.stdout
    assert inventory_project_empty(ec2, "checkmode")


def inventory_project_empty(ec2, project: str) -> bool:
    f = [{"Name": "tag:Project", "Values": [project]}]
    return not (ec2.describe_vpcs(Filters=f)["Vpcs"] or ec2.describe_key_pairs(Filters=f)["KeyPairs"]
                or ec2.describe_instances(Filters=f)["Reservations"])


# --------------------------------------------------------------------------------------------
# Bad input fails before any API call
# --------------------------------------------------------------------------------------------
BAD_INPUT = {
    "overlapping subnets": ({"vpc_private_subnet_cidrs": ["10.20.0.128/25", "10.20.11.0/24"]},
                            "Overlapping subnet CIDRs"),
    "unknown service": ({"vpc_instances": {"web": {"count": 1, "tier": "public"},
                                           "mail": {"count": 1, "tier": "private"},
                                           "bastion": {"count": 1, "tier": "public"}}},
                        "unknown in vpc_instances: mail"),
    "too many zones": ({"vpc_az_count": 4,
                        "vpc_public_subnet_cidrs": [f"10.20.{n}.0/24" for n in range(4)],
                        "vpc_private_subnet_cidrs": [f"10.20.{n}.0/24" for n in range(10, 14)]},
                       "eu-west-3 has 3"),
    "missing admin CIDR": ({"vpc_admin_cidrs": []}, "vpc_admin_cidrs must list"),
    "world as admin CIDR": ({"vpc_admin_cidrs": ["0.0.0.0/0"]}, "0.0.0.0/0 is refused"),
    "subnet outside the VPC": ({"vpc_public_subnet_cidrs": ["10.99.0.0/24", "10.20.1.0/24"]}, "inside vpc_cidr"),
    "unknown environment": ({"vpc_environment": "staging"}, "vpc_environment must name an environment"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_before_any_api_call(ec2, case):
    extra, message = BAD_INPUT[case]
    # A project of its own: anything created would show up under it. The endpoint is a closed port,
    # so a single API call would fail with a connection error instead of the expected message.
    extra = {**extra, "vpc_project": "badinput", "vpc_aws_endpoint_url": "http://127.0.0.1:9"}
    result = run(PROVISION, extra.pop("vpc_environment", "dev"), extra=extra)
    assert result.returncode != 0
    # Failures go to stdout or stderr depending on the callback settings (Molecule sends them to stderr).
    output = result.stdout + result.stderr
    assert message in output, output[-3000:]
    failed_task = [ln for ln in result.stdout.splitlines() if ln.startswith("TASK [")][-1]
    assert "Check " in failed_task, failed_task
    assert inventory_project_empty(ec2, "badinput")


# --------------------------------------------------------------------------------------------
# Inventory plugin
# --------------------------------------------------------------------------------------------
def test_inventory_plugin_groups_and_connection(tmp_path, ec2):
    """The shipped inventory, pointed at moto: groups by Service, private addresses, ProxyJump."""
    env = "prod"
    shipped = yaml.safe_load((REPO / "inventories" / env / "aws_ec2.yml").read_text())
    assert "endpoint_url" not in shipped, "the shipped inventory must talk to real AWS"
    test_copy = dict(shipped, endpoint_url=ENDPOINT, regions=[REGION],
                     cache_connection=str(tmp_path / "cache"))
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "aws_ec2.yml").write_text(yaml.safe_dump(test_copy))
    shutil.copytree(REPO / "inventories" / env / "group_vars", inv / "group_vars")

    listed = subprocess.run(["ansible-inventory", "-i", str(inv), "--list"], capture_output=True, text=True,
                            env=ansible_env(), cwd=REPO, timeout=300, check=True)
    data = json.loads(listed.stdout)
    for service in SERVICES:
        assert data[service]["hosts"] == [f"streamcloud-{env}-{service}-1"], service
    hostvars = data["_meta"]["hostvars"]
    assert len(hostvars) == 7, "another environment's hosts leaked into the inventory"
    by_name = {tags(i)["Name"]: i for i in instances(ec2, env)}
    for name, hv in hostvars.items():
        expected = by_name[name]["PublicIpAddress" if plain(hv["service"]) == "bastion" else "PrivateIpAddress"]
        assert plain(hv["ansible_host"]) == expected, name
    assert (tmp_path / "cache").is_dir() and any((tmp_path / "cache").iterdir()), "inventory cache not written"

    # The connection variables are templates over other hosts: let Ansible resolve them.
    resolved = subprocess.run(
        ["ansible", "-i", str(inv), "all", "-o", "-m", "ansible.builtin.debug",
         "-a", "msg={{ ansible_host }}|{{ ansible_ssh_common_args }}"],
        capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=300, check=True).stdout
    bastion_ip = by_name[f"streamcloud-{env}-bastion-1"]["PublicIpAddress"]
    lines = {ln.split(" | ")[0]: ln for ln in resolved.splitlines() if " | " in ln}
    assert len(lines) == 7, resolved
    for name, line in lines.items():
        if name.endswith("-bastion-1"):
            assert f'"{bastion_ip}|"' in line, line
        else:
            assert f"-o ProxyJump=ubuntu@{bastion_ip}" in line, line
            assert by_name[name]["PrivateIpAddress"] in line, line


# --------------------------------------------------------------------------------------------
# Teardown (last: removes dev, then prod)
# --------------------------------------------------------------------------------------------
def test_teardown_refuses_prod_without_confirmation():
    before = inventory("prod")
    result = run(TEARDOWN, "prod")
    assert result.returncode != 0
    assert "vpc_teardown_confirm=prod" in result.stdout + result.stderr
    assert inventory("prod") == before


def test_teardown_dev_leaves_prod_alone():
    prod_before = inventory("prod")
    result = run(TEARDOWN, "dev")
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(not ids for ids in inventory("dev").values()), inventory("dev")
    assert inventory("prod") == prod_before
    again = run(TEARDOWN, "dev")
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-3000:]


def test_teardown_prod_with_confirmation(ec2):
    result = run(TEARDOWN, "prod", extra={"vpc_teardown_confirm": "prod"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(not ids for ids in inventory("prod").values()), inventory("prod")
    # Only moto's default VPC is left.
    assert [v.get("IsDefault") for v in ec2.describe_vpcs()["Vpcs"]] == [True]
