"""plugins/module_utils/dpkg.py against this machine's real dpkg database (CI runs on Debian)."""

import shutil
import subprocess

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils import dpkg

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query (Debian/Ubuntu)")


def query(names):
    out = subprocess.run(["/bin/sh", "-c", dpkg.query_command(names)], capture_output=True, text=True, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.stdout


def test_installed_packages_are_not_missing():
    names = ["bash", "coreutils", "dpkg"]
    assert dpkg.missing(names, query(names)) == []


def test_unknown_package_is_missing_and_the_rest_is_not():
    names = ["bash", "streamcloud-no-such-package", "coreutils"]
    assert dpkg.missing(names, query(names)) == ["streamcloud-no-such-package"]


def test_names_apt_resolves_are_always_missing():
    names = ["bash=5*", "bash:amd64", "bash*", "./bash.deb"]
    assert dpkg.missing(names, query(["bash"])) == names


def test_a_package_whose_config_files_remain_is_missing():
    assert dpkg.missing(["nginx"], "nginx config-files\n") == ["nginx"]
    assert dpkg.missing(["nginx"], "nginx half-installed\n") == ["nginx"]


def test_each_missing_name_once_in_order():
    assert dpkg.missing(["b1", "a1", "b1"], "") == ["b1", "a1"]


def test_the_command_quotes_names():
    assert "'a;b'" in dpkg.query_command(["a;b"])
    assert dpkg.query_command(["x"]).endswith("-- x")
