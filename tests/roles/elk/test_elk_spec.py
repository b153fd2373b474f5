"""The three entry points share one set of options, and the defaults file defines each of them
(the spec is the reference; the README's tables are generated from it by scripts/role-docs.sh,
which `make lint` checks)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "elk"


def spec_options() -> dict:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(specs) == {"main", "beats", "preflight"}
    assert specs["main"]["options"] == specs["beats"]["options"] == specs["preflight"]["options"]
    return specs["main"]["options"]


def test_every_option_has_a_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(spec_options())
