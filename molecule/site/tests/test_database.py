"""The database over TLS from every host, by its private name, with verify-full against the platform CA
in each host's trust store: the hosts whose security group may reach 5432 on AWS (the vpc role's
rules) log in as the application role; every other host is refused by pg_hba."""

from __future__ import annotations

import pytest
from sitelib import GROUPS, HOSTS, address, group_of, groups_allowed_to, hostvar, secret, sh

DOMAIN = hostvar(HOSTS[0], "platform_domain")
CLIENTS = groups_allowed_to("database", 5432)
QUERY = "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def psql(host: str) -> object:
    conninfo = (f"host=database.{DOMAIN} port=5432 dbname=streamcloud user=streamcloud sslmode=verify-full "
                "sslrootcert=/etc/ssl/certs/ca-certificates.crt connect_timeout=10")
    return sh(host, f"psql -X -At '{conninfo}' -c \"{QUERY}\"", check=False,
              env={"PGPASSWORD": secret("postgresql_streamcloud")})


def test_the_clients_are_the_web_and_ftp_groups():
    assert {"web", "ftp"} == CLIENTS


@pytest.mark.parametrize("host", [h for h in HOSTS if h not in GROUPS["database"]])
def test_application_role_over_tls_only_from_the_hosts_that_need_it(host):
    result = psql(host)
    if group_of(host) in CLIENTS:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "streamcloud true"
    else:
        assert result.returncode != 0
        # The role's pg_hba ends with a reject rule for every other address (TLS or not).
        assert f'pg_hba.conf rejects connection for host "{address(host)}"' in result.stderr, result.stderr
