"""Issue 9: Lynis' hardening index on the common host (Lynis from Debian's archive, installed by the test)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

README = Path(__file__).resolve().parents[3] / "roles" / "common" / "README.md"


def suggestions_not_taken() -> set[str]:
    """The Lynis test ids in the role README's table of suggestions not taken."""
    text = README.read_text().split("## Lynis' suggestions not taken", 1)[1].split("\n## ", 1)[0]
    ids: set[str] = set()
    for row in text.splitlines():
        if row.startswith("| ") and not row.startswith("| Lynis test"):
            ids.update(re.findall(r"\b[A-Z]{3,5}-\d{4}\b|\bLYNIS\b", row.split("|")[1]))
    return ids


def test_lynis_hardening_index_is_at_least_80(host, lynis):
    report = lynis(host)
    # Lynis' own profile as Debian ships it: no test taken out of the count with skip-test.
    assert host.run("grep -rhs '^skip-test' /etc/lynis").stdout == ""
    assert "profile setting (skip-test)" not in host.file("/var/log/lynis.log").content_string
    assert report["hardening_index"] >= 80, "\n".join(report["suggestion"])


def test_every_suggestion_left_is_explained_in_the_readme(host, lynis):
    left = {line.split("|", 1)[0] for line in lynis(host)["suggestion"]}
    assert left - suggestions_not_taken() == set(), lynis(host)["suggestion"]


def test_debsums_checks_the_package_files_and_logs_a_changed_one(host):
    """PKGS-7370 taken: debsums' weekly cron job is on (CRON_CHECK) and reports a changed file."""
    assert "CRON_CHECK=weekly" in host.file("/etc/default/debsums").content_string.splitlines()
    # Nothing the role changed is a package's file outside its configuration files.
    assert host.run("debsums -cs").stdout == ""
    target = "/usr/bin/rdebsums"  # a script of the debsums package, not a configuration file
    host.check_output(f"cp -p {target} /root/rdebsums.orig && echo '# changed' >> {target}")
    try:
        since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
        out = host.check_output("sh /etc/cron.weekly/debsums")
        assert target in out
        # And in the journal (syslog tag debsums), where monitoring reads it.
        logged = host.run(f"for i in 1 2 3 4 5; do journalctl -q -t debsums --since '{since}' | grep -F {target}"
                          " && exit 0; sleep 1; done; exit 1")
        assert logged.rc == 0, logged.stdout
    finally:
        host.check_output(f"cp -p /root/rdebsums.orig {target} && rm /root/rdebsums.orig")
