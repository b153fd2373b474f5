#!/usr/bin/python
# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: apt_present
short_description: Install Debian packages that are missing, and only look when none is
version_added: "0.1.0"
description:
  - Reads the state of the packages asked for from dpkg's database with one C(dpkg-query) call. When
    every one is installed the task ends there, unchanged, without opening apt's cache or refreshing
    the package lists.
  - Otherwise hands the missing packages to M(ansible.builtin.apt) (O(ansible.builtin.apt#module:state=present),
    package lists refreshed when older than O(cache_valid_time), or when there are none at all, as in
    an image whose lists were cleaned) and returns its result.
  - Names that are not plain package names (a version pin such as C(nginx=1.26*), a wildcard, an
    architecture qualifier) are always handed to M(ansible.builtin.apt), which knows what they mean.
  - Upgrades nothing; use M(ansible.builtin.apt) with O(ansible.builtin.apt#module:state=latest) for that.
options:
  name:
    description:
      - The packages that must be installed.
    type: list
    elements: str
    required: true
  cache_valid_time:
    description:
      - Seconds the package lists are fresh for when a package has to be installed (passed to
        M(ansible.builtin.apt)). Not used when nothing is missing.
    type: int
    default: 3600
  install_recommends:
    description:
      - Passed to M(ansible.builtin.apt); omitted, apt's own configuration decides.
    type: bool
attributes:
  action:
    support: full
    description: Runs as an action plugin; the C(dpkg-query) call and M(ansible.builtin.apt) run on the host.
  async:
    support: none
    description: Cannot run in the background.
  check_mode:
    support: full
    description: dpkg's database is read in check mode too; M(ansible.builtin.apt) then reports what it would install.
  diff_mode:
    support: none
    description: Shows no diff.
  platform:
    platforms: debian
    support: full
    description: Debian and Ubuntu hosts (dpkg and apt).
notes:
  - Implemented as an action plugin; the module itself only documents it.
seealso:
  - module: ansible.builtin.apt
author: streamcloud platform engineers (@streamcloud)
"""

EXAMPLES = r"""
- name: Install nginx and the password tool of its locations
  streamcloud.platform.apt_present:
    name: [nginx, python3-passlib]

- name: Install GStreamer without the recommended desktop packages
  streamcloud.platform.apt_present:
    name: "{{ gstreamer_packages }}"
    install_recommends: false
"""

RETURN = r"""
missing:
  description: The packages dpkg did not have installed, handed to M(ansible.builtin.apt). Empty when nothing was to do.
  returned: always
  type: list
  elements: str
  sample: [icecast2]
msg:
  description: What was done.
  returned: always
  type: str
  sample: all packages are installed
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "list", "elements": "str", "required": True},
            "cache_valid_time": {"type": "int", "default": 3600},
            "install_recommends": {"type": "bool"},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="streamcloud.platform.apt_present runs as an action plugin; the collection's "
                         "plugins/action/apt_present.py was not found by Ansible")


if __name__ == "__main__":
    main()
