"""roles/backup/files/pack.py: the backup code as one file, the same bytes for the same code, run as the role
installs it (the cron command line, and the receiver under its own name) by the system Python."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO / "plugins" / "module_utils" / "_backup"
spec = importlib.util.spec_from_file_location("backup_pack", REPO / "roles" / "backup" / "files" / "pack.py")
pack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack)
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin")


@pytest.fixture
def packed(tmp_path):
    out = tmp_path / "sbin" / "streamcloud-backup"
    out.parent.mkdir()
    pack.pack(str(SOURCE), str(out), f"#!{SYSTEM_PYTHON} -I")
    return out


def test_every_module_of_the_package_is_packed_without_a_list(packed):
    names = set(zipfile.ZipFile(packed).namelist())
    assert {f"{pack.PACKAGE}/{p.name}" for p in SOURCE.glob("*.py")} <= names
    assert "__main__.py" in names


def test_the_same_code_gives_the_same_bytes(packed, tmp_path):
    again = tmp_path / "again"
    os.utime(SOURCE / "files.py")  # a new mtime (a fresh checkout) changes nothing
    pack.pack(str(SOURCE), str(again), f"#!{SYSTEM_PYTHON} -I")
    assert again.read_bytes() == packed.read_bytes()


def test_changed_code_gives_other_bytes(packed, tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "files.py", "a", encoding="utf-8") as handle:
        handle.write("# changed\n")
    pack.pack(str(copy), str(tmp_path / "changed"), f"#!{SYSTEM_PYTHON} -I")
    assert (tmp_path / "changed").read_bytes() != packed.read_bytes()


def test_installed_file_runs_the_cli_and_the_receiver_without_ansible(packed, tmp_path):
    """As the role installs it: executable, its own name the cron command, a link named like the receiver."""
    receiver = packed.parent / "streamcloud-backup-receive"
    receiver.symlink_to(packed.name)
    env = dict(os.environ, PYTHONPATH=str(REPO / ".build" / "collections"))  # -I in the shebang ignores it
    helped = subprocess.run([str(packed), "--help"], capture_output=True, text=True, env=env, check=False)
    assert helped.returncode == 0 and "rotate" in helped.stdout, helped.stderr
    choose = subprocess.run([str(packed), "choose", "--path", str(tmp_path), "--source", "web1"],
                            capture_output=True, text=True, env=env, check=False)
    assert choose.returncode == 0 and json.loads(choose.stdout)["name"] is None, choose.stderr
    refused = subprocess.run([str(receiver)], capture_output=True, text=True, env=env, check=False)
    assert refused.returncode == 2 and "interactive logins are refused" in refused.stderr
    has_ansible = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import ansible"], capture_output=True, check=False)
    if has_ansible.returncode == 0:
        pytest.skip("the system Python has Ansible: the runs passed, but do not prove they need none")
