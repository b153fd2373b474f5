"""The elk role's input and package-source checks, run here where Elastic's packages cannot be had.

Every case runs the real role against this machine with a local connection: either the
`preflight` entry point (it changes nothing) or `main` in check mode, to show that bad input
stops the role before the first package task.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "preflight.yml"
VERSION = "8.17.0"
SECRETS = {
    "elk_elastic_password": "Offline-test-elastic-9f3k",
    "elk_kibana_system_password": "Offline-test-kibana-7d2m",
    "elk_beats_password": "Offline-test-beats-4q8z",
    "elk_kibana_encryption_key": "Offline-test-encryption-key-0123456789abcdef",
}
# Nothing listens on the discard port of the loopback: a repository that cannot be reached.
UNREACHABLE = "http://127.0.0.1:9/packages/8.x/apt"


@pytest.fixture(scope="module")
def own_tls(tmp_path_factory) -> dict:
    """A CA and a node certificate made with openssl, as a user bringing their own would give them."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=offline test CA", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=elk-offline",
            "-keyout", "node.key", "-out", "node.csr")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "2", "-out", "node.crt")
    return {
        "elk_tls_certificate": (d / "node.crt").read_text(),
        "elk_tls_private_key": (d / "node.key").read_text(),
        "elk_tls_ca_certificate": (d / "ca.crt").read_text(),
    }


@pytest.fixture
def server(inventory):
    """This machine as the single monitoring host."""
    return inventory({"monitoring": ["elk-offline"]})


@pytest.fixture
def good(own_tls) -> dict:
    """Input that passes every check (the packages come from an unreachable place unless a test says otherwise)."""
    return {**SECRETS, **own_tls, "elk_host_memory_mb": 4096, "elk_apt_url": UNREACHABLE, "elk_repository_timeout": 3}


def fake_deb(directory: Path, package: str, good_checksum: bool = True, sha512: bool = True) -> Path:
    """A real (tiny) Debian package built with dpkg-deb, and its .sha512 file in Elastic's format."""
    root = directory / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {VERSION}\nArchitecture: amd64\nMaintainer: offline test <t@example.net>\n"
        f"Description: stands in for Elastic's {package} package\n")
    # dpkg-deb wants DEBIAN between 0755 and 0775, whatever the umask the test session runs under.
    for path in (root, root / "DEBIAN"):
        path.chmod(0o755)
    (root / "DEBIAN" / "control").chmod(0o644)
    deb = directory / f"{package}-{VERSION}-amd64.deb"
    built = subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], capture_output=True,
                           text=True, check=False)
    assert built.returncode == 0, built.stderr
    digest = hashlib.sha512(deb.read_bytes()).hexdigest()
    if not good_checksum:
        digest = hashlib.sha512(b"something else").hexdigest()
    if sha512:
        Path(f"{deb}.sha512").write_text(f"{digest}  {deb.name}\n")
    return deb


@pytest.fixture
def package_dir(tmp_path) -> Path:
    d = tmp_path / "debs"
    d.mkdir()
    for package in ("elasticsearch", "kibana", "auditbeat", "filebeat"):
        fake_deb(d, package)
    return d


def files_source(variables: dict, directory: Path) -> dict:
    return {**variables, "elk_package_source": "files", "elk_package_dir": str(directory)}


def failed_with(result, *fragments: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    # Nothing was changed before the failure.
    assert re.search(r"changed=0\b", out), out


def secrets_not_shown(result) -> None:
    out = result.stdout + result.stderr
    for name, value in SECRETS.items():
        assert value not in out, f"{name} printed"


# --- bad input: fails early, names the variable, prints no secret -------------------------------------

def test_heap_above_physical_memory(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_test_entry_point": "main",
                                             "elk_host_memory_mb": 4096, "elk_elasticsearch_heap_mb": 6144}, "--check")
    failed_with(result, "elk_elasticsearch_heap_mb (6144 MiB)", "below the host's memory")
    assert "Install the packages" not in result.stdout
    secrets_not_shown(result)


def test_t2_micro_is_refused(run_playbook, server, good):
    variables = {**good, "elk_test_entry_point": "main", "elk_host_memory_mb": 957}
    result = run_playbook(PLAYBOOK, server, variables, "--check")
    failed_with(result, "elk_minimum_host_memory_mb", "1 GiB t2.micro", "t3.medium")


def test_small_host_with_explicit_heap_passes_the_memory_checks(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_host_memory_mb": 957, "elk_elasticsearch_heap_mb": 384})
    # It gets past every input check and stops only at the (unreachable) repository.
    failed_with(result, "Elastic's packages cannot be had")


@pytest.mark.parametrize("retention", [0, -3])
def test_retention_must_be_at_least_a_day(run_playbook, server, good, retention):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_test_entry_point": "main", "elk_retention_days": retention},
                          "--check")
    failed_with(result, "elk_retention_days must be a whole number of days, at least 1")


@pytest.mark.parametrize("missing", ["elk_elastic_password", "elk_kibana_system_password", "elk_beats_password"])
def test_missing_vault_password(run_playbook, server, good, missing):
    variables = {k: v for k, v in good.items() if k != missing}
    result = run_playbook(PLAYBOOK, server, {**variables, "elk_test_entry_point": "main"}, "--check")
    failed_with(result, f"{missing}: missing, shorter than 12 characters", f"vault_{missing}")
    secrets_not_shown(result)


def test_well_known_password_is_refused(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_beats_password": "ChangeMeChangeMe"})
    failed_with(result, "elk_beats_password: missing, shorter than 12 characters or a well-known password")


def test_beats_host_needs_only_the_beats_password(run_playbook, inventory, good):
    beats_only = inventory({"monitoring": ["elk-server"], "web": ["elk-offline"]})
    variables = {k: v for k, v in good.items() if k != "elk_elastic_password"}
    result = run_playbook(PLAYBOOK, beats_only, variables, "--limit", "elk-offline")
    failed_with(result, "Elastic's packages cannot be had")


def test_tls_certificate_without_key(run_playbook, server, good):
    variables = {**good, "elk_test_entry_point": "main", "elk_tls_private_key": ""}
    result = run_playbook(PLAYBOOK, server, variables, "--check")
    failed_with(result, "elk_tls_certificate, elk_tls_private_key and elk_tls_ca_certificate go together")


def test_tls_certificate_without_ca(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_tls_ca_certificate": ""})
    failed_with(result, "elk_tls_ca_certificate go together")


def test_no_certificate_and_no_pki(run_playbook, server, good):
    variables = {k: v for k, v in good.items() if not k.startswith("elk_tls_")}
    result = run_playbook(PLAYBOOK, server, {**variables, "elk_test_entry_point": "main",
                                             "__elk_pki_certificate_tasks": "/nonexistent/pki/tasks/certificate.yml"},
                          "--check")
    failed_with(result, "the platform PKI role (streamcloud.platform.pki, tasks/certificate.yml) is not installed",
                "never run without TLS")


def test_kibana_on_every_interface_is_refused(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_kibana_host": "0.0.0.0"})  # noqa: S104 - the refused input
    failed_with(result, "elk_kibana_host must be localhost or the private address")


def test_even_number_of_nodes_is_refused(run_playbook, inventory, good):
    two = inventory({"monitoring": ["elk-offline", "elk-other"]})
    result = run_playbook(PLAYBOOK, two, good, "--limit", "elk-offline")
    failed_with(result, "elk_server_group (monitoring) must be an inventory group with 1 host")


# --- the packages cannot be had: a clear error before any change ---------------------------------------

def test_unreachable_repository_says_what_to_do(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, good)
    failed_with(result, f"Elastic's packages cannot be had on elk-offline: {UNREACHABLE} did not answer",
                "elk_package_source: files", f"elasticsearch-{VERSION}-amd64.deb")


def elastic_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://artifacts.elastic.co/packages/8.x/apt/dists/stable/Release", timeout=5):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.skipif(elastic_reachable(), reason="Elastic's repository is reachable from this machine")
def test_elastic_repository_unreachable_from_here(run_playbook, server, good):
    variables = {k: v for k, v in good.items() if k != "elk_apt_url"}
    result = run_playbook(PLAYBOOK, server, {**variables, "elk_repository_timeout": 10})
    failed_with(result, "https://artifacts.elastic.co/packages/8.x/apt did not answer")


def test_package_dir_missing(run_playbook, server, good, tmp_path):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_package_source": "files",
                                             "elk_package_dir": str(tmp_path / "nowhere")})
    failed_with(result, f"elk_package_dir ({tmp_path / 'nowhere'}) is not a directory on the controller")


def test_package_dir_not_given(run_playbook, server, good):
    result = run_playbook(PLAYBOOK, server, {**good, "elk_package_source": "files"})
    failed_with(result, "elk_package_dir must name the directory")


def test_missing_deb_and_sha512_are_named(run_playbook, server, good, package_dir):
    (package_dir / f"kibana-{VERSION}-amd64.deb").unlink()
    Path(f"{package_dir}/filebeat-{VERSION}-amd64.deb.sha512").unlink()
    result = run_playbook(PLAYBOOK, server, files_source(good, package_dir))
    failed_with(result, f"lacks kibana-{VERSION}-amd64.deb, filebeat-{VERSION}-amd64.deb.sha512")


# --- the air-gapped path's checksums ------------------------------------------------------------------

def test_good_packages_pass(run_playbook, server, good, package_dir):
    result = run_playbook(PLAYBOOK, server, files_source(good, package_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"elk-offline\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", result.stdout), result.stdout
    secrets_not_shown(result)


def test_damaged_package_is_refused(run_playbook, server, good, package_dir):
    deb = package_dir / f"auditbeat-{VERSION}-amd64.deb"
    deb.write_bytes(deb.read_bytes() + b"\0")
    result = run_playbook(PLAYBOOK, server, files_source(good, package_dir))
    failed_with(result, f"{deb} does not match {deb}.sha512", "Nothing was installed")


def test_wrong_sha512_file_is_refused(run_playbook, server, good, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    for package in ("elasticsearch", "kibana", "auditbeat"):
        fake_deb(d, package)
    fake_deb(d, "filebeat", good_checksum=False)
    result = run_playbook(PLAYBOOK, server, files_source(good, d))
    failed_with(result, f"filebeat-{VERSION}-amd64.deb does not match")


def test_sha512_for_another_file_is_refused(run_playbook, server, good, package_dir):
    sha = Path(f"{package_dir}/kibana-{VERSION}-amd64.deb.sha512")
    sha.write_text(sha.read_text().replace("kibana", "elasticsearch"))
    result = run_playbook(PLAYBOOK, server, files_source(good, package_dir))
    failed_with(result, f"is for elasticsearch-{VERSION}-amd64.deb, not for kibana-{VERSION}-amd64.deb")


def test_platform_pki_is_enough_without_own_certificates(run_playbook, server, good):
    """With the pki role next to it (this collection), no elk_tls_* is needed: the checks pass."""
    variables = {k: v for k, v in good.items() if not k.startswith("elk_tls_")}
    result = run_playbook(PLAYBOOK, server, variables)
    failed_with(result, "Elastic's packages cannot be had")
    assert "is not installed next to this role" not in result.stdout
