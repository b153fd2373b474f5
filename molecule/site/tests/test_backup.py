"""Backups across the platform: every client host runs its backup (the cron job's command) and the
backup host, reached as backup.<platform_domain>, holds each archive with a matching SHA-256. Then
the restore drill on the database host: a directory and the platform database are damaged and come
back intact through playbooks/restore.yml (the backup role's restore entry point)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from sitelib import GROUPS, HOSTS, INVENTORY, PROJECT, sh

CLI = "/usr/local/sbin/streamcloud-backup"
ROOT = "/srv/streamcloud-backup"
SERVER = GROUPS["backup_server"][0]
DB = GROUPS["database"][0]
CLIENTS = [h for h in HOSTS if h != SERVER]
DRILL = "/srv/data/site-drill"

MAKE_TREE = f"""
set -eu
rm -rf {DRILL} && mkdir -p {DRILL}/sub/deeper && cd {DRILL}
head -c 300000 /dev/urandom > sub/random.bin && ln sub/random.bin sub/deeper/hardlink
printf 'caf\\xc3\\xa9\\n' > 'café.txt' && ln -s sub/random.bin link
printf 'owned\\n' > owned && chown 65534:65534 owned && chmod 0640 owned
touch -d '1999-12-31 23:59:59' sub/random.bin && touch -d '2040-01-01' 'café.txt'
"""
# Every entry (type, mode, owner, size, mtime, link target, hard-link count) and every file's SHA-256.
TREE = (f"cd {DRILL} && find . -printf '%p %y %m %U:%G %s %T@ %l %n\\n' | grep -v '^\\. d' | sort && "
        "find . -type f -print0 | sort -z | xargs -0 sha256sum")
ROWS = """
DROP TABLE IF EXISTS site_drill;
CREATE TABLE site_drill (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body bytea, doc jsonb, note text);
ALTER TABLE site_drill OWNER TO streamcloud;
INSERT INTO site_drill (body, doc, note)
SELECT decode(md5(random()::text), 'hex'), jsonb_build_object('n', g, 'u', 'naïve ☃'),
       CASE WHEN g % 3 = 0 THEN NULL ELSE E'line\\nbreak ' || g END FROM generate_series(1, 500) g;
"""
CHECKSUM = ("SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM site_drill t) || ' ' || "
            "(SELECT count(*) FROM users) || ' ' || (SELECT md5(string_agg(m::text, '|' ORDER BY 1)) "
            "FROM schema_migrations m)")


def sql(query: str) -> str:
    return sh(DB, "runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d streamcloud", stdin=query).stdout.strip()


@pytest.fixture(scope="module")
def backups() -> dict:
    """The drill's data on the database host, then one backup run on every client host."""
    sh(DB, MAKE_TREE)
    sql(ROWS)
    state = {"tree": sh(DB, TREE).stdout, "db": sql(CHECKSUM), "runs": {}}
    for host in CLIENTS:
        result = sh(host, f"{CLI} run", check=False)
        state["runs"][host] = (result.returncode, result.stdout, result.stderr)
    return state


@pytest.mark.parametrize("host", CLIENTS)
def test_each_host_backup_reaches_the_backup_host(backups, host):
    code, out, err = backups["runs"][host]
    assert code == 0, out + err
    line = json.loads(out.strip().splitlines()[-1])
    assert line["status"] == "ok", line
    archive = f"{ROOT}/{host}/{line['archive']}"
    stored = sh(SERVER, f"sha256sum {archive} && cat {archive}.sha256").stdout
    assert [row.split()[0] for row in stored.splitlines()] == [line["sha256"], line["sha256"]]
    # Verified on the far side: nothing is left in the client's outbox.
    assert sh(host, "ls -A /var/backups/streamcloud/outbox").stdout.split() == []


def test_the_restore_drill_brings_back_a_directory_and_the_database(backups):
    assert backups["runs"][DB][0] == 0
    sh(DB, f"cd {DRILL} && rm -rf sub && printf x >> café.txt && chown 0:0 owned && rm link")
    sql("DELETE FROM site_drill WHERE id % 2 = 0; UPDATE site_drill SET note = 'damaged'")
    assert sh(DB, TREE).stdout != backups["tree"] and sql(CHECKSUM) != backups["db"]
    argv = ["ansible-playbook", "-i", str(INVENTORY), str(PROJECT / "playbooks/restore.yml"),
            "-e", json.dumps({"restore_source": DB, "restore_paths": [DRILL]})]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False,
                            env=dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true"))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert sh(DB, TREE).stdout == backups["tree"]
    assert sql(CHECKSUM) == backups["db"]
