"""Offline checks of roles (no container, no package): playbooks run against this machine with a
local connection, through entry points that change nothing (preflight, --check) or that only write
into a temporary directory (rendering templates).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"


# Facts of this machine, gathered by the first run of a test session and reused by the others.
FACT_CACHE = Path(tempfile.mkdtemp(prefix="streamcloud-role-facts-"))
atexit.register(shutil.rmtree, FACT_CACHE, ignore_errors=True)


def write_inventory(path: Path, groups: dict[str, list[str]]) -> Path:
    """An inventory of local-connection hosts (names only: nothing is reached over a network)."""
    children = {group: {"hosts": {host: {} for host in hosts}} for group, hosts in groups.items()}
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "children": children}}
    path.write_text(json.dumps(inventory))
    return path


def ansible_playbook(playbook: Path, inventory: Path, extra_vars: dict, *args: str,
                     timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="true",
               ANSIBLE_FORCE_COLOR="false", ANSIBLE_CACHE_PLUGIN="jsonfile",
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(FACT_CACHE), ANSIBLE_GATHERING="smart",
               ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_LOCALHOST_WARNING="false")
    argv = ["ansible-playbook", "-i", str(inventory), str(playbook), "-e", json.dumps(extra_vars), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False, cwd=REPO)


@pytest.fixture(scope="session")
def run_playbook():
    """run_playbook(playbook, inventory, extra_vars, *args) -> CompletedProcess (never raises on failure)."""
    return ansible_playbook


@pytest.fixture(scope="session")
def inventory_file():
    """inventory_file(path, {group: [hosts]}) -> path of a local-connection inventory."""
    return write_inventory


@pytest.fixture
def inventory(tmp_path):
    def make(groups: dict[str, list[str]]) -> Path:
        return write_inventory(tmp_path / "inventory.json", groups)
    return make
