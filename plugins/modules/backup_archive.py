#!/usr/bin/python
# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_archive
short_description: Archive paths (and database dumps) into one tested, checksummed archive
version_added: "0.1.0"
description:
  - Runs the database dump command first (when set), then writes one GNU tar archive (POSIX format, with
    extended attributes, ACLs, sparse files, FIFOs and device nodes) of O(paths) and the dumps,
    compressed with gzip (default; written by pigz on more than one thread), pigz or zstd, into O(outbox). Every
    compressor uses every core unless O(threads) says otherwise.
  - The archive holds a manifest with the SHA-256 of every file. It is written to C(<name>.part), tested by the
    compressor's own integrity test, hashed again from disk, and only then renamed to its final name with a
    C(<name>.sha256) sidecar. A failed step leaves no archive behind.
  - The same code runs from cron as C(/usr/local/sbin/streamcloud-backup run), installed by the backup role.
author: streamcloud platform engineers (@streamcloud)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the archive that would be made and how many files it would hold; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  paths:
    description: Absolute paths to archive (directories are walked, symlinks are kept as links).
    type: list
    elements: path
    required: true
  outbox:
    description: Directory (the outbox) the archive is written to; created with mode 0700 when missing.
    type: path
    required: true
    aliases: [dest]
  source:
    description: Name of the source host in the archive name C(<source>-<YYYYmmddTHHMMSSZ>.tar.gz).
    type: str
    required: true
  compression:
    description: Compressor. C(pigz) and C(zstd) must be installed.
    type: str
    choices: [gzip, pigz, zstd]
    default: gzip
  compression_level:
    description: Compression level (1-9 for gzip and pigz, 1-19 for zstd); the compressor's default when unset.
    type: int
  compression_threads:
    description:
      - Threads the compressor may use. Unset or C(0) means every core (at most 16).
      - With C(gzip), more than one thread runs C(pigz -p THREADS), the parallel gzip, which writes the same
        C(.tar.gz) format; C(1) runs C(gzip). C(pigz) is pigz with C(-p) whatever the number; C(zstd) gets C(-T).
      - At most 16; a larger number fails before anything is written.
    type: int
    default: 0
    aliases: [threads]
  excludes:
    description: Shell patterns matched against the full path and the base name of every entry.
    type: list
    elements: str
    default: []
  db_dump_command:
    description:
      - Database dumps made before the archive and included in it.
      - C(auto) (default) calls the dump command a database role published in O(db_hooks_file) (none when no role
        published one); C(none) makes none; anything else is a command line, called with a fresh directory as its
        last argument, that writes the dumps there and exits 0.
    type: str
    default: auto
  db_hooks_file:
    description: Where a database role publishes its dump and restore commands (JSON with C(dump) and C(restore)).
    type: path
    default: /etc/streamcloud/database-hooks.json
    aliases: [hooks_file]
  dump_dir:
    description:
      - Directory of the latest dump, archived with the paths. Each dump is made in a fresh directory next to it and
        replaces it only once it succeeded.
      - Refused when it is a symlink, a system directory, overlaps O(outbox) or one of O(paths), or holds files no dump
        wrote.
    type: path
    default: /var/backups/streamcloud/db
  allow_empty:
    description: Accept an archive that holds no regular file (otherwise an error, as it usually means wrong paths).
    type: bool
    default: false
  recipients:
    description:
      - age public keys (C(age1...)) or SSH public keys to encrypt the archive to, with C(age), in the stream that
        writes it. The archive is then C(<name>.age); no plaintext archive is written to disk.
      - Not set, the archive is not encrypted (the backup role sets it by default, from C(backup_age_recipients)).
    type: list
    elements: str
  sign_key:
    description:
      - Private SSH key the source signs an encrypted archive with (C(ssh-keygen -Y sign), namespace
        C(streamcloud-backup)), in C(<name>.age.sig). Required with O(recipients).
    type: path
"""

EXAMPLES = r"""
- name: Archive /etc and /srv with the database dumps
  streamcloud.platform.backup_archive:
    paths: [/etc, /srv/media]
    excludes: ["*.tmp", /srv/media/cache]
    outbox: /var/backups/streamcloud/outbox
    source: "{{ inventory_hostname_short }}"
    db_dump_command: auto

- name: Faster archive with zstd
  streamcloud.platform.backup_archive:
    paths: [/var/log]
    outbox: /var/backups/streamcloud/outbox
    source: web1
    compression: zstd
    compression_level: 3
"""

RETURN = r"""
archive:
  description: Path of the archive (the one that would be made, in check mode).
  returned: always
  type: str
  sample: /var/backups/streamcloud/outbox/web1-20261127T020000Z.tar.gz
name:
  description: File name of the archive.
  returned: always
  type: str
sha256:
  description: SHA-256 of the archive, also in C(<archive>.sha256).
  returned: when not in check mode
  type: str
size:
  description: Size of the archive in bytes.
  returned: when not in check mode
  type: int
files:
  description: Number of regular files in the archive.
  returned: always
  type: int
databases:
  description: Dump files made by the dump command.
  returned: always
  type: list
  elements: str
skipped:
  description: Entries that cannot be archived (sockets), with undecodable bytes of their names shown as C(\\xNN).
  returned: always
  type: list
  elements: str
entries:
  description: Number of entries of every type (files, directories, links, FIFOs, devices) in the archive.
  returned: when not in check mode
  type: int
warnings:
  description: What GNU tar reported without failing (for example a file that changed while it was read).
  returned: when not in check mode
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import archive
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.options import ARCHIVE


def main():
    module = AnsibleModule(argument_spec=ARCHIVE, supports_check_mode=True)
    try:
        result = archive(module.params, check_mode=module.check_mode)
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
