"""/files/ works from site.yml: in each inventory the web hosts' nginx proxies to the ftp hosts' web
client on proftpd_webclient_port, over verified HTTPS, and the name nginx verifies is one the ftp
hosts' certificate carries (an extra name given to the proftpd role, or the inventory name that the
pki role always puts in)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
NGINX = yaml.safe_load((ROOT / "roles/nginx/defaults/main.yml").read_text())
PROFTPD = yaml.safe_load((ROOT / "roles/proftpd/defaults/main.yml").read_text())


def resolve(var_files: list[Path], expression: str):
    """The value of a Jinja expression as Ansible templates it with these variable files (as extra vars)."""
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-o", "-m", "ansible.builtin.debug",
            "-a", "msg={{ " + expression + " | to_json }}"]
    for file in var_files:
        argv += ["-e", f"@{file}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    payload = result.stdout.split("=>", 1)[1]
    return json.loads(json.loads(payload)["msg"])


@pytest.mark.parametrize("environment", ["prod", "dev"])
def test_aws_inventories_proxy_files_to_the_ftp_service_name(environment, tmp_path):
    group_vars = ROOT / "inventories" / environment / "group_vars"
    defaults = tmp_path / "defaults.yml"
    defaults.write_text(yaml.safe_dump({"nginx_files_tls": NGINX["nginx_files_tls"],
                                        "nginx_files_tls_name": NGINX["nginx_files_tls_name"]}))
    files = [defaults, *sorted((group_vars / "all").glob("*.yml")), group_vars / "web" / "nginx.yml"]
    servers = resolve(files, "nginx_files_servers")
    tls_name = resolve(files, "nginx_files_tls_name")
    certificate_names = resolve(files, "proftpd_tls_extra_names")
    domain = resolve(files, "platform_domain")
    assert servers == [f"ftp.{domain}:{PROFTPD['proftpd_webclient_port']}"]
    assert resolve(files, "nginx_files_tls") is True
    assert tls_name == f"ftp.{domain}"
    assert tls_name in certificate_names  # the ftp hosts' certificate carries the name nginx verifies
    assert NGINX["nginx_files_strip_prefix"] is False
    assert PROFTPD["proftpd_webclient_base_url"] == "/files/"


def test_lab_inventory_proxies_files_to_the_ftp_container(tmp_path):
    hosts = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())
    ftp_hosts = list(hosts["all"]["children"]["ftp"]["hosts"])
    defaults = tmp_path / "defaults.yml"
    defaults.write_text(yaml.safe_dump({"nginx_files_tls_name": NGINX["nginx_files_tls_name"]}))
    files = [defaults, ROOT / "inventories/lab/group_vars/web.yml"]
    servers = resolve(files, "nginx_files_servers")
    assert servers == [f"{ftp_hosts[0]}:{PROFTPD['proftpd_webclient_port']}"]
    # The pki role always puts the inventory name in a host's certificate.
    assert resolve(files, "nginx_files_tls_name") == ftp_hosts[0]
