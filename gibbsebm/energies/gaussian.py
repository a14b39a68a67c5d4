"""Gaussian energy: :math:`E(y) = \\tfrac12 (y-\\mu)^\\top P (y-\\mu)`."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validation import as_beta_tensor
from .base import EnergyModel

__all__ = ["Gaussian"]


class Gaussian(EnergyModel):
    """Quadratic energy of a multivariate Gaussian, any dimension.

    .. math::

        E(y) = \\tfrac12 (y - \\mu)^\\top P (y - \\mu), \\qquad
        \\log Z(\\beta) = \\tfrac d2 \\log\\frac{2\\pi}{\\beta} - \\tfrac12 \\log\\det P,

    so that :math:`p_\\beta = \\mathcal N(\\mu, (\\beta P)^{-1})`. Give either ``covariance``
    :math:`\\Sigma = P^{-1}` or ``precision`` :math:`P` (a matrix, or a vector for a diagonal
    one); with neither, :math:`P = I`. Factorisations are done once in float64, so
    ill-conditioned matrices (condition numbers of 1e8 and more) are handled.

    Parameters
    ----------
    mean : Tensor
        Mean :math:`\\mu`, shape ``(d,)``; its dtype and device are the energy's.
    covariance, precision : Tensor, optional
        ``(d, d)`` symmetric positive definite, or ``(d,)`` for a diagonal.

    Examples
    --------
    >>> import torch
    >>> g = Gaussian(torch.zeros(2), covariance=torch.tensor([1.0, 4.0]))
    >>> round(float(g.exact_log_partition(1.0)), 10)  # log(2 pi * sqrt(4))
    2.531024247
    """

    def __init__(
        self,
        mean: torch.Tensor,
        covariance: torch.Tensor | None = None,
        precision: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        mean = torch.as_tensor(mean)
        if not mean.dtype.is_floating_point:
            mean = mean.to(torch.get_default_dtype())
        if mean.dim() != 1:
            raise ValueError(f"mean must have shape (d,), got {tuple(mean.shape)}")
        d = mean.shape[0]
        if covariance is not None and precision is not None:
            raise ValueError("give covariance or precision, not both")
        given = covariance if covariance is not None else precision
        if given is None:
            given = torch.ones(d, dtype=mean.dtype, device=mean.device)
        given = torch.as_tensor(given)
        # asymmetry tolerance from the precision the matrix was given in (a float32 A @ A.T
        # is symmetric only to rounding)
        eps = torch.finfo(given.dtype if given.dtype.is_floating_point else torch.float64).eps
        given = given.to(device=mean.device, dtype=torch.float64)
        if given.shape == (d,):
            given = torch.diag(given)
        if given.shape != (d, d):
            raise ValueError(
                f"{'covariance' if covariance is not None else 'precision'} must have shape "
                f"({d},) or ({d}, {d}), got {tuple(given.shape)}"
            )
        if (given - given.T).abs().max() > 64 * eps * given.abs().max():
            raise ValueError("covariance/precision must be symmetric")
        given = 0.5 * (given + given.T)
        # Factor the given matrix once in float64; invert through its Cholesky factor.
        chol = torch.linalg.cholesky_ex(given)
        if int(chol.info) != 0:
            raise ValueError("covariance/precision must be positive definite")
        eye = torch.eye(d, dtype=torch.float64, device=mean.device)
        inv = torch.cholesky_solve(eye, chol.L)
        inv = 0.5 * (inv + inv.T)
        cov64, prec64 = (given, inv) if covariance is not None else (inv, given)
        logdet_prec = (
            -2.0 * torch.log(torch.diagonal(chol.L)).sum()
            if covariance is not None
            else 2.0 * torch.log(torch.diagonal(chol.L)).sum()
        )
        self.register_buffer("mean", mean)
        self.register_buffer("precision", prec64.to(mean.dtype))
        self.register_buffer("covariance", cov64.to(mean.dtype))
        self.register_buffer("_cov64", cov64)
        self.register_buffer("_logdet_prec", logdet_prec)
        self.register_buffer("_scale_tril64", torch.linalg.cholesky(cov64))
        self.event_shape = torch.Size([d])

    @property
    def dim(self) -> int:
        return self.event_shape[0]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        r = y - self.mean
        return 0.5 * ((r @ self.precision) * r).sum(-1)

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        b = as_beta_tensor(beta, dtype=torch.float64, device=self.mean.device)
        d = self.dim
        return 0.5 * d * torch.log(2 * math.pi / b) - 0.5 * self._logdet_prec

    def exact_sample(self, beta, sample_shape=(), generator=None) -> torch.Tensor:
        b = as_beta_tensor(beta, dtype=torch.float64, device=self.mean.device)
        shape = torch.Size(sample_shape) + b.shape + self.event_shape
        eps = torch.randn(shape, generator=generator, dtype=torch.float64, device=self.mean.device)
        y = (eps @ self._scale_tril64.T) / b.sqrt().unsqueeze(-1)
        return (y + self.mean.to(torch.float64)).to(self.mean.dtype)

    def exact_mean(self, beta: Any = 1.0) -> torch.Tensor:
        """Mean of :math:`p_\\beta` (float64)."""
        return self.mean.to(torch.float64)

    def exact_covariance(self, beta: Any = 1.0) -> torch.Tensor:
        """Covariance :math:`\\Sigma / \\beta` of :math:`p_\\beta` (float64)."""
        b = as_beta_tensor(beta, dtype=torch.float64, device=self.mean.device)
        return self._cov64 / b
