"""Gibbs posteriors: the loss-based Gibbs distribution over :math:`\\theta`, as a
:class:`gibbsebm.Gibbs`, as a Pyro model, and many at once for weighted data (see
:mod:`gibbsebm.workflow`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

from .._validation import check_beta
from ..distribution import Gibbs, energy_factor

__all__ = ["LossFn", "gibbs_posterior", "gibbs_posterior_model", "weighted_gibbs_posterior"]

#: ``loss_fn(theta (C, d), data) -> per-observation losses (C, n)``
LossFn = Callable[[torch.Tensor, Any], torch.Tensor]


def _num_obs(data: Any) -> int:
    if isinstance(data, torch.Tensor):
        return data.shape[0]
    if isinstance(data, tuple | list) and data and all(isinstance(t, torch.Tensor) for t in data):
        n = data[0].shape[0]
        if any(t.shape[0] != n for t in data):
            raise ValueError(
                "data tensors must share their leading (observation) dimension, got "
                f"{[tuple(t.shape) for t in data]}"
            )
        return n
    raise ValueError("data must be a tensor or a tuple of tensors with observations first")


def _check_losses(losses: Any, c: int, n: int) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor) or not losses.dtype.is_floating_point:
        raise ValueError("loss_fn must return a floating-point tensor of per-observation losses")
    if tuple(losses.shape) != (c, n):
        raise ValueError(
            f"loss_fn(theta, data) must return per-observation losses shaped (C, n) = ({c}, {n}) "
            f"for theta shaped (C, d); got {tuple(losses.shape)}"
        )
    return losses


def _prior_log_prob(prior: torch.distributions.Distribution, theta: torch.Tensor) -> torch.Tensor:
    lp = prior.log_prob(theta)
    # a prior with a scalar event (e.g. Normal(0, 10) over d coordinates) is summed over d
    while lp.dim() > theta.dim() - 1:
        lp = lp.sum(-1)
    return lp


class _WeightedRisk(torch.nn.Module):
    """Energy of ``K`` stacked Gibbs posteriors: ``E(Theta) = sum_k sum_i w_ki l(theta_k, z_i)``.

    ``Theta`` is shaped ``(N, K, d)``; ``weights`` ``(K, n)``. Minus the log prior of every
    block is added when ``prior`` is given (so that the prior is tempered with nothing).
    """

    def __init__(
        self,
        loss_fn: LossFn,
        data: Any,
        weights: torch.Tensor,
        dim: int,
        prior: torch.distributions.Distribution | None,
        block_beta: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.data = data
        self.register_buffer("weights", weights)
        self.prior = prior
        self.event_shape = torch.Size([weights.shape[0], dim])
        # per-block learning rates relative to the distribution's beta (None: all equal)
        self.block_beta = block_beta

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        n_batch, k, d = theta.shape
        flat = theta.reshape(n_batch * k, d)
        losses = _check_losses(self.loss_fn(flat, self.data), n_batch * k, self.weights.shape[1])
        risk = (losses.reshape(n_batch, k, -1) * self.weights.to(losses.dtype)).sum(-1)  # (N, K)
        if self.block_beta is not None:
            risk = risk * self.block_beta.to(risk.dtype)
        if self.prior is not None:
            risk = risk - _prior_log_prob(self.prior, flat).reshape(n_batch, k)
        return risk.sum(-1)


class _Risk(torch.nn.Module):
    """Empirical risk of one parameter vector: ``theta (N, d) -> (N,)``.

    A module (not a closure) so that its buffers carry the data's dtype and device, which
    :class:`gibbsebm.Gibbs` and the samplers follow.
    """

    def __init__(self, risk: _WeightedRisk) -> None:
        super().__init__()
        self.risk = risk
        self.event_shape = torch.Size([risk.event_shape[1]])

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.risk(theta.unsqueeze(1))


def gibbs_posterior(
    loss_fn: LossFn,
    data: Any,
    prior: torch.distributions.Distribution,
    *,
    beta: float = 1.0,
    dim: int | None = None,
) -> Gibbs:
    """The Gibbs posterior :math:`\\pi(\\theta) e^{-\\beta \\sum_i \\ell(\\theta, z_i)}` as a ``Gibbs``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(theta, data)``: ``theta`` ``(C, d)`` -> per-observation losses ``(C, n)``.
    data : Tensor or tuple of Tensors
        Observations on the leading dimension.
    prior : torch.distributions.Distribution
        Prior over :math:`\\theta` (event shape ``(d,)``, or a scalar distribution expanded
        to ``d`` coordinates); it is the base measure of the Gibbs distribution, so it is not
        tempered.
    beta : float
        Learning rate :math:`\\omega > 0`.
    dim : int, optional
        Dimension ``d`` (default: the prior's event size).

    Returns
    -------
    Gibbs
        Event shape ``(d,)``; its energy is the empirical risk :math:`\\sum_i \\ell(\\theta, z_i)`.

    Examples
    --------
    >>> import pyro, torch
    >>> z = torch.randn(50) * 2.0
    >>> post = gibbs_posterior(lambda th, z: 0.5 * (z - th) ** 2, z,
    ...                        pyro.distributions.Normal(torch.zeros(1), 10.0).to_event(1),
    ...                        beta=0.25)
    >>> post.event_shape
    torch.Size([1])
    """
    check_beta(beta)
    n = _num_obs(data)
    d = dim if dim is not None else _prior_dim(prior)
    ref = _ref_tensor(data)
    weights = torch.ones(1, n, dtype=ref.dtype, device=ref.device)
    energy = _Risk(_WeightedRisk(loss_fn, data, weights, d, prior=None))
    base = (
        prior
        if len(prior.event_shape) == 1
        else torch.distributions.Independent(prior.expand(torch.Size([d])), 1)
    )
    return Gibbs(energy, beta, base=base, event_shape=(d,))


def _prior_dim(prior: torch.distributions.Distribution) -> int:
    if len(prior.event_shape) == 1:
        return int(prior.event_shape[0])
    raise ValueError(
        "give dim= or a prior with event shape (d,), e.g. dist.Normal(torch.zeros(d), 1).to_event(1)"
    )


def _ref_tensor(data: Any) -> torch.Tensor:
    t = data if isinstance(data, torch.Tensor) else data[0]
    return t if t.dtype.is_floating_point else torch.empty(0)


def gibbs_posterior_model(
    loss_fn: LossFn,
    prior: torch.distributions.Distribution,
    *,
    beta: float = 1.0,
    name: str = "theta",
) -> Callable[[Any], torch.Tensor]:
    """A Pyro model of the Gibbs posterior, built on :func:`gibbsebm.energy_factor`.

    ``model(data)`` samples ``theta ~ prior`` at site ``name`` and adds the factor
    :math:`-\\beta \\sum_i \\ell(\\theta, z_i)` at site ``"loss"``. Run it with Pyro's NUTS and
    convert with ``arviz.from_pyro``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(theta (1, d), data) -> (1, n)``; see the module docstring.
    prior : torch.distributions.Distribution
        Prior with event shape ``(d,)``.
    beta : float
        Learning rate, > 0.
    name : str
        Site name of the parameter.

    Returns
    -------
    callable
        The Pyro model; it returns ``theta``.

    Examples
    --------
    >>> import torch, pyro
    >>> from pyro.infer import MCMC, NUTS
    >>> model = gibbs_posterior_model(lambda th, z: (z - th).abs(),
    ...                               pyro.distributions.Normal(torch.zeros(1), 10.).to_event(1))
    >>> mcmc = MCMC(NUTS(model), num_samples=50, warmup_steps=50)  # doctest: +SKIP
    >>> mcmc.run(torch.randn(30))  # doctest: +SKIP
    """
    check_beta(beta)

    def model(data: Any) -> torch.Tensor:
        theta = pyro.sample(name, prior)
        losses = loss_fn(theta.unsqueeze(0), data)
        energy_factor("loss", losses.sum(), beta)
        return theta

    return model


def weighted_gibbs_posterior(
    loss_fn: LossFn,
    data: Any,
    weights: torch.Tensor,
    prior: torch.distributions.Distribution,
    *,
    beta: float | torch.Tensor = 1.0,
    dim: int | None = None,
) -> Gibbs:
    """``K`` Gibbs posteriors, one per row of ``weights``, as one batched target.

    Block ``k`` of :math:`\\Theta = (\\theta_1, \\dots, \\theta_K)` has density
    :math:`\\pi(\\theta_k) \\exp(-\\beta_k \\sum_i w_{ki} \\ell(\\theta_k, z_i))`; the blocks are
    independent, so one run of a batched sampler with event shape ``(K, d)`` samples all of
    them (bootstrap resamples as multinomial counts, or the data sets of a simulation study
    as 0/1 masks over their concatenation).

    Parameters
    ----------
    loss_fn, data, prior, dim
        As in :func:`gibbs_posterior`.
    weights : Tensor
        ``(K, n)`` non-negative observation weights.
    beta : float or Tensor
        One learning rate for all blocks, or ``(K,)`` per block.

    Returns
    -------
    Gibbs
        At inverse temperature 1 with event shape ``(K, d)`` and energy
        :math:`\\sum_k [\\beta_k R_k(\\theta_k) - \\log\\pi(\\theta_k)]`.

    Examples
    --------
    >>> import pyro, torch
    >>> z = torch.randn(20)
    >>> w = torch.ones(3, 20)
    >>> prior = pyro.distributions.Normal(torch.zeros(1), 10.0).to_event(1)
    >>> weighted_gibbs_posterior(lambda th, z: (z - th) ** 2, z, w, prior).event_shape
    torch.Size([3, 1])
    """
    n = _num_obs(data)
    if weights.dim() != 2 or weights.shape[1] != n:
        raise ValueError(f"weights must be shaped (K, n) with n = {n}, got {tuple(weights.shape)}")
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError("weights must be finite and non-negative")
    d = dim if dim is not None else _prior_dim(prior)
    b = torch.as_tensor(beta, dtype=weights.dtype, device=weights.device)
    check_beta(b)
    if b.dim() == 0:
        b = b.expand(weights.shape[0])
    if b.shape != (weights.shape[0],):
        raise ValueError(f"beta must be a scalar or shaped (K,) = ({weights.shape[0]},)")
    risk = _WeightedRisk(loss_fn, data, weights, d, prior=prior, block_beta=b)
    return Gibbs(risk, 1.0, event_shape=(weights.shape[0], d))
