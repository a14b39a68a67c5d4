"""``method=`` names of :func:`gibbsebm.sample` and how their specs are assembled.

Every kernel module listed in :data:`METHODS` exports ``make_spec(dist, **options) ->
SamplerSpec`` (see :mod:`gibbsebm.samplers.base`): the kernel alone, with its options
checked. :func:`get_spec` attaches the warmup from :mod:`gibbsebm.samplers.adaptation`
(:data:`WARMUPS`), and for parallel tempering injects the inner kernels' specs, so this module
belongs to the adaptation layer: kernels never import it (only the driver and the layers
above do). A plain dict, no registration side effects.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from . import tempering
from .adaptation.hamiltonian import hmc_warmup, mala_warmup
from .adaptation.step_size import dmala_warmup
from .adaptation.tempering import pt_adapt
from .base import SamplerSpec

__all__ = ["METHODS", "WARMUPS", "get_spec"]

#: method name -> module under ``gibbsebm.samplers``
METHODS: dict[str, str] = {
    "ula": "ula",
    "mala": "mala",
    "hmc": "hmc",
    "nuts": "nuts",
    "pt": "tempering",
    "gwg": "gwg",
    "dmala": "dmala",
    "metropolis": "metropolis",
    "block_gibbs": "block_gibbs",
}

#: method name -> ``warmup(dist, kernel_spec, **options) -> adapt or None`` (methods not
#: listed, other than ``pt``, warm up by plain steps; ``nuts`` runs Pyro's own warmup)
WARMUPS: dict[str, Callable[..., Any]] = {
    "hmc": hmc_warmup,
    "mala": mala_warmup,
    "dmala": dmala_warmup,
}

#: methods that cannot run inside parallel tempering
_NOT_IN_PT = ("pt", "nuts")


def _pt_kernel(kernel: str) -> Callable[..., SamplerSpec]:
    """The inner-kernel factory injected into :func:`gibbsebm.samplers.tempering.build`."""
    if kernel not in METHODS or kernel in _NOT_IN_PT:
        allowed = sorted(set(METHODS) - set(_NOT_IN_PT))
        raise ValueError(f"kernel must be one of {allowed} for parallel tempering, got {kernel!r}")
    return functools.partial(get_spec, kernel)


def get_spec(method: str, dist: Any, **options: Any) -> SamplerSpec:
    """Build the :class:`SamplerSpec` of ``method`` for ``dist``, warmup included.

    Raises
    ------
    ValueError
        If ``method`` is not a known name (or an option is invalid for it).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if method == "pt":
        rx = tempering.build(dist, kernel_factory=_pt_kernel, **options)
        return rx.spec._replace(adapt=pt_adapt(rx))
    module = importlib.import_module(f"gibbsebm.samplers.{METHODS[method]}")
    spec = module.make_spec(dist, **options)
    warmup = WARMUPS.get(method)
    if warmup is not None:
        spec = spec._replace(adapt=warmup(dist, spec, **options))
    return spec
