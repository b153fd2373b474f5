#!/usr/bin/env python3
"""No-op cost of installing the backup code: one packed file (today) against the per-file loop (before).

    .venv/bin/python benchmarks/backup/install_noop.py [--host backup-server] [--rounds 5]

Target: a running container of this project (the backup scenario's backup-server after `molecule converge -s
backup`), reached as Molecule reaches it (community.docker.docker, pipelining on). Two playbooks install the same
kind of thing into separate directories of the container:
- loop: the role's tasks at 5d382b9: a directory, the eleven backup_*.py of that commit copied one loop item
  at a time, and the two entry points templated in a loop (the files come from `git show 5d382b9:<path>`);
- packed: the role's tasks now: pack.py on the controller (run_once), one copy of the packed file, one link.
Each is run once to install, then both are run `--rounds` times in alternating order with nothing to change
(every task ok, none changed; checked), and the wall time of each ansible-playbook run is measured.
Printed: the medians and loop/packed, the factor by which a no-op run of this part of the role got cheaper.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEFORE = "5d382b9"
OLD_UTILS = ["common", "crypt", "compress", "manifest", "dumps", "archive", "transfer", "receiver", "rotate",
             "restore", "cli"]
LOOP = """
- name: Per-file loop (the role at {before})
  hosts: target
  gather_facts: false
  tasks:
    - name: Create the directory of the backup code
      ansible.builtin.file:
        path: /var/tmp/bench-loop/lib/mu
        state: directory
        owner: root
        group: root
        mode: "0755"
    - name: Install the module_utils one item at a time
      ansible.builtin.copy:
        src: "{src}/backup_{{{{ item }}}}.py"
        dest: "/var/tmp/bench-loop/lib/mu/backup_{{{{ item }}}}.py"
        owner: root
        group: root
        mode: "0644"
      loop: {utils}
    - name: Install the two entry points
      ansible.builtin.template:
        src: "{src}/{{{{ item }}}}.j2"
        dest: "/var/tmp/bench-loop/{{{{ item }}}}"
        owner: root
        group: root
        mode: "0755"
      loop: [streamcloud-backup, streamcloud-backup-receive]
"""
PACKED = """
- name: One packed file (the role now)
  hosts: target
  gather_facts: false
  tasks:
    - name: Pack
      ansible.builtin.command:
        argv: ["{python}", "{repo}/roles/backup/files/pack.py", "{repo}/plugins/module_utils/_backup", "{out}"]
      delegate_to: localhost
      run_once: true
      changed_when: false
    - name: Install it
      ansible.builtin.copy:
        src: "{out}"
        dest: /var/tmp/bench-packed/streamcloud-backup
        owner: root
        group: root
        mode: "0755"
    - name: Link the receiver
      ansible.builtin.file:
        src: streamcloud-backup
        dest: /var/tmp/bench-packed/streamcloud-backup-receive
        state: link
"""


def git_show(path: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), "show", f"{BEFORE}:{path}"], capture_output=True, text=True,
                          check=True).stdout


def play(playbook: Path, inventory: Path, env: dict) -> tuple[float, dict]:
    started = time.monotonic()
    done = subprocess.run(["ansible-playbook",
                           "-i", str(inventory), str(playbook)], capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{playbook.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    recap = [line for line in done.stdout.splitlines() if "changed=" in line]
    return elapsed, {"recap": recap[-1].split(":", 1)[1].split() if recap else []}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--host", default="backup-server")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        work = Path(tmp)
        src = work / "old"
        src.mkdir()
        for name in OLD_UTILS:
            (src / f"backup_{name}.py").write_text(git_show(f"plugins/module_utils/backup_{name}.py"))
        for name in ("streamcloud-backup", "streamcloud-backup-receive"):
            (src / f"{name}.j2").write_text(git_show(f"roles/backup/templates/{name}.j2"))
        inventory = work / "hosts.yml"
        inventory.write_text(json.dumps({"target": {"hosts": {args.host: {
            "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
            "__backup_shebang": "#!/usr/bin/python3"}}}}))
        loop = work / "loop.yml"
        loop.write_text(LOOP.format(before=BEFORE, src=src, utils=json.dumps(OLD_UTILS)))
        packed = work / "packed.yml"
        packed.write_text(PACKED.format(python=sys.executable, repo=REPO, out=work / "streamcloud-backup.pyz"))
        env = dict(os.environ, ANSIBLE_PIPELINING="true", ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
                   ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        # The role installs into /usr/local/sbin, which exists; so does this directory before the first run.
        subprocess.run(["docker", "exec", args.host, "mkdir", "-p", "/var/tmp/bench-packed"], check=True)
        for playbook in (loop, packed):
            play(playbook, inventory, env)
        times = {"loop": [], "packed": []}
        for index in range(args.rounds):
            order = [("loop", loop), ("packed", packed)]
            for label, playbook in order if index % 2 == 0 else order[::-1]:
                elapsed, info = play(playbook, inventory, env)
                changed = [field for field in info["recap"] if field.startswith("changed=")]
                if changed != ["changed=0"]:
                    raise SystemExit(f"{label}: not a no-op run: {info['recap']}")
                times[label].append(elapsed)
        load = os.getloadavg()
    loop_s, packed_s = statistics.median(times["loop"]), statistics.median(times["packed"])
    print(json.dumps({"rounds": args.rounds, "loop_s": times["loop"], "packed_s": times["packed"],
                      "load": [round(x, 1) for x in load]}))
    print("| install of the backup code, no-op run | median s |")
    print("|---|---|")
    print(f"| per-file loop (role at {BEFORE}: 11 copies + 2 templates) | {loop_s:.2f} |")
    print(f"| one packed file (pack + copy + link) | {packed_s:.2f} |")
    print(f"| loop / packed | {loop_s / packed_s:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
