"""Every host listens, on its network address, only on TCP ports its security group opens on AWS
(the vpc role's vpc_security_rules, with the inventory's port variables); loopback-only listeners
(Icecast's admin side, Docker's DNS) are not reachable from other hosts and are left out."""

from __future__ import annotations

import ipaddress

import pytest
from sitelib import HOSTS, allowed_ports, group_of, sh


def exposed_ports(host: str) -> set[int]:
    ports = set()
    for line in sh(host, "ss -ltnH").stdout.splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        addr = addr.strip("[]").split("%")[0]
        if addr not in ("*", "0.0.0.0", "::") and ipaddress.ip_address(addr).is_loopback:  # noqa: S104 (reads, not binds)
            continue
        ports.add(int(port))
    return ports


@pytest.mark.parametrize("host", HOSTS)
def test_only_the_security_group_ports_are_open(host):
    group = group_of(host)
    exposed = exposed_ports(host)
    assert exposed, f"{host} listens on nothing"
    assert exposed <= allowed_ports(group), f"{host} ({group}) exposes {sorted(exposed - allowed_ports(group))}"
