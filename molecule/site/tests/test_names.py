"""Private names: each container answers, on the scenario's network, to the names docs/architecture.md
gives its service (Docker network aliases), every other container resolves them, and the roles
reach each other by them (nginx, the backup clients, the database's certificate)."""

from __future__ import annotations

import json

import pytest
from sitelib import GROUPS, HOSTS, address, group_of, hostvar, sh

DOMAIN = hostvar(HOSTS[0], "platform_domain")


@pytest.fixture(scope="module")
def aliases() -> dict[str, list[str]]:
    return {host: hostvar(host, "lab_network_aliases") for host in HOSTS}


def test_each_service_has_its_private_name(aliases):
    assert DOMAIN == "site.streamcloud.test"
    expected = {"web": "web", "streaming": "icecast", "database": "database", "ftp": "ftp", "backup_server": "backup"}
    for host in HOSTS:
        group = group_of(host)
        assert f"{expected[group]}.{DOMAIN}" in aliases[host]
        assert f"{group.replace('_', '-')}-1.{DOMAIN}" in aliases[host]


@pytest.mark.parametrize("client", HOSTS)
def test_every_name_resolves_to_its_host_from_every_container(client, aliases):
    names = [name for host in HOSTS for name in aliases[host]]
    out = sh(client, "for n in " + " ".join(names) + "; do printf '%s %s\\n' \"$n\" \"$(getent hosts \"$n\" | "
             "awk '{print $1}')\"; done").stdout
    resolved = dict(line.split(" ", 1) for line in out.splitlines())
    assert {name: resolved[name].strip() for name in names} == {
        name: address(host) for host in HOSTS for name in aliases[host]}


def test_the_roles_use_the_private_names():
    web, backup_client, database = GROUPS["web"][0], GROUPS["ftp"][0], GROUPS["database"][0]
    nginx = sh(web, "nginx -T 2>/dev/null").stdout
    assert f"icecast.{DOMAIN}:8000" in nginx
    assert f"ftp.{DOMAIN}:8080" in nginx
    config = json.loads(sh(backup_client, "cat /etc/streamcloud-backup/config.json").stdout)
    assert f"backup.{DOMAIN}" in json.dumps(config)
    names = sh(database, "openssl x509 -noout -ext subjectAltName -in /etc/streamcloud/pki/postgresql.crt").stdout
    assert f"DNS:database.{DOMAIN}" in names
