"""The role README's variable table lists exactly the variables of meta/argument_specs.yml, and
the defaults file defines each of them (the spec is the reference)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "elk"


def spec_options() -> dict:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(specs) == {"main", "beats", "preflight"}
    assert specs["main"]["options"] == specs["beats"]["options"] == specs["preflight"]["options"]
    return specs["main"]["options"]


def test_readme_table_matches_the_spec():
    table = re.findall(r"^\| `(elk_[a-z0-9_]+)` \|", (ROLE / "README.md").read_text(), flags=re.MULTILINE)
    assert table == list(spec_options())


def test_every_option_has_a_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(spec_options())
