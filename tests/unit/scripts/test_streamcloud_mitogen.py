"""scripts/strategy/streamcloud_mitogen.py, the strategy ansible.cfg and the Molecule runs name: with
mitogen installed the tasks run in mitogen's interpreter; without it the play still runs, on Ansible's
linear strategy, and one warning says why. Real ansible-playbook runs against localhost."""

import os
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


def test_the_project_config_names_the_plugin():
    cfg = (ROOT / "ansible.cfg").read_text()
    assert "strategy = streamcloud_mitogen" in cfg
    assert "strategy_plugins = scripts/strategy" in cfg


def test_with_mitogen_the_task_runs_in_its_interpreter(localhost_playbook):
    pytest.importorskip("ansible_mitogen")
    result, out = localhost_playbook(PLAYBOOK)
    assert result.returncode == 0, out
    assert WARNING not in out
    assert "CMDLINE=" in out and "mitogen" in out.split("CMDLINE=", 1)[1].splitlines()[0], out


def test_without_mitogen_the_play_runs_on_ansible_linear_and_says_why(tmp_path, localhost_playbook):
    hidden = tmp_path / "hide"
    (hidden / "ansible_mitogen").mkdir(parents=True)
    (hidden / "ansible_mitogen" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result, out = localhost_playbook(
        PLAYBOOK, env={"PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, out
    assert WARNING in out and "hidden by the test" in out and "ANSIBLE_STRATEGY=linear" in out, out
    line = out.split("CMDLINE=", 1)[1].splitlines()[0]
    assert "mitogen" not in line, out
    assert "ok=2" in out and "failed=0" in out, out
