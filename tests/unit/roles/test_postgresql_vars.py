"""roles/postgresql/vars/main.yml calls the pgtune and migration_plan filters as the role's tasks see them:
rendered by ansible-playbook on localhost from the role's own vars file (no host, no database)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "postgresql"
JINJA_VALUES = json.loads((ROOT / "tests/unit/plugins/filter/pgtune_jinja_values.json").read_text())["cases"]


def render(tmp_path, expression, var_sets):
    """The value of expression with the role's vars file loaded, once per set of variables (JSON list)."""
    out = tmp_path / "out.json"
    playbook = [{
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "Load the role's vars", "ansible.builtin.include_vars": {"file": str(ROLE / "vars/main.yml")}},
            {"name": "Render once per set of variables", "loop": "{{ var_sets }}",
             "vars": {"ctx": "{{ item }}"},
             "ansible.builtin.set_fact": {"values": "{{ values | default([]) + [" + expression + "] }}"}},
            {"name": "Write the values", "ansible.builtin.copy": {
                "dest": str(out), "mode": "0644", "content": "{{ values | to_json }}"}},
        ],
    }]
    # Each set's variables reach the role's vars through ctx (play vars are lazy, like the role's).
    play_vars = {name: "{{ ctx['" + name + "'] }}" for name in {k for s in var_sets for k in s}}
    playbook[0]["vars"] = play_vars
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook))
    (tmp_path / "vars.json").write_text(json.dumps({"var_sets": var_sets}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


def test_tuning_in_the_role_is_what_the_jinja_formulas_gave(tmp_path):
    var_sets = [{"postgresql_memory_mb": c["in"]["memory_mb"], "postgresql_cpus": c["in"]["cpus"],
                 "postgresql_memory_share": c["in"]["share"], "postgresql_max_connections": c["in"]["max_connections"],
                 "postgresql_storage": c["in"]["storage"]} for c in JINJA_VALUES]
    values = render(tmp_path, "__postgresql_tuning", var_sets)
    assert values == [c["tuning"] for c in JINJA_VALUES]


def test_migration_plan_in_the_role_reads_the_migration_files(tmp_path):
    files = sorted((ROLE / "files/migrations").glob("*.sql"))
    sums = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    applied = {"query_result": [{"version": 1, "checksum": sums[0]}, {"version": 2, "checksum": "0" * 64}]}
    (plan,) = render(tmp_path, "__postgresql_migration_plan",
                     [{"postgresql_migrations_dir": str(ROLE / "files/migrations"), "__postgresql_applied": applied}])
    assert [m["checksum"] for m in plan["migrations"]] == sums
    assert plan["changed"] == [files[1].name]
    assert [m["file"] for m in plan["pending"]] == [f.name for f in files[2:]]
    assert plan["missing"] == [] and plan["applied_max"] == 2 and plan["out_of_order"] == []
