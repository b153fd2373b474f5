"""What the site scenario's tests share: its hosts, the lab directory, commands in the containers, and
values read from the scenario's inventory exactly as Ansible templates them (the lab's group_vars,
linked in, and the vpc role's security rules)."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
# The directory Molecule passes as the inventory: its own hosts file, the scenario's hosts file and the
# lab's group_vars (links in molecule.yml).
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
LAB_DIR = EPHEMERAL / "lab"
CA_FILE = LAB_DIR / "pki" / "ca.crt"
SCENARIO = yaml.safe_load((Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "molecule.yml").read_text())
# Group -> its containers, from the scenario's platforms.
GROUPS: dict[str, list[str]] = {}
for _platform in SCENARIO["platforms"]:
    for _group in _platform["groups"]:
        GROUPS.setdefault(_group, []).append(_platform["name"])
HOSTS = [p["name"] for p in SCENARIO["platforms"]]

sys.path.insert(0, str(PROJECT / "scripts"))
import labcheck  # noqa: E402, F401  (the lab-check script: the tests use the same client code as `make lab-check`)


def group_of(host: str) -> str:
    return next(group for group, members in GROUPS.items() if host in members)


def secret(name: str) -> str:
    """A password the lab's group_vars generated (ansible.builtin.password lookup files)."""
    return (LAB_DIR / "secrets" / name).read_text().split()[0]


def sh(host: str, command: str, check: bool = True, timeout: int = 300, env: dict | None = None,
       stdin: str | None = None) -> subprocess.CompletedProcess:
    """bash -c command inside a container."""
    argv = ["docker", "exec", "-i"]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    result = subprocess.run([*argv, host, "bash", "-c", command], input=stdin, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{host}: {command}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@functools.cache
def address(host: str) -> str:
    out = subprocess.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", host],
                         check=True, capture_output=True, text=True).stdout
    return next(n["IPAddress"] for n in json.loads(out).values() if n.get("IPAddress"))


def hostvar(host: str, expression: str):
    """The value of a Jinja expression for an inventory host, as Ansible templates it there."""
    argv = ["ansible", "-i", str(INVENTORY), host, "-m", "ansible.builtin.debug",
            "-a", "msg={{ " + expression + " | to_json }}"]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=120)
    if result.returncode != 0 or "=>" not in result.stdout:
        raise AssertionError(f"{expression} on {host}: {result.stdout}{result.stderr}")
    return json.loads(json.loads(result.stdout.split("=>", 1)[1].strip())["msg"])


def expand_ports(ports) -> set[int]:
    found = set()
    for port in ports:
        first, _, last = str(port).partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


@functools.cache
def security_rules() -> dict[str, list[dict]]:
    """The vpc role's vpc_security_rules (its defaults), with the port variables they use taken from the
    scenario's inventory where it sets them (the lab's group_vars/all/ftp.yml) and from the role's
    defaults otherwise: what the security groups on AWS would allow for this configuration."""
    defaults_text = (PROJECT / "roles/vpc/defaults/main.yml").read_text()
    defaults = yaml.safe_load(defaults_text)
    rules = defaults["vpc_security_rules"]
    names = sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(rules))))
    given = hostvar(HOSTS[0], "{" + ", ".join(f"'{n}': {n} | default(None)" for n in names) + "}")
    values = {n: given[n] if given[n] is not None else defaults[n] for n in names}
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values[m.group(1)]), json.dumps(rules))
    return json.loads(text)


def allowed_ports(group: str) -> set[int]:
    """Every TCP port the group's security group opens, to anyone."""
    return expand_ports(port for rule in security_rules()[group] if rule.get("proto", "tcp") == "tcp"
                        for port in rule["ports"])


def groups_allowed_to(group: str, port: int) -> set[str]:
    """The service groups whose security groups may reach port on group (SG-to-SG rules)."""
    sources = set()
    for rule in security_rules()[group]:
        if port in expand_ports(rule["ports"]):
            origin = rule["from"]
            sources.update([origin] if isinstance(origin, str) else origin)
    return sources
