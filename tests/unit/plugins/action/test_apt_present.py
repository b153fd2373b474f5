"""The apt_present action through real ansible-playbook runs against localhost: nothing but dpkg-query
when every package is installed, apt for the missing ones only, and bad input refused before anything
runs. apt itself is only reached in check mode (nothing is installed on this machine)."""

import json
import shutil
import subprocess
import sys

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query (Debian/Ubuntu)")


@pytest.fixture
def play(localhost_playbook):
    """play(args, check=False, python=..., env=None) -> (the task's result, the run's output)."""

    def run(args, check=False, python=sys.executable, env=None):
        task = {"name": "Packages", "streamcloud.platform.apt_present": args, "register": "r"}
        show = {"name": "Result", "ansible.builtin.debug": {"msg": "RESULT={{ r | to_json }}"}}
        playbook = [{"name": "apt_present", "hosts": "localhost", "connection": "local", "gather_facts": False,
                     "tasks": [{"block": [task], "always": [show]}]}]
        text = localhost_playbook(playbook, *(["--check"] if check else []), python=python,
                                  env={"ANSIBLE_STRATEGY": "linear", **(env or {})})[1]
        line = next((ln for ln in text.splitlines() if '"msg": "RESULT=' in ln), None)
        assert line is not None, text
        return json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"][len("RESULT="):]), text

    return run


@pytest.mark.parametrize("check", [False, True])
def test_all_installed_is_a_no_op_without_apt(play, check):
    # Only the path that never calls apt returns this message (apt's result has none of it).
    result, text = play({"name": ["bash", "coreutils"]}, check=check)
    assert result.get("failed") is not True, text
    assert result["changed"] is False and result["missing"] == [], text
    assert result["msg"] == "all packages are installed" and "cache_updated" not in result, text


def test_only_the_missing_package_reaches_apt(play):
    if subprocess.run([SYSTEM_PYTHON, "-c", "import apt"], check=False).returncode != 0:
        pytest.skip("the system Python has no python3-apt")
    result, text = play({"name": ["bash", "streamcloud-no-such-package"]}, check=True, python=SYSTEM_PYTHON)
    assert result["missing"] == ["streamcloud-no-such-package"], text
    assert result.get("failed") is True, text
    assert "streamcloud-no-such-package" in result["msg"] and "bash" not in result["msg"], text


def test_without_pipelining_no_temporary_directory_is_left(play, tmp_path):
    if subprocess.run([SYSTEM_PYTHON, "-c", "import apt"], check=False).returncode != 0:
        pytest.skip("the system Python has no python3-apt")
    remote = tmp_path / "remote-tmp"
    result, text = play({"name": ["streamcloud-no-such-package"]}, check=True, python=SYSTEM_PYTHON,
                        env={"ANSIBLE_PIPELINING": "false", "ANSIBLE_REMOTE_TMP": str(remote)})
    assert result["missing"] == ["streamcloud-no-such-package"], text
    assert remote.is_dir(), text  # apt's module was copied there
    assert list(remote.iterdir()) == [], text


@pytest.mark.parametrize(("args", "message"), [
    ({"name": []}, "name must list at least one package"),
    ({"name": ["bash", ""]}, "no empty name"),
    ({"name": ["bash"], "cache_valid_time": -1}, "cache_valid_time must be 0 or more seconds, not -1"),
    ({"name": ["bash"], "cache_valid_time": "soon"}, "cache_valid_time must be a number of seconds"),
    ({"name": ["bash"], "install_recommends": "maybe"}, "install_recommends must be true or false"),
    ({"name": ["bash"], "state": "latest"}, "state"),
])
def test_bad_input_is_refused_with_what_to_fix(play, args, message):
    result, text = play(args)
    assert result.get("failed") is True, text
    assert message in result["msg"], text
