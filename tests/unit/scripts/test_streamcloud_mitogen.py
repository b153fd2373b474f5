"""scripts/strategy/streamcloud_mitogen.py, the strategy ansible.cfg and the Molecule runs name: with
mitogen installed the tasks run in mitogen's interpreter; without it the play still runs, on Ansible's
linear strategy, and one warning says why; below four CPUs the workers are not pinned to one CPU.
Real ansible-playbook runs against localhost."""

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleError

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
# The pipe lookup runs in the worker process; the command it starts inherits the worker's CPU affinity.
AFFINITY_PLAYBOOK = """\
- name: One task that reports the CPUs its worker may run on
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Print them
      ansible.builtin.debug:
        msg: "CPUS={{ lookup('ansible.builtin.pipe', 'grep Cpus_allowed_list /proc/self/status') }}"
"""


def plugin():
    spec = importlib.util.spec_from_file_location("streamcloud_mitogen_under_test",
                                                  ROOT / "scripts/strategy/streamcloud_mitogen.py")
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("ansible_mitogen.affinity")
    policy = saved.policy if saved else None
    try:
        spec.loader.exec_module(module)
    finally:  # importing may replace mitogen's policy in this process: put it back
        if saved:
            saved.policy = policy
    return module


def allowed_cpus():
    """The CPUs this process may run on, as /proc writes them (0-1)."""
    with open("/proc/self/status") as status:
        return next(line for line in status if line.startswith("Cpus_allowed_list")).split(":", 1)[1].strip()


def cpus(out):
    """The CPU list the debug task printed (its tab is escaped in the JSON Ansible prints)."""
    return re.search(r"CPUS=Cpus_allowed_list:(?:\\t|\s)*([0-9,-]+)", out).group(1)


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


@pytest.mark.parametrize(("environ", "cpu_count", "kept"), [
    ({}, 2, False), ({}, 3, False), ({}, 4, True), ({}, 16, True),
    ({"STREAMCLOUD_MITOGEN_PIN_CPUS": "1"}, 2, True), ({"STREAMCLOUD_MITOGEN_PIN_CPUS": "0"}, 16, False),
])
def test_mitogen_places_the_processes_from_four_cpus_up_unless_told(environ, cpu_count, kept):
    assert plugin().pin_cpus(environ, cpu_count) is kept


def test_a_bad_pin_setting_says_what_to_set():
    with pytest.raises(AnsibleError, match=r"STREAMCLOUD_MITOGEN_PIN_CPUS='yes': set it to 1 .* or 0"):
        plugin().pin_cpus({"STREAMCLOUD_MITOGEN_PIN_CPUS": "yes"}, 2)


def test_unpinned_workers_may_run_on_every_cpu(localhost_playbook):
    """Before the change mitogen pinned every worker of a 2-CPU machine to CPU 1."""
    pytest.importorskip("ansible_mitogen")
    result, out = localhost_playbook(AFFINITY_PLAYBOOK, env={"STREAMCLOUD_MITOGEN_PIN_CPUS": "0"})
    assert result.returncode == 0, out
    assert cpus(out) == allowed_cpus(), out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to pin")
def test_pinned_workers_run_on_one_cpu(localhost_playbook):
    pytest.importorskip("ansible_mitogen")
    result, out = localhost_playbook(AFFINITY_PLAYBOOK, env={"STREAMCLOUD_MITOGEN_PIN_CPUS": "1"})
    assert result.returncode == 0, out
    assert cpus(out).isdigit(), out


@pytest.mark.skipif((os.cpu_count() or 1) >= 4, reason="from four CPUs up mitogen's placement is kept")
def test_below_four_cpus_the_workers_are_not_pinned_unless_asked(localhost_playbook):
    pytest.importorskip("ansible_mitogen")
    if "STREAMCLOUD_MITOGEN_PIN_CPUS" in os.environ:
        pytest.skip("STREAMCLOUD_MITOGEN_PIN_CPUS is set in this environment")
    result, out = localhost_playbook(AFFINITY_PLAYBOOK)
    assert result.returncode == 0, out
    assert cpus(out) == allowed_cpus(), out


def test_ansible_stops_on_a_bad_pin_setting_with_what_to_set(localhost_playbook):
    pytest.importorskip("ansible_mitogen")
    result, out = localhost_playbook(AFFINITY_PLAYBOOK, env={"STREAMCLOUD_MITOGEN_PIN_CPUS": "yes"})
    assert result.returncode != 0, out
    assert "STREAMCLOUD_MITOGEN_PIN_CPUS='yes': set it to 1" in out, out
    assert "CPUS=Cpus_allowed_list" not in out, out
