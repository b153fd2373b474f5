"""scripts/strategy/streamcloud_mitogen.py, the strategy ansible.cfg and the Molecule runs name: with
mitogen installed the tasks run in mitogen's interpreter; without it the play still runs, on Ansible's
linear strategy, and one warning says why. Real ansible-playbook runs against localhost."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- name: One task that reports the interpreter it ran in
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Read the module process' command line
      ansible.builtin.slurp:
        src: /proc/self/cmdline
      register: cmdline

    - name: Print it
      ansible.builtin.debug:
        msg: "CMDLINE={{ cmdline.content | b64decode | replace('\\u0000', ' ') }}"
"""
WARNING = "mitogen cannot be used here"


def play(tmp_path, extra_pythonpath=None):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_FACT_CACHING="memory",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if extra_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_pythonpath), env.get("PYTHONPATH", "")])
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
            "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    return result, result.stdout + result.stderr


def test_the_project_config_names_the_plugin():
    cfg = (ROOT / "ansible.cfg").read_text()
    assert "strategy = streamcloud_mitogen" in cfg
    assert "strategy_plugins = scripts/strategy" in cfg


def test_with_mitogen_the_task_runs_in_its_interpreter(tmp_path):
    pytest.importorskip("ansible_mitogen")
    result, out = play(tmp_path)
    assert result.returncode == 0, out
    assert WARNING not in out
    assert "CMDLINE=" in out and "mitogen" in out.split("CMDLINE=", 1)[1].splitlines()[0], out


def test_without_mitogen_the_play_runs_on_ansible_linear_and_says_why(tmp_path):
    hidden = tmp_path / "hide"
    (hidden / "ansible_mitogen").mkdir(parents=True)
    (hidden / "ansible_mitogen" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result, out = play(tmp_path, extra_pythonpath=hidden)
    assert result.returncode == 0, out
    assert WARNING in out and "hidden by the test" in out and "ANSIBLE_STRATEGY=linear" in out, out
    line = out.split("CMDLINE=", 1)[1].splitlines()[0]
    assert "mitogen" not in line, out
    assert "ok=2" in out and "failed=0" in out, out
