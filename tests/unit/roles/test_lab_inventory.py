"""The lab inventory (shared by `make lab` and the site scenario) gives each container the private
names that the vpc role publishes on AWS (docs/architecture.md, "Private names")."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_lab_service_names_are_the_vpc_roles():
    vpc = yaml.safe_load((ROOT / "roles/vpc/defaults/main.yml").read_text())
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/platform.yml").read_text())
    assert lab["lab_service_names"] == vpc["vpc_dns_service_names"]


def test_lab_ports_are_the_vpc_rules_variables():
    """The ftp ports feed both the proftpd role and the vpc role's rules, as in inventories/dev."""
    ftp = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/ftp.yml").read_text())
    assert ftp["vpc_sftp_port"] == "{{ proftpd_sftp_port }}"
    assert ftp["vpc_ftp_passive_ports"] == "{{ proftpd_passive_ports }}"
    assert ftp["vpc_ftp_web_client_port"] == "{{ proftpd_webclient_port }}"


def test_docker_hosts_name_their_python():
    """Over a docker connection mitogen looks for Python again before every task (a shell per
    candidate in the container) unless the interpreter is named: each task took 3.7x as long
    (benchmarks/RESULTS.md, section site). The lab (and the site scenario and the benchmark, which
    read this inventory) and every Molecule scenario name it."""
    lab = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())["all"]["vars"]
    assert lab["ansible_connection"] == "community.docker.docker"
    assert lab["ansible_python_interpreter"] == "/usr/bin/python3"
    molecule = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())
    assert molecule["driver"]["name"] == "docker"
    assert molecule["provisioner"]["config_options"]["defaults"]["interpreter_python"] == "/usr/bin/python3"
