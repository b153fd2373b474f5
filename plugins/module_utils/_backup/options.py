# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of the backup, defined once, in Ansible's argument-spec form.

The modules' argument specs are these tables. The cron command's configuration (``config.json``, which the role
writes with these same keys from its ``backup_*`` variables) takes its defaults from them. A unit test holds
roles/backup/meta/argument_specs.yml to the same defaults.
"""

from __future__ import annotations

ARCHIVE = {
    "paths": {"type": "list", "elements": "path", "required": True},
    "outbox": {"type": "path", "required": True, "aliases": ["dest"]},
    "source": {"type": "str", "required": True},
    "compression": {"type": "str", "choices": ["gzip", "pigz", "zstd"], "default": "gzip"},
    "compression_level": {"type": "int"},
    "compression_threads": {"type": "int", "default": 0, "aliases": ["threads"]},
    "excludes": {"type": "list", "elements": "str", "default": []},
    "db_dump_command": {"type": "str", "default": "auto"},
    "db_hooks_file": {"type": "path", "default": "/etc/streamcloud/database-hooks.json", "aliases": ["hooks_file"]},
    "dump_dir": {"type": "path", "default": "/var/backups/streamcloud/db"},
    "allow_empty": {"type": "bool", "default": False},
    "recipients": {"type": "list", "elements": "str"},
    "sign_key": {"type": "path"},
}
TRANSFER = {
    "path": {"type": "path", "required": True},
    "host": {"type": "str", "required": True},
    "port": {"type": "int", "default": 22},
    "user": {"type": "str", "required": True},
    "identity_file": {"type": "path", "default": "/etc/streamcloud-backup/id_ed25519"},
    "known_hosts_file": {"type": "path", "default": "/etc/streamcloud-backup/known_hosts"},
    "strict_host_key_checking": {"type": "str", "choices": ["yes", "accept-new", "no"], "default": "yes"},
    "connect_timeout": {"type": "int", "default": 10},
    "keep_local": {"type": "int", "default": 0},
}
# The cron run's own settings (no module has them).
RUN = {
    "status_file": {"type": "path", "default": "/var/lib/streamcloud-backup/status.json"},
    "log_file": {"type": "path", "default": "/var/log/streamcloud-backup.log"},
    "lock_file": {"type": "path", "default": "/run/lock/streamcloud-backup.lock"},
    "lock_wait": {"type": "int", "default": 0},
    "splay": {"type": "int", "default": 300},
}


def config_defaults() -> dict:
    """Every key of the cron command's configuration with its default (None: required, or no default). The
    outbox is shipped whole, so the transfer's ``path`` is the archive options' ``outbox``."""
    specs = {**ARCHIVE, **TRANSFER, **RUN}
    del specs["path"]
    return {name: spec.get("default") for name, spec in specs.items()}
