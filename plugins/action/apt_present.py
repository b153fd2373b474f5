# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of streamcloud.platform.apt_present: dpkg-query first, ansible.builtin.apt only when needed."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.validation import check_type_bool, check_type_int, check_type_list
from ansible.plugins.action import ActionBase
from ansible_collections.streamcloud.platform.plugins.module_utils import dpkg

ARGS = frozenset({"name", "cache_valid_time", "install_recommends"})


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = ARGS

    def _options(self):
        args = self._task.args
        try:
            names = check_type_list(args.get("name"))
        except TypeError as exc:
            raise AnsibleActionFail(f"apt_present: name must be a list of package names ({exc})") from exc
        names = [str(n).strip() for n in names]
        if not names or not all(names):
            raise AnsibleActionFail("apt_present: name must list at least one package, and no empty name")
        try:
            valid = check_type_int(args.get("cache_valid_time", 3600))
        except TypeError as exc:
            raise AnsibleActionFail(f"apt_present: cache_valid_time must be a number of seconds ({exc})") from exc
        if valid < 0:
            raise AnsibleActionFail(f"apt_present: cache_valid_time must be 0 or more seconds, not {valid}")
        recommends = args.get("install_recommends")
        if recommends is not None:
            try:
                recommends = check_type_bool(recommends)
            except TypeError as exc:
                raise AnsibleActionFail(f"apt_present: install_recommends must be true or false ({exc})") from exc
        return names, valid, recommends

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        names, valid, recommends = self._options()

        # Read-only, so it runs in check mode too: that is what lets check mode say what would change.
        query = self._low_level_execute_command(dpkg.query_command(names))
        # dpkg-query exits 1 when it does not know some of the names; any other exit code means no answer.
        if query["rc"] not in (0, 1):
            raise AnsibleActionFail(f"apt_present: dpkg-query failed (rc {query['rc']}): "
                                    f"{query.get('stderr', '').strip() or query.get('stdout', '').strip()}")
        missing = dpkg.missing(names, query.get("stdout", ""))
        if not missing:
            result.update(changed=False, missing=[], msg="all packages are installed")
            return result

        # An hour-old package list is fine; none at all (an image whose lists were cleaned) is not.
        has_lists = self._low_level_execute_command(dpkg.lists_command())["rc"] == 0
        apt_args = {"name": missing, "state": "present", "update_cache": True,
                    "cache_valid_time": valid if has_lists else 0}
        if recommends is not None:
            apt_args["install_recommends"] = recommends
        apt = self._execute_module(module_name="ansible.builtin.apt", module_args=apt_args, task_vars=task_vars)
        result.update(apt)
        result["missing"] = missing
        return result
