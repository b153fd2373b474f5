"""The file web client, in headless Chromium (Playwright driving Debian's /usr/bin/chromium)."""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import tempfile
from pathlib import Path

import pytest
from conftest import USERS
from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The role's default proftpd_webclient_port, the port the vpc role opens (vpc_ftp_web_client_port).
PORT = 8080


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True,
            ignore_https_errors=True, http_credentials={"username": "alice", "password": USERS["alice"]},
            accept_downloads=True,
        )
        yield context
        context.close()


def raw_get(address: str, tls_context: ssl.SSLContext, path: str, user: str, password: str) -> int:
    """GET with the path sent exactly as given (no client-side .. normalisation)."""
    connection = http.client.HTTPSConnection(address, PORT, context=tls_context, timeout=30)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    connection.request("GET", path, headers={"Authorization": f"Basic {token}"})
    status = connection.getresponse().status
    connection.close()
    return status


def test_web_client_tls_verifies_with_the_ca(address, tls_context):
    assert raw_get(address, tls_context, "/files/", "alice", USERS["alice"]) == 200
    assert raw_get(address, tls_context, "/files/", "alice", "not-the-password") == 401
    assert raw_get(address, tls_context, "/files/", "nobody", "whatever-password") == 401


def test_sign_in_upload_list_download_rename_delete(browser, address, tmp_path):
    page = browser.new_page()
    page.goto(f"https://{address}:{PORT}/files/")
    expect(page.locator("#path")).to_contain_text("Home")

    payload = os.urandom(16 * 1024 * 1024 + 5)
    upload = tmp_path / "web-upload.bin"
    upload.write_bytes(payload)
    page.set_input_files("#upload", str(upload))
    row = page.locator("tr.entry", has=page.locator("a.name", has_text="web-upload.bin"))
    expect(row).to_be_visible(timeout=120_000)
    expect(row.locator("td.size")).to_have_text(str(len(payload)))

    with page.expect_download() as download_info:
        row.locator("a.name").click()
    downloaded = Path(download_info.value.path())
    assert downloaded.read_bytes() == payload

    page.fill("#folder", "web folder")
    page.click("#mkdir")
    expect(page.locator("a.name", has_text="web folder/")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept("renamed.bin"))
    row.locator("button.rename").click()
    renamed = page.locator("tr.entry", has=page.locator("a.name", has_text="renamed.bin"))
    expect(renamed).to_be_visible()
    expect(page.locator("a.name", has_text="web-upload.bin")).to_have_count(0)

    page.once("dialog", lambda dialog: dialog.accept())
    renamed.locator("button.delete").click()
    expect(page.locator("a.name", has_text="renamed.bin")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr.entry", has=page.locator("a.name", has_text="web folder/")).locator("button.delete").click()
    expect(page.locator("a.name", has_text="web folder/")).to_have_count(0)
    page.close()


def test_browser_cannot_reach_another_users_files(browser, address):
    page = browser.new_page()
    for path in ("/files/../bob/bob-secret.txt", "/files/%2e%2e/bob/bob-secret.txt", "/files/escape-abs/bob-secret.txt",
                 "/files/escape-rel/bob-secret.txt", "/files/srv/ftp/bob/bob-secret.txt"):
        response = page.goto(f"https://{address}:{PORT}{path}")
        assert response is not None
        assert response.status in (400, 403, 404), path
        assert "bob's secret" not in page.content(), path
    page.close()


@pytest.mark.parametrize("path", [
    "/files/../bob/bob-secret.txt", "/files/../../srv/ftp/bob/bob-secret.txt", "/files/%2e%2e/bob/bob-secret.txt",
    "/files/..%2fbob/bob-secret.txt", "/files/escape-abs/bob-secret.txt", "/files/escape-rel/bob-secret.txt",
    "/files/../../../etc/shadow",
])
def test_dot_dot_in_raw_web_paths_stays_home(address, tls_context, path):
    assert raw_get(address, tls_context, path, "alice", USERS["alice"]) in (400, 403, 404)
    # The same request as bob reaches his file only through his own home.
    assert raw_get(address, tls_context, "/files/bob-secret.txt", "bob", USERS["bob"]) == 200
