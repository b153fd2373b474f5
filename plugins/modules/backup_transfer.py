#!/usr/bin/python
# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_transfer
short_description: Ship archives to the backup host's receiver over SSH, verified there before the local copy goes
version_added: "0.1.0"
description:
  - Sends every finished archive of an outbox (or one archive) to the central backup host. On the wire, for each
    archive not yet shipped (oldest first), one SSH session made by the OpenSSH client (C(ssh -T), O(identity_file)
    only, C(BatchMode=yes), O(known_hosts_file) with O(strict_host_key_checking), AES-GCM ahead of OpenSSH's default
    cipher order) runs the remote command
    C(put NAME SIZE SHA256 [SIG]) and sends the archive's bytes on that session's standard input. SIG is the
    source's signature of an encrypted C(.age) archive, one base64 word. Neither the scp nor the sftp protocol is
    used; the backup host refuses both.
  - The far side is the receiver the backup role installs as the receiving account's forced command. It reads
    exactly SIZE bytes into a temporary file, hashes what it stored and publishes it (a hard link, never over an
    existing name) only when the SHA-256 matches the one recorded when the archive was made, then answers one
    JSON line. An archive it already holds with the same SHA-256 is answered C(already) and not stored again.
  - Only then is the archive marked as shipped; shipped archives beyond the newest O(keep_local) are deleted.
    An archive that was not verified on the far side is never deleted and is shipped on the next run, so a run
    while the backup host was unreachable is resumed by the next one.
  - Called C(scp_transfer) before; that name still works (a redirect in C(meta/runtime.yml)).
author: streamcloud platform engineers (@streamcloud)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be sent and deleted; makes no connection.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description: The outbox directory (every unshipped archive is sent, oldest first) or one archive in it.
    type: path
    required: true
  host:
    description: Backup host name or address.
    type: str
    required: true
  port:
    description: SSH port of the backup host.
    type: int
    default: 22
  user:
    description: Receiving account on the backup host (one per source host).
    type: str
    required: true
  identity_file:
    description: Private key of the dedicated backup key pair (where the backup role makes it).
    type: path
    default: /etc/streamcloud-backup/id_ed25519
  known_hosts_file:
    description: known_hosts file holding the backup host's key (where the backup role writes it).
    type: path
    default: /etc/streamcloud-backup/known_hosts
  strict_host_key_checking:
    description: SSH StrictHostKeyChecking.
    type: str
    choices: ["yes", "accept-new", "no"]
    default: "yes"
  connect_timeout:
    description: Seconds to wait for the backup host to answer.
    type: int
    default: 10
  keep_local:
    description: Shipped archives kept in the outbox (the newest ones); 0 deletes each one once it is verified.
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Ship the outbox, keep the last local copy
  streamcloud.platform.backup_transfer:
    path: /var/backups/streamcloud/outbox
    host: backup.internal
    user: bk-web1
    identity_file: /etc/streamcloud-backup/id_ed25519
    known_hosts_file: /etc/streamcloud-backup/known_hosts
    keep_local: 1
"""

RETURN = r"""
transferred:
  description: Archives published on the backup host by this run (C(already) when it was there from an
    interrupted run).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "web1-20261127T020000Z.tar.gz", "sha256": "0f3c...", "size": 1048576, "already": false}]
failed:
  description: Archives that could not be shipped, with the reason; they stay in the outbox.
  returned: always
  type: list
  elements: dict
pending:
  description: Archives still to be shipped (in check mode, the ones that would be sent).
  returned: always
  type: list
  elements: str
deleted_local:
  description: Local archives deleted (would be, in check mode) because their copy was verified.
  returned: always
  type: list
  elements: str
kept_local:
  description: Archives left in the outbox.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.options import TRANSFER
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.transfer import transfer


def main():
    module = AnsibleModule(argument_spec=TRANSFER, supports_check_mode=True)
    outbox, only = module.params["path"], None
    if os.path.isfile(outbox):
        outbox, only = os.path.dirname(outbox), os.path.basename(outbox)
    try:
        result = transfer(module.params, outbox, only=only, check_mode=module.check_mode)
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    if result["failed"]:
        module.fail_json(
            msg="; ".join(f"{f['name']}: {f['error']}" for f in result["failed"])
            + f"; {len(result['pending'])} archive(s) kept in {outbox} for the next run",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
