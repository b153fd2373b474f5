"""Issue 9: Lynis' hardening index on the database host, with the common role applied before postgresql
(Lynis from Debian's archive, installed in the container by the test)."""

from __future__ import annotations

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("database")


def test_lynis_hardening_index_is_at_least_80(host, lynis):
    report = lynis(host)
    assert report["hardening_index"] >= 80, "\n".join(report["suggestion"])
