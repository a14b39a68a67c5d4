"""Haario et al.'s twisted Gaussian ("banana"): a curved density with an exact log Z."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import constraints

from .._validation import as_beta_tensor
from .base import EnergyModel

__all__ = ["Banana"]


class Banana(EnergyModel):
    """Twisted Gaussian of Haario, Saksman and Tamminen (1999).

    .. math::

        \\phi(y) = (y_1,\\; y_2 + b y_1^2 - b\\sigma_1^2,\\; y_3, \\dots, y_d), \\qquad
        E(y) = \\tfrac12 \\phi(y)^\\top C^{-1} \\phi(y), \\qquad
        C = \\operatorname{diag}(\\sigma_1^2, 1, \\dots, 1).

    The twist :math:`\\phi` is a bijection with unit Jacobian, so :math:`p_\\beta` is the
    image under :math:`\\phi^{-1}` of :math:`x \\sim \\mathcal N(0, C/\\beta)` and

    .. math::

        \\log Z(\\beta) = \\tfrac d2 \\log\\frac{2\\pi}{\\beta} + \\log \\sigma_1 .

    Moments (:meth:`exact_mean`, :meth:`exact_covariance`) follow from
    :math:`y_2 = x_2 - b x_1^2 + b\\sigma_1^2` with :math:`x_1 \\sim \\mathcal N(0,
    \\sigma_1^2/\\beta)`: :math:`E[y_2] = b\\sigma_1^2 (1 - 1/\\beta)`,
    :math:`\\operatorname{Var}(y_2) = 1/\\beta + 2 b^2 \\sigma_1^4/\\beta^2`,
    :math:`\\operatorname{Cov}(y_1, y_2) = -b\\,E[x_1^3] = 0`, and the other coordinates are
    independent :math:`\\mathcal N(0, \\sigma_i^2/\\beta)`.

    Parameters
    ----------
    dim : int
        Dimension d >= 2.
    b : float
        Twist (Haario et al. use 0.03 and 0.1).
    sigma1 : float
        Standard deviation of the first coordinate at beta = 1 (> 0).
    dtype, device : optional
        Dtype and device of the energy.

    References
    ----------
    H. Haario, E. Saksman and J. Tamminen, "Adaptive proposal distribution for random walk
    Metropolis algorithm", Computational Statistics 14, 375-395 (1999), section 3.

    Examples
    --------
    >>> import torch
    >>> banana = Banana(dim=2, b=0.1, sigma1=10.0)
    >>> banana(torch.tensor([[0.0, 10.0]]))  # phi = (0, 0): the ridge
    tensor([0.])
    >>> round(float(banana.exact_log_partition(1.0)), 6)  # log(2 pi * 10)
    4.140462
    """

    support = constraints.real_vector

    def __init__(
        self,
        dim: int = 2,
        b: float = 0.1,
        sigma1: float = 10.0,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
        if not math.isfinite(b):
            raise ValueError(f"b must be a finite number, got {b}")
        if not (sigma1 > 0 and math.isfinite(sigma1)):
            raise ValueError(f"sigma1 must be a finite number > 0, got {sigma1}")
        dtype = dtype or torch.get_default_dtype()
        self.b = float(b)
        self.sigma1 = float(sigma1)
        scale = torch.ones(dim, dtype=torch.float64)
        scale[0] = self.sigma1
        # 1 / diag(C), in the energy's dtype; float64 copy for exact computations
        self.register_buffer("inv_var", (1.0 / scale**2).to(dtype=dtype, device=device))
        self.register_buffer("_scale64", scale.to(device=device))
        self.event_shape = torch.Size([dim])

    @property
    def dim(self) -> int:
        return self.event_shape[0]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, b={self.b}, sigma1={self.sigma1}"

    def untwist(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\phi(y)`, the Gaussian coordinates of ``y`` (shape preserved)."""
        shift = self.b * y[..., :1] ** 2 - self.b * self.sigma1**2
        return torch.cat([y[..., :1], y[..., 1:2] + shift, y[..., 2:]], -1)

    def twist(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\phi^{-1}(x)`: maps Gaussian coordinates onto the banana."""
        shift = self.b * x[..., :1] ** 2 - self.b * self.sigma1**2
        return torch.cat([x[..., :1], x[..., 1:2] - shift, x[..., 2:]], -1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Energy of ``y`` shaped ``(N, d)``; returns ``(N,)``."""
        x = self.untwist(y.to(self.inv_var.dtype))
        return 0.5 * (x * x * self.inv_var).sum(-1)

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        b = as_beta_tensor(beta, dtype=torch.float64, device=self._scale64.device)
        return 0.5 * self.dim * torch.log(2 * math.pi / b) + math.log(self.sigma1)

    def exact_sample(self, beta, sample_shape=(), generator=None) -> torch.Tensor:
        """Exact draws: :math:`x \\sim \\mathcal N(0, C/\\beta)`, then :math:`y = \\phi^{-1}(x)`."""
        b = as_beta_tensor(beta, dtype=torch.float64, device=self._scale64.device)
        shape = torch.Size(sample_shape) + b.shape + self.event_shape
        eps = torch.randn(shape, generator=generator, dtype=torch.float64, device=b.device)
        x = eps * self._scale64 / b.sqrt().unsqueeze(-1)
        return self.twist(x).to(self.inv_var.dtype)

    def exact_mean(self, beta: Any = 1.0) -> torch.Tensor:
        """Mean of :math:`p_\\beta`, float64, shape ``(*beta.shape, d)``.

        Examples
        --------
        >>> Banana(b=0.1, sigma1=10.0).exact_mean(2.0)
        tensor([0., 5.], dtype=torch.float64)
        """
        b = as_beta_tensor(beta, dtype=torch.float64, device=self._scale64.device)
        mean = torch.zeros(b.shape + self.event_shape, dtype=torch.float64, device=b.device)
        mean[..., 1] = self.b * self.sigma1**2 * (1 - 1 / b)
        return mean

    def exact_covariance(self, beta: Any = 1.0) -> torch.Tensor:
        """Covariance of :math:`p_\\beta`, float64, shape ``(*beta.shape, d, d)``.

        Examples
        --------
        >>> Banana(b=0.1, sigma1=10.0).exact_covariance(1.0).tolist()  # Var y2 = 1 + 2 b^2 s^4
        [[100.0, 0.0], [0.0, 201.00000000000003]]
        """
        b = as_beta_tensor(beta, dtype=torch.float64, device=self._scale64.device)
        var = (self._scale64**2 / b.unsqueeze(-1)).clone()
        var[..., 1] = var[..., 1] + 2 * self.b**2 * self.sigma1**4 / b**2
        return torch.diag_embed(var)
