"""The postgresql role, checked with real psql clients over TLS and the server's own view."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("database")

SERVER = "postgresql-db"
OUTSIDER = "postgresql-outsider"
ROLE_DIR = Path(__file__).resolve().parents[3] / "roles" / "postgresql"
MIGRATIONS = sorted((ROLE_DIR / "files" / "migrations").glob("*.sql"))


def scenario_vars() -> dict:
    molecule_yml = Path(__file__).resolve().parents[1] / "molecule.yml"
    return yaml.safe_load(molecule_yml.read_text())["provisioner"]["inventory"]["group_vars"]["database"]


VARS = scenario_vars()
PASSWORDS = {u["name"]: u["password"] for u in VARS["postgresql_users"]}


@pytest.fixture(scope="module")
def address(address_of) -> str:
    return address_of(SERVER)


@pytest.fixture(scope="module")
def server_ca() -> Path:
    """The platform CA's certificate, on the controller (pki role, pki_ca_dir in the scenario's inventory)."""
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "pki" / "lab" / "ca.crt"


def psql(address: str, user: str, password: str, sql: str, sslmode: str = "verify-full",
         ca: Path | None = None, dbname: str = "streamcloud", host: str | None = None) -> subprocess.CompletedProcess:
    """psql from this machine (an allowed address), never raising on a refused connection.

    verify-full by default: the server's certificate must chain to `ca` and name the host connected to.
    """
    conninfo = f"host={host or address} hostaddr={address} port=5432 dbname={dbname} user={user} "
    conninfo += f"sslmode={sslmode} connect_timeout=10"
    if ca is not None:
        conninfo += f" sslrootcert={ca}"
    env = dict(os.environ, PGPASSWORD=password)
    return subprocess.run(
        ["psql", "--no-psqlrc", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1", conninfo, "-c", sql],
        capture_output=True, text=True, env=env, timeout=60,
    )


def superuser_sql(host, sql: str, dbname: str = "streamcloud") -> str:
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {dbname} -c \"{sql}\"")


def test_tls_scram_login_from_allowed_address(address, server_ca):
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"],
                  "SELECT current_user, ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", ca=server_ca)
    assert result.returncode == 0, result.stderr
    user, ssl, version = result.stdout.strip().split("|")
    assert (user, ssl) == ("streamcloud", "t")
    assert version in ("TLSv1.2", "TLSv1.3")


def test_passwords_are_stored_as_scram(host):
    hashes = superuser_sql(host, "SELECT rolname || ' ' || left(rolpassword, 14) FROM pg_authid "
                                 "WHERE rolname IN ('streamcloud', 'reporting') ORDER BY 1", dbname="postgres")
    assert hashes.splitlines() == ["reporting SCRAM-SHA-256$", "streamcloud SCRAM-SHA-256$"]


def test_non_tls_connection_is_refused(address):
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], "SELECT 1", sslmode="disable")
    assert result.returncode != 0
    assert "pg_hba.conf rejects connection" in result.stderr
    assert "no encryption" in result.stderr


def test_wrong_password_is_refused(address, server_ca):
    result = psql(address, "streamcloud", "not-the-password-at-all", "SELECT 1", ca=server_ca)
    assert result.returncode != 0
    assert 'password authentication failed for user "streamcloud"' in result.stderr


def test_unknown_address_is_refused_even_with_tls_and_password():
    env = ["--env", f"PGPASSWORD={PASSWORDS['streamcloud']}"]
    result = subprocess.run(
        ["docker", "exec", *env, OUTSIDER, "psql", "--no-psqlrc",
         f"host={SERVER} dbname=streamcloud user=streamcloud sslmode=require connect_timeout=10", "-c", "SELECT 1"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "pg_hba.conf rejects connection for host" in result.stderr
    assert "SSL encryption" in result.stderr


def test_pg_hba_has_only_strong_rules(host):
    rules = superuser_sql(host, "SELECT DISTINCT type || ' ' || auth_method FROM pg_hba_file_rules "
                                "WHERE error IS NULL ORDER BY 1", dbname="postgres")
    assert set(rules.splitlines()) == {"local peer", "host reject", "hostssl scram-sha-256"}
    errors = superuser_sql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL", dbname="postgres")
    assert errors == "0"


def test_server_listens_on_the_private_address_with_tls(host, address):
    names = ("listen_addresses", "ssl", "ssl_min_protocol_version", "password_encryption")
    query = "SELECT " + ", ".join(f"current_setting('{name}')" for name in names)
    settings = superuser_sql(host, query, dbname="postgres")
    assert settings == f"localhost,{address}|on|TLSv1.2|scram-sha-256"
    assert host.socket(f"tcp://{address}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_tuned_values_are_live(address, server_ca):
    # pgtune-style formulas over the scenario's memory (1024 MB) and the default share (0.75).
    mem = int(VARS["postgresql_memory_mb"] * 0.75)
    shared = mem // 4
    expected = {
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{mem * 3 // 4}MB",
        "maintenance_work_mem": f"{mem // 16}MB",
        "work_mem": f"{(mem - shared) * 1024 // 300}kB",
        "min_wal_size": "256MB",
        "max_wal_size": "1GB",
        "random_page_cost": "1.1",
        "max_connections": "100",
    }
    names = ", ".join(f"current_setting('{name}')" for name in expected)
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], f"SELECT {names}", ca=server_ca)
    assert result.returncode == 0, result.stderr
    assert dict(zip(expected, result.stdout.strip().split("|"), strict=True)) == expected


def test_migrations_table_shows_the_schema_version(address, server_ca):
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"],
                  "SELECT version, name, checksum FROM schema_migrations ORDER BY version", ca=server_ca)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.strip().splitlines()]
    expected = [
        [str(int(f.name[:4])), f.stem[5:], hashlib.sha256(f.read_bytes()).hexdigest()] for f in MIGRATIONS
    ]
    assert rows == expected
    assert len(rows) >= 3


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        pytest.param("INSERT INTO contents (owner_id, kind, title) VALUES (currval('users_id_seq'), 'audio', 'x')",
                     "contents_one_location", id="content-without-location"),
        pytest.param("INSERT INTO contents (owner_id, kind, title, stream_mount) "
                     "VALUES (currval('users_id_seq'), 'file', 'x', '/live.ogg')",
                     "contents_file_has_path", id="file-without-path"),
        pytest.param("INSERT INTO contents (owner_id, kind, title, file_path) "
                     "VALUES (currval('users_id_seq'), 'file', 'x', '../etc/passwd')",
                     "contents_path_format", id="path-escaping-the-file-area"),
        pytest.param("INSERT INTO contents (owner_id, kind, title, stream_mount) "
                     "VALUES (currval('users_id_seq'), 'podcast', 'x', '/p.ogg')",
                     "invalid input value for enum content_kind", id="unknown-kind"),
        pytest.param("INSERT INTO contents (owner_id, kind, title, stream_mount) "
                     "VALUES (999999, 'audio', 'x', '/a.ogg')",
                     "contents_owner_id_fkey", id="unknown-owner"),
        pytest.param("INSERT INTO users (username, email) VALUES ('alice2', 'ALICE@example.org')",
                     "users_email_lower_key", id="duplicate-email-any-case"),
        pytest.param("INSERT INTO contents (owner_id, kind, title, stream_mount) VALUES "
                     "(currval('users_id_seq'), 'audio', 'a', '/live.ogg'), "
                     "(currval('users_id_seq'), 'video', 'b', '/live.ogg')",
                     "contents_stream_mount_key", id="mount-used-twice"),
        pytest.param("SELECT 1", None, id="valid-rows"),
    ],
)
def test_schema_constraints(address, server_ca, statement, error):
    sql = "; ".join([
        "BEGIN",
        "INSERT INTO users (username, email) VALUES ('alice', 'alice@example.org')",
        "INSERT INTO contents (owner_id, kind, title, stream_mount) "
        "VALUES (currval('users_id_seq'), 'video', 'Live', '/live.webm')",
        "INSERT INTO contents (owner_id, kind, title, file_path, size_bytes) "
        "VALUES (currval('users_id_seq'), 'file', 'Doc', 'alice/doc.pdf', 10)",
        statement,
        "ROLLBACK",
    ])
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], sql, ca=server_ca)
    if error is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert error in result.stderr


def test_updated_at_follows_updates(address, server_ca):
    sql = (
        "BEGIN; INSERT INTO users (username, email, created_at, updated_at) "
        "VALUES ('bob', 'bob@example.org', now() - interval '1 day', now() - interval '1 day'); "
        "UPDATE users SET display_name = 'Bob' WHERE username = 'bob'; "
        "SELECT updated_at > created_at + interval '1 hour' FROM users WHERE username = 'bob'; ROLLBACK;"
    )
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], sql, ca=server_ca)
    assert result.returncode == 0, result.stderr
    assert "t" in result.stdout.split()


def test_reporting_role_reads_but_cannot_write(address, server_ca):
    read = psql(address, "reporting", PASSWORDS["reporting"], "SELECT count(*) FROM contents", ca=server_ca)
    assert read.returncode == 0, read.stderr
    write = psql(address, "reporting", PASSWORDS["reporting"],
                 "INSERT INTO users (username, email) VALUES ('eve', 'eve@example.org')", ca=server_ca)
    assert write.returncode != 0
    assert "permission denied for table users" in write.stderr


def test_public_cannot_connect_to_the_platform_database(host):
    acl = superuser_sql(host, "SELECT datacl::text FROM pg_database WHERE datname = 'streamcloud'", dbname="postgres")
    assert "=c" not in acl.replace("streamcloud=", "").replace("reporting=", "")
    assert "reporting=c/" in acl


STATE_FILES = "/etc/postgresql/*/main/conf.d/50-streamcloud.conf /etc/postgresql/*/main/pg_hba.conf"
# Case -> (the variables given, the message the run must fail with).
BAD_INPUT = {
    "unknown-auth-method": ({"postgresql_hba_entries": [{"database": "all", "user": "all", "address": "10.0.0.0/8",
                                                         "method": "magic"}]},
                            "postgresql_hba_entries:"),
    "trust": ({"postgresql_hba_entries": [{"database": "all", "user": "all", "address": "10.0.0.0/8",
                                           "method": "trust"}]},
              "set postgresql_hba_allow_weak: true only if you really mean it"),
    "md5": ({"postgresql_hba_entries": [{"database": "all", "user": "all", "address": "10.0.0.0/8",
                                         "method": "md5"}]},
            "set postgresql_hba_allow_weak: true only if you really mean it"),
    "undeclared-owner": ({"postgresql_databases": [{"name": "streamcloud", "owner": "streamcloud"},
                                                   {"name": "media", "owner": "nobody_declared"}]},
                         "postgresql_databases: database 'media' is owned by 'nobody_declared'"),
    "memory-share-above-1": ({"postgresql_memory_share": 1.5}, "postgresql_memory_share is the share"),
    "well-known-password": ({"postgresql_users": [{"name": "streamcloud", "password": "changeme"}]},
                            "postgresql_users: role 'streamcloud' is refused"),
    "network-without-prefix": ({"postgresql_allowed_networks": ["10.0.0.0"]},
                               "postgresql_allowed_networks: '10.0.0.0' is not a network in CIDR form"),
}
# As converge.yml sets it for the role.
CONVERGE_VARS = {"postgresql_allowed_networks": ["{{ ansible_facts['default_ipv4']['gateway'] }}/32"]}


@pytest.fixture(scope="module")
def bad_input(host, role_cases) -> dict:
    """Every bad-input case in one ansible-playbook run (each case a block of its own), with the
    configuration's checksums before and after."""
    before = host.check_output(f"sha256sum {STATE_FILES}")
    run = role_cases("database", "streamcloud.platform.postgresql",
                     {case: extra for case, (extra, _) in BAD_INPUT.items()}, CONVERGE_VARS)
    return {"run": run, "before": before, "after": host.check_output(f"sha256sum {STATE_FILES}")}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_before_any_change(bad_input, case):
    run, message = bad_input["run"], BAD_INPUT[case][1]
    assert run.failed(case), run.sections.get(case, run.output)[-3000:]
    assert message in run.text(case), run.text(case)[-3000:]
    # No case changed anything: not one task of the whole run, not one byte of the configuration.
    assert run.recap["changed"] == 0 and run.recap["rescued"] == len(BAD_INPUT), run.recap
    assert "changeme" not in " ".join(run.output.split()).replace("(hackme, changeme...)", "")
    assert bad_input["after"] == bad_input["before"]


# The migration tests run the role's input checks and its migrations part only (`--tags migrations`),
# the part a new, edited or failing migration file goes through; the rest of the role is Molecule's
# converge, idempotence and check.
MIGRATIONS_ONLY = ["migrations"]


@pytest.fixture()
def migrations_copy(tmp_path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(ROLE_DIR / "files" / "migrations", target)
    return target


def test_edited_applied_migration_is_refused(host, playbook, molecule_scenario_dir, migrations_copy):
    first = sorted(migrations_copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    before = superuser_sql(host, "SELECT count(*) FROM schema_migrations")
    result = playbook(molecule_scenario_dir / "converge.yml", {"postgresql_migrations_dir": str(migrations_copy)},
                      tags=MIGRATIONS_ONLY)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"applied migration(s) {first.name} changed" in output, output[-3000:]
    assert superuser_sql(host, "SELECT count(*) FROM schema_migrations") == before


def test_new_migration_file_is_all_it_takes(host, playbook, molecule_scenario_dir, migrations_copy):
    number = len(MIGRATIONS) + 1
    new = migrations_copy / f"{number:04d}_add_contents_duration.sql"
    new.write_text("ALTER TABLE contents ADD COLUMN duration_seconds integer CHECK (duration_seconds >= 0);\n")
    try:
        result = playbook(molecule_scenario_dir / "converge.yml", {"postgresql_migrations_dir": str(migrations_copy)},
                          tags=MIGRATIONS_ONLY)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert superuser_sql(host, "SELECT max(version) FROM schema_migrations") == str(number)
        assert superuser_sql(host, "SELECT count(*) FROM information_schema.columns "
                                   "WHERE table_name = 'contents' AND column_name = 'duration_seconds'") == "1"
    finally:
        superuser_sql(host, "; ".join([
            "BEGIN",
            "ALTER TABLE contents DROP COLUMN IF EXISTS duration_seconds",
            "DELETE FROM schema_migrations WHERE name = 'add_contents_duration'",
            "COMMIT",
        ]))


def test_failing_migration_is_rolled_back(host, playbook, molecule_scenario_dir, migrations_copy):
    number = len(MIGRATIONS) + 1
    (migrations_copy / f"{number:04d}_broken.sql").write_text(
        "ALTER TABLE contents ADD COLUMN half_done integer;\nSELECT no_such_function();\n")
    result = playbook(molecule_scenario_dir / "converge.yml", {"postgresql_migrations_dir": str(migrations_copy)},
                      tags=MIGRATIONS_ONLY)
    assert result.returncode != 0
    assert "no_such_function" in result.stdout + result.stderr
    assert superuser_sql(host, "SELECT max(version) FROM schema_migrations") == str(len(MIGRATIONS))
    assert superuser_sql(host, "SELECT count(*) FROM information_schema.columns "
                               "WHERE table_name = 'contents' AND column_name = 'half_done'") == "0"


def test_dump_fails_loudly_and_writes_nothing_when_the_server_is_down(host):
    host.check_output("rm -rf /tmp/dump-down && mkdir /tmp/dump-down")
    service = host.check_output("systemctl list-units --type=service --no-legend 'postgresql@*' | awk '{print $1}'")
    host.check_output(f"systemctl stop {service}")
    try:
        result = host.run("/usr/local/sbin/streamcloud-pg-dump /tmp/dump-down")
    finally:
        host.check_output(f"systemctl start {service}")
    assert result.rc != 0
    assert host.check_output("ls -A /tmp/dump-down") == ""


def test_dump_and_restore_round_trip(host):
    """The backup role's hooks: dump, lose a row, restore, find the row; the old database is kept."""
    superuser_sql(host, "INSERT INTO users (username, email) VALUES ('keeper', 'keeper@example.org')")
    host.check_output("rm -rf /tmp/dump && /usr/local/sbin/streamcloud-pg-dump /tmp/dump")
    files = set(host.check_output("ls /tmp/dump").split())
    # The globals and each application database; never the maintenance database (issue 10).
    assert {"globals.sql", "streamcloud.dump", "streamcloud.properties", "SHA256SUMS"} <= files
    assert "postgres.dump" not in files
    assert host.file("/tmp/dump/streamcloud.dump").mode == 0o600
    assert "CREATE ROLE streamcloud" in host.file("/tmp/dump/globals.sql").content_string
    superuser_sql(host, "DELETE FROM users WHERE username = 'keeper'")

    restored = host.run("/usr/local/sbin/streamcloud-pg-restore /tmp/dump streamcloud")
    assert restored.rc == 0, restored.stderr
    assert superuser_sql(host, "SELECT count(*) FROM users WHERE username = 'keeper'") == "1"
    assert superuser_sql(host, "SELECT count(*) FROM schema_migrations") == str(len(MIGRATIONS))
    kept = superuser_sql(host, "SELECT datname FROM pg_database WHERE datname LIKE 'streamcloud_before_restore_%'",
                         dbname="postgres").split()
    assert len(kept) == 1
    assert superuser_sql(host, "SELECT count(*) FROM users WHERE username = 'keeper'", dbname=kept[0]) == "0"
    # Leave the server as the role made it.
    superuser_sql(host, f"DROP DATABASE {kept[0]}", dbname="postgres")
    superuser_sql(host, "DELETE FROM users WHERE username = 'keeper'")


def test_restore_refuses_a_corrupted_dump(host):
    host.check_output("rm -rf /tmp/dump-bad && /usr/local/sbin/streamcloud-pg-dump /tmp/dump-bad")
    host.check_output("printf 'x' >> /tmp/dump-bad/streamcloud.dump")
    result = host.run("/usr/local/sbin/streamcloud-pg-restore /tmp/dump-bad streamcloud")
    assert result.rc != 0
    assert superuser_sql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE 'streamcloud_%'",
                         dbname="postgres") == "0"


# Molecule's idempotence step re-runs converge.yml and fails on any change; its check step runs it in
# check mode. The two tests below read what those runs printed (ANSIBLE_LOG_PATH, molecule.yml) rather
# than running the playbook twice more. They come last: the log then also holds this verify's own runs.
def test_check_mode_on_the_converged_host_changes_nothing(ansible_log):
    run = ansible_log.last_check_on_converged_hosts("Converge")
    assert run.recap and all(r["changed"] == 0 and r["failed"] == 0 for r in run.recap.values()), run.text[-3000:]


def test_no_password_in_any_ansible_output(ansible_log):
    """Converge, idempotence, check and this verify's runs before it: no role password in what they printed."""
    converged = [run for run in ansible_log.before_verify() if "Converge" in run.plays and not run.check_mode]
    assert converged, f"no run of converge.yml before verify in {ansible_log.path}"
    ansible_log.assert_no_secret({f"postgresql_users[{name}].password": pw for name, pw in PASSWORDS.items()})


def test_no_deprecated_option_of_community_postgresql_is_used(ansible_log):
    """The role passes the modules' own option names (login_db), not the db/database aliases that
    community.postgresql 4.x deprecates: converge, idempotence and check print no such warning."""
    runs = [run for run in ansible_log.before_verify() if "Converge" in run.plays]
    assert runs, f"no run of converge.yml before verify in {ansible_log.path}"
    deprecated = [line for run in runs for line in run.lines
                  if "DEPRECATION WARNING" in line and "community.postgresql" in line]
    assert not deprecated, "\n".join(deprecated)
