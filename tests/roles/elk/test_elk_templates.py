"""Every template of the elk role rendered by Ansible with the role's defaults and sample input,
then parsed (YAML, JSON, NDJSON) and checked for what the role promises: security and TLS on,
no listener on every interface, the heap, the retention, the dashboard's references.

Elasticsearch and Kibana have no configuration checker that runs without them; the Beats' own
checker (`auditbeat test config`) runs in the Molecule scenario, where the packages are installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
SAMPLE = {
    "elk_elastic_password": "Sample-elastic-password-1",
    "elk_kibana_system_password": "Sample-kibana-password-2",
    "elk_beats_password": "Sample-beats-password-3",
    "elk_kibana_encryption_key": "Sample-encryption-key-0123456789abcdef",
    "elk_kibana_host": "10.0.3.10",
    "elk_kibana_public_url": "https://www.example.net/kibana",
    "elk_host_memory_mb": 3840,
    "elk_retention_days": 21,
    "__elk_in_container": True,
}


def render(run_playbook, inventory, tmp_path, groups, host, **overrides) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    result = run_playbook(HERE / "render.yml", inventory(groups), {**SAMPLE, **overrides, "elk_test_out": str(out)},
                          "--limit", host)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory, run_playbook, inventory_file):
    """One monitoring node in a container (the Molecule and lab case)."""
    tmp = tmp_path_factory.mktemp("single")
    inv = inventory_file(tmp / "inventory.json", {"monitoring": ["mon1"], "web": ["web1"]})
    out = tmp / "out"
    out.mkdir()
    result = run_playbook(HERE / "render.yml", inv, {**SAMPLE, "elk_test_out": str(out)}, "--limit", "mon1")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def load_yaml(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("#"), "templates start with the ansible_managed comment"
    return yaml.safe_load(text)


def test_elasticsearch_single_node_secure(single):
    config = load_yaml(single / "elasticsearch.yml")
    assert config["discovery.type"] == "single-node"
    assert "cluster.initial_master_nodes" not in config
    assert config["xpack.security.enabled"] is True
    for layer in ("http", "transport"):
        assert config[f"xpack.security.{layer}.ssl.enabled"] is True
        assert config[f"xpack.security.{layer}.ssl.certificate"].startswith("/etc/elasticsearch/")
        assert config[f"xpack.security.{layer}.ssl.key"].startswith("/etc/elasticsearch/")
    assert config["xpack.security.transport.ssl.verification_mode"] == "full"
    assert config["network.host"] == ["_local_", "_site_"]
    assert config["node.name"] == "mon1"
    assert config["path.data"] == "/var/lib/elasticsearch"


def test_elasticsearch_cluster_from_the_group(run_playbook, inventory, tmp_path):
    out = render(run_playbook, inventory, tmp_path, {"monitoring": ["es1", "es2", "es3"]}, "es2",
                 elk_elasticsearch_data_dir="/data/elasticsearch")
    config = load_yaml(out / "elasticsearch.yml")
    assert "discovery.type" not in config
    assert config["discovery.seed_hosts"] == ["es1:9300", "es2:9300", "es3:9300"]
    assert config["cluster.initial_master_nodes"] == ["es1", "es2", "es3"]
    assert config["path.data"] == "/data/elasticsearch"
    kibana = load_yaml(out / "kibana.yml")
    assert kibana["elasticsearch.hosts"] == ["https://es1:9200", "https://es2:9200", "https://es3:9200"]
    auditbeat = load_yaml(out / "auditbeat.yml")
    assert auditbeat["output.elasticsearch"]["hosts"] == kibana["elasticsearch.hosts"]


def test_heap_is_half_of_a_t3_medium(single):
    lines = [line for line in (single / "heap.options").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["-Xms1920m", "-Xmx1920m"]


def test_heap_override(run_playbook, inventory, tmp_path):
    out = render(run_playbook, inventory, tmp_path, {"monitoring": ["mon1"]}, "mon1", elk_elasticsearch_heap_mb=2048)
    assert "-Xmx2048m" in (out / "heap.options").read_text().splitlines()


def test_kibana_behind_nginx_over_tls(single):
    config = load_yaml(single / "kibana.yml")
    assert config["server.host"] == "10.0.3.10"
    assert config["server.basePath"] == "/kibana"
    assert config["server.rewriteBasePath"] is True
    assert config["server.publicBaseUrl"] == "https://www.example.net/kibana"
    assert config["server.ssl.enabled"] is True
    assert config["elasticsearch.hosts"] == ["https://mon1:9200"]
    assert config["elasticsearch.username"] == "kibana_system"
    assert config["elasticsearch.password"] == SAMPLE["elk_kibana_system_password"]
    assert config["elasticsearch.ssl.verificationMode"] == "full"
    assert len(config["xpack.encryptedSavedObjects.encryptionKey"]) >= 32


def test_auditbeat_in_a_container(single):
    config = load_yaml(single / "auditbeat.yml")
    modules = config["auditbeat.modules"]
    assert "auditd" not in [m["module"] for m in modules]
    datasets = [d for m in modules if m["module"] == "system" for d in m["datasets"]]
    assert sorted(datasets) == ["host", "login", "process"]
    fim = next(m for m in modules if m["module"] == "file_integrity")
    assert fim["paths"] == ["/etc/streamcloud", "/etc/nginx"]
    output = config["output.elasticsearch"]
    assert output["username"] == "streamcloud_beats"
    assert output["ssl.verification_mode"] == "full"
    assert all(h.startswith("https://") for h in output["hosts"])
    assert config["setup.ilm.enabled"] is False
    assert config["setup.template.enabled"] is False
    assert config["logging.files"]["path"] == "/var/log/auditbeat"


def test_auditbeat_on_a_virtual_machine(run_playbook, inventory, tmp_path):
    out = render(run_playbook, inventory, tmp_path, {"monitoring": ["mon1"], "web": ["web1"]}, "web1",
                 __elk_in_container=False)
    modules = load_yaml(out / "auditbeat.yml")["auditbeat.modules"]
    auditd = next(m for m in modules if m["module"] == "auditd")
    assert "-w /etc/shadow -p wa -k identity" in auditd["audit_rules"]
    datasets = [d for m in modules if m["module"] == "system" for d in m["datasets"]]
    assert "socket" in datasets


def test_filebeat_reads_every_platform_log(single):
    config = load_yaml(single / "filebeat.yml")
    inputs = {i["id"]: i for i in config["filebeat.inputs"]}
    assert set(inputs) == {f"streamcloud-{s}" for s in ("nginx", "postgresql", "proftpd", "icecast", "backup")}
    for service in ("nginx", "backup"):
        assert inputs[f"streamcloud-{service}"]["parsers"][0]["ndjson"]["target"] == service
    assert inputs["streamcloud-postgresql"]["parsers"][0]["multiline"]["negate"] is True
    assert inputs["streamcloud-backup"]["paths"] == ["/var/log/streamcloud-backup.log"]
    assert all(i["type"] == "filestream" and i["fields"]["streamcloud.service"] for i in inputs.values())
    assert config["output.elasticsearch"]["password"] == SAMPLE["elk_beats_password"]


def test_ilm_policy_deletes_after_the_retention(single):
    policy = json.loads((single / "ilm-policy.json").read_text())["policy"]
    assert policy["phases"]["delete"]["min_age"] == "21d"
    assert "delete" in policy["phases"]["delete"]["actions"]
    assert policy["phases"]["hot"]["actions"]["rollover"]["max_age"] == "1d"


def test_saved_objects_are_importable_ndjson(single):
    lines = (single / "dashboard.ndjson").read_text().splitlines()
    objects = [json.loads(line) for line in lines if line.strip()]
    known = set()
    for obj in objects:
        assert {"type", "id", "attributes", "references"} <= set(obj)
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in known, f"{obj['id']} refers to {ref} before it is defined"
        known.add((obj["type"], obj["id"]))
    dashboard = objects[-1]
    assert dashboard["type"] == "dashboard" and dashboard["id"] == "streamcloud-platform"
    titles = {o["attributes"]["title"] for o in objects if o["type"] == "search"}
    assert {"Backup runs", "HTTP traffic", "FTP transfers", "Logins", "Stream listeners"} <= titles
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert len(panels) == len(titles)
    for obj in objects:
        source = obj["attributes"].get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
        if source:
            json.loads(source)


def test_no_secret_outside_the_files_that_need_it(single):
    for name in ("elasticsearch.yml", "heap.options", "ilm-policy.json", "dashboard.ndjson"):
        text = (single / name).read_text()
        for key in ("elk_elastic_password", "elk_kibana_system_password", "elk_beats_password"):
            assert SAMPLE[key] not in text
    assert SAMPLE["elk_elastic_password"] not in (single / "kibana.yml").read_text()
    assert SAMPLE["elk_elastic_password"] not in (single / "auditbeat.yml").read_text()
