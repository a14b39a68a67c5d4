"""Batched symplectic integrators for Hamiltonian dynamics.

With potential :math:`U(y) = -\\log \\tilde p(y)` and kinetic energy
:math:`K(p) = \\tfrac12 p^\\top M^{-1} p` (a :class:`~gibbsebm.samplers.metrics.Metric`),
one leapfrog (velocity Verlet, Störmer-Verlet) step of size :math:`\\epsilon` is

.. math::

    p_{1/2} = p + \\tfrac{\\epsilon}{2} \\nabla \\log \\tilde p(y), \\quad
    y' = y + \\epsilon M^{-1} p_{1/2}, \\quad
    p' = p_{1/2} + \\tfrac{\\epsilon}{2} \\nabla \\log \\tilde p(y').

It is symplectic and time-reversible, with a global energy error of order
:math:`\\epsilon^2` (Leimkuhler & Reich 2004, ch. 4; Neal 2011, sec. 5.2.3). ``num_steps``
steps fuse the inner half-kicks into full kicks, so a trajectory of ``L`` steps costs ``L``
gradient evaluations and about ``2L`` elementwise kernels besides them.

References
----------
.. [1] B. Leimkuhler and S. Reich, *Simulating Hamiltonian Dynamics*, Cambridge University
   Press, 2004.
.. [2] R. M. Neal, "MCMC using Hamiltonian dynamics", in *Handbook of Markov Chain Monte
   Carlo*, 2011.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import _compiled
from .base import LogDensityFn, logdensity_and_grad
from .metrics import Metric

__all__ = ["IntegratorState", "leapfrog", "velocity_verlet"]


class IntegratorState(NamedTuple):
    """Phase-space point with the log-density and its gradient at ``position``."""

    position: torch.Tensor
    momentum: torch.Tensor
    logdensity: torch.Tensor
    logdensity_grad: torch.Tensor


def _kick(p: torch.Tensor, g: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``p + scale * g`` in one kernel (``scale`` a float, 0-dim or per-chain ``(C,)``)."""
    if isinstance(scale, torch.Tensor):
        if scale.dim() == 1:
            scale = scale.reshape((-1,) + (1,) * (p.dim() - 1))
        return torch.addcmul(p, g, scale)
    return torch.add(p, g, alpha=scale)


def leapfrog(
    logdensity_fn: LogDensityFn,
    metric: Metric,
    state: IntegratorState,
    step_size: float | torch.Tensor,
    num_steps: int,
) -> IntegratorState:
    """Integrate ``num_steps`` leapfrog steps for a batch of chains.

    Parameters
    ----------
    logdensity_fn : callable
        ``(C, *event) -> (C,)`` log-density :math:`\\log \\tilde p`.
    metric : Metric
        Mass matrix.
    state : IntegratorState
        Start point; ``logdensity_grad`` must be the gradient at ``position``.
    step_size : float or Tensor
        :math:`\\epsilon`: a float, a 0-dim tensor, or one per chain ``(C,)``.
    num_steps : int
        Number of leapfrog steps (>= 1; a Python int, the same for all chains).

    Returns
    -------
    IntegratorState
        End point (detached). Non-finite values are not caught here; callers reject them.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.samplers.metrics import diagonal_metric
    >>> fn = lambda y: -0.5 * (y ** 2).sum(-1)
    >>> y = torch.ones(1, 1)
    >>> s = IntegratorState(y, torch.zeros(1, 1), fn(y), -y)
    >>> leapfrog(fn, diagonal_metric(torch.ones(1)), s, 0.1, 10).position  # cos(1) = 0.5403
    tensor([[0.5400]])
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    half = step_size * 0.5
    y = state.position
    # the first half kick makes a new momentum tensor (the caller's is left alone); the
    # later kicks update it in place (``add_`` rounds exactly as ``add``)
    p = _kick(state.momentum, state.logdensity_grad, half)
    ld, g = state.logdensity, state.logdensity_grad
    start = 0
    compiled = _compiled_step(logdensity_fn, metric, step_size)
    if compiled is not None:
        drift = metric.inverse_mass * step_size
        full = torch.as_tensor(step_size, dtype=p.dtype, device=p.device)
        last = torch.as_tensor(half, dtype=p.dtype, device=p.device)
        while start < num_steps:
            kick = full if start < num_steps - 1 else last
            out = _compiled.call(logdensity_fn, compiled, y, p, drift, kick)
            if out is None:
                break  # compilation failed: the eager loop below goes on from here
            y, p, ld, g = out
            start += 1
    move = metric.position_update(step_size)
    for i in range(start, num_steps):
        y = move(y, p)
        ld, g = logdensity_and_grad(logdensity_fn, y)
        _kick_(p, g, step_size if i < num_steps - 1 else half)
    return IntegratorState(y.detach(), p.detach(), ld.detach(), g.detach())


def _kick_(p: torch.Tensor, g: torch.Tensor, scale: float | torch.Tensor) -> None:
    """``p += scale * g`` in place (same rounding as :func:`_kick`)."""
    if isinstance(scale, torch.Tensor):
        if scale.dim() == 1:
            scale = scale.reshape((-1,) + (1,) * (p.dim() - 1))
        p.addcmul_(g, scale)
    else:
        p.add_(g, alpha=scale)


def _compiled_step(logdensity_fn: LogDensityFn, metric: Metric, step_size):
    """The opt-in compiled step (:mod:`gibbsebm.samplers._compiled`) where it applies: a
    diagonal metric and a scalar step size."""
    if metric.dense or (isinstance(step_size, torch.Tensor) and step_size.dim() > 0):
        return None
    return _compiled.leapfrog_step(logdensity_fn)


#: Alias: the leapfrog scheme is velocity Verlet written in the momentum variable.
velocity_verlet = leapfrog
