"""mitogen's linear strategy, with the docker connection's full name taken over, and Ansible's linear
strategy when mitogen cannot be used.

The project's ansible.cfg (site.yml on AWS, `make lab`) and every Molecule run
(.config/molecule/config.yml) name this strategy. mitogen (pinned in requirements.txt) keeps one Python
interpreter per host for the whole run and runs each module in it, instead of starting an interpreter
(over SSH or `docker exec`) per task: a no-op run of the whole platform took 0.58 of the time
(benchmarks/RESULTS.md, sections tests and site).

- mitogen takes over connections by their short names (`ssh`, `docker`, `local`). The lab's inventory
  and Molecule's docker driver name the docker connection `community.docker.docker`, which mitogen
  would leave alone, so that name is mapped to `docker` before mitogen's own lookup. Nothing else of
  mitogen's behaviour is changed.
- Where mitogen is not installed, or refuses this ansible-core, the run goes on with Ansible's own
  linear strategy (same results, slower) and one warning says why. `ANSIBLE_STRATEGY=linear` chooses
  Ansible's strategy outright.
"""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.utils.display import Display

FQCN_TO_SHORT = {"community.docker.docker": "docker"}

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy as mitogen_strategy
except (ImportError, AnsibleError) as exc:  # mitogen missing, or it refuses this ansible-core
    mitogen_strategy = None
    UNAVAILABLE = f"{type(exc).__name__}: {exc}"
else:
    UNAVAILABLE = ""

if mitogen_strategy is None:
    from ansible.plugins.strategy.linear import StrategyModule as _Linear

    class StrategyModule(_Linear):
        def __init__(self, *args, **kwargs):
            Display().warning(
                "streamcloud_mitogen: mitogen cannot be used here "
                f"({UNAVAILABLE}); running Ansible's linear strategy instead (same result, slower). "
                "`pip install -r requirements.txt` installs the pinned mitogen; ANSIBLE_STRATEGY=linear "
                "silences this.")
            super().__init__(*args, **kwargs)

else:
    if "community.docker.docker" not in mitogen_strategy.REDIRECTED_CONNECTION_PLUGINS:
        _mitogen_get = mitogen_strategy.wrap_connection_loader__get_with_context
        # mitogen checks the play's connection against this list, then asks for `mitogen_<name>`.
        mitogen_strategy.REDIRECTED_CONNECTION_PLUGINS = (*mitogen_strategy.REDIRECTED_CONNECTION_PLUGINS,
                                                         *FQCN_TO_SHORT)

        def _get_with_context(name, *args, **kwargs):
            return _mitogen_get(FQCN_TO_SHORT.get(name, name), *args, **kwargs)

        mitogen_strategy.wrap_connection_loader__get_with_context = _get_with_context

    _Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(mitogen_strategy.StrategyMixin, _Base):
        pass
