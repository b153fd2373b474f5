"""The pki role, checked with openssl and real TLS clients from the controller.

The CA lives on the controller under the scenario's inventory directory; the certificates on
pki-host. The renewal test runs last of those that look at the host: it re-runs converge inside a
renewal threshold. The two after it read what Ansible printed (the scenario's log).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

HOST = "pki-host"
PKI = "/etc/streamcloud/pki"
PASSPHRASE = "molecule-only CA passphrase, not a secret"  # noqa: S105 - the scenario's lab value


@pytest.fixture(scope="module")
def ca_dir() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "pki" / "lab"


@pytest.fixture(scope="module")
def address(address_of) -> str:
    return address_of(HOST)


def openssl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, check=False)


def fetch(host, path: str, dest: Path) -> Path:
    dest.write_text(host.file(path).content_string)
    return dest


def make_other_ca(directory: Path, days: int = 30, passphrase: str | None = None) -> tuple[Path, Path]:
    """A CA that is not the platform's, made with openssl on the controller."""
    key, cert = directory / "other-ca.key", directory / "other-ca.crt"
    argv = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", str(key),
            "-out", str(cert), "-days", str(days), "-subj", "/CN=Another CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]
    argv += ["-passout", f"pass:{passphrase}"] if passphrase else ["-noenc"]
    result = openssl(*argv)
    assert result.returncode == 0, result.stderr
    return key, cert


def serial(host, name: str) -> str:
    return host.check_output(f"openssl x509 -noout -serial -in {PKI}/{name}.crt")


def tls_server(host, unit: str, port: int, cert: str, key: str) -> None:
    """openssl s_server on the host, as a stand-in TLS service using the given files."""
    host.run(f"systemctl stop {unit}")
    host.check_output(
        f"systemd-run --unit {unit} openssl s_server -quiet -accept {port} -cert {cert} -key {key} -www")
    for _ in range(50):
        if host.run(f"ss -ltn 'sport = :{port}' | grep -q LISTEN").rc == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{unit} does not listen on {port}")


def handshake(address: str, port: int, cafile: Path, server_name: str) -> str:
    """A real TLS client that verifies the chain and the name; returns the peer's subject CN."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((address, port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        return dict(item[0] for item in tls.getpeercert()["subject"]).get("commonName", "")


def test_ca_key_stays_on_the_controller_encrypted(host, ca_dir):
    key = ca_dir / "ca.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "not PKCS#8 with a passphrase"
    assert openssl("pkey", "-in", str(key), "-passin", "pass:wrong", "-noout").returncode != 0
    assert openssl("pkey", "-in", str(key), "-passin", f"pass:{PASSPHRASE}", "-noout").returncode == 0
    assert not host.file(f"{PKI}/ca.key").exists
    keys = host.run("grep -rl 'PRIVATE KEY' /etc/streamcloud /usr/local/share/ca-certificates").stdout.split()
    assert sorted(keys) == [f"{PKI}/host.key", f"{PKI}/service.key", f"{PKI}/short.key"]


def test_ca_is_a_constrained_ca(ca_dir):
    text = openssl("x509", "-noout", "-text", "-in", str(ca_dir / "ca.crt")).stdout
    assert "CA:TRUE, pathlen:0" in text
    assert "Certificate Sign, CRL Sign" in text


def test_files_and_modes(host):
    assert host.file(PKI).mode == 0o755
    for name, group in (("host", "root"), ("short", "root"), ("service", "pki-readers")):
        key = host.file(f"{PKI}/{name}.key")
        assert (key.user, key.group, key.mode) == ("root", group, 0o640)
        for suffix in ("crt", "fullchain.crt"):
            crt = host.file(f"{PKI}/{name}.{suffix}")
            assert (crt.user, crt.mode) == ("root", 0o644)
    assert host.file(f"{PKI}/ca.crt").mode == 0o644


def test_chain_verifies_against_the_ca(host, ca_dir, tmp_path):
    for name in ("host", "short", "service"):
        leaf = fetch(host, f"{PKI}/{name}.crt", tmp_path / f"{name}.crt")
        result = openssl("verify", "-CAfile", str(ca_dir / "ca.crt"), "-x509_strict", str(leaf))
        assert result.returncode == 0, result.stdout + result.stderr
        # The fullchain is the leaf followed by the CA.
        chain = host.file(f"{PKI}/{name}.fullchain.crt").content_string
        assert chain.count("BEGIN CERTIFICATE") == 2
        assert chain.startswith(leaf.read_text().strip())
        # The host's own trust store (no -CAfile) trusts the platform CA.
        assert host.run(f"openssl verify {PKI}/{name}.crt").rc == 0


def test_leaf_names_usage_and_validity(host, tmp_path):
    leaf = fetch(host, f"{PKI}/service.crt", tmp_path / "service.crt")
    text = openssl("x509", "-noout", "-text", "-in", str(leaf)).stdout
    address = host.ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]
    for name in ("DNS:pki-host", "DNS:svc.internal.example", "IP Address:192.0.2.10", f"IP Address:{address}"):
        assert name in text
    assert "localhost" not in text and "127.0.0.1" not in text
    assert "CA:FALSE" in text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" not in text
    both = openssl("x509", "-noout", "-text", "-in", str(fetch(host, f"{PKI}/host.crt", tmp_path / "h.crt"))).stdout
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in both
    days = openssl("x509", "-noout", "-checkend", str(396 * 86400), "-in", str(leaf))
    assert days.returncode == 0
    assert openssl("x509", "-noout", "-checkend", str(398 * 86400), "-in", str(leaf)).returncode != 0


def test_tls_client_verifies_the_server_and_its_name(host, address, ca_dir):
    tls_server(host, "pki-test-tls", 8443, f"{PKI}/service.fullchain.crt", f"{PKI}/service.key")
    try:
        assert handshake(address, 8443, ca_dir / "ca.crt", "svc.internal.example") == "pki-host"
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
            handshake(address, 8443, ca_dir / "ca.crt", "elsewhere.example")
        result = openssl("s_client", "-connect", f"{address}:8443", "-CAfile", str(ca_dir / "ca.crt"),
                         "-verify_return_error", "-verify_hostname", "svc.internal.example", stdin="")
        assert "Verify return code: 0 (ok)" in result.stdout, result.stdout + result.stderr
    finally:
        host.run("systemctl stop pki-test-tls")


def test_a_certificate_from_another_ca_is_refused(host, address, ca_dir, tmp_path):
    other_key, other_ca = make_other_ca(tmp_path)
    # The platform's client refuses a server whose certificate another CA signed...
    leaf_key, leaf_csr, leaf = tmp_path / "o.key", tmp_path / "o.csr", tmp_path / "o.crt"
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                   "-keyout", str(leaf_key), "-out", str(leaf_csr), "-subj", "/CN=pki-host").returncode == 0
    assert openssl("x509", "-req", "-in", str(leaf_csr), "-CA", str(other_ca), "-CAkey", str(other_key),
                   "-days", "30", "-out", str(leaf),
                   "-extfile", "/dev/stdin", stdin="subjectAltName=DNS:svc.internal.example\n").returncode == 0
    assert openssl("verify", "-CAfile", str(ca_dir / "ca.crt"), str(leaf)).returncode != 0
    host.run("mkdir -p /run/pki-test")
    for path in (leaf, leaf_key):
        host.check_output(f"cat > /run/pki-test/{path.name} <<'EOF'\n{path.read_text()}EOF")
    tls_server(host, "pki-test-other", 8444, "/run/pki-test/o.crt", "/run/pki-test/o.key")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(address, 8444, ca_dir / "ca.crt", "svc.internal.example")
        # ... and the host's trust store does not take it either.
        assert host.run("openssl verify /run/pki-test/o.crt").rc != 0
    finally:
        host.run("systemctl stop pki-test-other")
    # A client that trusts only another CA refuses the platform's certificate.
    tls_server(host, "pki-test-tls", 8443, f"{PKI}/service.fullchain.crt", f"{PKI}/service.key")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(address, 8443, other_ca, "svc.internal.example")
    finally:
        host.run("systemctl stop pki-test-tls")


def listing(host) -> str:
    return host.check_output(f"ls -l --time-style=+%s.%N {PKI} /usr/local/share/ca-certificates")


# Case -> (the variables given to `tasks_from: certificate`, what its failure must say). The CA-directory
# cases get a directory of their own (bad_input below); the one whose CA loads comes last, so no
# case before it finds a CA already loaded.
BAD_INPUT = {
    "name-not-dns": ({"pki_certificate_names": ["ok.example", "not a name!"]}, ["pki_certificate_names"]),
    "name-with-underscore": ({"pki_certificate_names": ["under_score.example"]}, ["under_score.example"]),
    "valid-days-too-long": ({"pki_certificate_valid_days": 4000}, ["pki_certificate_valid_days"]),
    "renew-days-negative": ({"pki_certificate_renew_days": -5}, ["pki_certificate_renew_days"]),
    "wrong-passphrase": ({"pki_ca_passphrase": "wrong passphrase for this CA"}, ["pki_ca_passphrase does not open"]),
    "empty-passphrase-outside-the-lab": ({"pki_ca_passphrase": "", "pki_lab_mode": False},
                                         ["pki_ca_passphrase is empty"]),
    "ca-certificate-without-its-key": ({"pki_ca_dir": "alone"}, ["holds ca.crt but not ca.key"]),
    "ca-key-that-does-not-match": ({"pki_ca_dir": "mismatched"}, ["ca.key does not match ca.crt"]),
    "certificate-longer-than-the-ca": ({"pki_ca_dir": "short-ca"},
                                       ["pki_certificate_valid_days", "expires in 99 days"]),
}


@pytest.fixture(scope="module")
def bad_input(host, role_cases, ca_dir, tmp_path_factory) -> dict:
    """Every case in one ansible-playbook run, each a block of its own asking for a certificate
    `badinput` (`tasks_from: certificate`), with the host's listing before and after."""
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("alone", "mismatched", "short-ca")}
    # ca.crt without its key; ca.crt with a key that is not its own (same passphrase); a CA of 100 days.
    for name in ("alone", "mismatched"):
        (dirs[name] / "ca.crt").write_text((ca_dir / "ca.crt").read_text())
    other_key, _ = make_other_ca(tmp_path_factory.mktemp("other"), passphrase=PASSPHRASE)
    other_key.rename(dirs["mismatched"] / "ca.key")
    key, cert = make_other_ca(tmp_path_factory.mktemp("short"), days=100, passphrase=PASSPHRASE)
    key.rename(dirs["short-ca"] / "ca.key")
    cert.rename(dirs["short-ca"] / "ca.crt")
    cases = {case: {k: str(dirs[v]) if k == "pki_ca_dir" else v for k, v in extra.items()}
             for case, (extra, _) in BAD_INPUT.items()}
    before = listing(host)
    run = role_cases("all", "streamcloud.platform.pki", cases, {"pki_certificate_name": "badinput"},
                     play={"gather_facts": False}, tasks_from="certificate")
    return {"run": run, "before": before, "after": listing(host), "dirs": dirs}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_before_anything_is_written(host, bad_input, case):
    run = bad_input["run"]
    assert run.failed(case), run.sections.get(case, run.output)[-3000:]
    for message in BAD_INPUT[case][1]:
        assert message in run.text(case), run.text(case)[-3000:]
    assert run.recap["changed"] == 0 and run.recap["rescued"] == len(BAD_INPUT), run.recap
    assert bad_input["after"] == bad_input["before"]
    assert not host.file(f"{PKI}/badinput.key").exists
    # A CA directory is never written into when its content is refused.
    assert sorted(p.name for p in bad_input["dirs"]["alone"].iterdir()) == ["ca.crt"]


def test_third_run_inside_the_threshold_renews_exactly_what_needs_it(host, playbook, molecule_scenario_dir):
    """short (90 days) is inside a 100-day threshold; host and service (397 days) are not."""
    before = {name: serial(host, name) for name in ("host", "short", "service")}
    keys = {name: host.file(f"{PKI}/{name}.key").md5sum for name in before}
    changes = host.file("/var/log/pki-test-changes").content_string.split()
    # converge ran each caller's handler once, through a handler name the caller templated.
    assert sorted(changes) == ["service", "short"]
    result = playbook(molecule_scenario_dir / "converge.yml", {"pki_certificate_renew_days": 100})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    after = {name: serial(host, name) for name in before}
    assert after["short"] != before["short"]
    assert after["host"] == before["host"] and after["service"] == before["service"]
    assert {name: host.file(f"{PKI}/{name}.key").md5sum for name in before} == keys
    assert host.file("/var/log/pki-test-changes").content_string.split() == [*changes, "short"]
    assert host.run(f"openssl verify {PKI}/short.crt").rc == 0


# --- What Molecule's own runs printed (ANSIBLE_LOG_PATH, molecule.yml) -------------------------
# After the renewal run above, so the log holds the role's runs with a CA key in use and a renewal.

def test_check_mode_on_the_converged_host_changes_nothing(ansible_log):
    """Molecule's second check step (after converge and idempotence) reports nothing to change."""
    run = ansible_log.last_check_on_converged_hosts("Converge")
    assert run.recap and all(r["changed"] == 0 and r["failed"] == 0 for r in run.recap.values()), run.text[-3000:]


def test_ca_passphrase_never_in_any_ansible_output(ansible_log):
    ansible_log.assert_no_secret({"vault_pki_ca_passphrase": PASSPHRASE})
