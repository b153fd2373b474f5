# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dpkg's database, read without apt: which of some packages are not installed.

Used by the apt_present action: one `dpkg-query` call reads only the status of the packages asked
for, where apt opens its whole cache (and may refresh the package lists) just to find nothing to do.
"""

from __future__ import annotations

import re
import shlex

# `${db:Status-Status}` is dpkg's package state alone: "installed", "config-files", "half-installed"...
QUERY_FORMAT = "${Package} ${db:Status-Status}\\n"
# A plain package name (Debian policy): anything else (version pins, wildcards, an architecture or a
# path to a .deb) is left to apt, which knows what it means.
PLAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# The package lists apt installs from; a fresh image may have none (they are cleaned to keep it small).
LISTS_GLOB = "/var/lib/apt/lists/*_Packages*"


def query_command(names):
    """The shell command that prints "<package> <state>" for each of `names` dpkg knows."""
    return " ".join(shlex.quote(arg) for arg in ["dpkg-query", "--show", f"--showformat={QUERY_FORMAT}", "--", *names])


def lists_command():
    """The shell command that succeeds when apt has package lists to install from."""
    return f"ls {LISTS_GLOB} >/dev/null 2>&1"


def missing(names, query_stdout):
    """The names of `names` that are not installed, in their order (each once).

    `query_stdout` is the output of query_command(names); dpkg-query prints nothing for a package it
    has never heard of (and exits 1), so a name without an "installed" line is missing. Names that are
    not plain package names are always reported missing: apt resolves them.
    """
    installed = set()
    for line in query_stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == "installed":
            installed.add(fields[0])
    result = []
    for name in names:
        if name in result:
            continue
        if not PLAIN_NAME.match(name) or name not in installed:
            result.append(name)
    return result
