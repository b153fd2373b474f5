"""molecule/elk/available: the harness skips the elk scenario, with its first line as the reason,
unless Elastic's packages can be had. Checked here with an unreachable repository and with
directories of real (tiny) .deb files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from test_elk_preflight import fake_deb

SCRIPT = Path(__file__).resolve().parents[3] / "molecule" / "elk" / "available"


def available(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ELK_")}
    return subprocess.run([str(SCRIPT)], capture_output=True, text=True, env={**environment, **env}, timeout=60,
                          check=False)


def test_is_executable():
    assert os.access(SCRIPT, os.X_OK)


def test_unreachable_repository_is_a_reason_to_skip():
    result = available(ELK_APT_URL="http://127.0.0.1:9/apt")
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("Elastic's APT repository (http://127.0.0.1:9/apt) cannot be reached")


def test_incomplete_package_directory_is_named(tmp_path):
    fake_deb(tmp_path, "elasticsearch")
    fake_deb(tmp_path, "kibana", sha512=False)
    result = available(ELK_DEB_DIR=str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"ELK_DEB_DIR ({tmp_path}) lacks kibana-8.17.0-amd64.deb or its .sha512 file (ELK_VERSION=8.17.0)")


def test_complete_package_directory_gets_past_the_package_check(tmp_path):
    for package in ("elasticsearch", "kibana", "auditbeat", "filebeat"):
        fake_deb(tmp_path, package)
    result = available(ELK_DEB_DIR=str(tmp_path))
    # What is left depends on this machine's kernel and memory, never on the packages.
    assert "ELK_DEB_DIR" not in result.stdout
    if result.returncode != 0:
        assert result.stdout.startswith(("vm.max_map_count on this Docker host", "this machine has"))
