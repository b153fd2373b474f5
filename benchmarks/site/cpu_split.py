#!/usr/bin/env python3
"""Where the CPU time of one command goes: the command's own process, its reaped children (Ansible's
workers and mitogen's multiplexer), the Docker containers (their cgroups), and dockerd/containerd.

    .venv/bin/python benchmarks/site/cpu_split.py ansible-playbook -i inventories/lab playbooks/lab.yml

Prints the wall time, the machine's busy CPU-seconds out of all (from /proc/stat), and the split. This
is how the cost of a task over the docker connection was found (benchmarks/RESULTS.md, section site):
a no-op run spent 45 CPU-s in the containers and 18 in the Docker daemons while Python was discovered
before every task, and 52 of its 69 busy CPU-s in the controller while mitogen pinned it to one CPU.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")


def machine() -> tuple[float, float]:
    """All and idle CPU-seconds of the machine since boot."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields) / HZ, (fields[3] + fields[4]) / HZ


def containers() -> float:
    """CPU-seconds of Docker's containers: the cgroup v1 `docker` group, else v2's (cgroupfs or systemd driver)."""
    v1 = "/sys/fs/cgroup/cpuacct/docker/cpuacct.usage"
    if os.path.exists(v1):
        with open(v1) as usage:
            return int(usage.read()) / 1e9
    for pattern in ("/sys/fs/cgroup/docker/cpu.stat", "/sys/fs/cgroup/unified/docker/cpu.stat",
                    "/sys/fs/cgroup/system.slice/docker-*.scope/cpu.stat"):
        paths = glob.glob(pattern)
        if paths:
            total = 0.0
            for path in paths:
                with open(path) as stat:
                    total += sum(int(line.split()[1]) / 1e6 for line in stat if line.startswith("usage_usec"))
            return total
    return 0.0


def daemons() -> dict[str, float]:
    out = dict.fromkeys(DAEMONS, 0.0)
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if name in out:
            out[name] += (int(fields[11]) + int(fields[12])) / HZ
    return out


def main() -> int:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    all0, idle0 = machine()
    cont0, daem0, start = containers(), daemons(), time.monotonic()
    proc = subprocess.Popen(sys.argv[1:])
    # The command's own times and its reaped children's, read just before it is reaped.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    rc = proc.wait()
    wall = time.monotonic() - start
    all1, idle1 = machine()
    cont1, daem1 = containers(), daemons()
    user, system, cuser, csystem = (int(v) / HZ for v in fields[11:15])
    print(f"wall {wall:.1f} s, rc {rc}; machine busy {(all1 - all0) - (idle1 - idle0):.1f} of {all1 - all0:.1f} "
          f"CPU-s ({os.cpu_count()} CPUs)")
    print(f"command: user {user:.1f} sys {system:.1f}; its reaped children: user {cuser:.1f} sys {csystem:.1f} CPU-s")
    print(f"containers: {cont1 - cont0:.1f} CPU-s")
    print("daemons: " + ", ".join(f"{name} {daem1[name] - daem0[name]:.1f}" for name in DAEMONS) + " CPU-s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
