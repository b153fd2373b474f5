"""make lab after make lab-down: the new containers must not be configured with facts that the
project's fact cache (ansible.cfg: jsonfile, two hours, gathering smart) kept from the old ones.

The plays playbooks/lab.yml runs between booting the containers and site.yml are run here on a local
host named like a lab host, whose cached facts say it is another machine; the next play must see the
host as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def run(playbook: Path, inventory: Path, cache: Path) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache),
               ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(playbook)], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_lab_gathers_facts_afresh_before_site(tmp_path):
    plays = yaml.safe_load((ROOT / "playbooks/lab.yml").read_text())
    site = next(i for i, play in enumerate(plays) if play.get("ansible.builtin.import_playbook") == "site.yml")
    between = plays[1:site]  # after the play that boots the containers, before site.yml
    show = {"name": "Show the node name", "hosts": "all", "gather_facts": True,
            "tasks": [{"name": "Node name", "ansible.builtin.debug": {"msg": "node={{ ansible_facts['nodename'] }}"}}]}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"lab-web": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    cache = tmp_path / "facts"
    first = tmp_path / "first.yml"
    first.write_text(yaml.safe_dump([show]))
    real = run(first, inventory, cache).split("node=", 1)[1].split('"', 1)[0]
    # The cache now says lab-web is an earlier container.
    for path in cache.iterdir():
        outer = json.loads(path.read_text())
        facts = json.loads(outer["__payload__"]) if "__payload__" in outer else outer
        assert facts["ansible_nodename"] == real
        facts["ansible_nodename"] = "an-earlier-container"
        path.write_text(json.dumps({"__payload__": json.dumps(facts)} if "__payload__" in outer else facts))
    playbook = tmp_path / "lab-start.yml"
    playbook.write_text(yaml.safe_dump([*between, show]))
    assert f"node={real}" in run(playbook, inventory, cache)
