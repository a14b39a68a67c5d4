"""Dual averaging of the log step size (Nesterov 2009; Hoffman & Gelman 2014, sec. 3.2).

With statistic :math:`H_t = \\delta - \\alpha_t` (target acceptance minus observed), the
iterates are

.. math::

    \\bar H_t = (1 - \\tfrac{1}{t + t_0}) \\bar H_{t-1} + \\tfrac{1}{t + t_0} H_t, \\qquad
    \\log\\epsilon_t = \\mu - \\tfrac{\\sqrt t}{\\gamma} \\bar H_t, \\qquad
    \\log\\bar\\epsilon_t = t^{-\\kappa} \\log\\epsilon_t + (1 - t^{-\\kappa})
    \\log\\bar\\epsilon_{t-1},

with :math:`\\mu = \\log(10\\,\\epsilon_0)`, :math:`\\gamma = 0.05`, :math:`t_0 = 10`,
:math:`\\kappa = 0.75` (the constants recommended in Hoffman & Gelman 2014, sec. 3.2.1, and
used by Stan). During warmup the sampler uses :math:`\\epsilon_t`; afterwards
:math:`\\bar\\epsilon_t`.

The state holds tensors (any shape: one entry per shared step size, or one per chain), so the
update never leaves the device.

References
----------
.. [1] M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014 (Algorithm 5).
.. [2] Y. Nesterov, "Primal-dual subgradient methods for convex problems", Math. Program.
   120, 2009.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["DualAveragingState", "dual_averaging"]


class DualAveragingState(NamedTuple):
    """``log_step_size`` (current iterate), ``log_step_size_avg``, ``h_bar``, ``mu``, ``t``."""

    log_step_size: torch.Tensor
    log_step_size_avg: torch.Tensor
    h_bar: torch.Tensor
    mu: torch.Tensor
    t: int


def dual_averaging(
    t0: float = 10.0, gamma: float = 0.05, kappa: float = 0.75
) -> tuple[Callable, Callable, Callable]:
    """Dual averaging step-size adaptation as an ``(init, update, final)`` triple.

    Parameters
    ----------
    t0, gamma, kappa : float
        Hoffman & Gelman (2014) constants (defaults are theirs and Stan's).

    Returns
    -------
    init : callable
        ``init(step_size: Tensor) -> DualAveragingState`` (``mu = log(10 * step_size)``).
    update : callable
        ``update(state, accept_stat: Tensor, target: float) -> DualAveragingState``.
    final : callable
        ``final(state) -> Tensor``: the averaged step size :math:`\\bar\\epsilon`.

    Examples
    --------
    >>> import torch
    >>> init, update, final = dual_averaging()
    >>> s = init(torch.tensor(1.0))
    >>> low = update(s, torch.tensor(0.2), 0.8)  # acceptance below target ...
    >>> high = update(s, torch.tensor(0.95), 0.8)  # ... and above it
    >>> bool(low.log_step_size < high.log_step_size)
    True
    """
    if t0 < 0 or gamma <= 0 or not 0.5 < kappa <= 1:
        raise ValueError("dual averaging needs t0 >= 0, gamma > 0 and 0.5 < kappa <= 1")

    def init(step_size: torch.Tensor) -> DualAveragingState:
        log_eps = torch.log(torch.as_tensor(step_size))
        zero = torch.zeros_like(log_eps)
        return DualAveragingState(log_eps, zero, zero, log_eps + math.log(10.0), 0)

    def update(state: DualAveragingState, accept_stat: torch.Tensor, target: float):
        t = state.t + 1
        eta = 1.0 / (t + t0)
        h_bar = (1.0 - eta) * state.h_bar + eta * (target - accept_stat)
        log_eps = state.mu - (math.sqrt(t) / gamma) * h_bar
        w = t ** (-kappa)
        log_eps_avg = w * log_eps + (1.0 - w) * state.log_step_size_avg
        return DualAveragingState(log_eps, log_eps_avg, h_bar, state.mu, t)

    def final(state: DualAveragingState) -> torch.Tensor:
        if state.t == 0:
            return state.log_step_size.exp()
        return state.log_step_size_avg.exp()

    return init, update, final
