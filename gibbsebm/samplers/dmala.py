"""Discrete Langevin (DMALA): a factorized gradient proposal over all sites, with MH.

The discrete Langevin proposal of Zhang, Liu & Liu (2022) moves every site at once; each site
:math:`i` independently takes value :math:`v` with probability

.. math::

    q_i(v \\mid y) \\propto \\exp\\Bigl(\\tfrac12 \\nabla f(y)_i^\\top (v - y_i)
        - \\tfrac{1}{2\\alpha} \\lVert v - y_i \\rVert^2\\Bigr),
    \\qquad q(y' \\mid y) = \\prod_i q_i(y'_i \\mid y),

with :math:`f = \\log p`, step size :math:`\\alpha` (``step_size``) and, for one-hot
categorical sites, :math:`v` and :math:`y_i` one-hot vectors (so the squared distance is 2 for a
change). DMALA accepts :math:`y'` with probability
:math:`\\min(1, p(y') q(y \\mid y') / (p(y) q(y' \\mid y)))`; each step costs one log-density
and gradient evaluation.

Step size
---------
The default initial step size makes the expected number of changed sites about one when the
gradient vanishes: with ``m`` the smallest squared distance between two values of a site,
``S`` sites and ``K`` values, :math:`\\alpha_0 = m / (2 \\log(1 + S (K - 1)))`. With
``adapt_step_size=True`` (default) the warmup tunes :math:`\\alpha` by dual averaging
(Hoffman & Gelman 2014, :mod:`gibbsebm.samplers.adaptation.dual_averaging`) toward the target
acceptance rate 0.574, the asymptotically optimal acceptance rate of locally balanced and
discrete Langevin proposals (Sun, Dai & Schuurmans 2023), the same as for MALA (Roberts &
Rosenthal 1998). The acceptance statistic is pooled over chains (the mean), and one step size is
shared by all chains. ``step`` also accepts a tensor ``step_size`` of shape ``(C,)`` (one per
chain), which :mod:`.tempering` uses for per-temperature step sizes.

References
----------
Zhang, Liu & Liu (2022). A Langevin-like sampler for discrete distributions. ICML.

Sun, Dai & Schuurmans (2023). Optimal scaling for locally balanced proposals in discrete
spaces. NeurIPS.

Hoffman & Gelman (2014). The No-U-Turn sampler. JMLR 15, sec. 3.2.

Example
-------
>>> import torch, gibbsebm
>>> from gibbsebm.energies import Ising2D
>>> from gibbsebm.samplers import dmala
>>> dist = gibbsebm.Gibbs(Ising2D(3), beta=0.4)  # 3 x 3 spins
>>> kernel = dmala.make_spec(dist)
>>> g = torch.Generator().manual_seed(0)
>>> state = kernel.init(torch.ones(8, 3, 3), dist.logdensity)
>>> for _ in range(5):
...     state, info = kernel.step(g, state, dist.logdensity, **kernel.default_params)
>>> state.position.shape, info.num_changed.shape
(torch.Size([8, 3, 3]), torch.Size([8]))
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .base import (
    LogDensityFn,
    SamplerSpec,
    logdensity_and_grad,
    mh_accept,
    sanitize_logdensity,
    where_chain,
)
from .metropolis import DiscreteSpace, reject_unknown_options

__all__ = [
    "DMALAState",
    "DMALAInfo",
    "init",
    "step",
    "proposal_log_probs",
    "default_step_size",
    "make_spec",
    "TARGET_ACCEPT",
]

#: Target acceptance of the step-size adaptation: the optimal acceptance rate of locally
#: balanced / discrete Langevin proposals (Sun, Dai & Schuurmans 2023).
TARGET_ACCEPT = 0.574


class DMALAState(NamedTuple):
    """State: ``position`` ``(C, *event)``, ``logdensity`` ``(C,)``, ``grad`` ``(C, *event)``."""

    position: torch.Tensor
    logdensity: torch.Tensor
    grad: torch.Tensor


class DMALAInfo(NamedTuple):
    """Per-step diagnostics, each ``(C,)``: ``acceptance_prob``, ``is_accepted``,
    ``is_divergent`` (always False), ``is_nonfinite`` (NaN/inf proposal, rejected),
    ``num_changed`` (sites changed by the proposal) and ``step_size``."""

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor
    num_changed: torch.Tensor
    step_size: torch.Tensor


def init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> DMALAState:
    """Initial state at ``position`` ``(C, *event)`` (one log-density + gradient evaluation)."""
    ld, grad = logdensity_and_grad(logdensity_fn, position)
    return DMALAState(position.detach(), sanitize_logdensity(ld), grad)


def default_step_size(space: DiscreteSpace) -> float:
    """:math:`m / (2 \\log(1 + S (K - 1)))`: about one changed site per step at zero gradient."""
    if space.kind == "onehot":
        m = 2.0
    else:
        v = space.values.sort().values
        m = float(((v[1:] - v[:-1]) ** 2).min())
    return m / (2.0 * math.log1p(space.num_sites * (space.num_values - 1)))


def proposal_log_probs(
    space: DiscreteSpace,
    position: torch.Tensor,
    grad: torch.Tensor,
    step_size: float | torch.Tensor,
) -> torch.Tensor:
    """Per-site log-probabilities ``(C, S, K)`` of the discrete Langevin proposal.

    Non-finite gradient entries count as 0, so the proposal stays a valid distribution.
    """
    delta = space.first_order_delta(position, grad)
    delta = torch.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0)
    alpha = torch.as_tensor(step_size, dtype=delta.dtype, device=delta.device)
    if alpha.dim() > 0:
        alpha = alpha.reshape(-1, 1, 1)
    logits = 0.5 * delta - space.squared_distance(position) / (2.0 * alpha)
    return torch.log_softmax(logits, dim=-1)


def _flip_logit(
    position: torch.Tensor,
    other: torch.Tensor,
    grad: torch.Tensor,
    step_size: float | torch.Tensor,
) -> torch.Tensor:
    """Log-odds ``(C, S)`` of flipping each site of a two-valued y under the DMALA proposal:
    :math:`\tfrac12 g_i (y'_i - y_i) - (y'_i - y_i)^2 / (2\alpha)` (staying has logit 0)."""
    c = position.shape[0]
    diff = (other - position).reshape(c, -1)
    g = torch.nan_to_num(grad.reshape(c, -1), nan=0.0, posinf=0.0, neginf=0.0)
    alpha = torch.as_tensor(step_size, dtype=diff.dtype, device=diff.device)
    if alpha.dim() > 0:
        alpha = alpha.reshape(-1, 1)
    return 0.5 * g * diff - diff**2 / (2.0 * alpha)


def step(
    generator: torch.Generator | None,
    state: DMALAState,
    logdensity_fn: LogDensityFn,
    *,
    space: DiscreteSpace,
    step_size: float | torch.Tensor,
) -> tuple[DMALAState, DMALAInfo]:
    """One DMALA step on every chain.

    Parameters
    ----------
    generator : torch.Generator or None
        Source of randomness.
    state : DMALAState
        Current state.
    logdensity_fn : callable
        Differentiable ``(C, *event) -> (C,)`` log-density.
    space : DiscreteSpace
        Discrete space of y.
    step_size : float or Tensor
        :math:`\\alpha > 0`, a scalar or one per chain ``(C,)``.

    Returns
    -------
    (DMALAState, DMALAInfo)
    """
    y = state.position
    c = y.shape[0]
    two_valued = space.kind == "values" and space.num_values == 2
    if two_valued:
        # binary/spin: one Bernoulli flip per site, logit(flip) from the same formula
        v_sum = space.values.sum()
        logit = _flip_logit(y, v_sum - y, state.grad, step_size)  # (C, S)
        u = torch.rand(logit.shape, generator=generator, dtype=logit.dtype, device=y.device)
        flip = u < torch.sigmoid(logit)
        logq_fwd = torch.where(flip, F.logsigmoid(logit), F.logsigmoid(-logit)).sum(1)
        y_prop = torch.where(flip.reshape(y.shape), v_sum - y, y)
        num_changed = flip.sum(1)
    else:
        logq = proposal_log_probs(space, y, state.grad, step_size)  # (C, S, K)
        u = torch.rand(logq.shape, generator=generator, dtype=logq.dtype, device=y.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
        new_idx = torch.argmax(logq + gumbel, dim=-1)  # (C, S)
        old_idx = space.current_index(y)
        logq_fwd = logq.gather(2, new_idx[..., None]).squeeze(2).sum(1)
        y_prop = space.decode(torch.nn.functional.one_hot(new_idx, space.num_values).to(y.dtype))
        num_changed = (new_idx != old_idx).sum(1)

    ld_prop_raw, grad_prop = logdensity_and_grad(logdensity_fn, y_prop)
    nonfinite = ~torch.isfinite(ld_prop_raw) | ~torch.isfinite(grad_prop.reshape(c, -1)).all(1)
    ld_prop = torch.where(
        nonfinite, torch.full_like(ld_prop_raw, -float("inf")), sanitize_logdensity(ld_prop_raw)
    )
    if two_valued:
        logit_rev = _flip_logit(y_prop, v_sum - y_prop, grad_prop, step_size)
        logq_rev = torch.where(flip, F.logsigmoid(logit_rev), F.logsigmoid(-logit_rev)).sum(1)
    else:
        logq_rev_all = proposal_log_probs(space, y_prop, grad_prop, step_size)
        logq_rev = logq_rev_all.gather(2, old_idx[..., None]).squeeze(2).sum(1)

    log_ratio = ld_prop - state.logdensity + logq_rev - logq_fwd
    log_ratio = torch.where(nonfinite, torch.full_like(log_ratio, -float("inf")), log_ratio)
    accepted, acc = mh_accept(generator, log_ratio)
    grad_prop = torch.where(torch.isfinite(grad_prop), grad_prop, torch.zeros_like(grad_prop))
    new_state = DMALAState(
        where_chain(accepted, y_prop, y),
        torch.where(accepted, ld_prop, state.logdensity),
        where_chain(accepted, grad_prop, state.grad),
    )
    alpha = torch.as_tensor(step_size, dtype=ld_prop.dtype, device=y.device).expand(c)
    info = DMALAInfo(
        acceptance_prob=acc,
        is_accepted=accepted,
        is_divergent=torch.zeros(c, dtype=torch.bool, device=y.device),
        is_nonfinite=nonfinite,
        num_changed=num_changed,
        step_size=alpha,
    )
    return new_state, info


def make_spec(
    dist: Any,
    *,
    step_size: float | None = None,
    adapt_step_size: bool = True,
    target_accept: float = TARGET_ACCEPT,
    **unknown: Any,
) -> SamplerSpec:
    """:class:`SamplerSpec` of the ``method="dmala"`` kernel for a discrete :class:`gibbsebm.Gibbs`.

    The kernel alone (``adapt=None``); :func:`gibbsebm.samplers.registry.get_spec` attaches
    the step-size warmup (:func:`gibbsebm.samplers.adaptation.step_size.dmala_warmup`), which
    reads ``adapt_step_size`` and ``target_accept``.

    Parameters
    ----------
    dist : Gibbs
        Distribution with a finite discrete support and an energy differentiable in a
        relaxation of y.
    step_size : float, optional
        Initial (or, without adaptation, fixed) :math:`\\alpha`; default
        :func:`default_step_size`.
    adapt_step_size : bool
        Tune :math:`\\alpha` during warmup by dual averaging.
    target_accept : float
        Target mean acceptance of the adaptation (default 0.574, see the module notes).

    Raises
    ------
    ValueError
        If the support is not finite discrete or an option is out of range or unknown.

    Example
    -------
    >>> import gibbsebm, torch
    >>> from torch.distributions import constraints
    >>> d = gibbsebm.Gibbs(lambda y: -y.sum(-1), event_shape=(4,), support=constraints.boolean)
    >>> round(make_spec(d).default_params["step_size"], 4)  # 1 / (2 log 5)
    0.3107
    """
    reject_unknown_options("dmala", unknown, ["step_size", "adapt_step_size", "target_accept"])
    space = DiscreteSpace.of(dist)
    if step_size is None:
        step_size = default_step_size(space)
    elif not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    bound_step = functools.partial(step, space=space)
    return SamplerSpec(
        name="dmala",
        init=init,
        step=bound_step,
        default_params=dict(step_size=float(step_size)),
        discrete=True,
    )
