"""PostgreSQL's TLS from the platform CA, its cipher policy (testssl.sh) and pg_hba's rejections.

Issue 9: the certificate was self-signed, a CA without a path length and valid for 10 years; TLS 1.2
offered CBC/SHA-1/CCM8/Camellia/ARIA suites; postgres was refused only for lack of a password; the
streamcloud role could connect to the postgres database.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("database")

PKI = "/etc/streamcloud/pki"
VARS = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())
PASSWORDS = {u["name"]: u["password"]
             for u in VARS["provisioner"]["inventory"]["group_vars"]["database"]["postgresql_users"]}


@pytest.fixture(scope="module")
def address(address_of) -> str:
    return address_of("postgresql-db")


@pytest.fixture(scope="module")
def platform_ca() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "pki" / "lab" / "ca.crt"


def self_signed(directory: Path, stem: str, common_name: str) -> Path:
    """<stem>.crt and <stem>.key in directory: a self-signed P-256 certificate valid for 2 days."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                    "-keyout", str(directory / f"{stem}.key"), "-out", str(directory / f"{stem}.crt"),
                    "-days", "2", "-subj", f"/CN={common_name}"], check=True, capture_output=True)
    return directory / f"{stem}.crt"


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> Path:
    """A CA that is not the platform's."""
    return self_signed(tmp_path_factory.mktemp("other-ca"), "ca", "Another CA")


def psql(address: str, user: str, password: str, ca: Path, dbname: str = "streamcloud",
         host: str | None = None, sql: str = "SELECT current_user") -> subprocess.CompletedProcess:
    conninfo = (f"host={host or address} hostaddr={address} port=5432 dbname={dbname} user={user} "
                f"sslmode=verify-full sslrootcert={ca} connect_timeout=10")
    return subprocess.run(["psql", "--no-psqlrc", "-XAt", conninfo, "-c", sql], capture_output=True, text=True,
                          env=dict(os.environ, PGPASSWORD=password), timeout=60, check=False)


def superuser_sql(host, sql: str, dbname: str = "postgres") -> str:
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {dbname} -c \"{sql}\"")


def test_certificate_is_a_leaf_of_the_platform_ca(host, platform_ca, tmp_path):
    cert_file = superuser_sql(host, "SHOW ssl_cert_file")
    assert cert_file == f"{PKI}/postgresql.crt"
    leaf = tmp_path / "server.crt"
    leaf.write_text(host.file(cert_file).content_string)
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(leaf)],
                          capture_output=True, text=True, check=True).stdout
    assert "CA:FALSE" in text and "CA:TRUE" not in text
    assert "TLS Web Server Authentication" in text
    # At most 397 days, not ten years.
    assert subprocess.run(["openssl", "x509", "-noout", "-checkend", str(398 * 86400), "-in", str(leaf)],
                          capture_output=True, check=False).returncode != 0
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(platform_ca), str(leaf)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    key = host.file(f"{PKI}/postgresql.key")
    assert (key.user, key.group, key.mode) == ("root", "postgres", 0o640)


def test_client_verifies_the_server_against_the_platform_ca(address, platform_ca):
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], platform_ca)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "streamcloud"


def test_client_refuses_the_server_with_another_ca(address, other_ca):
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], other_ca)
    assert result.returncode != 0
    assert "certificate verify failed" in result.stderr


def test_client_refuses_a_name_the_certificate_does_not_have(address, platform_ca):
    result = psql(address, "streamcloud", PASSWORDS["streamcloud"], platform_ca, host="impostor.example")
    assert result.returncode != 0
    assert "does not match host name" in result.stderr


def test_postgres_over_tcp_is_refused_even_with_a_password(host, address, platform_ca):
    password = "A-password-postgres-must-not-use-0"  # noqa: S105 - set only for this test, then removed
    superuser_sql(host, f"ALTER ROLE postgres PASSWORD '{password}'")
    try:
        for dbname in ("postgres", "streamcloud"):
            result = psql(address, "postgres", password, platform_ca, dbname=dbname)
            assert result.returncode != 0
            assert "pg_hba.conf rejects connection" in result.stderr, result.stderr
            assert 'user "postgres"' in result.stderr
    finally:
        superuser_sql(host, "ALTER ROLE postgres PASSWORD NULL")


@pytest.mark.parametrize(("user", "dbname"), [("streamcloud", "postgres"), ("reporting", "postgres"),
                                              ("streamcloud", "template1")])
def test_application_roles_reach_only_their_own_databases(address, platform_ca, user, dbname):
    result = psql(address, user, PASSWORDS[user], platform_ca, dbname=dbname)
    assert result.returncode != 0
    assert "pg_hba.conf rejects connection" in result.stderr, result.stderr
    allowed = psql(address, user, PASSWORDS[user], platform_ca)
    assert allowed.returncode == 0, allowed.stderr


def test_rejections_come_before_any_allow_line(host):
    rules = superuser_sql(host, "SELECT line_number, type, array_to_string(user_name, ','), auth_method "
                                "FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number").splitlines()
    rows = [line.split("|") for line in rules]
    first_allow = min(int(n) for n, kind, _, method in rows if kind != "local" and method != "reject")
    postgres_reject = [int(n) for n, kind, user, method in rows if user == "postgres" and method == "reject"]
    assert postgres_reject and max(postgres_reject) < first_allow
    # Allow lines name their users: no "all".
    assert all(user != "all" for n, kind, user, method in rows if method == "scram-sha-256")
    assert rows[-1][1:] == ["host", "all", "reject"]


def test_tls_settings_are_live(host):
    ciphers = superuser_sql(host, "SHOW ssl_ciphers").split(":")
    assert ciphers and all("GCM" in c or "CHACHA20" in c for c in ciphers)
    assert superuser_sql(host, "SHOW ssl_min_protocol_version") == "TLSv1.2"


# testssl.sh (Debian's package) over STARTTLS postgres, with only the checks read below: protocols,
# cipher categories, vulnerabilities. Run once; the three tests read its JSON findings.
TESTSSL = ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--starttls", "postgres", "--ip", "one",
           "--protocols", "--std", "--vulnerable"]


@pytest.fixture(scope="module")
def testssl(address, tmp_path_factory) -> list[dict]:
    report = tmp_path_factory.mktemp("testssl") / "testssl.json"
    result = subprocess.run([*TESTSSL, "--jsonfile", str(report), f"{address}:5432"],
                            capture_output=True, text=True, timeout=900, check=False)
    findings = json.loads(report.read_text()) if report.exists() else []
    assert findings, result.stdout[-3000:] + result.stderr[-3000:]
    return findings


def test_testssl_offers_tls12_and_13_only(testssl):
    by_id = {f["id"]: f for f in testssl}
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[old]["finding"].startswith("not offered"), by_id[old]
    assert by_id["TLS1_2"]["finding"].startswith("offered"), by_id["TLS1_2"]
    assert by_id["TLS1_3"]["finding"].startswith("offered"), by_id["TLS1_3"]


def test_testssl_finds_no_weak_cipher_category(testssl):
    categories = [f for f in testssl if f["id"].startswith("cipherlist_")]
    assert len(categories) >= 5, categories
    weak = [f for f in categories if f["id"] != "cipherlist_STRONG" and "not offered" not in f["finding"]]
    assert weak == [], weak


def test_testssl_finds_no_vulnerability(testssl):
    """No vulnerable or potentially vulnerable line (LUCKY13 was "potentially vulnerable")."""
    vulnerable = [f for f in testssl if "vulnerable" in f["finding"].lower() and "not vulnerable" not in
                  f["finding"].lower()]
    assert vulnerable == [], vulnerable
    # Every check of --vulnerable ran (a scan cut short would list none of them).
    ran = {f["id"] for f in testssl}
    assert {"heartbleed", "CCS", "ROBOT", "secure_renego", "CRIME_TLS", "POODLE_SSL", "SWEET32", "FREAK",
            "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4"} <= ran, sorted(ran)


@pytest.fixture(scope="module")
def own_certificate(tmp_path_factory) -> dict:
    """A certificate and key of the user's own (self-signed here), and a key that is not its."""
    directory = tmp_path_factory.mktemp("own")
    self_signed(directory, "own", "postgresql-db")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(directory / "other.key")], check=True, capture_output=True)
    return {name: (directory / name).read_text() for name in ("own.crt", "own.key", "other.key")}


STATE = "/etc/postgresql/*/main/conf.d/50-streamcloud.conf /etc/postgresql/*/main/pg_hba.conf /etc/streamcloud/pki/*"


OWN_CERTIFICATE_CASES = {
    "certificate-without-key": (("own.crt", None), "postgresql_ssl_private_key is missing"),
    "key-without-certificate": ((None, "own.key"), "postgresql_ssl_certificate is missing"),
    "key-of-another-certificate": (("own.crt", "other.key"),
                                   "postgresql_ssl_private_key does not match postgresql_ssl_certificate"),
}


@pytest.fixture(scope="module")
def own_certificate_cases(host, role_cases, own_certificate) -> dict:
    """The three cases in one ansible-playbook run (each a block of its own), with the state before and after."""
    cases = {case: {"postgresql_ssl_certificate": own_certificate[given[0]] if given[0] else "",
                    "postgresql_ssl_private_key": own_certificate[given[1]] if given[1] else ""}
             for case, (given, _) in OWN_CERTIFICATE_CASES.items()}
    before = host.check_output(f"sha256sum {STATE}")
    run = role_cases("database", "streamcloud.platform.postgresql", cases,
                     {"postgresql_allowed_networks": ["{{ ansible_facts['default_ipv4']['gateway'] }}/32"]})
    return {"run": run, "before": before, "after": host.check_output(f"sha256sum {STATE}")}


@pytest.mark.parametrize("case", list(OWN_CERTIFICATE_CASES))
def test_own_certificate_input_is_checked_before_any_change(host, own_certificate_cases, case):
    run, message = own_certificate_cases["run"], OWN_CERTIFICATE_CASES[case][1]
    assert run.failed(case), run.sections.get(case, run.output)[-3000:]
    assert message in run.text(case), run.text(case)[-3000:]
    assert "BEGIN PRIVATE KEY" not in run.output
    assert run.recap["changed"] == 0 and run.recap["rescued"] == len(OWN_CERTIFICATE_CASES), run.recap
    assert own_certificate_cases["after"] == own_certificate_cases["before"]
    assert not host.file("/etc/postgresql/streamcloud-ssl/server.key").exists
