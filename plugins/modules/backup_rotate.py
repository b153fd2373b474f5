#!/usr/bin/python
# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_rotate
short_description: Grandfather-father-son retention of archives on the backup host
version_added: "0.1.0"
description:
  - Applies a retention policy per source host to the archives in O(path), named C(<source>-<stamp>.tar.*). It keeps
    the last O(keep_last), and the newest archive of each of the most recent O(keep_daily) days, O(keep_weekly) ISO
    weeks and O(keep_monthly) months that hold one (UTC). The union is kept, the rest is deleted with its
    C(.sha256) and C(.received) sidecars.
  - Archives are dated by when the backup host received them (the C(.received) record its receiver writes; without
    one, the earlier of the name's time stamp and the file's mtime), never by the name a client chose.
  - An archive named more than O(max_future_skew) seconds after its receive time, and (with O(verify)) an archive
    whose SHA-256 no longer matches its sidecar, is moved to C(.quarantine/) next to it and fills no slot.
  - The newest verified archive of each source (its SHA-256 matches its sidecar) is never deleted.
  - Files that are not archives (partial uploads, notes) and symlinks are never touched; O(recurse) does not follow
    symlinks.
author: streamcloud platform engineers (@streamcloud)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Returns what would be kept and deleted; deletes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description: Directory holding archives (or, with O(recurse), one subdirectory per source host).
    type: path
    required: true
  recurse:
    description: Also rotate every immediate subdirectory of O(path).
    type: bool
    default: false
  keep_last:
    description: Newest archives kept whatever their date.
    type: int
    default: 0
  keep_daily:
    description: Days for which the newest archive is kept.
    type: int
    default: 0
  keep_weekly:
    description: ISO weeks for which the newest archive is kept.
    type: int
    default: 0
  keep_monthly:
    description: Months for which the newest archive is kept.
    type: int
    default: 0
  verify:
    description:
      - Before anything is deleted, hash every archive the policy keeps; a corrupted one is quarantined and its
        neighbours take its slot. Otherwise a sidecar is enough.
    type: bool
    default: true
    aliases: [verify_newest]
  max_future_skew:
    description: Seconds an archive's name may be after its receive time before it is quarantined as suspect.
    type: int
    default: 3600
notes:
  - At least one of the C(keep_*) options must be above 0.
"""

EXAMPLES = r"""
- name: Keep 7 daily, 4 weekly and 12 monthly archives of every host
  streamcloud.platform.backup_rotate:
    path: /srv/streamcloud-backup
    recurse: true
    keep_last: 2
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12
"""

RETURN = r"""
kept:
  description: Archives kept, oldest first, with the rules that keep them (last, daily, weekly, monthly,
    newest verified).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/srv/streamcloud-backup/web1/web1-20261127T020000Z.tar.gz", "reasons": ["last", "daily"]}]
deleted:
  description: Archives deleted (would be, in check mode).
  returned: always
  type: list
  elements: str
protected:
  description: The newest verified archive of each source.
  returned: always
  type: list
  elements: str
quarantined:
  description: Archives moved to C(.quarantine/) (would be, in check mode), with the reason.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.rotate import RULES, rotate


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "recurse": {"type": "bool", "default": False},
            "keep_last": {"type": "int", "default": 0},
            "keep_daily": {"type": "int", "default": 0},
            "keep_weekly": {"type": "int", "default": 0},
            "keep_monthly": {"type": "int", "default": 0},
            "verify": {"type": "bool", "default": True, "aliases": ["verify_newest"]},
            "max_future_skew": {"type": "int", "default": 3600},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = rotate(p["path"], {rule: p[rule] for rule in RULES}, recurse=p["recurse"],
                        verify=p["verify"], check_mode=module.check_mode, max_future_skew=p["max_future_skew"])
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
