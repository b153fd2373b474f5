#!/usr/bin/python
# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ec2_stop_protection
short_description: Turn the stop protection of EC2 instances on or off
version_added: "0.1.0"
description:
  - Sets the C(disableApiStop) attribute of EC2 instances (stop protection), which
    M(amazon.aws.ec2_instance) does not manage. With it on, a stop request through the API or the
    console is refused until the attribute is turned off again.
  - Reads the attribute of each instance first and changes only those that differ.
  - Termination protection is a separate attribute; set it with M(amazon.aws.ec2_instance)'s
    O(amazon.aws.ec2_instance#module:termination_protection).
options:
  instance_ids:
    description:
      - The instances to change. An empty list changes nothing.
    type: list
    elements: str
    required: true
  enabled:
    description:
      - V(true) turns stop protection on, V(false) turns it off.
    type: bool
    required: true
attributes:
  check_mode:
    support: full
    description: Reports which instances would change, and changes none.
  diff_mode:
    support: full
    description: Shows the attribute of each instance that changes, before and after.
  platform:
    platforms: aws
    support: full
    description: Talks to the EC2 API (or an endpoint such as moto's through O(endpoint_url)).
author: streamcloud platform engineers (@streamcloud)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Protect the database instance from an accidental stop
  streamcloud.platform.ec2_stop_protection:
    instance_ids: [i-0123456789abcdef0]
    enabled: true
    region: eu-west-3

- name: Lift it before a planned stop or termination
  streamcloud.platform.ec2_stop_protection:
    instance_ids: "{{ database_instance_ids }}"
    enabled: false
"""

RETURN = r"""
changed_ids:
  description: The instances whose attribute was changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [i-0123456789abcdef0]
"""

import contextlib

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports the missing library
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.ec2 import (
    AnsibleEC2Error,
    describe_instance_attribute,
    modify_instance_attribute,
)
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def current_state(client, instance_id):
    """True when stop protection is on for ``instance_id``."""
    answer = describe_instance_attribute(client, instance_id, "disableApiStop")
    return bool(answer.get("DisableApiStop", {}).get("Value", False))


def main():
    module = AnsibleAWSModule(
        argument_spec={
            "instance_ids": {"type": "list", "elements": "str", "required": True},
            "enabled": {"type": "bool", "required": True},
        },
        supports_check_mode=True,
    )
    wanted = module.params["enabled"]
    ids = module.params["instance_ids"]
    malformed = [i for i in ids if not isinstance(i, str) or not i.startswith("i-")]
    if malformed:
        module.fail_json(msg=f"instance_ids: {', '.join(map(str, malformed))} is not an EC2 instance id (i-...)")
    client = module.client("ec2")
    changed_ids, done, before, after = [], [], {}, {}
    instance_id = None
    try:
        for instance_id in ids:
            now = current_state(client, instance_id)
            if now == wanted:
                continue
            changed_ids.append(instance_id)
            before[instance_id], after[instance_id] = now, wanted
            if not module.check_mode:
                modify_instance_attribute(client, instance_id, DisableApiStop={"Value": wanted})
                done.append(instance_id)
    except (AnsibleEC2Error, BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"setting stop protection to {wanted} failed at {instance_id}; "
                                      f"already changed: {', '.join(done) or 'none'}")
    module.exit_json(changed=bool(changed_ids), changed_ids=changed_ids,
                     diff={"before": {"disable_api_stop": before}, "after": {"disable_api_stop": after}})


if __name__ == "__main__":
    main()
