"""Warmup adaptation as ``(init, update, final)`` triples (the NumPyro ``hmc_util`` style).

* :mod:`.dual_averaging`: step size (Nesterov 2009; Hoffman & Gelman 2014).
* :mod:`.welford`: running mean / variance / covariance pooled across chains.
* :mod:`.windows`: Stan's warmup windows (75 / 25 doubling / 50).
* :mod:`.chees`: trajectory length by ChEES (Hoffman, Radul & Sountsov 2021).
* :mod:`.warmup`: the loop that combines them for HMC and MALA.

All adaptation statistics are pooled across chains and the tuned parameters are shared by all
chains: one step size, one mass matrix and one trajectory length per run.
"""

from .chees import ChEESState, chees, halton
from .dual_averaging import DualAveragingState, dual_averaging
from .welford import WelfordState, welford
from .windows import build_schedule

__all__ = [
    "ChEESState",
    "chees",
    "halton",
    "DualAveragingState",
    "dual_averaging",
    "WelfordState",
    "welford",
    "build_schedule",
]
