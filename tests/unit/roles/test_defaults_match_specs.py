"""Each role's defaults/main.yml and meta/argument_specs.yml say the same: every default is declared in
the spec, and where the spec gives a default it is the same value (the README table shows the spec's)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def spec_options(role):
    options = {}
    for entry_point in yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"].values():
        options.update(entry_point.get("options") or {})
    return options


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_are_declared_with_the_same_value(role):
    defaults_file = role / "defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    options = spec_options(role)
    undeclared = sorted(set(defaults or {}) - set(options))
    assert not undeclared, f"{role.name}: in defaults/main.yml but not in meta/argument_specs.yml: {undeclared}"
    drifted = {
        name: (value, options[name]["default"])
        for name, value in (defaults or {}).items()
        if "default" in options[name] and options[name]["default"] != value
    }
    assert not drifted, f"{role.name}: defaults/main.yml and the spec disagree (defaults, spec): {drifted}"
