"""scripts/role-docs.sh: the README variables section follows meta/argument_specs.yml, and --check
catches a stale one. Works on throwaway copies of a role; the repository is never written."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "role-docs.sh"
ROLE = ROOT / "roles" / "lab_container"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(*args):
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=ENV, check=False)


def digest(tree):
    h = hashlib.sha256()
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def role(tmp_path):
    copy = tmp_path / "roles" / "lab_container"
    shutil.copytree(ROLE, copy)
    return copy


@pytest.fixture(autouse=True)
def repository_untouched():
    before = digest(ROOT / "roles")
    yield
    assert digest(ROOT / "roles") == before


def test_committed_readmes_are_current():
    result = run("--check")
    assert result.returncode == 0, result.stderr


def test_changed_description_makes_the_readme_stale_until_regenerated(role):
    assert run("--check", role).returncode == 0

    spec = role / "meta" / "argument_specs.yml"
    old = "Seconds to wait for systemd to finish booting in each container."
    new = "How long systemd may take to boot, in seconds."
    spec.write_text(spec.read_text().replace(old, new))

    stale = run("--check", role)
    assert stale.returncode == 1
    assert f"{role}/README.md is stale" in stale.stderr or "lab_container/README.md is stale" in stale.stderr
    assert "run scripts/role-docs.sh" in stale.stderr
    assert new not in (role / "README.md").read_text()

    written = run(role)
    assert written.returncode == 0, written.stderr
    readme = (role / "README.md").read_text()
    assert f"| `lab_container_boot_timeout` | int | no | `120` | {new} |" in readme
    assert old not in readme
    assert run("--check", role).returncode == 0


def test_changed_default_is_caught(role):
    spec = role / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("default: 120", "default: 90"))
    assert run("--check", role).returncode == 1
    assert run(role).returncode == 0
    assert "| `lab_container_boot_timeout` | int | no | `90` |" in (role / "README.md").read_text()


def test_prose_outside_the_markers_is_kept(role):
    readme = role / "README.md"
    readme.write_text(readme.read_text() + "\n## Notes\n\nHand-written text stays.\n")
    spec = role / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("Labels for the containers", "Labels on the containers"))
    assert run(role).returncode == 0
    text = readme.read_text()
    assert text.startswith("# streamcloud.platform.lab_container\n")
    assert text.endswith("\n## Notes\n\nHand-written text stays.\n")
    assert "Labels on the containers" in text


def test_a_new_role_without_the_section_fails_the_check_then_gets_one(role):
    readme = role / "README.md"
    text = readme.read_text()
    readme.write_text(text[: text.index("<!-- BEGIN_ANSIBLE_DOCS -->")])
    assert run("--check", role).returncode == 1
    assert run(role).returncode == 0
    assert "<!-- END_ANSIBLE_DOCS -->" in readme.read_text()
    assert run("--check", role).returncode == 0


def test_a_pipe_in_a_default_stays_inside_its_cell(role):
    spec = role / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("default: streamcloud/debian12",
                                             "default: \"{{ images | default('x') | first }}\""))
    assert run(role).returncode == 0
    row = next(line for line in (role / "README.md").read_text().splitlines()
               if line.startswith("| `lab_container_image` |"))
    # Five cells: the pipes of the Jinja filter are escaped.
    assert len(row.replace("\\|", "").strip("|").split("|")) == 5
    assert "`{{ images \\| default('x') \\| first }}`" in row
