"""Shared fixtures for the unit tests: the collection on sys.path, a module runner, a local transport.

The collection is imported as ``ansible_collections.streamcloud.platform`` through
.build/collections (made by ``make venv``; tests/conftest.py makes it when missing).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture
def run_module(capsys):
    """run_module(module, args, check_mode=False) -> (result dict, failed?) for an AnsibleModule main()."""
    from ansible.module_utils.testing import patch_module_args

    def run(module, args, check_mode=False):
        if check_mode:
            args = dict(args, _ansible_check_mode=True)
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        return result, bool(result.get("failed"))

    return run


LOCAL_SSH = """#!{python}
# Stands in for ssh in unit tests: runs the real receiver as if sshd had started it as the
# login shell of account bk-<source>, whose home is $BACKUP_TEST_ROOT/<source>. BACKUP_TEST_DOWN=1
# behaves like an unreachable host (ssh exit 255).
import os, sys
sys.path.insert(0, {collections!r})
if os.environ.get("BACKUP_TEST_DOWN"):
    sys.stderr.write("ssh: connect to host backup port 22: Connection refused\\n")
    sys.exit(255)
user = sys.argv[-2].split("@")[0]
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.receiver import load_settings, main
# BACKUP_TEST_SETTINGS: a receiver.json to read (as the role writes it); else the defaults.
settings = load_settings(os.environ["BACKUP_TEST_SETTINGS"]) if os.environ.get("BACKUP_TEST_SETTINGS") else {{}}
base = os.path.join(os.environ["BACKUP_TEST_ROOT"], user.removeprefix("bk-"))
if os.environ.get("BACKUP_TEST_KILL"):
    # The receiver is killed (-9) after it read the first bytes; ssh then exits 255 and prints
    # nothing of its own, as OpenSSH does when the remote command dies by a signal.
    import signal
    child = os.fork()
    if child == 0:
        sys.stdin.buffer.read(1024)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(child, 0)
    sys.exit(255)
sys.exit(main(["-c", sys.argv[-1]], base=base, settings=settings))
"""


@pytest.fixture
def local_ssh(tmp_path, monkeypatch):
    """A local transport to a real receiver: returns (ssh program path, receiving root)."""
    root = tmp_path / "backup-host"
    root.mkdir()
    program = tmp_path / "local-ssh"
    program.write_text(LOCAL_SSH.format(python=sys.executable, collections=str(COLLECTIONS)))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BACKUP_TEST_ROOT", str(root))
    monkeypatch.delenv("BACKUP_TEST_DOWN", raising=False)
    monkeypatch.delenv("BACKUP_TEST_KILL", raising=False)
    monkeypatch.delenv("BACKUP_TEST_SETTINGS", raising=False)
    return str(program), root


@pytest.fixture
def ssh_on_path(local_ssh, tmp_path, monkeypatch):
    """local_ssh reached as plain `ssh` from PATH (as the CLI and module call it), with the
    receiving account bk-web1 on the far side: returns the receiving root."""
    program, root = local_ssh
    (root / "web1").mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").symlink_to(program)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return root


@pytest.fixture
def tree(tmp_path):
    """A small tree of known files: text, binary, a symlink, an empty dir, an excluded file."""
    top = tmp_path / "data"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "app.conf").write_text("listen 8080\n")
    (top / "media").mkdir()
    (top / "media" / "clip.bin").write_bytes(os.urandom(300_000))
    (top / "media" / "skip.tmp").write_text("scratch")
    (top / "empty").mkdir()
    (top / "link").symlink_to("etc/app.conf")
    return top


@pytest.fixture
def gzip_members():
    """gzip_members(blob) -> how many gzip members blob holds, each checked to decompress to its end."""

    def count(blob):
        number = 0
        while blob:
            decomp = zlib.decompressobj(wbits=31)
            decomp.decompress(blob)
            assert decomp.eof, "a gzip member is truncated"
            blob, number = decomp.unused_data, number + 1
        return number

    return count


@pytest.fixture
def wrap(tmp_path, monkeypatch):
    """wrap(program, body): a shell script named program, first on PATH ($REAL is the program it hides)."""
    bindir = tmp_path / "wrapped-bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")

    def make(program, body):
        script = bindir / program
        script.write_text(f"#!/bin/sh\nREAL={shutil.which(program)}\n{body}\n")
        script.chmod(0o755)

    return make


@pytest.fixture
def localhost_playbook(tmp_path):
    """localhost_playbook(playbook, *args, python=..., env=None) -> (CompletedProcess, output): one real
    ansible-playbook run of `playbook` (YAML text, or a list dumped as JSON) against localhost, with the
    project's ansible.cfg, facts kept in memory only, and `env` added to the environment."""

    def run(playbook, *args, python=sys.executable, env=None):
        path = tmp_path / "play.yml"
        path.write_text(playbook if isinstance(playbook, str) else json.dumps(playbook))
        bindir = Path(sys.executable).parent
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        environ.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FACT_CACHING="memory",
                       ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
                       **(env or {}))
        argv = [str(bindir / "ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={python}",
                str(path), *args]
        result = subprocess.run(argv, cwd=tmp_path, env=environ, capture_output=True, text=True, check=False)
        return result, result.stdout + result.stderr

    return run
