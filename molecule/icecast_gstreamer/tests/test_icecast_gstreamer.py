"""The icecast_gstreamer role, checked from this machine with real clients.

Listeners are plain HTTP clients reading the mounts; gst-discoverer-1.0 (Debian's
gstreamer1.0-plugins-base-apps, on this machine) identifies what they received. A source with a
wrong password is a real HTTP PUT as libshout sends it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("streaming")

MASTER = "icecast_gstreamer-master"
RELAY = "icecast_gstreamer-relay"
ROLE_DIR = Path(__file__).resolve().parents[3] / "roles" / "icecast_gstreamer"
VARS = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())[
    "provisioner"]["inventory"]["group_vars"]["streaming"]
STREAMS = VARS["icecast_gstreamer_streams"]
MOUNTS = [s["mount"] for s in STREAMS]
ADMIN_PATHS = yaml.safe_load((ROLE_DIR / "vars" / "main.yml").read_text())["__icecast_gstreamer_admin_paths"]
PORT = 8000
# What gst-discoverer-1.0 calls each configured container and codec.
CONTAINER = {"audio": "Ogg", "video": "WebM"}
CODEC = {"opus": "Opus", "vorbis": "Vorbis", "vp8": "VP8", "vp9": "VP9"}
CONFIG_FILES = "/etc/icecast2/icecast.xml /etc/systemd/system/icecast2.service"


def status_mounts(address: str) -> set[str]:
    """Mounts that have a source in Icecast's status-json.xsl (listenurl's path)."""
    with urllib.request.urlopen(f"http://{address}:{PORT}/status-json.xsl", timeout=10) as response:
        sources = json.load(response)["icestats"].get("source", [])
    if isinstance(sources, dict):
        sources = [sources]
    return {urllib.parse.urlsplit(s["listenurl"]).path for s in sources}


def wait_for_mounts(address: str, deadline: float) -> set[str]:
    """Polls the status until every mount is there or the deadline passes; returns what is missing."""
    missing = set(MOUNTS)
    while time.monotonic() < deadline:
        try:
            missing = set(MOUNTS) - status_mounts(address)
        except (OSError, ValueError, http.client.HTTPException):
            missing = set(MOUNTS)
        if not missing:
            break
        time.sleep(1)
    return missing


def record(address: str, mount: str, seconds: float, path: Path) -> int:
    """Reads a mount as a listener for a few seconds and keeps what arrived."""
    end = time.monotonic() + seconds
    size = 0
    with urllib.request.urlopen(f"http://{address}:{PORT}{mount}", timeout=15) as response, path.open("wb") as out:
        while time.monotonic() < end:
            chunk = response.read(4096)
            if not chunk:
                break
            out.write(chunk)
            size += len(chunk)
    return size


@pytest.fixture(scope="module")
def addresses(address_of) -> dict[str, str]:
    return {"master": address_of(MASTER), "relay": address_of(RELAY)}


@pytest.mark.parametrize("tier", ["master", "relay"])
def test_every_mount_has_a_source(addresses, tier):
    assert status_mounts(addresses[tier]) >= set(MOUNTS)


@pytest.mark.parametrize("tier", ["master", "relay"])
@pytest.mark.parametrize("stream", STREAMS, ids=[s["name"] for s in STREAMS])
def test_listener_receives_the_configured_codec(addresses, tier, stream, tmp_path):
    path = tmp_path / f"{stream['name']}.{stream['mount'].rsplit('.', 1)[-1]}"
    size = record(addresses[tier], stream["mount"], 5, path)
    assert size > 4096, f"{tier}{stream['mount']}: only {size} bytes in 5 s"
    found = subprocess.run(["gst-discoverer-1.0", str(path)], capture_output=True, text=True, timeout=60)
    report = found.stdout
    assert f"container #0: {CONTAINER[stream['type']]}" in report, report
    if stream["type"] == "audio":
        assert f"audio #1: {CODEC[stream['encoder']]}" in report, report
    else:
        assert f"video #1: {CODEC[stream['encoder']]}" in report, report
        assert f"audio #2: {CODEC[stream.get('audio_encoder', 'opus')]}" in report, report


def test_wrong_source_password_is_refused(addresses):
    """A source PUT (the HTTP protocol libshout speaks) with a wrong password gets 401 and no mount."""
    connection = http.client.HTTPConnection(addresses["master"], PORT, timeout=10)
    token = base64.b64encode(b"source:Not-the-source-p4ss").decode()
    connection.request("PUT", "/intruder.ogg", body=b"OggS" + b"\0" * 60,
                       headers={"Authorization": f"Basic {token}", "Content-Type": "audio/ogg",
                                "Ice-Public": "0"})
    assert connection.getresponse().status == 401
    connection.close()
    assert "/intruder.ogg" not in status_mounts(addresses["master"])


@pytest.mark.parametrize("tier", ["master", "relay"])
def test_admin_pages_only_on_loopback(host, addresses, tier):
    if host.backend.get_hostname() != (MASTER if tier == "master" else RELAY):
        pytest.skip("checked once per tier")
    auth = "Basic " + base64.b64encode(f"admin:{VARS['icecast_gstreamer_admin_password']}".encode()).decode()
    served = []
    for path in ADMIN_PATHS:
        request = urllib.request.Request(f"http://{addresses[tier]}:{PORT}{path}", headers={"Authorization": auth})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http:// built above)
                served.append(f"{path} {response.status}")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                served.append(f"{path} {error.code}")
    assert served == []
    # The same credentials on loopback reach the admin pages.
    local = host.run(
        "python3 -c \"import urllib.request,sys; "
        f"r=urllib.request.Request('http://127.0.0.1:{PORT}/admin/stats', "
        f"headers={{'Authorization': sys.argv[1]}}); print(urllib.request.urlopen(r).status)\" '{auth}'")
    assert local.stdout.strip() == "200", local.stderr


def test_sources_are_unprivileged_sandboxed_and_keep_the_password_off_argv(host):
    if host.backend.get_hostname() != MASTER:
        pytest.skip("the sources run on the master")
    for stream in STREAMS:
        unit = f"streamcloud-icecast-source@{stream['name']}.service"
        props = dict(line.split("=", 1) for line in host.check_output(
            f"systemctl show {unit} -p ActiveState -p DynamicUser -p NoNewPrivileges -p ProtectSystem "
            f"-p PartOf -p Restart -p MainPID").splitlines())
        assert props["ActiveState"] == "active"
        assert (props["DynamicUser"], props["NoNewPrivileges"], props["ProtectSystem"]) == ("yes", "yes", "strict")
        assert "icecast2.service" in props["PartOf"] and props["Restart"] == "always"
        assert host.check_output(f"ps -o user= -p {props['MainPID']}").strip() not in ("root", "icecast2")
    cmdlines = host.check_output("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' || true")
    assert VARS["icecast_gstreamer_source_password"] not in cmdlines
    assert host.file("/etc/streamcloud/icecast-sources").mode == 0o700


def test_restarting_icecast_brings_every_source_back(host, addresses):
    """No operator: Icecast restarts, the sources (PartOf + Restart=always) are back within 30 s."""
    if host.backend.get_hostname() != MASTER:
        pytest.skip("restarted on the master")
    host.check_output("systemctl restart icecast2.service")
    started = time.monotonic()
    missing = wait_for_mounts(addresses["master"], started + 30)
    assert not missing, f"no source on {sorted(missing)} 30 s after Icecast restarted"
    # The relay pulls again by itself (icecast_gstreamer_relay_retry_interval, 5 s apart).
    missing = wait_for_mounts(addresses["relay"], started + 60)
    assert not missing, f"relay: no {sorted(missing)} 60 s after the master restarted"


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        pytest.param(
            {"icecast_gstreamer_streams": [{"name": "tone", "mount": "/tone.ogg", "type": "audio", "encoder": "vp8"}]},
            "icecast_gstreamer_streams[0] (name 'tone', mount '/tone.ogg') is refused",
            id="video-encoder-on-audio",
        ),
    ],
)
def test_bad_stream_fails_in_the_role_checks(host, playbook, molecule_scenario_dir, extra_vars, message):
    """What the argument spec cannot see (an encoder of the other type) is caught by tasks/assert.yml."""
    if host.backend.get_hostname() != MASTER:
        pytest.skip("one run covers both hosts")
    result = playbook(molecule_scenario_dir / "converge.yml", extra_vars)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert message in output, output[-3000:]
    assert set(re.findall(r"changed=(\d+)", output)) <= {"0"}, output[-3000:]


def test_killed_source_comes_back(host, addresses):
    if host.backend.get_hostname() != MASTER:
        pytest.skip("the sources run on the master")
    host.check_output("systemctl kill --signal=SIGKILL streamcloud-icecast-source@audio.service")
    time.sleep(1)  # let Icecast notice the dropped source before polling
    missing = wait_for_mounts(addresses["master"], time.monotonic() + 30)
    assert not missing, f"no source on {sorted(missing)} 30 s after the audio source was killed"


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        pytest.param(
            {"icecast_gstreamer_streams": [{"mount": "/nameless.ogg", "type": "audio", "encoder": "opus"}]},
            "missing required arguments: name found in icecast_gstreamer_streams",
            id="mount-without-name",
        ),
        pytest.param(
            {"icecast_gstreamer_streams": [{"name": "audio", "mount": "/audio.ogg", "type": "audio",
                                            "encoder": "mp3"}]},
            "value of encoder must be one of: opus, vorbis, vp8, vp9, got: mp3",
            id="unknown-encoder",
        ),
        pytest.param(
            {"icecast_gstreamer_source_password": "hackme"},
            "icecast_gstreamer_source_password is refused",
            id="default-password",
        ),
        pytest.param(
            {"icecast_gstreamer_master_address": ""},
            "icecast_gstreamer-relay relays the mounts of icecast_gstreamer-master",
            id="relay-without-master",
        ),
    ],
)
def test_bad_input_fails_before_any_change(host, playbook, molecule_scenario_dir, extra_vars, message):
    if host.backend.get_hostname() != MASTER:
        pytest.skip("one run covers both hosts")
    before = {h: subprocess.run(["docker", "exec", h, "sha256sum", *CONFIG_FILES.split()],
                                capture_output=True, text=True, check=True).stdout for h in (MASTER, RELAY)}
    result = playbook(molecule_scenario_dir / "converge.yml", extra_vars)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert message in output, output[-3000:]
    assert set(re.findall(r"changed=(\d+)", output)) <= {"0"}, output[-3000:]
    after = {h: subprocess.run(["docker", "exec", h, "sha256sum", *CONFIG_FILES.split()],
                               capture_output=True, text=True, check=True).stdout for h in (MASTER, RELAY)}
    assert before == after


def test_broken_config_never_replaces_the_running_one(host, playbook, molecule_scenario_dir, addresses):
    """xmllint (the template's validate) refuses the file; Icecast keeps serving the old one."""
    if host.backend.get_hostname() != MASTER:
        pytest.skip("one run covers both hosts")
    before = host.check_output(f"sha256sum {CONFIG_FILES}")
    result = playbook(molecule_scenario_dir / "converge.yml", {"icecast_gstreamer_extra_xml": "<limits><clients>9"})
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "failed to validate" in output, output[-3000:]
    assert host.check_output(f"sha256sum {CONFIG_FILES}") == before
    assert host.service("icecast2").is_running
    assert status_mounts(addresses["master"]) >= set(MOUNTS)
