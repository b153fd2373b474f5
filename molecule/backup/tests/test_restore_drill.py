"""The restore drill (issue 10): a host carrying the postgresql and backup roles, restored in place.

On backup-db: a generated tree with the hard cases (unicode, newline and invalid UTF-8 names, hard
links, a sparse file, user and security xattrs, an ACL, a FIFO, setuid, mtimes before 1970 and
after 2038) and random rows in the platform database (users, contents, and a table of bytea,
jsonb, NULLs and unicode). Back up, damage, restore through the backup role's entry point
(playbooks/restore.yml, default target /), then compare every entry (lstat, contents, xattrs,
blocks on disk) and a checksum over rows, sequences, constraints, grants and owners.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("database")

DB = "backup-db"
CLI = "/usr/local/sbin/streamcloud-backup"
RESTORE = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "playbooks" / "restore.yml"
DRILL = "/srv/data/drill"
# Files Docker bind-mounts into every container: the in-place restore must skip and report them.
RUNTIME_FILES = ["etc/hostname", "etc/hosts", "etc/resolv.conf"]

MAKE_TREE = r"""
set -eu
rm -rf {d} && mkdir -p {d}/sub/deeper {d}/caps
cd {d}
printf 'unicode\n' > 'café-ñ-日本.txt'
printf 'newline\n' > "$(printf 'new\nline')"
printf 'invalid\n' > "$(printf 'bad-\377\376-name')"
head -c 100000 /dev/urandom > sub/random.bin
ln sub/random.bin hardlink-1 && ln sub/random.bin sub/deeper/hardlink-2
truncate -s 1G sparse.img && printf 'tail' | dd of=sparse.img bs=1 seek=536870912 conv=notrunc status=none
setfattr -n user.origin -v 'camera 7' sub/random.bin
setfattr -n user.binary -v 0xdeadbeef00ff 'café-ñ-日本.txt'
cp /bin/true caps/bind-tool && setcap cap_net_bind_service+ep caps/bind-tool
printf 'shared\n' > shared.txt && setfacl -m u:nobody:r,g:daemon:rw shared.txt
mkdir acl-default && setfacl -d -m u:nobody:rx acl-default
mkfifo queue.fifo
printf '#!/bin/sh\n' > setuid-tool && chown 0:0 setuid-tool && chmod 4755 setuid-tool
printf 'owned\n' > owned-by-nobody && chown 65534:65534 owned-by-nobody && chmod 0640 owned-by-nobody
ln -s sub/random.bin link-to-random && ln -s /nonexistent dangling
touch -h -d '1969-07-20 20:17:40' link-to-random
touch -d '1955-03-14 12:00:00.123456789' old-file 2>/dev/null || touch -d '1955-03-14 12:00:00' old-file
touch -d '2446-05-10 22:38:55' 'café-ñ-日本.txt'
touch -d '2100-01-01 00:00:00.5' shared.txt
touch -d '1960-01-01' sub/deeper && touch -d '2050-06-06' sub && touch -d '1999-12-31 23:59:59' caps
printf 'drill=1\n' > /etc/streamcloud-drill.conf
""".replace("{d}", DRILL)

# Every entry below the given tops: lstat, SHA-256, link target, every xattr (ACLs and
# security.capability included) and blocks on disk; names as bytes (hex), so nothing is lost.
SNAPSHOT = r"""
import hashlib, json, os, stat, sys
out = {}
skip = {b'/etc/hosts', b'/etc/hostname', b'/etc/resolv.conf'}
for top in sys.argv[1:]:
    for root, dirs, files in os.walk(os.fsencode(top)):
        dirs.sort()
        for name in [b''] + sorted(dirs + files):
            path = os.path.join(root, name) if name else root
            if path in skip:
                continue
            st = os.lstat(path)
            row = {'mode': st.st_mode, 'uid': st.st_uid, 'gid': st.st_gid, 'size': st.st_size,
                   'nlink': st.st_nlink, 'blocks': st.st_blocks, 'mtime_ns': st.st_mtime_ns}
            if stat.S_ISDIR(st.st_mode):
                # A directory's link count and blocks are the file system's, not data: overlayfs
                # reports nlink 1 and new blocks once a lower directory is copied up.
                del row['nlink'], row['blocks'], row['size']
            if os.path.islink(path):
                row['link'] = os.readlink(path).hex()
            else:
                row['xattrs'] = {n: os.getxattr(path, n, follow_symlinks=False).hex()
                                 for n in sorted(os.listxattr(path, follow_symlinks=False))}
                if os.path.isfile(path):
                    h = hashlib.sha256()
                    with open(path, 'rb') as f:
                        for block in iter(lambda: f.read(1 << 20), b''):
                            h.update(block)
                    row['sha256'] = h.hexdigest()
            out[path.hex()] = row
json.dump(out, sys.stdout, sort_keys=True)
"""

RANDOM_ROWS = r"""
DROP TABLE IF EXISTS drill_blobs;
CREATE TABLE drill_blobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id bigint REFERENCES users (id),
    data bytea,
    doc jsonb,
    note text,
    CONSTRAINT drill_note_length CHECK (note IS NULL OR length(note) < 500)
);
ALTER TABLE drill_blobs OWNER TO streamcloud;
GRANT SELECT ON drill_blobs TO reporting;
DELETE FROM drill_blobs; DELETE FROM contents; DELETE FROM users;
INSERT INTO users (username, email, display_name, password_hash, is_active)
SELECT 'user' || g, 'user' || g || '@example.org',
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'Zoë ' || g || ' — 日本 ✓' END,
       CASE WHEN g % 2 = 0 THEN md5(random()::text) END, g % 5 <> 0
FROM generate_series(1, 200) g;
INSERT INTO contents (owner_id, kind, title, description, stream_mount, file_path, mime_type, size_bytes)
SELECT u.id, (ARRAY['audio', 'video', 'file'])[1 + u.id % 3]::content_kind, 'Title ' || u.id || ' été',
       CASE WHEN u.id % 4 = 0 THEN NULL ELSE repeat('ü', (random() * 50)::int) END,
       CASE WHEN u.id % 3 <> 2 THEN '/m' || u.id || '.ogg' END,
       CASE WHEN u.id % 3 = 2 THEN 'files/' || u.id || '.bin' END,
       CASE WHEN u.id % 2 = 0 THEN 'audio/ogg' END, (random() * 1e9)::bigint
FROM users u;
INSERT INTO drill_blobs (owner_id, data, doc, note)
SELECT (SELECT min(id) FROM users) + g % 50,
       CASE WHEN g % 7 = 0 THEN NULL
            ELSE decode(md5(random()::text) || md5(random()::text), 'hex') || '\x00ff'::bytea END,
       CASE WHEN g % 5 = 0 THEN NULL
            ELSE jsonb_build_object('n', g, 'r', random(), 'u', 'naïve ☃', 'a', jsonb_build_array(g, NULL, true)) END,
       CASE WHEN g % 2 = 0 THEN NULL ELSE E'line\nbreak \\ tab\t' || g END
FROM generate_series(1, 300) g;
"""

# One checksum per aspect of the platform database, as the postgres superuser.
CHECKSUMS = {
    "users": "SELECT md5(string_agg(u::text, '|' ORDER BY id)) FROM users u",
    "contents": "SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM contents c",
    "drill_blobs": "SELECT md5(string_agg(b::text, '|' ORDER BY id)) FROM drill_blobs b",
    "schema_migrations": "SELECT md5(string_agg(m::text, '|' ORDER BY 1)) FROM schema_migrations m",
    "sequences": "SELECT string_agg(sequencename || '=' || coalesce(last_value, 0), ',' ORDER BY sequencename) "
                 "FROM pg_sequences",
    # Every field of each constraint, and its definition without parentheses: PostgreSQL prints a
    # restored `a BETWEEN x AND y AND b` as `((a >= x) AND (a <= y)) AND b` where the original
    # printed `(a >= x) AND (a <= y) AND b` (a nested AND once the dump re-parses it); same constraint.
    "constraints": "SELECT string_agg(concat_ws(' ', conrelid::regclass, conname, contype, conkey, "
                   "confrelid::regclass, confkey, confupdtype, confdeltype, convalidated, condeferrable, "
                   "regexp_replace(pg_get_constraintdef(oid), '[()]', '', 'g')), "
                   "'|' ORDER BY conrelid::regclass::text, conname) FROM pg_constraint "
                   "WHERE connamespace = 'public'::regnamespace",
    "table_grants": "SELECT string_agg(relname || ':' || pg_get_userbyid(relowner) || ':' "
                    "|| coalesce(relacl::text, ''), '|' ORDER BY relname) "
                    "FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    "database": "SELECT pg_get_userbyid(datdba) || ' ' || coalesce(datacl::text, '') FROM pg_database "
                "WHERE datname = current_database()",
}


def sh(command: str, check: bool = True, timeout: int = 600, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", "exec", "-i", DB, "bash", "-c", command], input=stdin,
                            capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def sql(query: str, db: str = "streamcloud") -> str:
    return sh(f"runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d {db}", stdin=query).stdout.strip()


def db_state(db: str = "streamcloud") -> dict:
    return {name: sql(query, db) for name, query in CHECKSUMS.items()}


def dated_copies() -> list[str]:
    return sql("SELECT datname FROM pg_database WHERE datname LIKE 'streamcloud_before_restore_%' ORDER BY 1",
               db="postgres").split()


def snapshot() -> dict:
    return json.loads(sh(f"python3 - {DRILL} /etc", stdin=SNAPSHOT).stdout)


def playbook_output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def before():
    sh(MAKE_TREE)
    sql(RANDOM_ROWS)
    # The database grant as the postgresql role sets it (an earlier, interrupted drill may have
    # left it revoked).
    sql("GRANT CONNECT ON DATABASE streamcloud TO reporting", db="postgres")
    state = {"files": snapshot(), "db": db_state(), "dated": dated_copies()}
    backup = sh(f"{CLI} run")
    line = json.loads(backup.stdout.strip().splitlines()[-1])
    assert line["status"] == "ok", line
    state["archive"] = line["archive"]
    return state


def test_the_drill_tree_has_every_hard_case(before):
    names = {bytes.fromhex(k) for k in before["files"]}
    assert f"{DRILL}/caf\u00e9-\u00f1-\u65e5\u672c.txt".encode() in names
    assert f"{DRILL}/new\nline".encode() in names
    assert f"{DRILL}/bad-".encode() + b"\xff\xfe-name" in names
    sparse = before["files"][f"{DRILL}/sparse.img".encode().hex()]
    assert sparse["size"] == 1 << 30 and sparse["blocks"] < 64
    assert "security.capability" in before["files"][f"{DRILL}/caps/bind-tool".encode().hex()]["xattrs"]
    assert "system.posix_acl_access" in before["files"][f"{DRILL}/shared.txt".encode().hex()]["xattrs"]
    assert before["files"][f"{DRILL}/old-file".encode().hex()]["mtime_ns"] < 0
    assert before["files"][f"{DRILL}/shared.txt".encode().hex()]["mtime_ns"] > 2**31 * 10**9
    assert int(sql("SELECT count(*) FROM drill_blobs WHERE data IS NULL")) > 0


def damage():
    sh(f"cd {DRILL} && rm -rf sub 'café-ñ-日本.txt' queue.fifo && printf 'x' >> shared.txt && setfacl -b shared.txt && "
       "setcap -r caps/bind-tool && chmod 0755 setuid-tool && chown 0:0 owned-by-nobody && "
       "rm sparse.img && head -c 4096 /dev/zero > sparse.img && touch -d '2001-01-01' old-file && "
       "printf 'drill=damaged\\n' > /etc/streamcloud-drill.conf && rm -f dangling")
    sql("DELETE FROM drill_blobs WHERE id % 2 = 0; UPDATE users SET display_name = 'damaged' WHERE id % 3 = 1; "
        "ALTER TABLE drill_blobs DROP CONSTRAINT drill_note_length; REVOKE SELECT ON drill_blobs FROM reporting")
    sql("REVOKE CONNECT ON DATABASE streamcloud FROM reporting", db="postgres")


def test_in_place_restore_brings_every_entry_and_row_back(before, playbook):
    damage()
    assert snapshot() != before["files"] and db_state() != before["db"]
    result = playbook(RESTORE, {"restore_source": DB})  # the default: in place, target /
    assert result.returncode == 0, playbook_output(result)[-4000:]
    # Docker's bind-mounted files are skipped and reported, not a failure.
    for name in RUNTIME_FILES:
        assert name in result.stdout
    after = snapshot()
    differences = sorted(bytes.fromhex(k).decode(errors="backslashreplace") for k in set(after) | set(before["files"])
                         if after.get(k) != before["files"].get(k))
    assert differences == [], [(d, before["files"].get(d.encode(errors="surrogateescape").hex()),
                                after.get(d.encode(errors="surrogateescape").hex())) for d in differences[:5]]
    assert db_state() == before["db"]


def test_the_previous_database_is_kept_under_a_dated_name(before):
    # One new dated copy (a re-run of the drill on the same host finds the earlier ones too).
    kept = sorted(set(dated_copies()) - set(before["dated"]))
    assert len(kept) == 1
    # It holds the damaged data, untouched, with its grants.
    assert sql("SELECT count(*) FROM users WHERE display_name = 'damaged'", db=kept[0]) != "0"
    assert db_state()["database"].startswith("streamcloud ")
    assert "reporting=c/" in db_state()["database"]


def test_a_broken_dump_leaves_the_live_database_as_it_was(before):
    """Defect 5: the live database is never dropped first; a failed load changes nothing."""
    sh("rm -rf /var/tmp/bad-dump && cp -a /var/backups/streamcloud/db /var/tmp/bad-dump && cd /var/tmp/bad-dump && "
       "truncate -s 2000 streamcloud.dump && sha256sum globals.sql streamcloud.dump > SHA256SUMS")
    hooks = json.loads(sh("cat /etc/streamcloud/database-hooks.json").stdout)
    failed = sh(f"{hooks['restore']} /var/tmp/bad-dump", check=False)
    sh("rm -rf /var/tmp/bad-dump")
    assert failed.returncode != 0 and "streamcloud is unchanged" in failed.stderr
    assert db_state() == before["db"]
    assert sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'streamcloud\\_restore\\_%'", db="postgres") == "0"


def test_database_only_restore_and_retention(before, playbook):
    sql("DELETE FROM drill_blobs")
    result = playbook(RESTORE, {"restore_source": DB, "restore_files": False})
    assert result.returncode == 0, playbook_output(result)[-4000:]
    assert db_state() == before["db"]
    # postgresql_restore_keep_previous (2): two dated copies now, the oldest dropped at the next restore.
    kept = sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'streamcloud_before_restore_%'", db="postgres")
    assert kept == "2"


def test_one_directory_restore_leaves_the_rest(before, playbook):
    sh(f"rm -rf {DRILL}/sub && printf 'changed later\\n' > /etc/streamcloud-drill.conf")
    result = playbook(RESTORE, {"restore_source": DB, "restore_paths": [f"{DRILL}/sub"], "restore_databases": False})
    assert result.returncode == 0, playbook_output(result)[-4000:]
    after = snapshot()
    for key, row in before["files"].items():
        if bytes.fromhex(key).startswith(f"{DRILL}/sub".encode()):
            assert after.get(key) == row
    assert sh("cat /etc/streamcloud-drill.conf").stdout == "changed later\n"
    sh("printf 'drill=1\\n' > /etc/streamcloud-drill.conf")
