# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention on the backup host, per source host: last N, daily, weekly, monthly (GFS).

Archives are dated by when the backup host received them (the ``NAME.received`` record the receiver
writes; for an archive without one, the earlier of its name's time stamp and its file's mtime),
never by the name alone: a client chooses its names, the backup host its clock. An archive whose
name is more than ``max_future_skew`` seconds after its receive time is suspect: it is moved to
``.quarantine/`` and fills no slot.

For each period the newest archive of each of the most recent ``keep_<period>`` periods that hold
an archive is kept (ISO weeks, calendar months, UTC). The union of the rules is kept. Before anything
is deleted, every archive the plan keeps is hashed (``verify``): a corrupted one (or one without its
``.sha256``) is moved to ``.quarantine/`` and the plan is made again without it, so its good
neighbours take its slot. The newest verified archive of every source is always kept. Files that
are not archives, and symlinks, are never touched; ``recurse`` enters real directories only.

``choose`` is the restore's side of the same dating: the archive a restore takes is the newest by
receive time (never by name) whose SHA-256 still matches its sidecar. It only reads: a corrupted
or future-dated archive is skipped and reported, and left for ``verify`` and rotation to quarantine.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import stat

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import parse_archive_name
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import (
    check_stored,
    quarantine,
    read_received,
    read_sidecar,
    sidecars,
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


def _is_file(path):
    with contextlib.suppress(FileNotFoundError):
        return stat.S_ISREG(os.lstat(path).st_mode)
    return False


def _is_dir(path):
    with contextlib.suppress(FileNotFoundError):
        return stat.S_ISDIR(os.lstat(path).st_mode)
    return False


def received_at(path, named):
    """When the backup host received an archive: its record, else the earlier of name and mtime."""
    recorded = read_received(path)
    if recorded is not None:
        return recorded
    mtime = datetime.datetime.fromtimestamp(os.lstat(path).st_mtime, datetime.timezone.utc)
    return min(named, mtime)


def scan(directory):
    """{source: [(name, received, named)]} for the archives (regular files) in one directory."""
    if not _is_dir(directory):
        raise BackupError(f"path {directory} is not a directory on the backup host (symlinks are not followed)")
    by_source = {}
    for entry in os.listdir(directory):
        parsed = parse_archive_name(entry)
        path = os.path.join(directory, entry)
        if parsed and _is_file(path):
            by_source.setdefault(parsed[0], []).append((entry, received_at(path, parsed[1]), parsed[1]))
    return by_source


def _newest_first(archives):
    return sorted(archives, key=lambda item: (item[1], item[0]), reverse=True)


def _rotate_source(current, archives, policy, verify, max_future_skew, check_mode, result):
    skew = datetime.timedelta(seconds=max_future_skew)
    trusted = []
    for name, when, named in archives:
        if named > when + skew:
            _set_aside(current, name, f"named {named:%Y-%m-%dT%H:%M:%SZ}, received {when:%Y-%m-%dT%H:%M:%SZ}: "
                       f"dated more than {max_future_skew} s in the future", check_mode, result)
        else:
            trusted.append((name, when))
    verified = set()
    while True:
        protect = None
        for name, _when in _newest_first(trusted):
            if name in verified or (not verify and read_sidecar(os.path.join(current, name)) is not None):
                protect = name
                break
            if verify:
                problem = check_stored(os.path.join(current, name))
                if problem is None:
                    verified.add(name)
                    protect = name
                    break
                _set_aside(current, name, problem, check_mode, result)
                trusted = [a for a in trusted if a[0] != name]
        keep = plan(trusted, policy, protect)
        doomed = [a for a in trusted if a[0] not in keep]
        bad = []
        if verify and doomed:
            # Nothing is deleted on the strength of a slot a corrupted archive fills.
            for name in sorted(set(keep) - verified):
                problem = check_stored(os.path.join(current, name))
                if problem is None:
                    verified.add(name)
                else:
                    bad.append(name)
                    _set_aside(current, name, problem, check_mode, result)
        if not bad:
            break
        trusted = [a for a in trusted if a[0] not in bad]
    if protect:
        result["protected"].append(os.path.join(current, protect))
    for name, _when in sorted(trusted, key=lambda item: (item[1], item[0])):
        path = os.path.join(current, name)
        if name in keep:
            result["kept"].append({"path": path, "reasons": keep[name]})
            continue
        if not check_mode:
            os.unlink(path)
            for extra in sidecars(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(extra)
        result["deleted"].append(path)
        result["changed"] = True


def _set_aside(current, name, reason, check_mode, result):
    path = os.path.join(current, name)
    if not check_mode:
        path = quarantine(path, reason)
    result["quarantined"].append({"path": path, "reason": reason})
    result["changed"] = True


def source_dirs(root):
    """``root`` and its real subdirectories (one per source; no dot directory, no symlink followed)."""
    if not _is_dir(root):
        raise BackupError(f"path {root} is not a directory on the backup host (symlinks are not followed)")
    subdirectories = (os.path.join(root, d) for d in os.listdir(root) if not d.startswith("."))
    return [root, *sorted(d for d in subdirectories if _is_dir(d))]


def rotate(directory, policy, recurse=False, verify=True, check_mode=False, max_future_skew=3600):
    check_policy(policy)
    if not isinstance(max_future_skew, int) or isinstance(max_future_skew, bool) or max_future_skew < 0:
        raise BackupError(f"max_future_skew {max_future_skew!r} must be 0 or a number of seconds")
    directories = source_dirs(directory) if recurse else [directory]
    result = {"kept": [], "deleted": [], "protected": [], "quarantined": [], "changed": False}
    for current in directories:
        for _source, archives in sorted(scan(current).items()):
            _rotate_source(current, archives, policy, verify, max_future_skew, check_mode, result)
    return result


DAY_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})\Z")


def choose(directory, source, wanted="latest", max_future_skew=3600, verify=True):
    """The archive a restore of ``source`` takes from ``directory`` (read-only).

    ``wanted``: ``latest`` (every archive), a day ``YYYY-MM-DD`` or ``YYYYMMDD`` (the archives whose
    name is of that day), or an archive file name (that one, taken as asked: the restore checks its
    hash). Among the candidates, newest received first, the first whose SHA-256 matches its sidecar
    and whose name is at most ``max_future_skew`` seconds after its receive time. Returns
    {"name": str or None, "received": ISO time or None, "skipped": [{"name", "reason"}],
    "available": [names, newest received first]}.
    """
    archives = _newest_first(scan(directory).get(source, []))
    answer = {"name": None, "received": None, "skipped": [], "available": [a[0] for a in archives]}
    if wanted != "latest" and parse_archive_name(wanted):
        for name, when, _named in archives:
            if name == wanted:
                answer.update(name=name, received=when.isoformat())
        return answer
    day = DAY_RE.match(wanted)
    if wanted != "latest" and not day:
        raise BackupError(f"archive {wanted!r}: use latest, a day (YYYY-MM-DD) or an archive file name")
    skew = datetime.timedelta(seconds=max_future_skew)
    for name, when, named in archives:
        if day and named.strftime("%Y%m%d") != "".join(day.groups()):
            continue
        if named > when + skew:
            reason = (f"named {named:%Y-%m-%dT%H:%M:%SZ}, received {when:%Y-%m-%dT%H:%M:%SZ}: dated more than "
                      f"{max_future_skew} s in the future")
        else:
            reason = check_stored(os.path.join(directory, name)) if verify else None
        if reason is None:
            answer.update(name=name, received=when.isoformat())
            break
        answer["skipped"].append({"name": name, "reason": reason})
    return answer
