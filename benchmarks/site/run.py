#!/usr/bin/env python3
"""Converge time of the whole lab: fresh containers, then the no-op re-run, with the project's
ansible.cfg against Ansible's defaults, taking turns in one run.

    benchmarks/site/run.py [--pairs 1] [--distro debian12] [--keep]
    benchmarks/site/run.py --noop-only --inventory inventories/lab   # the no-op re-run of a lab that is up

The lab is `playbooks/lab.yml` (boot the containers, then site.yml) on an inventory of its own: the
lab's hosts renamed bench-site-* on the network bench-site, with the lab's group_vars linked in as
they are (the site scenario does the same), no published ports (a real lab may be up), secrets in a
scratch directory. Per configuration and pair:

- fresh:  the containers are removed (untimed), then lab.yml is timed from nothing: boot and converge;
- no-op:  lab.yml again on the converged containers (the recap must show changed=0 everywhere).

Configurations:
- project:  the repository's ansible.cfg (mitogen's linear strategy, forks 20, pipelining, jsonfile fact cache,
            gathering smart);
- defaults: Ansible's defaults (forks 5, no pipelining, no fact cache, facts gathered by every play),
            with only the collection path set.
--noop-only times only the no-op re-run, on the converged hosts of --inventory (a lab that is up:
its containers are kept). Both with the ansible.posix.profile_roles callback, which gives the time per role. The order
alternates per pair (project first in odd pairs), so the load other people put on this shared machine
falls on both alike; the ratios are the result, the seconds are what the machine did then.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
# profile_roles' summary lines: "streamcloud.platform.common ---- 60.62s"
ROLE_LINE = re.compile(r"^(\S+) -+ (\d+\.\d+)s$", re.MULTILINE)


def bench_inventory(scratch: Path) -> Path:
    """The lab's hosts as bench-site-*, without published ports; the lab's group_vars linked."""
    lab = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())
    lab_only = {"lab_published_ports", "proftpd_masquerade_address", "nginx_public_https_port"}
    inventory = scratch / "inventory"
    inventory.mkdir()
    lab["all"]["vars"].update(lab_domain="bench.streamcloud.test", lab_dir=str(scratch / "lab"),
                              lab_network="bench-site")
    for group in lab["all"]["children"].values():
        group["hosts"] = {name.replace("lab-", "bench-site-", 1): {k: v for k, v in (hvars or {}).items()
                                                                    if k not in lab_only} or None
                          for name, hvars in group["hosts"].items()}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(lab, sort_keys=False))
    (inventory / "group_vars").symlink_to(ROOT / "inventories/lab/group_vars")
    return inventory


def defaults_cfg(scratch: Path) -> Path:
    cfg = scratch / "defaults.cfg"
    cfg.write_text(f"[defaults]\ncollections_path = {ROOT / '.build/collections'}\ninterpreter_python = auto_silent\n"
                   "retry_files_enabled = false\n")
    return cfg


def playbook(name: str, inventory: Path, cfg: Path, log: Path, distro: str) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_roles",
               ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true", LAB_DISTRO=distro,
               PATH=f"{BIN}:{os.environ['PATH']}")
    started = time.monotonic()
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / name)],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"{name} failed ({result.returncode}); see {log}")
    return seconds, result.stdout


def recap(output: str) -> dict[str, int]:
    """Changed tasks per host (the last PLAY RECAP)."""
    return {host: int(changed) for host, _, changed, _, _ in RECAP.findall(output.rsplit("PLAY RECAP", 1)[-1])}


def roles(output: str) -> dict[str, float]:
    return {role: float(seconds) for role, seconds in ROLE_LINE.findall(output)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--distro", default="debian12")
    parser.add_argument("--keep", action="store_true", help="leave the containers up at the end")
    parser.add_argument("--noop-only", action="store_true", help="time only the no-op re-run (hosts converged)")
    parser.add_argument("--inventory", type=Path, help="an inventory of converged lab hosts (with --noop-only)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-site-"))
    inventory = args.inventory.resolve() if args.inventory else bench_inventory(scratch)
    if args.noop_only and not args.inventory:
        parser.error("--noop-only needs --inventory (hosts that are converged already)")
    configs = {"project": ROOT / "ansible.cfg", "defaults": defaults_cfg(scratch)}
    results = []
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, scratch {scratch}", flush=True)
    for pair in range(1, args.pairs + 1):
        order = ["project", "defaults"] if pair % 2 else ["defaults", "project"]
        for name in order:
            row = {"pair": pair, "config": name, "load": round(os.getloadavg()[0], 1), "fresh": 0.0, "fresh_roles": {}}
            if not args.noop_only:
                down_log = scratch / f"down-{pair}-{name}.log"
                playbook("lab_down.yml", inventory, configs["project"], down_log, args.distro)
                row["fresh"], out = playbook("lab.yml", inventory, configs[name], scratch / f"fresh-{pair}-{name}.log",
                                             args.distro)
                row["fresh_roles"] = roles(out)
            row["noop"], out = playbook("lab.yml", inventory, configs[name], scratch / f"noop-{pair}-{name}.log",
                                        args.distro)
            row["noop_roles"] = roles(out)
            row["noop_changed"] = recap(out)
            results.append(row)
            print(json.dumps(row), flush=True)
    if not args.keep and not args.inventory:
        playbook("lab_down.yml", inventory, configs["project"], scratch / "down-end.log", args.distro)

    def mean(config: str, key: str) -> float:
        values = [r[key] for r in results if r["config"] == config]
        return sum(values) / len(values)

    print("\n| config | fresh converge (s) | no-op re-run (s) | no-op / fresh | changed in the no-op |")
    print("|---|---|---|---|---|")
    for name in configs:
        changed = sum(sum(r["noop_changed"].values()) for r in results if r["config"] == name)
        share = f"{mean(name, 'noop') / mean(name, 'fresh'):.2f}" if mean(name, "fresh") else "-"
        print(f"| {name} | {mean(name, 'fresh'):.0f} | {mean(name, 'noop'):.0f} | {share} | {changed} |")
    fresh = f"{mean('defaults', 'fresh') / mean('project', 'fresh'):.2f}x" if mean("project", "fresh") else "-"
    print(f"\ndefaults / project: fresh {fresh}, no-op {mean('defaults', 'noop') / mean('project', 'noop'):.2f}x")
    print("\nPer role (s), pair 1: | role | project fresh | defaults fresh | project no-op | defaults no-op |")
    first = {r["config"]: r for r in results if r["pair"] == 1}
    project, defaults = first["project"], first["defaults"]
    order = project["fresh_roles"] or project["noop_roles"]
    for role in sorted(order, key=lambda k: -order[k]):
        cells = [project["fresh_roles"], defaults["fresh_roles"], project["noop_roles"], defaults["noop_roles"]]
        print(f"| {role} | " + " | ".join(f"{cell.get(role, 0):.0f}" for cell in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
