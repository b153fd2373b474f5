"""The elk role end to end: real HTTPS clients from this machine against Elasticsearch and Kibana,
verified against the platform CA, and the Beats' documents found by searching for them.

Runs only where Elastic's packages can be had (see ../available); never on the machine this was
written on, which cannot reach Elastic's repository.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import requests
import testinfra.utils.ansible_runner
import yaml

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("all")

MONITORING = "elk-monitoring"
WEB = "elk-web"
PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "monitoring.yml"


def scenario_vars() -> dict:
    molecule_yml = Path(__file__).resolve().parents[1] / "molecule.yml"
    return yaml.safe_load(molecule_yml.read_text())["provisioner"]["inventory"]["group_vars"]


VARS = scenario_vars()["all"]
ELASTIC = ("elastic", VARS["elk_elastic_password"])
BEATS = ("streamcloud_beats", VARS["elk_beats_password"])
KIBANA_SYSTEM = ("kibana_system", VARS["elk_kibana_system_password"])


@pytest.fixture(scope="module")
def es_address(address_of) -> str:
    return address_of(MONITORING)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> Path:
    """The platform CA as the monitoring host has it; every client below verifies against it."""
    host = testinfra.get_host(f"ansible://{MONITORING}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_text(host.file("/etc/streamcloud/pki/ca.crt").content_string)
    return path


@pytest.fixture(scope="module")
def es(es_address, ca_file):
    """es(method, path, auth=ELASTIC, **kw) -> requests.Response over HTTPS verified with the CA."""
    def call(method: str, path: str, auth=ELASTIC, **kwargs) -> requests.Response:
        return requests.request(method, f"https://{es_address}:9200{path}", auth=auth, verify=str(ca_file),
                                timeout=30, **kwargs)
    return call


def wait_for_hits(es, index: str, query: str, timeout: int = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        response = es("GET", f"/{index}/_search", params={"q": query, "size": 5})
        hits = response.json().get("hits", {}).get("hits", []) if response.status_code == 200 else []
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(5)


def only_on(host, name: str) -> None:
    if host.backend.get_hostname() != name:
        pytest.skip(f"checked on {name}")


# --- Elasticsearch: security, TLS, heap, retention -------------------------------------------------

def test_elasticsearch_answers_over_verified_tls(es):
    response = es("GET", "/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cluster_name"] == "streamcloud"
    assert body["version"]["number"] == os.environ.get("ELK_VERSION", "8.17.0")


def test_anonymous_and_wrong_password_are_refused(es):
    assert es("GET", "/", auth=None).status_code == 401
    assert es("GET", "/", auth=("elastic", "not-the-password")).status_code == 401


def test_plain_http_is_refused(es_address):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{es_address}:9200/", auth=ELASTIC, timeout=10)


def test_transport_requires_a_client_certificate(es_address, ca_file):
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False
    with (socket.create_connection((es_address, 9300), timeout=10) as raw,
          pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
          context.wrap_socket(raw) as tls):
        tls.sendall(b"\0" * 16)
        tls.recv(16)


def test_single_node_cluster_is_green_or_yellow(es):
    health = es("GET", "/_cluster/health").json()
    assert health["number_of_nodes"] == 1
    assert health["status"] in ("green", "yellow")


def test_heap_is_half_of_the_host(es):
    nodes = es("GET", "/_nodes/jvm").json()["nodes"]
    heap = next(iter(nodes.values()))["jvm"]["mem"]["heap_max_in_bytes"]
    assert heap == 2048 * 1024 * 1024


def test_kibana_system_password_is_the_vaults(es):
    response = es("GET", "/_security/_authenticate", auth=KIBANA_SYSTEM)
    assert response.status_code == 200
    assert response.json()["username"] == "kibana_system"


def test_lifecycle_policy_deletes_after_the_retention(es):
    policy = es("GET", "/_ilm/policy/streamcloud-logs").json()["streamcloud-logs"]["policy"]
    assert policy["phases"]["delete"]["min_age"] == f"{VARS['elk_retention_days']}d"
    streams = es("GET", "/_data_stream/auditbeat-*,filebeat-*").json()["data_streams"]
    assert streams, "the Beats' data streams exist"
    assert {s["ilm_policy"] for s in streams} == {"streamcloud-logs"}


def test_bootstrap_password_is_not_left_in_the_keystore(host):
    only_on(host, MONITORING)
    entries = host.check_output("/usr/share/elasticsearch/bin/elasticsearch-keystore list").split()
    assert "bootstrap.password" not in entries
    assert "autoconfiguration.password_hash" not in entries


# --- the Beats' user may write its documents and nothing else ------------------------------------

def test_beats_user_cannot_read_delete_or_administer(es):
    assert es("GET", "/_security/_authenticate", auth=BEATS).status_code == 200
    assert es("GET", "/auditbeat-*/_search", auth=BEATS).status_code == 403
    assert es("DELETE", "/filebeat-*", auth=BEATS).status_code == 403
    assert es("GET", "/_security/user", auth=BEATS).status_code == 403
    assert es("PUT", "/_ilm/policy/streamcloud-logs", auth=BEATS, json={"policy": {"phases": {}}}).status_code == 403


# --- Auditbeat and Filebeat on every host ----------------------------------------------------------

def test_beats_run_and_reach_elasticsearch(host):
    for beat in ("auditbeat", "filebeat"):
        assert host.service(beat).is_running
        assert host.service(beat).is_enabled
        output = host.run(f"{beat} test output -c /etc/{beat}/{beat}.yml --path.home /usr/share/{beat}")
        assert output.rc == 0, output.stdout + output.stderr
        assert "talk to server... OK" in output.stdout


def test_beats_configuration_is_root_only(host):
    for beat in ("auditbeat", "filebeat"):
        config = host.file(f"/etc/{beat}/{beat}.yml")
        assert (config.user, config.group, config.mode) == ("root", "root", 0o600)


def test_auditbeat_has_no_auditd_module_in_a_container(host):
    config = yaml.safe_load(host.file("/etc/auditbeat/auditbeat.yml").content_string)
    modules = [m["module"] for m in config["auditbeat.modules"]]
    assert "auditd" not in modules
    assert "system" in modules


def test_audit_events_arrive_from_every_host(es):
    for name in (MONITORING, WEB):
        hits = wait_for_hits(es, "auditbeat-*", f'host.name:"{name}" AND event.module:system')
        assert hits, f"no system events from {name}"


def test_file_integrity_sees_a_change(es, host):
    only_on(host, WEB)
    marker = f"elk-fim-{uuid.uuid4().hex[:8]}"
    host.run(f"echo {marker} > /srv/data/{marker}.txt")
    hits = wait_for_hits(es, "auditbeat-*", f'event.module:file_integrity AND file.name:"{marker}.txt"')
    assert hits


def test_backup_run_is_searchable(es, host):
    only_on(host, WEB)
    marker = f"elk-web-{uuid.uuid4().hex[:8]}.tar.gz"
    line = json.dumps({"status": "failed", "archive": marker, "error": "disk full"})
    host.run(f"echo '{line}' >> /var/log/streamcloud-backup.log")
    hits = wait_for_hits(es, "filebeat-*", f'streamcloud.service:backup AND backup.archive:"{marker}"')
    assert hits
    assert hits[0]["_source"]["backup"]["status"] == "failed"


def test_nginx_json_access_log_is_searchable(es):
    hits = wait_for_hits(es, "filebeat-*", "streamcloud.service:nginx AND nginx.status:200")
    assert hits
    assert hits[0]["_source"]["nginx"]["request"].startswith("GET /live/")


# --- Kibana ------------------------------------------------------------------------------------------

def test_kibana_under_its_base_path_over_tls(es_address, ca_file):
    response = requests.get(f"https://{es_address}:5601/kibana/api/status", auth=ELASTIC, verify=str(ca_file),
                            timeout=30)
    assert response.status_code == 200
    assert response.json()["status"]["overall"]["level"] == "available"


def test_kibana_listens_on_the_private_address_only(host, es_address):
    only_on(host, MONITORING)
    listeners = host.check_output("ss -Hltn 'sport = :5601'")
    assert f"{es_address}:5601" in listeners
    assert "0.0.0.0:5601" not in listeners and "*:5601" not in listeners


def test_dashboard_is_imported(es_address, ca_file):
    response = requests.get(f"https://{es_address}:5601/kibana/api/saved_objects/dashboard/streamcloud-platform",
                            auth=ELASTIC, verify=str(ca_file), timeout=30)
    assert response.status_code == 200
    assert response.json()["attributes"]["title"] == "streamcloud platform"
    assert len(response.json()["references"]) >= 5


# --- bad input on a converged host: refused before any change ----------------------------------------

def test_heap_above_memory_changes_nothing(host, playbook):
    only_on(host, MONITORING)
    before = host.file("/etc/elasticsearch/jvm.options.d/streamcloud-heap.options").content_string
    result = playbook(PLAYBOOK, {"elk_elasticsearch_heap_mb": 8192})
    assert result.returncode != 0
    assert "elk_elasticsearch_heap_mb (8192 MiB)" in result.stdout
    assert host.file("/etc/elasticsearch/jvm.options.d/streamcloud-heap.options").content_string == before
    for secret in (VARS["elk_elastic_password"], VARS["elk_beats_password"], VARS["elk_kibana_system_password"]):
        assert secret not in result.stdout + result.stderr
