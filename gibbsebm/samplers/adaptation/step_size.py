"""Step-size-only warmup by dual averaging, for kernels without a mass matrix.

:func:`dual_averaging_warmup` is the loop (one kernel step, then one dual-averaging update of
the log step size towards a target acceptance statistic); it serves DMALA's warmup
(:func:`dmala_warmup`, one step size shared by all chains) and the per-temperature step sizes
of parallel tempering (:mod:`gibbsebm.samplers.adaptation.tempering`).

References
----------
.. [1] M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014, sec. 3.2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..base import LogDensityFn
from ..dmala import TARGET_ACCEPT, DMALAState
from .dual_averaging import dual_averaging

#: as in :mod:`gibbsebm.samplers.adaptation.warmup`
MIN_AVERAGING_ITERS = 10

__all__ = ["dual_averaging_warmup", "dmala_warmup"]


def dual_averaging_warmup(
    generator: torch.Generator | None,
    state: Any,
    step_fn: Callable[..., tuple[Any, Any]],
    logdensity_fn: LogDensityFn | None,
    params: dict,
    iterations: Iterable[int],
    *,
    initial_step_size: torch.Tensor,
    target_accept: float,
    acceptance: Callable[[Any], torch.Tensor],
    broadcast: Callable[[torch.Tensor], torch.Tensor] = lambda s: s,
    callback: Callable | None = None,
) -> tuple[Any, torch.Tensor, list[torch.Tensor]]:
    """Run ``step_fn`` for each of ``iterations``, tuning ``params["step_size"]``.

    Parameters
    ----------
    initial_step_size : Tensor
        The dual-averaging start :math:`\\epsilon_0` (any shape: one entry per tuned step size).
    acceptance : callable
        ``info -> statistic`` (same shape as the step size) fed to the update.
    broadcast : callable
        Maps the tuned step size to the ``step_size`` parameter of ``step_fn``.
    callback : callable, optional
        ``callback(i, state, info)`` after every step.

    Returns
    -------
    (state, final_step_size, statistics)
        The last state, the averaged step size :math:`\\bar\\epsilon` (after fewer than
        :data:`MIN_AVERAGING_ITERS` updates, at most the initial step size: the early
        averages overshoot to about ten times it) and the statistic of every step. ``params["step_size"]`` holds the last step size used.
    """
    da_init, da_update, da_final = dual_averaging()
    da = da_init(initial_step_size)
    stats = []
    for i in iterations:
        params["step_size"] = broadcast(da.log_step_size.exp())
        state, info = step_fn(generator, state, logdensity_fn, **params)
        stat = acceptance(info)
        da = da_update(da, stat, target_accept)
        stats.append(stat)
        if callback is not None:
            callback(i, state, info)
    final = da_final(da)
    if da.t < MIN_AVERAGING_ITERS:
        # too few updates to trust the average (it sits near mu = log(10 eps0)): never end
        # above the start, as in run_warmup
        start = da.mu.exp() / 10.0
        final = torch.where(torch.isfinite(final), torch.minimum(final, start), start)
    return state, final, stats


def dmala_warmup(
    dist: Any,
    spec: Any,
    *,
    adapt_step_size: bool = True,
    target_accept: float = TARGET_ACCEPT,
    **options: Any,
) -> Callable[..., tuple[DMALAState, dict, dict]] | None:
    """DMALA's warmup (``None`` with ``adapt_step_size=False``): dual averaging of the shared
    step size towards ``target_accept`` (the options were checked by
    :func:`gibbsebm.samplers.dmala.make_spec`)."""
    if not adapt_step_size:
        return None
    step_fn, target = spec.step, float(target_accept)

    def adapt(
        generator: torch.Generator | None,
        state: DMALAState,
        logdensity_fn: LogDensityFn,
        num_warmup: int,
        params: dict,
        callback: Callable | None = None,
    ) -> tuple[DMALAState, dict, dict]:
        """Warmup with dual averaging of the shared step size toward ``target_accept``."""
        ref = state.logdensity
        alpha0 = torch.as_tensor(params["step_size"], dtype=ref.dtype, device=ref.device)
        params = dict(params)
        state, final, acc_trace = dual_averaging_warmup(
            generator,
            state,
            step_fn,
            logdensity_fn,
            params,
            range(num_warmup),
            initial_step_size=alpha0.mean(),
            target_accept=target,
            acceptance=lambda info: info.acceptance_prob.mean(),
            callback=callback,
        )
        params["step_size"] = final if num_warmup > 0 else alpha0
        mean_acc = (
            torch.stack(acc_trace).mean() if acc_trace else torch.full_like(alpha0, float("nan"))
        )
        return (
            state,
            params,
            dict(step_size=params["step_size"], mean_acceptance=mean_acc),
        )

    return adapt
