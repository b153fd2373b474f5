"""One definition of the backup's options (issue 11): the modules' specs, the cron command's configuration
defaults and the role (its config.json, its argument_specs, the run-now path of playbooks/backup.yml) agree.

Fails on the code before: db_dump_command defaulted to none in the module and auto elsewhere, the splay to 0 in the
CLI and 300 in the role, and the run-now path dropped the thread count and the encryption and hard-coded the key."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import cli, options
from ansible_collections.streamcloud.platform.plugins.modules import backup_archive, backup_transfer

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "backup"
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
CONFIG = ROLE_VARS["__backup_config"]
SPEC = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
# The role variable each config.json key is written from (the first public backup_* name in its expression).
ROLE_VARIABLE = {key: re.search(r"(?<![_\w])backup_\w+", value).group(0) for key, value in CONFIG.items()
                 if re.search(r"(?<![_\w])backup_\w+", value)}


def internal(value):
    """An expression of role-internal variables only (such as the key path), rendered with vars/main.yml."""
    while "{{" in value:
        value = jinja2.Template(value).render(**ROLE_VARS)
    return value


def test_config_json_uses_only_option_names_the_cli_accepts():
    assert set(CONFIG) <= set(cli.DEFAULTS), sorted(set(CONFIG) - set(cli.DEFAULTS))


def test_the_modules_use_the_option_tables():
    assert backup_archive.ARCHIVE is options.ARCHIVE and backup_transfer.TRANSFER is options.TRANSFER


@pytest.mark.parametrize("key", sorted(cli.DEFAULTS))
def test_module_cli_and_role_agree_on_each_default(key):
    spec = {**options.ARCHIVE, **options.TRANSFER, **options.RUN}[key]
    assert cli.DEFAULTS[key] == spec.get("default"), f"{key}: the CLI and the module spec differ"
    if spec.get("default") is None or key not in CONFIG:
        return
    variable = ROLE_VARIABLE.get(key)
    if variable is None:
        assert internal(CONFIG[key]) == spec["default"], f"{key}: the role writes {internal(CONFIG[key])!r}"
        return
    assert SPEC[variable].get("default") == spec["default"], (
        f"{key}: the module and CLI default to {spec['default']!r}, roles/backup/meta/argument_specs.yml's "
        f"{variable} to {SPEC[variable].get('default')!r}")


def test_the_thread_count_has_one_name():
    assert ROLE_VARIABLE["compression_threads"] == "backup_compression_threads"
    assert "threads" not in cli.DEFAULTS and "workers" not in cli.DEFAULTS


def test_the_run_now_path_passes_every_option_from_the_same_values():
    play = yaml.safe_load((ROOT / "playbooks" / "backup.yml").read_text())[0]
    tasks = {task["name"]: task for task in play["tasks"][1]["block"]}
    for module, table, task in ((backup_archive, options.ARCHIVE, "Archive this host"),
                                (backup_transfer, options.TRANSFER, "Ship the outbox to the backup host")):
        args = tasks[task][f"streamcloud.platform.{module.__name__.rsplit('.', 1)[1]}"]
        wanted = {key for key in table if key in CONFIG} | ({"path"} if table is options.TRANSFER else set())
        assert set(args) == wanted, f"{task}: missing {sorted(wanted - set(args))}"
        for key, value in args.items():
            assert value == "{{ __backup_config.%s }}" % ("outbox" if key == "path" else key), (task, key, value)
