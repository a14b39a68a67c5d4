"""Unadjusted Langevin algorithm (ULA): Euler-Maruyama of overdamped Langevin dynamics.

Targeting :math:`\\tilde p(y) = e^{\\log b(y) - \\beta E(y)}` (the ``logdensity_fn``), one step is

.. math::

    y' = y + \\tau \\nabla \\log\\tilde p(y) + \\sigma \\xi, \\qquad \\xi \\sim \\mathcal N(0, I),

with noise scale :math:`\\sigma = \\sqrt{2\\tau}` by default. There is no accept/reject step, so
the chain carries an :math:`O(\\tau)` bias (Roberts & Tweedie 1996); use ``mala`` for exact
draws.

**Decoupled mode.** EBM training code (JEM, Grathwohl et al. 2020; IGEBM, Du & Mordatch
2019) sets the step :math:`\\tau` and the noise :math:`\\sigma` independently (e.g.
:math:`\\tau = 1`, :math:`\\sigma = 0.01`). Pass ``noise_scale``: the update above is then the
Euler-Maruyama discretisation of Langevin dynamics for :math:`\\tilde p^{\\,2\\tau/\\sigma^2}`,
because :math:`y' = y + \\tau' \\nabla (\\lambda \\log\\tilde p) + \\sqrt{2\\tau'} \\xi` with
:math:`\\tau' = \\sigma^2/2` and :math:`\\lambda = 2\\tau/\\sigma^2`. With
:math:`\\log\\tilde p = -\\beta E` that is the Gibbs distribution at

.. math::

    \\beta_{\\text{eff}} = \\beta \\cdot \\frac{2\\tau}{\\sigma^2},

which the kernel reports per chain in ``Info.effective_beta`` (and :func:`gibbsebm.sample`
in ``Samples.stats["effective_beta"]``). JEM's :math:`\\tau = 1, \\sigma = 0.01` samples at
:math:`\\beta_{\\text{eff}} = 20000\\beta`: a nearly zero-temperature mode seeker.

Non-finite proposals (log-density or gradient NaN/inf) are rejected: the chain stays, the
flag ``is_nonfinite`` is set and ``acceptance_prob`` is 0 for that chain (1 otherwise).

References
----------
.. [1] G. O. Roberts and R. L. Tweedie, "Exponential convergence of Langevin distributions and
   their discrete approximations", Bernoulli 2, 1996.
.. [2] Y. Du and I. Mordatch, "Implicit generation and modeling with energy-based models",
   NeurIPS 2019.
.. [3] W. Grathwohl et al., "Your classifier is secretly an energy based model and you should
   treat it like one", ICLR 2020.

Examples
--------
>>> import torch
>>> from gibbsebm.samplers import ula
>>> fn = lambda y: -0.5 * (y ** 2).sum(-1)
>>> g = torch.Generator().manual_seed(0)
>>> s = ula.init(torch.zeros(4, 2), fn)
>>> s, info = ula.step(g, s, fn, step_size=1.0, noise_scale=0.01)
>>> info.effective_beta
tensor([20000., 20000., 20000., 20000.])
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from .base import LogDensityFn, SamplerSpec, logdensity_and_grad, where_chain
from .hmc import _positive, check_options

__all__ = ["ULAState", "ULAInfo", "init", "step", "make_spec", "effective_beta"]


class ULAState(NamedTuple):
    """``position`` ``(C, *event)``, ``logdensity`` ``(C,)`` and its gradient."""

    position: torch.Tensor
    logdensity: torch.Tensor
    logdensity_grad: torch.Tensor


class ULAInfo(NamedTuple):
    """Per-chain diagnostics (all ``(C,)``); ``effective_beta`` as in the module notes."""

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor
    effective_beta: torch.Tensor


def effective_beta(step_size: float, noise_scale: float | None, beta: float = 1.0) -> float:
    """:math:`\\beta \\cdot 2\\tau/\\sigma^2`, the inverse temperature a ULA run samples at.

    Examples
    --------
    >>> effective_beta(1.0, 0.01)
    20000.0
    >>> effective_beta(0.1, None, beta=2.0)  # coupled: sigma = sqrt(2 tau)
    2.0
    """
    if noise_scale is None:
        return float(beta)
    return float(beta) * 2.0 * step_size / noise_scale**2


def init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> ULAState:
    """Initial state: log-density and gradient at ``position``."""
    ld, g = logdensity_and_grad(logdensity_fn, position)
    return ULAState(position.detach(), ld, g)


def _per_chain(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    c = like.shape[0]
    if isinstance(value, torch.Tensor):
        v = value.to(dtype=like.dtype, device=like.device).reshape(-1)
        if v.numel() == 1:
            return v.expand(c)
        # a batch of B betas, flattened with chains as (n, B): tile over the n chain blocks
        return v.repeat(c // v.numel())
    return torch.full((c,), float(value), dtype=like.dtype, device=like.device)


def step(
    generator: torch.Generator | None,
    state: ULAState,
    logdensity_fn: LogDensityFn,
    step_size: float = 0.01,
    noise_scale: float | None = None,
    beta: float | torch.Tensor = 1.0,
) -> tuple[ULAState, ULAInfo]:
    """One ULA step for every chain.

    Parameters
    ----------
    generator : torch.Generator or None
        Source of the noise.
    state : ULAState
        Current state.
    logdensity_fn : callable
        ``(C, *event) -> (C,)``.
    step_size : float
        :math:`\\tau` (drift multiplier).
    noise_scale : float, optional
        :math:`\\sigma`; ``None`` means :math:`\\sqrt{2\\tau}` (exact Langevin discretisation).
    beta : float or Tensor
        The inverse temperature already inside ``logdensity_fn``; used only to report
        ``effective_beta`` (a ``(B,)`` tensor for a batch flattened into chains as ``(n, B)``).

    Returns
    -------
    (ULAState, ULAInfo)
    """
    sigma = math.sqrt(2.0 * step_size) if noise_scale is None else noise_scale
    y = state.position
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    proposal = torch.add(y, state.logdensity_grad, alpha=step_size).add_(noise, alpha=sigma)
    ld, g = logdensity_and_grad(logdensity_fn, proposal)
    ok = torch.isfinite(ld) & torch.isfinite(g).reshape(g.shape[0], -1).all(1)
    new = ULAState(
        where_chain(ok, proposal, y),
        torch.where(ok, ld, state.logdensity),
        where_chain(ok, g, state.logdensity_grad),
    )
    scale = 1.0 if noise_scale is None else 2.0 * step_size / noise_scale**2
    info = ULAInfo(ok.to(y.dtype), ok, ~ok, ~ok, _per_chain(beta, ld) * scale)
    return new, info


_OPTIONS = {"step_size", "noise_scale"}


def make_spec(dist: Any, **options: Any) -> SamplerSpec:
    """:class:`SamplerSpec` for ``method="ula"`` (no warmup adaptation).

    Parameters
    ----------
    dist : Gibbs
        A distribution with a continuous support.
    step_size : float
        :math:`\\tau` (default 0.01).
    noise_scale : float, optional
        :math:`\\sigma` for the decoupled mode; reported as
        ``stats["effective_beta"]`` :math:`= \\beta \\cdot 2\\tau/\\sigma^2`.
    """
    check_options(options, _OPTIONS, "ula")
    if getattr(dist, "is_discrete", False):
        raise ValueError("method='ula' needs a continuous support")
    _positive("step_size", options.get("step_size"))
    _positive("noise_scale", options.get("noise_scale"))
    beta = dist.beta.expand(dist.batch_shape).reshape(-1) if len(dist.batch_shape) else dist.beta
    params = {
        "step_size": float(options.get("step_size", 0.01)),
        "noise_scale": None
        if options.get("noise_scale") is None
        else float(options["noise_scale"]),
        "beta": beta.detach(),
    }
    return SamplerSpec(name="ula", init=init, step=step, adapt=None, default_params=params)
