"""mitogen's linear strategy for the Molecule runs, with the docker driver's connection taken over too.

mitogen (pinned in requirements.txt) keeps one Python interpreter per host for the whole run and runs
each module in it, instead of starting an interpreter (and `docker exec`) per task: an idempotent
converge of the common scenario took 0.59 of the time (benchmarks/RESULTS.md, section tests).
Its strategy takes over connections by their short names (`docker`, `local`, `ssh`); Molecule's docker
driver writes the fully qualified `community.docker.docker` into its inventory, which mitogen would
leave alone, so this plugin maps that name to `docker` before mitogen's own lookup. Nothing else of
mitogen's behaviour is changed. Used only by the test harness (.config/molecule/config.yml), never by
the roles or playbooks.
"""

from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy as mitogen_strategy

FQCN_TO_SHORT = {"community.docker.docker": "docker"}

if "community.docker.docker" not in mitogen_strategy.REDIRECTED_CONNECTION_PLUGINS:
    _mitogen_get = mitogen_strategy.wrap_connection_loader__get_with_context
    # mitogen checks the play's connection against this list, then asks for `mitogen_<name>`.
    mitogen_strategy.REDIRECTED_CONNECTION_PLUGINS = (*mitogen_strategy.REDIRECTED_CONNECTION_PLUGINS,
                                                     *FQCN_TO_SHORT)

    def _get_with_context(name, *args, **kwargs):
        return _mitogen_get(FQCN_TO_SHORT.get(name, name), *args, **kwargs)

    mitogen_strategy.wrap_connection_loader__get_with_context = _get_with_context

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(mitogen_strategy.StrategyMixin, Base):
    pass
