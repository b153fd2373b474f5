# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration_plan filter: what a directory of NNNN_name.sql files and a schema_migrations table leave to do."""

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_plan
short_description: Compare migration files with the migrations a database has applied
version_added: 0.1.0
author: streamcloud platform engineers
description:
  - Takes the migration files (C(NNNN_name.sql), numbered from C(0001)), the SHA-256 of each file's content,
    and the rows of the database's C(schema_migrations) table, and says which files are still to apply and
    what disagrees.
  - An applied migration is never edited or removed, and a new one is numbered above the newest applied one;
    the role C(streamcloud.platform.postgresql) refuses to apply anything while RV(_value.changed),
    RV(_value.missing) or RV(_value.out_of_order) is not empty.
options:
  _input:
    description: Paths (or names) of the migration files, in any order.
    type: list
    elements: path
    required: true
  checksums:
    description: SHA-256 (hex) of each file's content, in the order of O(_input).
    type: list
    elements: str
    required: true
  applied:
    description: Rows of C(schema_migrations), each with C(version) and C(checksum); empty before the first run.
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Plan the migrations of a database
  ansible.builtin.set_fact:
    plan: "{{ files | streamcloud.platform.migration_plan(checksums=sums, applied=rows.query_result) }}"
  vars:
    files: "{{ query('ansible.builtin.fileglob', 'migrations/*.sql') }}"
    sums: "{{ query('ansible.builtin.file', *files, rstrip=false) | map('hash', 'sha256') | list }}"
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    migrations:
      description: Every file as C(file) (base name), C(version) (int), C(name) and C(checksum), by version.
      type: list
      elements: dict
    pending:
      description: The migrations not applied yet, by version, in the form of RV(_value.migrations).
      type: list
      elements: dict
    changed:
      description: Base names of applied migrations whose file no longer has the checksum recorded.
      type: list
      elements: str
    missing:
      description: Applied versions that have no file.
      type: list
      elements: int
    applied_max:
      description: The newest applied version, 0 when none is.
      type: int
    out_of_order:
      description: Base names of pending migrations numbered below RV(_value.applied_max).
      type: list
      elements: str
"""

import os
import re

from ansible.errors import AnsibleFilterError

FILE_NAME = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql$")


def _migration(path, checksum):
    base = os.path.basename(str(path))
    match = FILE_NAME.match(base)
    if not match:
        raise AnsibleFilterError(f"migration_plan: {base!r} is not named NNNN_name.sql (lower case, digits, _)")
    return {"file": base, "version": int(match["version"]), "name": match["name"], "checksum": str(checksum)}


def migration_plan(files, checksums, applied=None):
    """The plan for files (with their checksums) against the applied rows (see DOCUMENTATION)."""
    files, checksums, applied = list(files), list(checksums), list(applied or [])
    if len(files) != len(checksums):
        raise AnsibleFilterError(
            f"migration_plan: {len(files)} file(s) but {len(checksums)} checksum(s); give one checksum per file"
        )
    migrations = sorted((_migration(f, c) for f, c in zip(files, checksums, strict=True)), key=lambda m: m["version"])
    by_version = {}
    for migration in migrations:
        if migration["version"] in by_version:
            raise AnsibleFilterError(
                f"migration_plan: {by_version[migration['version']]['file']} and {migration['file']} share a number"
            )
        by_version[migration["version"]] = migration

    try:
        rows = sorted(({"version": int(r["version"]), "checksum": str(r["checksum"])} for r in applied),
                      key=lambda r: r["version"])
    except (KeyError, TypeError, ValueError):
        raise AnsibleFilterError("migration_plan: each applied row needs an integer version and a checksum") from None
    applied_versions = {r["version"] for r in rows}
    applied_max = max(applied_versions, default=0)
    pending = [m for m in migrations if m["version"] not in applied_versions]
    return {
        "migrations": migrations,
        "pending": pending,
        "changed": [by_version[r["version"]]["file"] for r in rows
                    if r["version"] in by_version and by_version[r["version"]]["checksum"] != r["checksum"]],
        "missing": sorted(v for v in applied_versions if v not in by_version),
        "applied_max": applied_max,
        "out_of_order": [m["file"] for m in pending if m["version"] < applied_max],
    }


class FilterModule:
    """streamcloud.platform.migration_plan"""

    def filters(self):
        return {"migration_plan": migration_plan}
