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
PROTECTED = {"database", "backup_server"}
DATA_VOLUMES = {"database": 50, "backup_server": 200, "monitoring": 64}
AMI_PATTERN = "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*"
ADMIN_CIDRS = {"203.0.113.0/24", "198.51.100.7/32"}
ENVS = {
    "dev": {"cidr": "10.20.0.0/16", "public": {"10.20.0.0/24", "10.20.1.0/24"},
            "private": {"10.20.10.0/24", "10.20.11.0/24"}, "nat": 1, "type": "t2.micro"},
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
                  "vpc_ami_name_pattern": AMI_PATTERN, **(extra or {})}
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
                if ENVS[env]["nat"] > 1:
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
        # Relays (the other streaming hosts) pull the mounts from the master.
        "streaming": {("tcp", 8000, 8000, "web"), ("tcp", 8000, 8000, "streaming"), ssh("bastion")},
        "database": {("tcp", 5432, 5432, "web"), ("tcp", 5432, 5432, "ftp"), ssh("bastion")},
        "monitoring": {("tcp", 9200, 9200, cidr), ("tcp", 5601, 5601, "web"), ssh("bastion")},
        "ftp": {("tcp", 21, 21, "0.0.0.0/0"), ("tcp", 2222, 2222, "0.0.0.0/0"),
                ("tcp", 49152, 49407, "0.0.0.0/0"), ssh("bastion")},
        # Backups: SSH from the groups of the hosts that back up, not from the whole VPC (finding 9).
        "backup_server": {ssh(s) for s in ("bastion", "web", "streaming", "database", "monitoring", "ftp")},
    }
    # The web host's reverse proxy reaches the file web client on ftp (finding 9).
    expected["ftp"].add(("tcp", 8080, 8080, "web"))
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
                     "monitoring": 64, "backup_server": 16}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_instances_spread_over_the_zones(ec2, env):
    """Finding 6: each tier's hosts use both zones, so prod's second NAT gateway serves hosts."""
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(Filters=env_filter(env))["Subnets"]}
    for tier in ("public", "private"):
        zones = {subnets[i["SubnetId"]]["AvailabilityZone"] for i in instances(ec2, env) if tags(i)["Tier"] == tier}
        assert len(zones) == 2, f"{env} {tier}: all hosts in {zones}"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_termination_protection(ec2, env):
    """Finding 7: the database and backup hosts cannot be terminated by accident; the others can."""
    for i in instances(ec2, env):
        value = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="disableApiTermination")
        assert value["DisableApiTermination"]["Value"] is (tags(i)["Service"] in PROTECTED), tags(i)["Name"]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_stop_protection(ec2, env):
    """Deliver: stop protection on the database and backup hosts (a stop request is refused); not on the others."""
    for i in instances(ec2, env):
        value = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="disableApiStop")
        assert value["DisableApiStop"]["Value"] is (tags(i)["Service"] in PROTECTED), tags(i)["Name"]
    database = next(i for i in instances(ec2, env) if tags(i)["Service"] == "database")
    with pytest.raises(ec2.exceptions.ClientError, match="disableApiStop"):
        ec2.stop_instances(InstanceIds=[database["InstanceId"]])


def data_volumes(ec2, env: str) -> list[dict]:
    found = ec2.describe_volumes(Filters=[*env_filter(env), {"Name": "tag:Role", "Values": ["data"]}])["Volumes"]
    return owned(found, env)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_data_volumes(ec2, env):
    """Finding 7: database, backup store and Elasticsearch data on their own volumes, kept on termination."""
    by_name = {tags(i)["Name"]: i for i in instances(ec2, env)}
    volumes = {tags(v)["Name"]: v for v in data_volumes(ec2, env)}
    assert set(volumes) == {f"streamcloud-{env}-{s}-1-data" for s in DATA_VOLUMES}
    for name, v in volumes.items():
        host = by_name[name.removesuffix("-data")]
        assert (v["VolumeType"], v["Encrypted"], v["Size"]) == ("gp3", True, DATA_VOLUMES[tags(host)["Service"]])
        assert tags(v)["Service"] == tags(host)["Service"] and tags(v)["Mount"] == "/srv/data"
        [mapping] = [b for b in host["BlockDeviceMappings"] if b["Ebs"]["VolumeId"] == v["VolumeId"]]
        assert mapping["DeviceName"] == "/dev/sdf"
        assert mapping["Ebs"]["DeleteOnTermination"] is False, name


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_public_hosts_have_elastic_ips(ec2, env):
    """Finding 10: bastion, web and ftp keep their public address across stop/start."""
    by_name = {tags(i)["Name"]: i for i in instances(ec2, env)}
    eips = [a for a in owned(ec2.describe_addresses(Filters=env_filter(env))["Addresses"], env)
            if tags(a).get("Role") == "host"]
    assert {tags(a)["Name"] for a in eips} == {f"streamcloud-{env}-{s}-1" for s in PUBLIC}
    for a in eips:
        assert a.get("InstanceId") == by_name[tags(a)["Name"]]["InstanceId"], tags(a)["Name"]
        assert by_name[tags(a)["Name"]]["PublicIpAddress"] == a["PublicIp"]


def private_records(env: str) -> tuple[dict, dict[str, set[str]]]:
    r53 = boto3.client("route53", endpoint_url=ENDPOINT, region_name=REGION)
    zones = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == f"{env}.streamcloud.internal."]
    if not zones:
        return {}, {}
    [zone] = zones
    records = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    return (r53.get_hosted_zone(Id=zone["Id"]),
            {r["Name"]: {x["Value"] for x in r.get("ResourceRecords", [])} for r in records if r["Type"] == "A"})


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_private_zone_and_records(ec2, env):
    """Finding 4: names that resolve inside the VPC, per host and per service."""
    zone, records = private_records(env)
    assert zone, f"no private zone {env}.streamcloud.internal"
    assert zone["HostedZone"]["Config"]["PrivateZone"] is True
    assert [v["VPCId"] for v in zone["VPCs"]] == [vpc_of(ec2, env)["VpcId"]]
    ip = {tags(i)["Service"]: i["PrivateIpAddress"] for i in instances(ec2, env)}
    domain = f"{env}.streamcloud.internal."
    expected = {f"{s.replace('_', '-')}-1.{domain}": {ip[s]} for s in SERVICES}
    expected |= {f"{name}.{domain}": {ip[s]} for name, s in {
        "backup": "backup_server", "database": "database", "elasticsearch": "monitoring", "kibana": "monitoring",
        "icecast": "streaming", "web": "web", "ftp": "ftp", "bastion": "bastion"}.items()}
    assert records == expected


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_resource_tagged(env):
    found = inventory(env)
    expected = {"instances": 7, "vpcs": 1, "subnets": 4, "igws": 1, "nats": ENVS[env]["nat"],
                "eips": ENVS[env]["nat"] + len(PUBLIC), "route_tables": 3, "security_groups": 7, "key_pairs": 1}
    assert {k: len(v) for k, v in found.items()} == expected


# --------------------------------------------------------------------------------------------
# Check mode and idempotence against the provisioned environments
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["prod"])
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
    # Findings 4 and 6: a service the others need, and a zone the region does not have.
    "no backup host": ({"vpc_instances": {"bastion": {"count": 1, "tier": "public"},
                                          "web": {"count": 1, "tier": "public"},
                                          "backup_server": {"count": 0, "tier": "private"}}},
                       "gives no host to backup_server"),
    "unknown zone": ({"vpc_availability_zones": ["eu-west-3a", "eu-west-3z"]}, "eu-west-3z"),
}


# A project of its own: anything created would show up under it. The endpoint is a closed port, so
# a single API call would fail with a connection error instead of the expected message.
NO_API = {"vpc_project": "badinput", "vpc_aws_endpoint_url": "http://127.0.0.1:9"}


@pytest.fixture(scope="module")
def bad_input(role_cases):
    """The cases of the role's own checks in ONE ansible-playbook run (each case a block of its own),
    with dev's settings as playbooks/provision.yml loads them; the case that names no environment
    stops in provision.yml itself, so it is run through provision.yml, on its own."""
    role_level = {case: {"vpc_ami_name_pattern": AMI_PATTERN, **extra, **NO_API}
                  for case, (extra, _) in BAD_INPUT.items() if "vpc_environment" not in extra}
    batch = role_cases("localhost", "streamcloud.platform.vpc", role_level,
                       {"vpc_environment": "dev", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                       play={"connection": "local", "gather_facts": False,
                             "vars_files": [str(REPO / "inventories" / "dev" / "group_vars" / "all" / "vpc.yml")]},
                       inventory="localhost,")
    extra = {**BAD_INPUT["unknown environment"][0], **NO_API}
    alone = run(PROVISION, extra.pop("vpc_environment"), extra=extra)
    return {"batch": batch, "alone": alone}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_before_any_api_call(ec2, bad_input, case):
    message = BAD_INPUT[case][1]
    if case == "unknown environment":
        result = bad_input["alone"]
        assert result.returncode != 0
        # Failures go to stdout or stderr depending on the callback settings (Molecule sends them to stderr).
        output = result.stdout + result.stderr
        assert message in output, output[-3000:]
        failed_task = [ln for ln in result.stdout.splitlines() if ln.startswith("TASK [")][-1]
    else:
        batch = bad_input["batch"]
        assert batch.failed(case), batch.sections.get(case, batch.output)[-3000:]
        assert message in batch.text(case), batch.text(case)[-3000:]
        failed_task = batch.failed_task(case)
    assert "Check " in failed_task, failed_task
    assert inventory_project_empty(ec2, "badinput")


# --------------------------------------------------------------------------------------------
# Changes to a provisioned environment (findings 1, 3, 7, 8)
# --------------------------------------------------------------------------------------------
def test_new_image_launches_no_instance_and_is_reported(ec2):
    """Finding 1: Canonical publishes a new image; a re-run keeps the instances and says so."""
    before = inventory("prod")
    old_image = instances(ec2, "prod")[0]["ImageId"]
    # A copy of the image in use under a newer build date (moto's register_image drops the architecture
    # the lookup filters on); moto files it under its own account: let the lookup see that owner.
    new_image = ec2.copy_image(SourceImageId=old_image, SourceRegion=REGION,
                               Name="ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20991231")["ImageId"]
    result = run(PROVISION, "prod", extra={"vpc_ami_owners": ["099720109477", "123456789012"]})
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result)["changed"] == 0, result.stdout[-3000:]
    assert inventory("prod") == before
    assert f"the current image is {new_image}" in result.stdout and old_image in result.stdout
    assert "Image changed: streamcloud-prod-" in result.stdout


def test_shrinking_a_protected_environment_needs_confirmation():
    """Finding 8: prod's instances go only with vpc_remove_confirm; nothing changes without it."""
    before = inventory("prod")
    table = yaml.safe_load((REPO / "roles" / "vpc" / "defaults" / "main.yml").read_text())["vpc_instances"]
    del table["streaming"]
    result = run(PROVISION, "prod", extra={"vpc_instances": table})
    assert result.returncode != 0
    assert "vpc_remove_confirm=prod" in result.stdout + result.stderr
    assert "streamcloud-prod-streaming-1" in result.stdout + result.stderr
    assert recap(result)["changed"] == 0
    assert inventory("prod") == before


@pytest.fixture(scope="module")
def dev_changed(ec2):
    """dev after an accident and two configuration changes, provisioned once again:
    the database instance terminated (its protection lifted first), NAT switched to none, and the
    streaming row removed from the instance table."""
    [db] = [i for i in instances(ec2, "dev") if tags(i)["Service"] == "database"]
    before = {"db": db, "nats": inventory("dev")["nats"],
              "nat_eips": [a for a in owned(ec2.describe_addresses(Filters=env_filter("dev"))["Addresses"], "dev")
                           if tags(a)["Name"].startswith("streamcloud-dev-nat-")],
              "volume": next(v for v in data_volumes(ec2, "dev") if tags(v)["Service"] == "database")}
    ec2.modify_instance_attribute(InstanceId=db["InstanceId"], DisableApiTermination={"Value": False})
    ec2.terminate_instances(InstanceIds=[db["InstanceId"]])
    before["volume_after_termination"] = ec2.describe_volumes(VolumeIds=[before["volume"]["VolumeId"]])["Volumes"][0]
    table = yaml.safe_load((REPO / "roles" / "vpc" / "defaults" / "main.yml").read_text())["vpc_instances"]
    del table["streaming"]
    result = run(PROVISION, "dev", extra={"vpc_nat_gateway": "none", "vpc_instances": table})
    assert result.returncode == 0, result.stdout[-3000:]
    return before


def test_data_volume_survives_termination_and_comes_back(ec2, dev_changed):
    """Finding 7: the volume outlives its instance, and the new instance gets it back."""
    assert dev_changed["volume_after_termination"]["State"] == "available"
    [db] = [i for i in instances(ec2, "dev") if tags(i)["Service"] == "database"]
    assert db["InstanceId"] != dev_changed["db"]["InstanceId"]
    attached = {b["Ebs"]["VolumeId"] for b in db["BlockDeviceMappings"]}
    assert dev_changed["volume"]["VolumeId"] in attached


def test_nat_none_removes_the_nat_gateway_and_its_address(ec2, dev_changed):
    """Finding 8: switching NAT to none stops both bills."""
    assert dev_changed["nats"] and dev_changed["nat_eips"]
    assert inventory("dev")["nats"] == []
    left = {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}
    assert not left & {a["AllocationId"] for a in dev_changed["nat_eips"]}


def test_shrunk_table_removes_the_instance(ec2, dev_changed):
    """Finding 8: a row removed from the table is an instance terminated (dev is not protected)."""
    assert "streaming" not in {tags(i)["Service"] for i in instances(ec2, "dev")}
    assert len(instances(ec2, "dev")) == 6


def inventory_copy(tmp_path: Path, env: str) -> Path:
    """The shipped inventory of env with moto's endpoint and a cache of its own."""
    shipped = yaml.safe_load((REPO / "inventories" / env / "aws_ec2.yml").read_text())
    assert "endpoint_url" not in shipped, "the shipped inventory must talk to real AWS"
    test_copy = dict(shipped, endpoint_url=ENDPOINT, regions=[REGION], cache_connection=str(tmp_path / "cache"))
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "aws_ec2.yml").write_text(yaml.safe_dump(test_copy))
    shutil.copytree(REPO / "inventories" / env / "group_vars", inv / "group_vars")
    return inv


# --------------------------------------------------------------------------------------------
# Inventory plugin
# --------------------------------------------------------------------------------------------
def test_inventory_plugin_groups_and_connection(tmp_path, ec2):
    """The shipped inventory, pointed at moto: groups by Service, private addresses, ProxyJump."""
    env = "prod"
    inv = inventory_copy(tmp_path, env)

    listed = subprocess.run(["ansible-inventory", "-i", str(inv), "--list"], capture_output=True, text=True,
                            env=ansible_env(), cwd=REPO, timeout=300, check=True)
    data = json.loads(listed.stdout)
    for service in SERVICES:
        assert data[service]["hosts"] == [f"streamcloud-{env}-{service}-1"], service
    assert "tier_public" in data and "tier_private" in data
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
            assert f'"{bastion_ip}|-o ' in line and "ProxyCommand" not in line, line
        else:
            assert f"ubuntu@{bastion_ip}" in line and "ProxyCommand=" in line, line
            assert by_name[name]["PrivateIpAddress"] in line, line
        # Finding 5: host keys trusted on first use into the project's file, under the instance id.
        assert "StrictHostKeyChecking=accept-new" in line, line
        assert f"UserKnownHostsFile={inv}/known_hosts" in line, line
        assert f"HostKeyAlias={by_name[name]['InstanceId']}" in line, line


# --------------------------------------------------------------------------------------------
# Teardown and site.yml on an empty environment (last: removes dev, provisions it again with
# site.yml, then removes dev and prod)
# --------------------------------------------------------------------------------------------
def test_teardown_refuses_prod_without_confirmation():
    before = inventory("prod")
    result = run(TEARDOWN, "prod")
    assert result.returncode != 0
    assert "vpc_teardown_confirm=prod" in result.stdout + result.stderr
    assert inventory("prod") == before


def test_teardown_dev_keeps_the_data_and_leaves_prod_alone(ec2):
    prod_before = inventory("prod")
    kept = sorted(v["VolumeId"] for v in data_volumes(ec2, "dev"))
    result = run(TEARDOWN, "dev")
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(not ids for ids in inventory("dev").values()), inventory("dev")
    assert private_records("dev") == ({}, {})
    assert sorted(v["VolumeId"] for v in data_volumes(ec2, "dev")) == kept and len(kept) == 3
    assert "Kept the data volumes streamcloud-dev-database-1-data, streamcloud-dev-monitoring-1-data, " in result.stdout
    assert inventory("prod") == prod_before


def test_site_provisions_an_empty_environment_then_stops_at_the_ssh_wait(ec2, tmp_path):
    """Finding 2: one command; the inventory (cached empty a moment ago) is read again after provisioning."""
    inv = inventory_copy(tmp_path, "dev")
    cached = subprocess.run(["ansible-inventory", "-i", str(inv), "--list"], capture_output=True, text=True,
                            env=ansible_env(), cwd=REPO, timeout=300, check=True)
    assert "streamcloud-dev-" not in cached.stdout
    kept = sorted(v["VolumeId"] for v in data_volumes(ec2, "dev"))
    extra = {"vpc_aws_endpoint_url": ENDPOINT, "vpc_ami_name_pattern": AMI_PATTERN,
             "streamcloud_ssh_wait_timeout": 5, "streamcloud_known_hosts": str(tmp_path / "known_hosts")}
    result = subprocess.run(["ansible-playbook", "-i", str(inv), "site.yml", "-e", json.dumps(extra)],
                            capture_output=True, text=True, timeout=900, env=ansible_env(), cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert len(instances(ec2, "dev")) == 7
    assert "Public addresses of dev: streamcloud-dev-bastion-1 127." in output
    # moto's instances are not machines: every host stops at the SSH wait, by name, with what to check.
    for service in SERVICES:
        assert f"SSH wait: streamcloud-dev-{service}-1 (" in output, output[-3000:]
    assert "through the bastion streamcloud-dev-bastion-1" in output
    assert "TASK [common" not in result.stdout, "a platform play ran although SSH was not there"
    # The data volumes a teardown kept are attached to the new instances.
    attached = {b["Ebs"]["VolumeId"] for i in instances(ec2, "dev") for b in i["BlockDeviceMappings"]}
    assert set(kept) <= attached


def test_teardown_with_the_data_twice_the_second_changes_nothing(ec2):
    result = run(TEARDOWN, "dev", extra={"vpc_teardown_delete_data": True})
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(not ids for ids in inventory("dev").values()), inventory("dev")
    assert data_volumes(ec2, "dev") == []
    again = run(TEARDOWN, "dev", extra={"vpc_teardown_delete_data": True})
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-3000:]


def test_teardown_prod_with_confirmation(ec2):
    result = run(TEARDOWN, "prod", extra={"vpc_teardown_confirm": "prod", "vpc_teardown_delete_data": True})
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(not ids for ids in inventory("prod").values()), inventory("prod")
    assert data_volumes(ec2, "prod") == [] and private_records("prod") == ({}, {})
    # Only moto's default VPC is left, and no volume but the root volumes moto keeps of terminated instances.
    assert [v.get("IsDefault") for v in ec2.describe_vpcs()["Vpcs"]] == [True]
    assert not [v for v in ec2.describe_volumes()["Volumes"] if tags(v).get("Project") == "streamcloud"]
