"""mitogen's linear strategy, with the docker connection's full name taken over, and Ansible's linear
strategy when mitogen cannot be used.

The project's ansible.cfg (site.yml on AWS, `make lab`) and every Molecule run
(.config/molecule/config.yml) name this strategy. mitogen (pinned in requirements.txt) keeps one Python
interpreter per host for the whole run and runs each module in it, instead of starting an interpreter
(over SSH or `docker exec`) per task: a no-op run of the whole platform took 0.58 of the time
(benchmarks/RESULTS.md, sections tests and site).

- mitogen takes over connections by their short names (`ssh`, `docker`, `local`). The lab's inventory
  and Molecule's docker driver name the docker connection `community.docker.docker`, which mitogen
  would leave alone, so that name is mapped to `docker` before mitogen's own lookup.
- mitogen pins its multiplexer to CPU 0 and, on a machine of two or three CPUs, Ansible's own process
  and every worker to one other CPU: the whole controller then shares one CPU while the rest wait (on
  this project's 2-CPU machines a no-op run of the lab took 1.23x as long; benchmarks/RESULTS.md,
  section site). Below four CPUs the plugin leaves the placement to the kernel. From four CPUs up
  mitogen spreads the workers and its placement is kept. STREAMCLOUD_MITOGEN_PIN_CPUS=1 keeps mitogen's
  placement on any machine, =0 turns it off on any machine. Nothing else of mitogen's behaviour is
  changed.
- Where mitogen is not installed, or refuses this ansible-core, the run goes on with Ansible's own
  linear strategy (same results, slower) and one warning says why. `ANSIBLE_STRATEGY=linear` chooses
  Ansible's strategy outright.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.utils.display import Display

FQCN_TO_SHORT = {"community.docker.docker": "docker"}
PIN_CPUS = "STREAMCLOUD_MITOGEN_PIN_CPUS"


def pin_cpus(environ=os.environ, cpu_count=None) -> bool:
    """Whether mitogen's CPU placement is kept: STREAMCLOUD_MITOGEN_PIN_CPUS=1 or 0, else from four CPUs up."""
    setting = environ.get(PIN_CPUS, "")
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        raise AnsibleError(f"{PIN_CPUS}={setting!r}: set it to 1 (keep mitogen's CPU placement) or 0 (leave it "
                           "to the kernel), or unset it (kept from four CPUs up)")
    return (cpu_count or os.cpu_count() or 1) >= 4


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

    if not pin_cpus():
        import ansible_mitogen.affinity

        # Read by mitogen when its multiplexer, Ansible's process and each worker start; the base class places nothing.
        ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

    _Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(mitogen_strategy.StrategyMixin, _Base):
        pass
