"""gibbsebm: energy-based models as Gibbs distributions.

An energy :math:`E(x, y)` becomes :math:`p_\\beta(y \\mid x) = e^{-\\beta E(x, y)} / Z_\\beta(x)`;
gibbsebm samples it, estimates :math:`\\log Z_\\beta` with error bars, and calibrates
probabilities made from energies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and the API docs; at run time through __getattr__
    from .distribution import Gibbs, UnnormalizedLogProbWarning, energy_factor  # noqa: F401

__version__ = "0.1.0"

# Public names that live in submodules, imported on first use so that `import gibbsebm`
# stays light: torch and pyro load with the first of these names that is used, matplotlib,
# arviz and the samplers only when needed (`gibbsebm --help` loads none of them).
_LAZY = {
    "Gibbs": "gibbsebm.distribution",
    "UnnormalizedLogProbWarning": "gibbsebm.distribution",
    "ApproximateSampleWarning": "gibbsebm.distribution",
    "DoublyIntractableError": "gibbsebm.distribution",
    "energy_factor": "gibbsebm.distribution",
    "free_energy": "gibbsebm.latent",
    "FreeEnergy": "gibbsebm.latent",
    "DiscreteLatent": "gibbsebm.latent",
    "BoxLatent": "gibbsebm.latent",
    "GaussHermiteLatent": "gibbsebm.latent",
    "ImportanceLatent": "gibbsebm.latent",
    "sample": "gibbsebm.run",
    "Samples": "gibbsebm.run",
    "SamplingWarning": "gibbsebm.diagnostics",
    "diagnostics": "gibbsebm.diagnostics",
    "log_partition": "gibbsebm.partition",
    "log_partition_curve": "gibbsebm.partition",
    "compare_estimates": "gibbsebm.partition",
    "LogZEstimate": "gibbsebm.partition",
    "RayExecutor": "gibbsebm.executors",
    "LocalExecutor": "gibbsebm.executors",
    "executors": "gibbsebm.executors",
    "calibration": "gibbsebm.calibration",
    "energies": "gibbsebm.energies",
    "samplers": "gibbsebm.samplers",
    "partition": "gibbsebm.partition",
    "CorruptFileError": "gibbsebm.errors",
    "CheckpointMismatchError": "gibbsebm.errors",
    "find_modes": "gibbsebm.modes",
    "ModeSearch": "gibbsebm.modes",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'gibbsebm' has no attribute {name!r}")
    module = importlib.import_module(mod)
    value = module if mod.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
