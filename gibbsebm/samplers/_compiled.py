"""Opt-in ``torch.compile`` of one leapfrog step (drift, log-density and gradient, kick).

Compiling fuses the drift, the energy's forward and backward and the kick into a few loops
(inductor), where eager mode runs about ten separate elementwise kernels and the autograd
engine. It is **off by default** because on the machines measured it does not pay for a
sampling run of ordinary length (``docs/benchmarks/sampling.md``, section "Lean transition"):
on a 2-core CPU, T2 (100-D Gaussian, 4096 chains, float32) one step took 0.52 ms compiled
against 1.63 ms eager, but compiling took about 50 s, i.e. it pays only after some 45,000
leapfrog steps at that shape (the benchmark's whole 4096-chain T2 run is about 700). It was
not measured on a GPU in this round.

Switch it on with the environment variable ``GIBBSEBM_COMPILE=1`` (read at every call, so it
can be set in a running process). It applies to diagonal metrics with a scalar step size;
everything else, and any energy that ``torch.compile`` cannot handle (the first call raises),
falls back to the eager step with one ``UserWarning`` per log-density function. Compiled steps
differ from eager ones in float rounding (reassociated sums), not in distribution.

The gradient is taken with :func:`torch.func.grad_and_value` (which ``torch.compile`` traces)
of the sum over chains, the same quantity as
:func:`gibbsebm.samplers.base.logdensity_and_grad`.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Callable

import torch

__all__ = ["ENV_VAR", "enabled", "leapfrog_step", "call"]

#: Environment variable that switches the compiled leapfrog step on (``1``/``true``/``on``).
ENV_VAR = "GIBBSEBM_COMPILE"

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_failed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

Step = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
]


def enabled() -> bool:
    """Whether ``GIBBSEBM_COMPILE`` asks for the compiled leapfrog step (default: no)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "on", "yes")


def _build(logdensity_fn: Callable[[torch.Tensor], torch.Tensor]) -> Step:
    def summed(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ld = logdensity_fn(y)
        return ld.sum(), ld

    grad_and_value = torch.func.grad_and_value(summed, has_aux=True)

    def step(
        y: torch.Tensor, p: torch.Tensor, drift: torch.Tensor, kick: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        y = torch.addcmul(y, p, drift)
        g, (_, ld) = grad_and_value(y)
        p = torch.addcmul(p, g, kick)
        return y, p, ld, g

    return torch.compile(step, dynamic=False)


def leapfrog_step(logdensity_fn: Callable[[torch.Tensor], torch.Tensor]) -> Step | None:
    """The compiled step ``(y, p, drift, kick) -> (y', p', logdensity(y'), grad(y'))`` with
    ``y' = y + drift * p`` and ``p' = p + kick * grad(y')``, or ``None`` when compilation is
    off or failed before for this function. Call it through :func:`call`."""
    if not enabled():
        return None
    try:
        if logdensity_fn in _failed:
            return None
        fn = _cache.get(logdensity_fn)
        if fn is None:
            fn = _cache[logdensity_fn] = _build(logdensity_fn)
        return fn
    except TypeError:  # not weak-referenceable: no cache, no compilation
        return None


def call(
    logdensity_fn: Callable[[torch.Tensor], torch.Tensor],
    step: Step,
    y: torch.Tensor,
    p: torch.Tensor,
    drift: torch.Tensor,
    kick: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Run ``step``; on any error, remember the failure, warn once and return ``None`` (the
    caller then takes the eager step)."""
    try:
        with torch.no_grad():
            return step(y, p, drift, kick)
    except Exception as err:  # noqa: BLE001 - any compile/trace failure falls back
        _failed[logdensity_fn] = True
        _cache.pop(logdensity_fn, None)
        warnings.warn(
            f"torch.compile of the leapfrog step failed ({type(err).__name__}: {err}); "
            f"using the eager step for this log-density",
            UserWarning,
            stacklevel=3,
        )
        return None
