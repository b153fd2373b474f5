"""Bad input fails before any change, and a configuration ProFTPD refuses never reaches the daemon."""

from __future__ import annotations

import ftplib
import os

import pytest
import testinfra.utils.ansible_runner
from conftest import USERS

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("ftp")

WATCHED = "/etc/proftpd/proftpd.conf /etc/passwd /etc/shadow /etc/systemd/system/streamcloud-files.service"
GOOD_USER = {"name": "carol", "password": "Lab-only-carol-p4ssword", "home": "/srv/ftp/carol"}


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        pytest.param({"proftpd_users": [{"name": "carol", "password": GOOD_USER["password"]}]},
                     "proftpd_users: user 'carol' is refused", id="user-without-home"),
        pytest.param({"proftpd_users": [dict(GOOD_USER, name="../carol")]},
                     "no '/' or other path separator", id="name-with-path-separator"),
        pytest.param({"proftpd_passive_ports": "50000-49999"}, "proftpd_passive_ports must be a non-empty range",
                     id="empty-passive-range"),
        pytest.param({"proftpd_passive_ports": "5400-5500"}, "proftpd_passive_ports must be a non-empty range",
                     id="passive-range-over-postgresql"),
        pytest.param({"proftpd_passive_ports": "2200-2300"}, "proftpd_passive_ports must be a non-empty range",
                     id="passive-range-over-sftp"),
        pytest.param({"proftpd_tls_certificate": "", "proftpd_tls_private_key": "", "proftpd_tls_use_pki": False},
                     "proftpd_tls_required is true but there is no certificate", id="tls-without-certificate"),
    ],
)
def test_bad_input_fails_before_any_change(host, playbook, molecule_scenario_dir, extra_vars, message):
    before = host.check_output(f"sha256sum {WATCHED}")
    result = playbook(molecule_scenario_dir / "role_only.yml", extra_vars)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert message in output, output[-3000:]
    assert "changed=0" in output
    assert host.check_output(f"sha256sum {WATCHED}") == before
    assert not host.file("/srv/ftp/carol").exists


def test_configuration_proftpd_refuses_never_reaches_the_daemon(host, playbook, molecule_scenario_dir, address,
                                                                 tls_context):
    before = host.check_output("sha256sum /etc/proftpd/proftpd.conf")
    pid = host.file("/run/proftpd.pid").content_string.strip()
    result = playbook(molecule_scenario_dir / "role_only.yml", {"proftpd_extra_config": ["NoSuchDirective on"]})
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "unknown configuration directive 'NoSuchDirective'" in output, output[-3000:]
    assert host.check_output("sha256sum /etc/proftpd/proftpd.conf") == before
    assert "NoSuchDirective" not in host.file("/etc/proftpd/proftpd.conf").content_string
    assert host.file("/run/proftpd.pid").content_string.strip() == pid
    session = ftplib.FTP_TLS(context=tls_context, timeout=30)
    session.connect(address, 21)
    session.login("alice", USERS["alice"])
    session.close()
