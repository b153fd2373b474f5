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
