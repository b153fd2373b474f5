"""The progress callback, in a real ansible-playbook run and in its two formatting helpers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ansible_collections.streamcloud.platform.plugins.callback.progress import elapsed, host_list

ROOT = Path(__file__).resolve().parents[4]


def test_elapsed_reads_as_seconds_minutes_then_hours():
    assert elapsed(0) == "0 s"
    assert elapsed(59.9) == "59 s"
    assert elapsed(187) == "3 min 07 s"
    assert elapsed(3720) == "1 h 02 min"


def test_host_list_names_the_first_hosts_then_counts_the_rest():
    assert host_list(["a", "b"]) == "a, b"
    assert host_list([f"h{i}" for i in range(9)], shown=3) == "h0, h1, h2 and 6 more"


def test_a_run_says_play_k_of_n_and_each_role_once(tmp_path):
    role = tmp_path / "roles" / "greeter" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("- name: First\n  ansible.builtin.debug: {msg: one}\n"
                                   "- name: Second\n  ansible.builtin.debug: {msg: two}\n")
    (tmp_path / "inner.yml").write_text(
        "- name: Inner play\n  hosts: web\n  gather_facts: false\n  roles: [greeter]\n")
    (tmp_path / "site.yml").write_text(
        "- name: Outer play\n  hosts: all\n  gather_facts: false\n"
        "  tasks:\n    - name: Plain task\n      ansible.builtin.debug: {msg: plain}\n"
        "- name: Imported\n  ansible.builtin.import_playbook: inner.yml\n"
        "- name: Failing play\n  hosts: db\n  gather_facts: false\n"
        "  tasks:\n    - name: Fail\n      ansible.builtin.fail: {msg: on purpose}\n")
    (tmp_path / "hosts.ini").write_text(
        "[web]\nweb1 ansible_connection=local\nweb2 ansible_connection=local\n"
        f"[db]\ndb1 ansible_connection=local\n[all:vars]\nansible_python_interpreter={sys.executable}\n")
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
               ANSIBLE_CALLBACKS_ENABLED="streamcloud.platform.progress",
               ANSIBLE_ROLES_PATH=str(tmp_path / "roles"),
               ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)  # the run starts in tmp_path, which has no ansible.cfg
    run = subprocess.run(["ansible-playbook", "-i", "hosts.ini", "site.yml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("[progress ")]
    text = "\n".join(re.sub(r"^\[progress [^\]]+\] ", "", line) for line in lines)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert text.splitlines() == [
        "play 1 of 3: Outer play (on web1, web2, db1)",
        "play 2 of 3: Inner play (on web1, web2)",
        "role greeter starts in play 2 of 3",
        "play 3 of 3: Failing play (on db1)",
        "3 of 3 plays ran, 3 hosts: failed on db1",
    ], run.stdout[-3000:]
