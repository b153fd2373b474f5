"""The AWS inventories and the common role's sshd (issue 9): the AMI's user, as whom Ansible connects
until the admins exist, keeps both its way in (AllowGroups) and its key (in its own home); the VPC and
the admins' networks are exempt from sshd's penalties, and nothing else is."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def resolve(var_files: list[Path], expression: str, env: dict[str, str]):
    """The value of a Jinja expression as Ansible templates it with these variable files (as extra vars)."""
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-o", "-m", "ansible.builtin.debug",
            "-a", "msg={{ " + expression + " | to_json }}"]
    for file in var_files:
        argv += ["-e", f"@{file}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, **env})
    return json.loads(json.loads(result.stdout.split("=>", 1)[1])["msg"])


@pytest.mark.parametrize("environment", ["prod", "dev"])
def test_aws_inventories_keep_the_ami_user_and_exempt_the_admin_path(environment):
    files = sorted((ROOT / "inventories" / environment / "group_vars" / "all").glob("*.yml"))
    env = {"STREAMCLOUD_ADMIN_CIDRS": "203.0.113.0/24,198.51.100.7/32"}
    user = resolve(files, "ansible_user", env)
    assert user in resolve(files, "common_sshd_home_keys_users", env)
    assert user in resolve(files, "common_sshd_allow_groups", env)  # the AMI's user has its own group
    vpc_cidr = resolve(files, "vpc_cidr", env)
    assert resolve(files, "common_sshd_admin_networks", env) == [vpc_cidr, "203.0.113.0/24", "198.51.100.7/32"]
