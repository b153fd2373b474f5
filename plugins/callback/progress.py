# Copyright (c) streamcloud.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A progress line at every play and every role: how far the run is, on which hosts, since when."""

from __future__ import annotations

DOCUMENTATION = r"""
name: progress
type: aggregate
short_description: Says how far a long run is, play by play and role by role
description:
  - Prints one line when a play starts (its number among all the plays of the run, its name, its hosts)
    and one when a role starts its first task in a play (the role, the hosts it runs on), each with the time
    since the run started.
  - Meant beside the stdout callback (it prints nothing else), for runs that take minutes, such as
    C(make lab) or C(site.yml) on a new AWS account.
  - Enable it with C(callbacks_enabled = streamcloud.platform.progress) in C(ansible.cfg), as this collection's
    own C(ansible.cfg) does.
requirements: []
"""

import time

from ansible.plugins.callback import CallbackBase


def elapsed(seconds: float) -> str:
    """'42 s', '3 min 07 s', '1 h 02 min': short enough for a progress line."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def host_list(hosts: list[str], shown: int = 6) -> str:
    """The first few host names, then how many more."""
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return f"{', '.join(hosts[:shown])} and {len(hosts) - shown} more"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "streamcloud.platform.progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, clock=time.monotonic):
        super().__init__()
        self._clock = clock
        self._start = clock()
        self._plays = 0
        self._play = 0
        self._hosts: list[str] = []
        self._roles: set[str] = set()

    def _say(self, text: str) -> None:
        self._display.display(f"[progress {elapsed(self._clock() - self._start)}] {text}", color="cyan")

    def v2_playbook_on_start(self, playbook):
        self._start = self._clock()
        # import_playbook is static, so the imported plays are already among the entries here.
        self._plays = len(playbook.get_plays())
        self._play = 0

    def v2_playbook_on_play_start(self, play):
        self._play += 1
        self._roles = set()
        inventory = getattr(play.get_variable_manager(), "_inventory", None)
        try:
            self._hosts = [h.name for h in inventory.get_hosts(play.hosts)]
            where = f"on {host_list(self._hosts)}" if self._hosts else "on no host"
        except Exception:  # a host pattern still to be templated, or no inventory: show the pattern
            self._hosts = []
            where = f"hosts: {play.hosts}"
        total = f" of {self._plays}" if self._plays else ""
        self._say(f"play {self._play}{total}: {play.get_name().strip()} ({where})")

    def v2_playbook_on_task_start(self, task, is_conditional):
        role = task._role.get_name() if task._role else None
        if role and role not in self._roles:
            self._roles.add(role)
            self._say(f"role {role} starts in play {self._play}{' of ' + str(self._plays) if self._plays else ''}")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed)
        failed = sorted(h for h in hosts if stats.failures.get(h) or stats.dark.get(h))
        outcome = f"failed on {host_list(failed)}" if failed else "done"
        self._say(f"{self._play} of {self._plays} plays ran, {len(hosts)} hosts: {outcome}")
