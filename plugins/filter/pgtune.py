# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pgtune filter: PostgreSQL settings computed from the memory and CPUs a server may use."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pgtune
short_description: PostgreSQL tuning computed from memory, CPUs, connections and storage
version_added: 0.1.0
author: streamcloud platform engineers
description:
  - Computes the settings of PostgreSQL's memory, WAL, planner and parallelism from the memory the
    server may plan for, in the way of pgtune's web/mixed profile.
  - "The memory PostgreSQL plans for is M = O(_input) x O(memory_share), in MB, truncated. C(shared_buffers) is
    M/4 (16 MB to 8 GB); C(effective_cache_size) 3M/4; C(maintenance_work_mem) M/16 (16 MB to 2 GB);
    C(work_mem) what is left after C(shared_buffers) shared by 3 sorts per connection, at least 1 MB.
    WAL sizes are 1 GB and 4 GB, or 256 MB and 1 GB under 2 GB of host memory."
  - The role C(streamcloud.platform.postgresql) writes the result into its conf.d file, where
    C(postgresql_settings) overrides any of it.
options:
  _input:
    description: Memory of the host, in MB (at least 256).
    type: int
    required: true
  cpus:
    description: CPUs PostgreSQL may use (at least 1).
    type: int
    required: true
  memory_share:
    description: Share of the memory PostgreSQL plans for, above 0 and at most 1.
    type: float
    default: 0.75
  max_connections:
    description: C(max_connections) (at least 10); C(work_mem) is computed from it.
    type: int
    default: 100
  storage:
    description: Storage type; sets C(random_page_cost) and C(effective_io_concurrency).
    type: str
    choices: [ssd, hdd]
    default: ssd
"""

EXAMPLES = r"""
- name: Settings for a t2.medium (4 GB, 2 vCPUs)
  ansible.builtin.debug:
    msg: "{{ 4096 | streamcloud.platform.pgtune(cpus=2) }}"
  # shared_buffers: 768MB, effective_cache_size: 2304MB, work_mem: 7864kB, max_parallel_workers: 2, ...

- name: Half the memory, 200 connections, spinning disks
  ansible.builtin.set_fact:
    tuning: "{{ ansible_facts['memtotal_mb'] | streamcloud.platform.pgtune(cpus=ansible_facts['processor_vcpus'],
      memory_share=0.5, max_connections=200, storage='hdd') }}"
"""

RETURN = r"""
_value:
  description:
    - PostgreSQL parameters by name. Sizes are strings with their unit (C(192MB), C(1966kB)); counts are
      integers; C(checkpoint_completion_target) and an SSD's C(random_page_cost) are floats.
  type: dict
"""

from ansible.errors import AnsibleFilterError

# Bounds (MB) and constants of the formulas.
SHARED_BUFFERS_MIN_MB = 16
SHARED_BUFFERS_MAX_MB = 8192
MAINTENANCE_WORK_MEM_MIN_MB = 16
MAINTENANCE_WORK_MEM_MAX_MB = 2048
SORTS_PER_CONNECTION = 3
WORK_MEM_MIN_KB = 1024
# Under this much host memory, the WAL stays small (such hosts have small disks too).
SMALL_HOST_MB = 2048
STORAGE = {
    "ssd": {"random_page_cost": 1.1, "effective_io_concurrency": 200},
    "hdd": {"random_page_cost": 4, "effective_io_concurrency": 2},
}


def _number(name, value, kind, minimum):
    """value as int or float (as Jinja's int/float filters read it), at least minimum, else a clear error."""
    try:
        number = kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"pgtune: {name} must be a number, got {value!r}") from None
    if number < minimum:
        raise AnsibleFilterError(f"pgtune: {name} must be at least {minimum}, got {value!r}")
    return number


def pgtune(memory_mb, cpus, memory_share=0.75, max_connections=100, storage="ssd"):
    """PostgreSQL settings for a host with memory_mb MB and cpus CPUs (see DOCUMENTATION)."""
    memory_mb = _number("memory_mb", memory_mb, int, 256)
    cpus = _number("cpus", cpus, int, 1)
    max_connections = _number("max_connections", max_connections, int, 10)
    share = _number("memory_share", memory_share, float, 0)
    if not 0 < share <= 1:
        raise AnsibleFilterError(f"pgtune: memory_share must be above 0 and at most 1, got {memory_share!r}")
    if storage not in STORAGE:
        raise AnsibleFilterError(f"pgtune: storage must be one of {', '.join(STORAGE)}, got {storage!r}")

    mem = int(memory_mb * share)
    shared_buffers = min(max(mem // 4, SHARED_BUFFERS_MIN_MB), SHARED_BUFFERS_MAX_MB)
    maintenance = min(max(mem // 16, MAINTENANCE_WORK_MEM_MIN_MB), MAINTENANCE_WORK_MEM_MAX_MB)
    work_mem = max((mem - shared_buffers) * 1024 // (max_connections * SORTS_PER_CONNECTION), WORK_MEM_MIN_KB)
    small = memory_mb < SMALL_HOST_MB
    half_cpus = max(cpus // 2, 1)
    return {
        "max_connections": max_connections,
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{mem * 3 // 4}MB",
        "maintenance_work_mem": f"{maintenance}MB",
        "work_mem": f"{work_mem}kB",
        "min_wal_size": "256MB" if small else "1024MB",
        "max_wal_size": "1024MB" if small else "4096MB",
        "checkpoint_completion_target": 0.9,
        "wal_buffers": "16MB",
        "default_statistics_target": 100,
        **STORAGE[storage],
        "max_worker_processes": max(cpus, 8),
        "max_parallel_workers": cpus,
        "max_parallel_workers_per_gather": half_cpus,
        "max_parallel_maintenance_workers": half_cpus,
    }


class FilterModule:
    """streamcloud.platform.pgtune"""

    def filters(self):
        return {"pgtune": pgtune}
