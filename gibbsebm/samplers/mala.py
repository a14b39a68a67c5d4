"""Metropolis-adjusted Langevin algorithm (MALA), preconditioned, batched over chains.

The proposal is one Euler-Maruyama step of preconditioned overdamped Langevin dynamics,

.. math::

    y' = y + \\tau M^{-1} \\nabla \\log\\tilde p(y) + \\sqrt{2\\tau}\\, \\xi,
    \\qquad \\xi \\sim \\mathcal N(0, M^{-1}),

accepted with the Metropolis-Hastings probability
:math:`\\min\\{1, \\tilde p(y') q(y \\mid y') / (\\tilde p(y) q(y' \\mid y))\\}`
(Roberts & Tweedie 1996). ``step_size`` is :math:`\\tau`, in the units of
:mod:`gibbsebm.samplers.ula` (MALA = ULA + MH). :math:`M^{-1}` is the same diagonal or dense
:class:`~gibbsebm.samplers.metrics.Metric` as HMC's.

Implementation: the proposal equals one leapfrog step of size :math:`\\epsilon = \\sqrt{2\\tau}`
from a fresh momentum :math:`p \\sim \\mathcal N(0, M)`, and the MH ratio equals
:math:`e^{-\\Delta H}` of that step (the Gaussian proposal densities become the kinetic
energies of the initial and final momenta; the map has unit Jacobian). The kernel reuses the
leapfrog integrator; the test suite checks the ratio against the explicit Gaussian densities.

Warmup tunes :math:`\\tau` by dual averaging towards a mean acceptance of 0.574, the
optimal MALA acceptance rate of Roberts & Rosenthal (1998), and the metric over Stan's
windows (pooled across chains, shared by all chains). It is HMC's warmup
(:mod:`gibbsebm.samplers.adaptation.hamiltonian`), attached to this kernel's spec by
:func:`gibbsebm.samplers.registry.get_spec`.

Which metric, measured (32 chains, 1000 warmup + 1000 draws, 100-D Gaussians, minimum over
coordinates of the bulk ESS per 1,000 draws; ``hmc`` with its defaults for comparison):

* variances log-spaced over 1e4, axis-aligned (the sampler tests' target): ``"diag"`` 88,
  ``"dense"`` 52, ``hmc`` 254. With the exact inverse covariance fixed as the metric MALA
  reaches 85 (median 104) at the target acceptance 0.574, 83 at 0.7 and 82 at 0.5: the
  adapted diagonal metric is already at MALA's ceiling, which is set by one gradient per
  draw (the optimal MALA step shrinks as :math:`d^{-1/3}`), not by the adaptation; 200 per
  1,000 draws at d = 100 is beyond MALA with any metric or step size. The dense estimate
  from :math:`32 \\times 500` correlated draws of the last window carries noise of relative
  size about :math:`\\sqrt{d / n_\\mathrm{eff}}`, which shrinks the usable step.
* variances log-spaced over 1e3 in a random rotation: ``"diag"`` 1.2 (it cannot undo the
  rotation), ``"dense"`` 52, ``hmc`` (diagonal) 188.

Hence ``"diag"`` stays the default and ``"dense"`` is for correlated targets.

References
----------
.. [1] G. O. Roberts and R. L. Tweedie, "Exponential convergence of Langevin distributions and
   their discrete approximations", Bernoulli 2, 1996.
.. [2] G. O. Roberts and J. S. Rosenthal, "Optimal scaling of discrete approximations to
   Langevin diffusions", JRSS B 60, 1998.

Examples
--------
>>> import torch
>>> from gibbsebm.samplers import mala
>>> fn = lambda y: -0.5 * (y ** 2).sum(-1)
>>> g = torch.Generator().manual_seed(0)
>>> state = mala.init(torch.zeros(16, 3), fn)
>>> state, info = mala.step(g, state, fn, step_size=0.5)
>>> info.acceptance_prob.shape
torch.Size([16])
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from .base import LogDensityFn, SamplerSpec, logdensity_and_grad, where_chain
from .hmc import (
    DIVERGENCE_THRESHOLD,
    HamiltonianOptions,
    _positive,
    check_options,
    hamiltonian_proposal,
    warmup_options,
)
from .metrics import Metric, as_metric

__all__ = [
    "MALAState",
    "MALAInfo",
    "init",
    "step",
    "parse_options",
    "make_spec",
    "OPTIMAL_ACCEPTANCE",
    "METRICS",
]

#: Roberts & Rosenthal (1998): asymptotically optimal MALA acceptance rate.
OPTIMAL_ACCEPTANCE = 0.574

#: Values of the ``metric`` option: the adapted preconditioner :math:`M^{-1}`.
METRICS = ("diag", "dense")


class MALAState(NamedTuple):
    """``position`` ``(C, *event)``, ``logdensity`` ``(C,)`` and its gradient."""

    position: torch.Tensor
    logdensity: torch.Tensor
    logdensity_grad: torch.Tensor


class MALAInfo(NamedTuple):
    """Per-chain diagnostics (all ``(C,)``)."""

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor
    energy_error: torch.Tensor


def init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> MALAState:
    """Initial state: log-density and gradient at ``position``."""
    ld, g = logdensity_and_grad(logdensity_fn, position)
    return MALAState(position.detach(), ld, g)


def _leapfrog_size(step_size: float | torch.Tensor) -> float | torch.Tensor:
    return (
        math.sqrt(2.0 * step_size)
        if isinstance(step_size, (int, float))
        else (2.0 * step_size).sqrt()
    )


def transition(
    generator: torch.Generator | None,
    state: MALAState,
    logdensity_fn: LogDensityFn,
    step_size: float | torch.Tensor,
    metric: Metric,
    divergence_threshold: float = DIVERGENCE_THRESHOLD,
) -> tuple[MALAState, MALAInfo, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One MALA transition; also returns ``(previous, proposal, proposal_momentum)``."""
    end, log_ratio, nonfinite, accepted, acc_prob = hamiltonian_proposal(
        generator, state, logdensity_fn, metric, _leapfrog_size(step_size), 1
    )
    energy_error = -log_ratio
    new = MALAState(
        where_chain(accepted, end.position, state.position),
        torch.where(accepted, end.logdensity, state.logdensity),
        where_chain(accepted, end.logdensity_grad, state.logdensity_grad),
    )
    info = MALAInfo(
        acc_prob,
        accepted,
        nonfinite | (energy_error > divergence_threshold),
        nonfinite,
        energy_error,
    )
    return new, info, (state.position, end.position, end.momentum)


def step(
    generator: torch.Generator | None,
    state: MALAState,
    logdensity_fn: LogDensityFn,
    step_size: float | torch.Tensor = 0.01,
    metric: Metric | None = None,
    divergence_threshold: float = DIVERGENCE_THRESHOLD,
) -> tuple[MALAState, MALAInfo]:
    """One MALA transition for every chain.

    Parameters
    ----------
    generator : torch.Generator or None
        Source of the noise and the accept/reject uniforms.
    state : MALAState
        Current state.
    logdensity_fn : callable
        ``(C, *event) -> (C,)``.
    step_size : float or Tensor
        Langevin step :math:`\\tau` (float, 0-dim or per chain ``(C,)``).
    metric : Metric, optional
        Preconditioner :math:`M^{-1}`; identity by default.
    divergence_threshold : float
        Energy error flagged as divergent.

    Returns
    -------
    (MALAState, MALAInfo)
    """
    if metric is None:
        metric = as_metric(None, state.position, state.position.dim() - 1)
    new, info, _ = transition(
        generator, state, logdensity_fn, step_size, metric, divergence_threshold
    )
    return new, info


_OPTIONS = {
    "metric",
    "step_size",
    "inverse_mass_matrix",
    "dense_mass",
    "target_accept",
    "adapt_step_size",
    "adapt_mass_matrix",
    "divergence_threshold",
    "init_buffer",
    "base_window",
    "term_buffer",
}


def parse_options(dist: Any, options: dict) -> HamiltonianOptions:
    """Check the options of ``method="mala"`` (see :func:`make_spec`) and fill in defaults.

    Raises
    ------
    ValueError
        For an unknown or out-of-range option or a discrete support.
    """
    check_options(options, _OPTIONS, "mala")
    if getattr(dist, "is_discrete", False):
        raise ValueError("method='mala' needs a continuous support; use 'dmala' for discrete y")
    for name in ("step_size", "target_accept", "divergence_threshold"):
        _positive(name, options.get(name))
    metric = options.get("metric")
    if metric is not None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        dense = metric == "dense"
        if "dense_mass" in options and bool(options["dense_mass"]) != dense:
            raise ValueError(f"metric={metric!r} contradicts dense_mass={options['dense_mass']!r}")
        options = {**options, "dense_mass": dense}
    return warmup_options(dist, options, OPTIMAL_ACCEPTANCE)


def make_spec(dist: Any, **options: Any) -> SamplerSpec:
    """:class:`SamplerSpec` of the ``method="mala"`` kernel.

    The kernel alone (``adapt=None``); :func:`gibbsebm.samplers.registry.get_spec` attaches
    the warmup (:mod:`gibbsebm.samplers.adaptation.hamiltonian`), which reads the warmup
    options below.

    Parameters
    ----------
    dist : Gibbs
        A distribution with a continuous support.
    step_size : float, optional
        Initial (fixed without warmup) Langevin step :math:`\\tau`; default: heuristic during
        warmup, 0.01 without warmup.
    inverse_mass_matrix : Tensor, optional
        Initial / fixed preconditioner (diagonal, event-shaped, or dense ``(d, d)``).
    metric : {"diag", "dense"}
        The preconditioner warmup adapts (default ``"diag"``): the variances, or the full
        covariance of the draws of Stan's slow windows pooled over all chains (one matrix shared
        by the chains, shrunk as Stan does: :math:`\\frac{n}{n+5}\\hat\\Sigma +
        10^{-3}\\frac{5}{n+5} I`), applied through its Cholesky factor. ``"dense"`` is the
        choice for correlated targets; it estimates :math:`d(d+1)/2` numbers, and on targets
        whose covariance is diagonal its estimation noise costs efficiency (measured in the
        module notes). Same as ``dense_mass``.
    dense_mass : bool
        Adapt a dense preconditioner (``metric="dense"``).
    target_accept : float
        Target mean acceptance (default 0.574).
    adapt_step_size, adapt_mass_matrix : bool
        Switch the warmup adaptations.
    divergence_threshold : float
        Energy error flagged as divergent (default 1000).
    init_buffer, base_window, term_buffer : int
        Stan's warmup windows.
    """
    o = parse_options(dist, options)
    default_params = {
        "step_size": float(options.get("step_size", 0.01)),
        "divergence_threshold": o.divergence_threshold,
    }
    return SamplerSpec(name="mala", init=init, step=step, default_params=default_params)
