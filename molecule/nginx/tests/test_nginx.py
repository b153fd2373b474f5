"""The nginx role, checked from this machine with real clients: Python's ssl and http.client,
openssl s_client, and a headless Chromium driven by Playwright."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("web")

SERVER = "nginx-web"
NAME = "nginx-web"
ROLE_DIR = Path(__file__).resolve().parents[3] / "roles" / "nginx"
DEFAULTS = yaml.safe_load((ROLE_DIR / "defaults" / "main.yml").read_text())
VARS = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())[
    "provisioner"]["inventory"]["group_vars"]["web"]
STREAMS = VARS["nginx_streams"]
KIBANA_USER = VARS["nginx_basic_auth_users"][0]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STATE_FILES = "/etc/nginx/nginx.conf /var/www/streamcloud/index.html"


@pytest.fixture(scope="module")
def address(address_of) -> str:
    return address_of(SERVER)


@pytest.fixture(scope="module")
def platform_ca() -> Path:
    """The platform CA's certificate as the controller keeps it (never the host's copy)."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    found = sorted(ephemeral.glob("**/pki/lab/ca.crt"))
    assert found, f"no platform CA under {ephemeral}"
    return found[0]


@pytest.fixture(scope="module")
def tls_context(platform_ca) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(platform_ca))
    context.set_alpn_protocols(["http/1.1"])
    return context


def tls_socket(address: str, context: ssl.SSLContext, timeout: float = 20) -> ssl.SSLSocket:
    raw = socket.create_connection((address, 443), timeout=timeout)
    return context.wrap_socket(raw, server_hostname=NAME)


def https(address: str, context: ssl.SSLContext, path: str, headers: dict | None = None,
          method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    """One HTTPS request to the site by its name (SNI and certificate check on nginx-web)."""
    conn = http.client.HTTPConnection(NAME, 443, timeout=20)
    conn.sock = tls_socket(address, context)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- TLS ---------------------------------------------------------------------------------------

def test_certificate_verifies_against_the_platform_ca(address, tls_context, host):
    with tls_socket(address, tls_context) as tls:
        peer = tls.getpeercert()
        served = tls.getpeercert(binary_form=True)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    names = {value for kind, value in peer["subjectAltName"] if kind == "DNS"}
    assert {"nginx-web", "www.streamcloud.test"} <= names
    # The certificate served is the one the role configured.
    configured = host.check_output("awk '/BEGIN/{n++} n==1' $(sed -n 's/^ *ssl_certificate \\(.*\\);/\\1/p' "
                                   "/etc/nginx/nginx.conf)")
    assert ssl.PEM_cert_to_DER_cert(configured + "\n") == served


def test_certificate_from_another_ca_is_not_accepted(address):
    """The check above can fail: with only the system's CAs, the site's certificate is refused."""
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_socket(address, ssl.create_default_context())


def test_http2_is_offered(address, platform_ca):
    context = ssl.create_default_context(cafile=str(platform_ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with tls_socket(address, context) as tls:
        assert tls.selected_alpn_protocol() == "h2"


def s_client(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"{address}:443", "-servername", NAME, *args],
                          input="", capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused_by_the_server(address, version):
    # SECLEVEL=0 lets this client offer TLS 1.0/1.1, so the refusal is the server's (alert 70).
    result = s_client(address, version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert result.returncode != 0
    assert "alert protocol version" in result.stdout + result.stderr


def test_tls12_and_tls13_are_accepted(address, platform_ca):
    for version in ("-tls1_2", "-tls1_3"):
        result = s_client(address, version, "-CAfile", str(platform_ca), "-verify_return_error")
        assert result.returncode == 0, result.stderr
        assert "Verify return code: 0 (ok)" in result.stdout


def test_tls12_sessions_resume_from_the_cache(address, platform_ca, tmp_path):
    session = tmp_path / "session.pem"
    first = s_client(address, "-tls1_2", "-CAfile", str(platform_ca), "-sess_out", str(session))
    assert first.returncode == 0, first.stderr
    second = s_client(address, "-tls1_2", "-CAfile", str(platform_ca), "-sess_in", str(session))
    assert "Reused, TLSv1.2" in second.stdout
    assert "TLS session ticket:" not in first.stdout  # tickets are off: resumption is by session ID


# --- HTTP --------------------------------------------------------------------------------------

def test_http_redirects_to_https(address):
    conn = http.client.HTTPConnection(address, 80, timeout=20)
    conn.request("GET", "/some/page?x=1", headers={"Host": NAME})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{NAME}/some/page?x=1"


def test_security_headers(address, tls_context):
    response, _ = https(address, tls_context, "/")
    assert response.status == 200
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("X-Frame-Options") == "DENY"
    assert response.getheader("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert response.getheader("Content-Security-Policy") == " ".join(DEFAULTS["nginx_csp"].split())
    assert response.getheader("Server") == "nginx"  # server_tokens off: no version


class Players(HTMLParser):
    def __init__(self):
        super().__init__()
        self.players: list[dict] = []
        self.titles: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("audio", "video"):
            self.players.append({"type": tag, "controls": "controls" in attrs})
        elif tag == "source" and self.players:
            self.players[-1].update(src=attrs.get("src"), mime=attrs.get("type"))
        elif tag == "script":
            raise AssertionError("the landing page has a script")
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.titles.append(data.strip())
            self._in_h2 = False


def test_landing_page_has_one_player_per_stream(address, tls_context):
    _, body = https(address, tls_context, "/")
    parser = Players()
    parser.feed(body.decode())
    assert parser.titles == [s["name"] for s in STREAMS]
    assert parser.players == [{"type": s["type"], "controls": True, "src": f"/live/{s['mount']}", "mime": s["mime"]}
                              for s in STREAMS]


def test_static_files_are_gzipped(address, tls_context):
    response, _ = https(address, tls_context, "/streamcloud.css", {"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"


def test_custom_error_page_with_the_headers(address, tls_context):
    response, body = https(address, tls_context, "/no-such-page")
    assert response.status == 404
    assert DEFAULTS["nginx_error_pages"][404] in body.decode()
    assert response.getheader("Content-Security-Policy")


def test_hidden_files_are_refused(address, tls_context, host):
    host.run("echo secret > /var/www/streamcloud/.env")
    response, body = https(address, tls_context, "/.env")
    assert response.status == 404
    assert b"secret" not in body


# --- Reverse proxy -----------------------------------------------------------------------------

def test_files_reaches_its_upstream_over_verified_https(address, tls_context):
    response, body = https(address, tls_context, "/files/some/dir?list=1")
    assert response.status == 200
    seen = json.loads(body)
    assert seen["upstream"] == "files"
    assert seen["path"] == "/files/some/dir?list=1"  # the prefix is kept (nginx_files_strip_prefix: false)
    assert seen["tls"] in ("TLSv1.2", "TLSv1.3")  # the upstream was spoken to over TLS ...
    assert seen["sni"] == VARS["nginx_files_tls_name"]  # ... asking for the name nginx verifies
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["x-forwarded-prefix"] == "/files"
    assert seen["headers"]["x-forwarded-for"]


def test_files_downloads_the_exact_bytes_through_https(address, tls_context, host):
    name = f"blob-{uuid.uuid4().hex}"
    path = f"/srv/nginx-test-files/{name}"
    host.run(f"head -c 300000 /dev/urandom > {path}")
    try:
        expected = host.file(path).content
        response, body = https(address, tls_context, f"/files/data/{name}")
    finally:
        host.run(f"rm -f {path}")
    assert response.status == 200
    assert len(expected) == 300000
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize(
    ("path", "log_says"),
    [
        pytest.param("/rogue-files/", "upstream SSL certificate verify error", id="certificate-from-another-ca"),
        pytest.param("/misnamed-files/", 'upstream SSL certificate does not match "other.streamcloud.test"',
                     id="certificate-without-the-name"),
    ],
)
def test_https_upstream_that_fails_verification_gets_no_request(address, tls_context, host, path, log_says):
    """The proxy really verifies: a certificate from another CA, or one without the name nginx asks
    for, ends in 502 and nginx's reason in its error log, and the upstream never sees the request."""
    marker = f"verify-{uuid.uuid4().hex}"
    response, body = https(address, tls_context, f"{path}{marker}")
    assert response.status == 502
    assert DEFAULTS["nginx_error_pages"][502] in body.decode()
    assert marker.encode() not in body
    lines = [line for line in host.file("/var/log/nginx/error.log").content_string.splitlines() if marker in line]
    assert lines, "nothing about the request in nginx's error log"
    assert log_says in lines[0], lines[0]


def test_kibana_needs_a_password(address, tls_context):
    response, _ = https(address, tls_context, "/kibana/app/home")
    assert response.status == 401
    response, _ = https(address, tls_context, "/kibana/app/home", basic(KIBANA_USER["name"], "wrong-password-123"))
    assert response.status == 401
    response, body = https(address, tls_context, "/kibana/app/home",
                           basic(KIBANA_USER["name"], KIBANA_USER["password"]))
    assert response.status == 200
    seen = json.loads(body)
    assert (seen["upstream"], seen["path"]) == ("kibana", "/kibana/app/home")
    assert "authorization" not in seen["headers"]  # the front door's password stops at the door


def test_password_file_is_hashed(host):
    content = host.file("/etc/nginx/streamcloud.htpasswd").content_string
    assert content.startswith(f"{KIBANA_USER['name']}:$6$")
    assert KIBANA_USER["password"] not in content


def test_websocket_upgrade_passes_through(address, tls_context):
    with tls_socket(address, tls_context) as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall((f"GET /files/socket HTTP/1.1\r\nHost: {NAME}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        tls.sendall(b"ping")
        assert tls.recv(4096) == b"files:ping"


def open_stream(address: str, context: ssl.SSLContext, path: str, timeout: float) -> ssl.SSLSocket:
    tls = tls_socket(address, context, timeout=timeout)
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
    return tls


def read_until(tls: ssl.SSLSocket, marker: bytes, limit: int = 65536) -> bytes:
    data = b""
    while marker not in data:
        chunk = tls.recv(4096)
        assert chunk, "the stream ended"
        data += chunk
        assert len(data) < limit, f"{marker!r} not found in {data[:300]!r}"
    return data


def test_live_stream_flows_through_without_buffering(address, tls_context):
    # The upstream never ends its response: it sends a first line, then one short line a second.
    # The first line and the next ticks reach us while the upstream is still sending.
    with open_stream(address, tls_context, "/live/radio.ogg", timeout=15) as tls:
        data = read_until(tls, b"tick 2\n")
    assert b"200 OK" in data
    assert re.search(rb"LIVE live-[ab] /radio\.ogg\n", data)
    assert b"cache-control: no-cache, no-store" in data.lower()


def test_a_buffered_location_would_hold_the_stream_back(address, tls_context):
    """Control for the test above: the same upstream through a buffered location sends nothing of
    the stream in the time the unbuffered one sent several lines, so the test above can fail."""
    received = b""
    with open_stream(address, tls_context, "/buffered-live/radio.ogg", timeout=6) as tls, \
            pytest.raises(TimeoutError):
        while True:
            received += tls.recv(4096)
    assert b"LIVE" not in received


def test_live_is_balanced_across_the_streaming_servers(address, tls_context):
    streams = [open_stream(address, tls_context, "/live/camera.webm", timeout=15) for _ in range(2)]
    try:
        seen = {re.search(rb"LIVE (live-[ab])", read_until(s, b" /camera.webm\n")).group(1) for s in streams}
    finally:
        for stream in streams:
            stream.close()
    assert seen == {b"live-a", b"live-b"}


# --- Logs --------------------------------------------------------------------------------------

def test_access_log_is_one_json_object_per_line(address, tls_context, host):
    marker = f"/log-check-{uuid.uuid4().hex}"
    https(address, tls_context, marker)
    for _ in range(20):  # the log is written from a 64k buffer at least every second
        lines = [json.loads(line) for line in host.file("/var/log/nginx/access.json.log").content_string.splitlines()]
        entries = [e for e in lines if e["request_uri"] == marker]
        if entries:
            break
        time.sleep(0.5)
    assert entries, "the request is not in the access log"
    assert entries[0]["status"] == 404
    assert entries[0]["ssl_protocol"] in ("TLSv1.2", "TLSv1.3")


# --- A real browser ----------------------------------------------------------------------------

def test_chromium_plays_by_the_csp(address, tls_context, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with tls_socket(address, tls_context) as tls:
        der = tls.getpeercert(binary_form=True)
    spki = subprocess.run(["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"], input=der,
                          capture_output=True, check=True).stdout
    spki_der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki,
                              capture_output=True, check=True).stdout
    pin = base64.b64encode(hashlib.sha256(spki_der).digest()).decode()
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path="/usr/bin/chromium", headless=True,
            args=[*CHROMIUM_FLAGS, f"--host-resolver-rules=MAP {NAME} {address}",
                  f"--ignore-certificate-errors-spki-list={pin}"])
        try:
            page = browser.new_page()
            page.add_init_script("window.__violations = []; document.addEventListener('securitypolicyviolation',"
                                 " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            response = page.goto(f"https://{NAME}/", wait_until="load")
            assert response.status == 200
            page.wait_for_timeout(1000)
            players = page.eval_on_selector_all(
                "audio, video", "els => els.map(e => [e.tagName.toLowerCase(), e.querySelector('source').src])")
            stylesheet_applied = page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor")
            violations = page.evaluate("window.__violations")
        finally:
            browser.close()
    assert players == [[s["type"], f"https://{NAME}/live/{s['mount']}"] for s in STREAMS]
    assert stylesheet_applied == "rgb(27, 31, 36)"
    assert violations == []
    assert errors == []


# --- Bad input and a configuration nginx refuses ----------------------------------------------

def nginx_master_pid(host) -> str:
    return host.check_output("cat /run/nginx.pid")


# Case -> (the variables given, the message the run must fail with).
BAD_INPUT = {
    "location-with-undefined-upstream": (
        {"nginx_locations": [{"path": "/api/", "upstream": "nowhere"}]},
        "nginx_locations: location /api/ uses upstream 'nowhere', which is not defined in nginx_upstreams"),
    "certificate-without-key": (
        {"nginx_tls_certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
         "nginx_tls_private_key": ""},
        "nginx_tls_certificate and nginx_tls_private_key go together"),
    "invalid-server-name": ({"nginx_server_names": ["nginx-web", "bad name!"]},
                            "nginx_server_names must list DNS names"),
    "csp-not-a-string": ({"nginx_csp": ["default-src 'none'"]}, "nginx_csp must be a non-empty string"),
    "files-tls-not-a-bool": ({"nginx_files_tls": "maybe"}, "nginx_files_tls"),
    "files-tls-a-string": ({"nginx_files_tls": "true"}, "nginx_files_tls must be true or false"),
    "files-tls-name-an-address": ({"nginx_files_tls_name": "10.0.0.5"}, "nginx_files_tls_name a DNS name"),
    "location-tls-name-not-dns": (
        {"nginx_locations": [{"path": "/api/", "upstream": "rogue_files", "tls": True, "tls_name": "not a name!"}]},
        "location /api/ is refused: tls must be true or false"),
}


@pytest.fixture(scope="module")
def bad_input(host, role_cases) -> dict:
    """Every bad-input case in one ansible-playbook run (each case a block of its own, as converge.yml
    applies the role), with the site's checksums and nginx's PID before and after."""
    before = (host.check_output(f"sha256sum {STATE_FILES}"), nginx_master_pid(host))
    run = role_cases("web", "streamcloud.platform.nginx", {case: extra for case, (extra, _) in BAD_INPUT.items()})
    return {"run": run, "before": before, "after": (host.check_output(f"sha256sum {STATE_FILES}"),
                                                    nginx_master_pid(host))}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_before_nginx_is_touched(bad_input, case):
    run, message = bad_input["run"], BAD_INPUT[case][1]
    assert run.failed(case), run.sections.get(case, run.output)[-3000:]
    assert message in run.text(case), run.text(case)[-3000:]
    # No case changed anything: not one task of the whole run, not one byte of the site, not nginx's PID.
    assert run.recap["changed"] == 0 and run.recap["rescued"] == len(BAD_INPUT), run.recap
    assert bad_input["after"] == bad_input["before"]


def test_configuration_nginx_refuses_never_reaches_the_running_nginx(host, playbook, molecule_scenario_dir,
                                                                       address, tls_context):
    before = host.check_output("sha256sum /etc/nginx/nginx.conf")
    pid = nginx_master_pid(host)
    result = playbook(molecule_scenario_dir / "converge.yml", {"nginx_http_raw": "no_such_directive on;"})
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert re.search(r'unknown directive \\*"no_such_directive', output), output[-3000:]
    assert host.check_output("sha256sum /etc/nginx/nginx.conf") == before
    assert nginx_master_pid(host) == pid
    response, _ = https(address, tls_context, "/")
    assert response.status == 200


# --- What Molecule's own runs printed (ANSIBLE_LOG_PATH, molecule.yml) -------------------------
# Last in the module, so the log also holds this verify's own runs of the role.

def test_check_mode_on_the_converged_host_changes_nothing(ansible_log):
    """Molecule's second check step (after converge and idempotence) reports nothing to change."""
    run = ansible_log.last_check_on_converged_hosts("Converge")
    assert run.recap and all(r["changed"] == 0 and r["failed"] == 0 for r in run.recap.values()), run.text[-3000:]


def test_no_secret_in_any_ansible_output(ansible_log):
    ansible_log.assert_no_secret({
        f"nginx_basic_auth_users[{KIBANA_USER['name']}].password": KIBANA_USER["password"],
        "vault_pki_ca_passphrase": VARS["vault_pki_ca_passphrase"],
    })
