"""Block Gibbs sampling of a binary RBM's visible units at inverse temperature beta.

For :class:`gibbsebm.energies.RBM` with joint energy
:math:`E(v, h) = -v^\\top W h - b^\\top v - c^\\top h`, the tempered joint
:math:`p_\\beta(v, h) \\propto e^{-\\beta E(v, h)}` has factorized conditionals

.. math::

    p_\\beta(h_j = 1 \\mid v) = \\sigma(\\beta (c_j + (v^\\top W)_j)), \\qquad
    p_\\beta(v_i = 1 \\mid h) = \\sigma(\\beta (b_i + (W h)_i)),

so one step draws :math:`h \\mid v` and then :math:`v \\mid h` for every chain at once. The
visible marginal of the joint is the Gibbs distribution of the RBM's (tempered) free energy,
which is what :class:`gibbsebm.Gibbs` of an RBM describes, so the draws of ``v`` target it
exactly; every move is accepted. A distribution with a ladder of betas (batch shape ``(R,)``)
is sampled with chains laid out as ``(C, R)`` flattened (see
:func:`gibbsebm.samplers.metropolis.chain_beta`), which is how :mod:`.tempering` uses it.

References
----------
Hinton (2002). Training products of experts by minimizing contrastive divergence. Neural
Computation 14, 1771-1800.

Example
-------
>>> import torch
>>> from gibbsebm import Gibbs
>>> from gibbsebm.energies import RBM
>>> from gibbsebm.samplers import block_gibbs
>>> rbm = RBM.random(6, 3, generator=torch.Generator().manual_seed(0))
>>> dist = Gibbs(rbm, beta=1.0)
>>> spec = block_gibbs.make_spec(dist)
>>> g = torch.Generator().manual_seed(1)
>>> state = spec.init(torch.zeros(5, 6), dist.logdensity)
>>> state, info = spec.step(g, state, dist.logdensity, **spec.default_params)
>>> state.position.shape
torch.Size([5, 6])
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch

from ..energies.rbm import RBM
from .base import LogDensityFn, SamplerSpec, sanitize_logdensity, where_chain
from .metropolis import chain_beta, reject_unknown_options

__all__ = ["BlockGibbsState", "BlockGibbsInfo", "init", "step", "make_spec"]


class BlockGibbsState(NamedTuple):
    """State: visible ``position`` ``(C, num_visible)`` and its ``logdensity`` ``(C,)``."""

    position: torch.Tensor
    logdensity: torch.Tensor


class BlockGibbsInfo(NamedTuple):
    """Per-step diagnostics, each ``(C,)``: ``acceptance_prob`` (1: Gibbs moves are always
    accepted), ``is_accepted``, ``is_divergent`` (False), ``is_nonfinite`` (the new state's
    log-density was NaN/inf, e.g. from NaN weights; the chain then keeps its old state)."""

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor


def init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> BlockGibbsState:
    """Initial state at visible ``position`` ``(C, num_visible)``."""
    position = position.detach()
    with torch.no_grad():
        ld = sanitize_logdensity(logdensity_fn(position))
    return BlockGibbsState(position, ld)


def step(
    generator: torch.Generator | None,
    state: BlockGibbsState,
    logdensity_fn: LogDensityFn,
    *,
    dist: Any,
    num_sweeps: int = 1,
) -> tuple[BlockGibbsState, BlockGibbsInfo]:
    """``num_sweeps`` alternations h | v, v | h on every chain.

    Parameters
    ----------
    generator : torch.Generator or None
        Source of randomness.
    state : BlockGibbsState
        Current state.
    logdensity_fn : callable
        ``(C, num_visible) -> (C,)``; evaluated once per step for the state's log-density.
    dist : Gibbs
        The RBM's Gibbs distribution (its ``beta``; a ladder of R betas means chains laid out
        as ``(C, R)`` flattened).
    num_sweeps : int
        Alternations per step.

    Returns
    -------
    (BlockGibbsState, BlockGibbsInfo)
    """
    rbm = dist.energy
    v = state.position
    c = v.shape[0]
    with torch.no_grad():
        beta = chain_beta(dist, c, rbm.W)
        v_new = v
        for _ in range(num_sweeps):
            h = rbm.sample_hidden(v_new, beta, generator)
            v_new = rbm.sample_visible(h, beta, generator).to(v.dtype)
        ld_raw = logdensity_fn(v_new)
    ok = torch.isfinite(ld_raw)
    new_state = BlockGibbsState(
        where_chain(ok, v_new, v), torch.where(ok, ld_raw, state.logdensity)
    )
    info = BlockGibbsInfo(
        acceptance_prob=ok.to(ld_raw.dtype),
        is_accepted=ok,
        is_divergent=torch.zeros(c, dtype=torch.bool, device=v.device),
        is_nonfinite=~ok,
    )
    return new_state, info


def make_spec(dist: Any, *, num_sweeps: int = 1, **unknown: Any) -> SamplerSpec:
    """:class:`SamplerSpec` of ``method="block_gibbs"`` for the Gibbs distribution of an RBM.

    Parameters
    ----------
    dist : Gibbs
        ``Gibbs(RBM(...), beta)`` without base measure, condition or latent specification.
    num_sweeps : int
        h | v, v | h alternations per step (per draw).

    Raises
    ------
    ValueError
        If the energy is not a :class:`gibbsebm.energies.RBM`, the distribution has a base
        measure, condition or latent specification, ``num_sweeps`` is not a positive integer,
        or an option is unknown.

    Example
    -------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import RBM
    >>> d = gibbsebm.Gibbs(RBM.random(4, 2, generator=torch.Generator().manual_seed(0)))
    >>> make_spec(d).name
    'block_gibbs'
    """
    reject_unknown_options("block_gibbs", unknown, ["num_sweeps"])
    if not isinstance(dist.energy, RBM):
        raise ValueError(
            "block_gibbs samples the visible units of an RBM (gibbsebm.energies.RBM); got an "
            f"energy of type {type(dist.energy).__name__}: use 'gwg', 'dmala' or 'metropolis'"
        )
    if dist.base is not None or dist.x is not None or dist.latent is not None:
        raise ValueError(
            "block_gibbs needs the plain RBM distribution (no base measure, condition or latent "
            "specification): the RBM's conditionals would not be those of the distribution"
        )
    if isinstance(num_sweeps, bool) or not isinstance(num_sweeps, int) or num_sweeps < 1:
        raise ValueError(f"num_sweeps must be a positive integer, got {num_sweeps!r}")
    return SamplerSpec(
        name="block_gibbs",
        init=init,
        step=functools.partial(step, dist=dist),
        adapt=None,
        default_params=dict(num_sweeps=num_sweeps),
        discrete=True,
    )
