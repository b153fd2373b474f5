"""Issue 9: Lynis' hardening index on the common host (Lynis from Debian's archive, installed by the test)."""

from __future__ import annotations

import os

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


def test_lynis_hardening_index_is_at_least_80(host, lynis, request):
    if host.system_info.distribution == "debian" and host.system_info.release.split(".")[0] == "13":
        # Known and open: Debian 13 adds PKGS-7370 (debsums) and BOOT-5180, and scores 79. Strict, so
        # the day it reaches 80 this test fails until the marker goes.
        request.node.add_marker(pytest.mark.xfail(strict=True, reason="Lynis scores 79 on Debian 13 (issue 9, open)"))
    report = lynis(host)
    assert report["hardening_index"] >= 80, "\n".join(report["suggestion"])
