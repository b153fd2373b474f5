# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scrub on the backup host: every stored archive of every source hashed again, from cron.

It reads everything and changes one thing only: an archive whose SHA-256 no longer matches its ``.sha256`` (or
that has none) is moved to ``.quarantine/`` with its sidecars and a ``.reason``, as rotation does, so that it never
fills a retention slot and a restore never takes it. It needs no key: an encrypted archive is checked as the
ciphertext the backup host received. The outcome goes to a status file (JSON, replaced atomically) that a
monitoring agent reads: when it ran, how many archives it checked, which were bad, how long it took.
"""

from __future__ import annotations

import os

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import utcnow
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.rotate import scan, source_dirs
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import check_stored, quarantine

STATUS_FILE = "/var/lib/streamcloud-backup/scrub.json"


def scrub(root):
    """Hashes every archive below ``root`` (its own and one level of real subdirectories, as rotation walks it);
    returns the status: {"time", "archives_checked", "bad": [{"path", "reason", "quarantined"}], "duration_s"}."""
    started = utcnow()
    checked, bad = 0, []
    for directory in source_dirs(root):
        for archives in scan(directory).values():
            for name, _received, _named in sorted(archives):
                path = os.path.join(directory, name)
                try:
                    problem = check_stored(path)
                except FileNotFoundError:  # rotated away while the scrub ran
                    continue
                checked += 1
                if problem is not None:
                    bad.append({"path": path, "reason": problem, "quarantined": quarantine(path, f"scrub: {problem}")})
    return {"event": "streamcloud-backup-scrub", "time": started.isoformat(), "archives_checked": checked,
            "bad": bad, "status": "bad" if bad else "ok",
            "duration_s": round((utcnow() - started).total_seconds(), 3)}
