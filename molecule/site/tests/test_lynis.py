"""Lynis' hardening index on the database host (issue 9 measures it there). Reported, and held at the
level the common role reaches today; the common role's hardening work raises the floor."""

from __future__ import annotations

import re

from sitelib import EPHEMERAL, GROUPS, sh

FLOOR = 67


def test_lynis_hardening_index_on_the_database_host():
    host = GROUPS["database"][0]
    sh(host, "command -v lynis >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis", timeout=600)
    report = sh(host, "lynis audit system --quick --no-colors --no-log 2>&1", check=False, timeout=900).stdout
    found = re.search(r"Hardening index\s*:\s*(\d+)", report)
    assert found, report[-3000:]
    index = int(found.group(1))
    (EPHEMERAL / "lynis-hardening-index.txt").write_text(f"{host} {index}\n")
    print(f"Lynis hardening index on {host}: {index}")
    assert index >= FLOOR, report[-3000:]
