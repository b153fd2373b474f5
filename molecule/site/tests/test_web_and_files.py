"""The public doors, with real clients from this machine, verified against the platform CA: the landing
page through nginx and its players' streams decoded (gst-discoverer-1.0) through /live/; a file
uploaded over FTPS shows in the web client behind nginx (/files/) and over SFTP (port 2222). The
same functions serve `make lab-check` (scripts/labcheck.py)."""

from __future__ import annotations

import os
import time

import pytest
from sitelib import CA_FILE, GROUPS, address, labcheck, secret

USER = "labuser"


@pytest.fixture(scope="module")
def context():
    return labcheck.tls_context(CA_FILE)


@pytest.fixture(scope="module")
def web() -> str:
    return f"{address(GROUPS['web'][0])}:443"


@pytest.fixture(scope="module")
def ftp_host() -> str:
    return address(GROUPS["ftp"][0])


def test_the_landing_page_has_a_player_per_stream(web, context):
    streams = labcheck.landing_streams(web, context)
    assert sorted(mime for _, mime in streams) == ["audio/ogg", "video/webm"]
    assert all(path.startswith("/live/") for path, _ in streams)


def test_a_decoder_reads_the_live_audio_and_video_through_nginx(web, context):
    reports = labcheck.check_live(web, context)
    assert "Opus" in reports["/live/audio.ogg"] or "Vorbis" in reports["/live/audio.ogg"]
    assert "VP8" in reports["/live/video.webm"] or "VP9" in reports["/live/video.webm"]


def test_an_untrusted_ca_is_refused(web, tmp_path):
    """The control: the same page with the system's CAs only (the platform CA is not one) fails."""
    with pytest.raises(labcheck.ssl.SSLCertVerificationError):
        labcheck.https_get(web, "/", labcheck.ssl.create_default_context())


def test_an_ftps_upload_appears_in_the_web_client_and_over_sftp(web, ftp_host, context):
    password = secret("ftp_labuser")
    name = f"site-{int(time.time())}.bin"
    data = os.urandom(512 * 1024 + 3)
    labcheck.ftps_upload(f"{ftp_host}:21", context, USER, password, name, data)
    try:
        status, listing = labcheck.web_files_get(web, context, USER, password, "")
        assert status == 200 and name.encode() in listing
        status, body = labcheck.web_files_get(web, context, USER, password, name)
        assert status == 200 and body == data
        assert labcheck.web_files_get(web, context, USER, "not-the-password", name)[0] == 401
        assert labcheck.sftp_get(f"{ftp_host}:2222", USER, password, name) == data
    finally:
        labcheck.ftps_delete(f"{ftp_host}:21", context, USER, password, name)
