"""The proftpd role listens where the vpc role's ftp security group opens the firewall: the defaults of
both roles agree, and the inventories tie the vpc variables to the proftpd ones (one value each)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def ftp_rule_ports() -> set[str]:
    """Every port or range the vpc role's default ftp rules open, as the templates resolve with its defaults."""
    vpc = defaults("vpc")
    resolved = set()
    for rule in vpc["vpc_security_rules"]["ftp"]:
        for port in rule["ports"]:
            text = str(port)
            for name, value in vpc.items():
                text = text.replace("{{ " + name + " }}", str(value))
            resolved.add(text)
    return resolved


def test_the_vpc_ftp_rules_open_the_proftpd_ports():
    proftpd, vpc = defaults("proftpd"), defaults("vpc")
    assert vpc["vpc_sftp_port"] == proftpd["proftpd_sftp_port"]
    assert vpc["vpc_ftp_passive_ports"] == proftpd["proftpd_passive_ports"]
    assert vpc["vpc_ftp_web_client_port"] == proftpd["proftpd_webclient_port"]
    opened = ftp_rule_ports()
    for port in (proftpd["proftpd_port"], proftpd["proftpd_sftp_port"], proftpd["proftpd_passive_ports"],
                 proftpd["proftpd_webclient_port"]):
        assert str(port) in opened, f"{port} is not opened by roles/vpc's ftp rules ({sorted(opened)})"


@pytest.mark.parametrize("environment", ["prod", "dev"])
def test_the_inventories_keep_one_value_per_port(environment):
    settings = yaml.safe_load((ROOT / "inventories" / environment / "group_vars/all/ftp.yml").read_text())
    assert settings["vpc_sftp_port"] == "{{ proftpd_sftp_port }}"
    assert settings["vpc_ftp_passive_ports"] == "{{ proftpd_passive_ports }}"
    assert settings["vpc_ftp_web_client_port"] == "{{ proftpd_webclient_port }}"
    role = defaults("proftpd")
    for name in ("proftpd_sftp_port", "proftpd_passive_ports", "proftpd_webclient_port"):
        assert settings[name] == role[name], f"{name} differs from the role's default"
