"""Inventory parse time (cache cold vs warm) and provisioning time (first vs second run), on moto.

    .venv/bin/python benchmarks/inventory/run.py [--rounds 3] [--sizes 10,100,500] [--provision-rounds 1]

Starts its own moto server on 127.0.0.1 (port --port), fills it with N instances tagged like the
prod environment, and times `ansible-inventory --list` on a copy of inventories/prod/aws_ec2.yml
pointed at moto, alternating a cold run (cache emptied first) with a warm one (cache from the run
before). Then times playbooks/provision.yml for dev on an empty moto (first run) and again (second
run, nothing to change). Prints one line per measurement and a Markdown table of medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
SERVICES = ["web", "streaming", "database", "monitoring", "ftp", "backup_server", "bastion"]
FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-3"}


def moto(port: int, workdir: Path) -> subprocess.Popen:
    log = (workdir / "moto.log").open("w")
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("moto_server did not start")


def reset(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))  # noqa: S310


def fill(endpoint: str, count: int) -> None:
    """count running instances tagged as prod hosts, the services in turn, each in its tier's subnet."""
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="eu-west-3")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/20")["Subnet"]["SubnetId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.16.0/20")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=public, MapPublicIpOnLaunch={"Value": True})
    image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    for n in range(count):
        service = SERVICES[n % len(SERVICES)]
        tier = "public" if service in ("bastion", "web", "ftp") else "private"
        tags = {"Project": "streamcloud", "Environment": "prod", "Service": service, "Tier": tier,
                "Name": f"streamcloud-prod-{service}-{n + 1}"}
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.medium",
                          SubnetId=public if tier == "public" else private,
                          TagSpecifications=[{"ResourceType": "instance",
                                              "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])


def inventory_dir(workdir: Path, endpoint: str) -> tuple[Path, Path]:
    inv = workdir / "inventory"
    cache = workdir / "cache"
    shutil.rmtree(inv, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)  # the cache of the previous size would answer otherwise
    inv.mkdir()
    config = yaml.safe_load((REPO / "inventories/prod/aws_ec2.yml").read_text())
    config.update(endpoint_url=endpoint, cache_connection=str(cache))
    (inv / "aws_ec2.yml").write_text(yaml.safe_dump(config))
    shutil.copytree(REPO / "inventories/prod/group_vars", inv / "group_vars")
    return inv, cache


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--provision-rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=5057)
    args = parser.parse_args()
    endpoint = f"http://127.0.0.1:{args.port}"
    os.environ.update(FAKE_ENV)  # fake credentials: only moto sees them
    env = dict(os.environ, **FAKE_ENV, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="false")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        workdir = Path(tmp)
        server = moto(args.port, workdir)
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                reset(endpoint)
                fill(endpoint, size)
                inv, cache = inventory_dir(workdir, endpoint)
                argv = [str(BIN / "ansible-inventory"), "-i", str(inv), "--list"]
                listed = subprocess.run(argv, check=True, capture_output=True, text=True, env=env, cwd=REPO)
                hosts = len(json.loads(listed.stdout)["_meta"]["hostvars"])
                if hosts != size:
                    raise SystemExit(f"{hosts} hosts listed, {size} launched:\n{listed.stderr}")
                cold, warm = [], []
                for r in range(args.rounds):  # alternating: cold (cache emptied), then warm (cache kept)
                    shutil.rmtree(cache, ignore_errors=True)
                    cold.append(timed(argv, env))
                    warm.append(timed(argv, env))
                    print(f"inventory {size:4d} hosts round {r + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s",
                          flush=True)
                rows.append((f"inventory, {size} instances", "cold cache", statistics.median(cold),
                             "warm cache", statistics.median(warm)))

            first, second = [], []
            key = workdir / "id_bench"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
            penv = dict(env, STREAMCLOUD_ADMIN_CIDRS="203.0.113.0/24",
                        STREAMCLOUD_SSH_PUBLIC_KEY=(workdir / "id_bench.pub").read_text().strip())
            extra = json.dumps({"vpc_environment": "dev", "vpc_aws_endpoint_url": endpoint,
                                "vpc_ami_name_pattern": "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*"})
            argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "playbooks/provision.yml", "-e", extra]
            for r in range(args.provision_rounds):  # each round: empty moto, first run, second run
                reset(endpoint)
                first.append(timed(argv, penv))
                second.append(timed(argv, penv))
                print(f"provision dev round {r + 1}: first {first[-1]:.1f} s, second {second[-1]:.1f} s", flush=True)
            if first:
                rows.append(("provision.yml dev", "first run", statistics.median(first),
                             "second run (no change)", statistics.median(second)))
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"rounds {args.rounds} (inventory), {args.provision_rounds} (provision)\n")
    print("| measure | baseline | median s | compared | median s | ratio |")
    print("|---|---|---:|---|---:|---:|")
    for what, base_name, base, other_name, other in rows:
        print(f"| {what} | {base_name} | {base:.2f} | {other_name} | {other:.2f} | {other / base:.2f} |")


if __name__ == "__main__":
    main()
