"""The warmup of HMC and MALA, as the ``adapt`` of their :class:`~gibbsebm.samplers.base.SamplerSpec`.

One function serves both kernels: it builds the metric from the options, runs
:func:`~gibbsebm.samplers.adaptation.warmup.run_warmup` (step size, mass matrix and, for HMC,
trajectory length) over the kernel's ``transition`` and returns the tuned step parameters.
MALA's step size :math:`\\tau` enters the shared step-size heuristic as the leapfrog step
:math:`\\epsilon = \\sqrt{2\\tau}` (one leapfrog step from a fresh momentum is the MALA
proposal). The settings come from the kernels' own option parsers
(:func:`gibbsebm.samplers.hmc.parse_options`, :func:`gibbsebm.samplers.mala.parse_options`);
:func:`gibbsebm.samplers.registry.get_spec` attaches the result to the kernel's spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import hmc, mala
from ..base import LogDensityFn
from ..hmc import HamiltonianOptions
from ..metrics import Metric, as_metric
from .warmup import run_warmup

__all__ = ["hmc_warmup", "mala_warmup", "hamiltonian_adapt"]

#: ``transition_fn(logdensity_fn) -> transition(generator, state, step_size, metric, n)``
TransitionFactory = Callable[[LogDensityFn], Callable[..., Any]]


def hamiltonian_adapt(
    o: HamiltonianOptions,
    transition_fn: TransitionFactory,
    *,
    to_leapfrog: Callable[[float], float],
    from_leapfrog: Callable[[float], float],
    accept_statistic: str,
    without_warmup: dict[str, Any] | None = None,
    **trajectory: Any,
) -> Callable[..., tuple[Any, dict, dict]]:
    """The ``adapt(generator, state, logdensity_fn, num_warmup, params, callback)`` of a
    Hamiltonian kernel.

    Parameters
    ----------
    o : HamiltonianOptions
        Parsed options of the kernel.
    transition_fn : callable
        Binds the log-density into the kernel's transition (see ``run_warmup``).
    to_leapfrog, from_leapfrog, accept_statistic
        Passed to :func:`~gibbsebm.samplers.adaptation.warmup.run_warmup`.
    without_warmup : dict, optional
        Parameters set when ``num_warmup == 0`` (HMC: its ``jitter`` as given).
    **trajectory
        HMC's trajectory arguments of ``run_warmup``.
    """

    def adapt(generator, state, logdensity_fn, num_warmup, params, callback):
        metric = params.get("metric")
        if not isinstance(metric, Metric):
            metric = as_metric(
                o.inverse_mass_matrix, state.position, o.event_dim, dense=o.dense_mass
            )
        if num_warmup == 0:
            out = dict(params)
            out["metric"] = metric
            out.update(without_warmup or {})
            return state, out, {"step_size": out["step_size"], "inverse_mass": metric.inverse_mass}
        state, tuned, info = run_warmup(
            generator,
            state,
            logdensity_fn,
            num_warmup,
            transition=transition_fn(logdensity_fn),
            step_size=o.step_size,
            metric=metric,
            to_leapfrog=to_leapfrog,
            from_leapfrog=from_leapfrog,
            target_accept=o.target_accept,
            accept_statistic=accept_statistic,
            adapt_step_size=o.adapt_step_size,
            adapt_mass_matrix=o.adapt_mass_matrix,
            dense=o.dense_mass,
            windows=o.windows,
            callback=callback,
            **trajectory,
        )
        out = dict(params)
        out.update(tuned)
        return state, out, info

    return adapt


def _identity(eps: float) -> float:
    return eps


def hmc_warmup(dist: Any, spec: Any, **options: Any) -> Callable[..., tuple[Any, dict, dict]]:
    """HMC's warmup for ``dist`` and the options of ``method="hmc"``: step size (harmonic-mean
    acceptance), mass matrix and, unless fixed, the ChEES trajectory length."""
    o = hmc.parse_options(dist, options)
    traj, adapt_traj = o.trajectory_length, o.adapt_trajectory_length

    def transition_fn(logdensity_fn: LogDensityFn) -> Callable[..., Any]:
        def trans(g: torch.Generator | None, st: Any, eps: Any, m: Metric, n: int) -> Any:
            return hmc.transition(g, st, logdensity_fn, eps, n, m, o.divergence_threshold)

        return trans

    return hamiltonian_adapt(
        o,
        transition_fn,
        to_leapfrog=_identity,
        from_leapfrog=_identity,
        accept_statistic="harmonic",
        without_warmup={"jitter": o.jitter_without_warmup},
        num_steps=(
            o.num_steps if o.num_steps is not None else (None if traj or adapt_traj else 10)
        ),
        trajectory_length=traj,
        adapt_trajectory_length=bool(adapt_traj),
        jitter=bool(o.jitter),
        max_num_steps=o.max_num_steps,
    )


def mala_warmup(dist: Any, spec: Any, **options: Any) -> Callable[..., tuple[Any, dict, dict]]:
    """MALA's warmup for ``dist`` and the options of ``method="mala"``: step size (mean
    acceptance) and preconditioner."""
    o = mala.parse_options(dist, options)

    def transition_fn(logdensity_fn: LogDensityFn) -> Callable[..., Any]:
        def trans(g: torch.Generator | None, st: Any, tau: Any, m: Metric, n: int) -> Any:
            return mala.transition(g, st, logdensity_fn, tau, m, o.divergence_threshold)

        return trans

    return hamiltonian_adapt(
        o,
        transition_fn,
        to_leapfrog=lambda tau: math.sqrt(2.0 * tau),
        from_leapfrog=lambda eps: 0.5 * eps * eps,
        accept_statistic="mean",
    )
