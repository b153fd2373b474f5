# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention on the backup host, per source host: last N, daily, weekly, monthly (GFS).

For each period the newest archive of each of the most recent ``keep_<period>`` periods that hold
an archive is kept (ISO weeks, calendar months, UTC). The union of the rules is kept. The newest
verified archive of every source (its SHA-256 matches its sidecar) is always kept, whatever the
policy says. Files that are not archives are never touched.
"""

from __future__ import annotations

import contextlib
import os

from ansible_collections.streamcloud.platform.plugins.module_utils.backup_common import (
    BackupError,
    parse_archive_name,
    read_sidecar,
    sha256_file,
    sidecar_path,
)

RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


def check_policy(policy):
    for rule in RULES:
        value = policy.get(rule, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BackupError(f"{rule} must be 0 or a positive whole number, got {value!r}")
    if not any(policy.get(rule, 0) for rule in RULES):
        raise BackupError("every retention rule is 0: set at least one of keep_last, keep_daily, keep_weekly, "
                          "keep_monthly (rotation would otherwise keep only the newest archive)")


def plan(archives, policy, protect=None):
    """archives: [(name, datetime)]. Returns {name: [reasons]} for what is kept; the rest goes."""
    check_policy(policy)
    ordered = sorted(archives, key=lambda item: (item[1], item[0]), reverse=True)
    keep = {}
    for name, _when in ordered[:policy.get("keep_last", 0)]:
        keep.setdefault(name, []).append("last")
    buckets = {
        "keep_daily": ("daily", lambda t: t.date()),
        "keep_weekly": ("weekly", lambda t: tuple(t.isocalendar())[:2]),
        "keep_monthly": ("monthly", lambda t: (t.year, t.month)),
    }
    for rule, (reason, key) in buckets.items():
        wanted = policy.get(rule, 0)
        seen = set()
        for name, when in ordered:
            if len(seen) >= wanted:
                break
            bucket = key(when)
            if bucket in seen:
                continue
            seen.add(bucket)
            keep.setdefault(name, []).append(reason)
    if protect is not None:
        keep.setdefault(protect, []).append("newest verified")
    return keep


def scan(directory):
    """{source: [(name, datetime)]} for the archives in one directory."""
    if not os.path.isdir(directory):
        raise BackupError(f"path {directory} is not a directory on the backup host")
    by_source = {}
    for entry in os.listdir(directory):
        parsed = parse_archive_name(entry)
        if parsed and os.path.isfile(os.path.join(directory, entry)):
            by_source.setdefault(parsed[0], []).append((entry, parsed[1]))
    return by_source


def newest_verified(directory, archives, verify=True):
    """The newest archive whose sidecar exists (and, with verify, whose SHA-256 matches it)."""
    for name, _when in sorted(archives, key=lambda item: (item[1], item[0]), reverse=True):
        path = os.path.join(directory, name)
        recorded = read_sidecar(path)
        if recorded is None:
            continue
        if not verify or sha256_file(path) == recorded:
            return name
    return None


def rotate(directory, policy, recurse=False, verify_newest=True, check_mode=False):
    check_policy(policy)
    directories = [directory]
    if recurse:
        if not os.path.isdir(directory):
            raise BackupError(f"path {directory} is not a directory on the backup host")
        directories += sorted(os.path.join(directory, d) for d in os.listdir(directory)
                              if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)))
    result = {"kept": [], "deleted": [], "protected": [], "changed": False}
    for current in directories:
        for _source, archives in sorted(scan(current).items()):
            protect = newest_verified(current, archives, verify_newest)
            keep = plan(archives, policy, protect)
            if protect:
                result["protected"].append(os.path.join(current, protect))
            for name, _when in sorted(archives, key=lambda item: (item[1], item[0])):
                path = os.path.join(current, name)
                if name in keep:
                    result["kept"].append({"path": path, "reasons": keep[name]})
                    continue
                if not check_mode:
                    os.unlink(path)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(sidecar_path(path))
                result["deleted"].append(path)
                result["changed"] = True
    return result
