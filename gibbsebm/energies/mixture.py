"""Gaussian mixture energy: :math:`E(y) = -\\log \\sum_k w_k \\mathcal N(y; \\mu_k, \\operatorname{diag} s_k^2)`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.distributions import constraints

from .._validation import as_beta_tensor
from .base import EnergyModel

__all__ = ["GaussianMixture"]

#: Half-width, in tempered standard deviations :math:`s/\\sqrt\\beta`, of the box around each
#: component that the quadrature covers; the mass of a Gaussian outside it is at most
#: :math:`d\\,\\operatorname{erfc}(10/\\sqrt2) \\approx 1.5 \\times 10^{-23} d`.
_QUAD_HALF_WIDTH = 10.0
#: Panel width of the quadrature, in tempered standard deviations, and the Gauss-Legendre
#: orders used (the lower one gives the error estimate).
_QUAD_PANEL = 1.0
_QUAD_ORDERS = (8, 12)
#: Relative error above which :meth:`GaussianMixture.exact_log_partition` refuses a value.
_QUAD_RTOL = 1e-10


class GaussianMixture(EnergyModel):
    """Mixture of axis-aligned Gaussians in d dimensions.

    .. math::

        E(y) = -\\log \\sum_{k=1}^K w_k\\, \\mathcal N\\big(y;\\ \\mu_k,
        \\operatorname{diag}(s_k^2)\\big), \\qquad Z(1) = 1,

    so :math:`p_1` is the mixture itself and :math:`\\log Z(1) = 0` exactly. For
    :math:`\\beta \\ne 1`, :math:`Z(\\beta) = \\int p(y)^\\beta dy` has no closed form; it is
    computed by deterministic quadrature when :math:`d \\le 2` (tensor-product composite
    Gauss-Legendre on panels of one tempered standard deviation around every component, with
    an error estimate from a lower-order rule plus a bound on the truncated tails; the value
    is returned only if that error is below 1e-10 relative) and raises
    ``NotImplementedError`` for :math:`d > 2`. Exact samples exist at :math:`\\beta = 1`.

    Parameters
    ----------
    means : Tensor
        Component means :math:`\\mu_k`, shape ``(K, d)``; dtype and device are the energy's.
    scales : Tensor
        Standard deviations :math:`s_k > 0`, shape ``(K,)`` (isotropic) or ``(K, d)``.
    weights : Tensor, optional
        Mixture weights, shape ``(K,)``, non-negative with a positive sum; normalized to sum
        to one. Default: equal weights.

    Examples
    --------
    >>> import torch
    >>> gm = GaussianMixture.ring(num_modes=4, radius=3.0, scale=0.5)
    >>> gm(torch.zeros(2, 2)).shape
    torch.Size([2])
    >>> float(gm.exact_log_partition(1.0))
    0.0
    >>> y = gm.exact_sample(1.0, (1000,), generator=torch.Generator().manual_seed(0))
    >>> torch.bincount(gm.component_of(y), minlength=4).tolist()  # about 250 each
    [254, 246, 258, 242]
    """

    support = constraints.real_vector

    def __init__(
        self,
        means: torch.Tensor,
        scales: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means)
        if not means.dtype.is_floating_point:
            means = means.to(torch.get_default_dtype())
        if means.dim() != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        scales = torch.as_tensor(scales, dtype=means.dtype, device=means.device)
        if scales.shape == (K,):
            scales = scales[:, None].expand(K, d)
        if tuple(scales.shape) != (K, d):
            raise ValueError(
                f"scales must have shape ({K},) or ({K}, {d}), got {tuple(scales.shape)}"
            )
        if not (torch.isfinite(scales).all() and (scales > 0).all()):
            raise ValueError("scales must be finite and > 0")
        if not torch.isfinite(means).all():
            raise ValueError("means has non-finite values")
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=means.dtype, device=means.device)
        weights = torch.as_tensor(weights, dtype=means.dtype, device=means.device)
        if tuple(weights.shape) != (K,):
            raise ValueError(f"weights must have shape ({K},), got {tuple(weights.shape)}")
        if not (torch.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise ValueError("weights must be finite, >= 0 and have a positive sum")
        weights = weights / weights.sum()
        self.register_buffer("means", means.detach().clone())
        self.register_buffer("scales", scales.detach().clone())
        self.register_buffer("weights", weights.detach().clone())
        self.event_shape = torch.Size([d])

    @classmethod
    def ring(
        cls,
        num_modes: int = 8,
        radius: float = 4.0,
        scale: float = 0.5,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> GaussianMixture:
        """Equal-weight isotropic modes on a circle (the "ring of 8 Gaussians" benchmark).

        Means :math:`\\mu_k = r(\\cos 2\\pi k/K, \\sin 2\\pi k/K)`, :math:`k = 0..K-1`.

        Examples
        --------
        >>> GaussianMixture.ring().means.shape
        torch.Size([8, 2])
        """
        if isinstance(num_modes, bool) or not isinstance(num_modes, int) or num_modes < 1:
            raise ValueError(f"num_modes must be a positive integer, got {num_modes!r}")
        dtype = dtype or torch.get_default_dtype()
        angle = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
        means = float(radius) * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        scales = torch.full((num_modes,), float(scale), dtype=torch.float64)
        return cls(means.to(dtype=dtype, device=device), scales.to(dtype=dtype, device=device))

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def extra_repr(self) -> str:
        return f"num_components={self.num_components}, dim={self.dim}"

    # ------------------------------------------------------------------ energy
    def component_log_densities(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\log w_k + \\log \\mathcal N(y; \\mu_k, \\operatorname{diag} s_k^2)`, ``(N, K)``."""
        return self._component_log_densities(
            y.to(self.means.dtype), self.means, self.scales, self.weights
        )

    @staticmethod
    def _component_log_densities(y, means, scales, weights) -> torch.Tensor:
        z = (y[..., None, :] - means) / scales  # (N, K, d)
        d = means.shape[-1]
        log_norm = -torch.log(scales).sum(-1) - 0.5 * d * math.log(2 * math.pi)
        return torch.log(weights) + log_norm - 0.5 * (z * z).sum(-1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Energy of ``y`` shaped ``(N, d)``; returns ``(N,)``."""
        return -torch.logsumexp(self.component_log_densities(y), dim=-1)

    def component_of(self, y: torch.Tensor) -> torch.Tensor:
        """Index of the most responsible component, :math:`\\arg\\max_k w_k \\mathcal N_k(y)`.

        Parameters
        ----------
        y : Tensor
            Points shaped ``(N, d)``.

        Returns
        -------
        Tensor
            ``(N,)`` int64 indices; ``torch.bincount(..., minlength=K) / N`` measures how much
            weight a sampler puts on each mode.

        Examples
        --------
        >>> gm = GaussianMixture.ring(num_modes=4, radius=3.0)
        >>> gm.component_of(torch.tensor([[3.0, 0.0], [0.0, -2.0]])).tolist()
        [0, 3]
        """
        return self.component_log_densities(y).argmax(-1)

    # ------------------------------------------------------------------ exact facts
    def exact_sample(self, beta, sample_shape=(), generator=None) -> torch.Tensor:
        """Exact draws at :math:`\\beta = 1` (component, then Gaussian); other beta raise."""
        b = as_beta_tensor(beta, dtype=torch.float64, device=self.means.device)
        if not bool((b == 1).all()):
            raise NotImplementedError(
                "GaussianMixture has exact samples only at beta = 1 (the mixture itself); "
                "use gibbsebm.sample(dist, method=...) for other temperatures"
            )
        shape = torch.Size(sample_shape) + b.shape
        n = max(1, shape.numel())
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(
            (n, self.dim), generator=generator, dtype=self.means.dtype, device=self.means.device
        )
        y = self.means[k] + self.scales[k] * eps
        return y.reshape(shape + self.event_shape)

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        """:math:`\\log Z(\\beta) = \\log \\int p(y)^\\beta dy` in float64 (shape of ``beta``).

        Exactly 0 at :math:`\\beta = 1`; otherwise by quadrature for :math:`d \\le 2`
        (see :meth:`quadrature_log_partition`).

        Raises
        ------
        NotImplementedError
            For :math:`\\beta \\ne 1` when :math:`d > 2`.
        RuntimeError
            If the quadrature's error estimate exceeds 1e-10 relative.

        Examples
        --------
        >>> gm = GaussianMixture(torch.zeros(1, 1), torch.ones(1))
        >>> round(float(gm.exact_log_partition(2.0)), 12)  # int N(y)^2 dy = 1 / (2 sqrt(pi))
        -1.265512123485
        """
        b = as_beta_tensor(beta, dtype=torch.float64, device=self.means.device)
        out = torch.zeros_like(b)
        needs = b != 1
        if not bool(needs.any()):
            return out
        if self.dim > 2:
            raise NotImplementedError(
                f"GaussianMixture log Z at beta != 1 is computed by quadrature only for d <= 2 "
                f"(here d = {self.dim}); estimate it with gibbsebm.log_partition instead"
            )
        flat = out.reshape(-1)
        for i, beta_i in enumerate(b.reshape(-1).tolist()):
            if beta_i == 1.0:
                continue
            flat[i] = self._cached_quadrature(beta_i)
        return out

    def _cached_quadrature(self, beta: float) -> float:
        """Checked quadrature value, memoised per beta and parameter version.

        ``Gibbs.log_prob`` asks for log Z at every call; the cache key includes the buffers'
        in-place version counters, so modifying ``means``/``scales``/``weights`` invalidates it.
        """
        key = (beta,) + tuple((id(t), t._version) for t in (self.means, self.scales, self.weights))
        cache = self.__dict__.setdefault("_log_z_cache", {})
        if key not in cache:
            value, err = self.quadrature_log_partition(beta)
            if err > _QUAD_RTOL:
                raise RuntimeError(
                    f"quadrature of log Z at beta={beta} has error estimate {err:.2e} > "
                    f"{_QUAD_RTOL:.0e}"
                )
            if len(cache) >= 256:
                cache.clear()
            # the entry holds the buffers themselves, so their ids cannot be reused meanwhile
            cache[key] = (value, (self.means, self.scales, self.weights))
        return cache[key][0]

    def quadrature_log_partition(self, beta: float) -> tuple[float, float]:
        """:math:`\\log Z(\\beta)` by deterministic quadrature (d <= 2) and its error estimate.

        Composite Gauss-Legendre on a tensor-product grid: each coordinate axis is cut at
        panels one tempered standard deviation :math:`s_{kj}/\\sqrt\\beta` wide covering
        :math:`\\mu_{kj} \\pm 10\\, s_{kj}/\\sqrt\\beta` for every component k (cells outside
        all component boxes are single wide panels). The integrand
        :math:`p^\\beta \\le \\sum_k (w_k \\mathcal N_k)^\\beta` bounds the mass outside the
        boxes by :math:`\\sum_k \\int (w_k \\mathcal N_k)^\\beta \\cdot d \\operatorname{erfc}(10/\\sqrt2)`.

        Parameters
        ----------
        beta : float
            Inverse temperature, > 0.

        Returns
        -------
        value : float
            :math:`\\log Z(\\beta)` from the 12-point rule.
        error : float
            Estimated error of ``value`` in log units (= relative error of Z): the
            difference to the 8-point rule plus the tail bound.
        """
        as_beta_tensor(beta)
        if self.dim > 2:
            raise NotImplementedError(f"quadrature is implemented for d <= 2, got d = {self.dim}")
        beta = float(beta)
        device = self.means.device
        means = self.means.to(torch.float64)
        scales = self.scales.to(torch.float64)
        weights = self.weights.to(torch.float64)
        tempered = (scales / math.sqrt(beta)).cpu().numpy()
        mu = means.cpu().numpy()
        panel = np.minimum(tempered, scales.cpu().numpy())
        # panel breakpoints per axis: merge the component intervals mu +- 10 s' into disjoint
        # blocks, cut each block into equal panels no wider than its smallest s' (gaps between
        # blocks are single panels)
        axes_breaks = []
        for j in range(self.dim):
            lo = mu[:, j] - _QUAD_HALF_WIDTH * tempered[:, j]
            hi = mu[:, j] + _QUAD_HALF_WIDTH * tempered[:, j]
            order_k = np.argsort(lo)
            blocks = []  # [start, stop, smallest tempered scale]
            for k in order_k:
                if blocks and lo[k] <= blocks[-1][1]:
                    blocks[-1][1] = max(blocks[-1][1], hi[k])
                    blocks[-1][2] = min(blocks[-1][2], panel[k, j])
                else:
                    blocks.append([lo[k], hi[k], panel[k, j]])
            pieces = [
                np.linspace(a, b, int(math.ceil((b - a) / (_QUAD_PANEL * width))) + 1)
                for a, b, width in blocks
            ]
            axes_breaks.append(np.concatenate(pieces))
        # tail bound: sum_k w_k^beta * int N_k^beta * d * erfc(10 / sqrt 2), in units of Z
        log_int_k = (
            beta * torch.log(weights)
            + 0.5 * self.dim * (1 - beta) * math.log(2 * math.pi)
            + (1 - beta) * torch.log(scales).sum(-1)
            - 0.5 * self.dim * math.log(beta)
        )
        tail = (
            self.dim
            * math.erfc(_QUAD_HALF_WIDTH / math.sqrt(2))
            * float(torch.logsumexp(log_int_k, 0).exp())
        )
        values = []
        for order in _QUAD_ORDERS:
            x, w = np.polynomial.legendre.leggauss(order)
            nodes, wts = [], []
            for br in axes_breaks:
                lo, hi = br[:-1, None], br[1:, None]
                nodes.append(
                    torch.as_tensor((0.5 * (hi - lo) * x + 0.5 * (hi + lo)).ravel(), device=device)
                )
                wts.append(torch.as_tensor((0.5 * (hi - lo) * w).ravel(), device=device))
            values.append(self._grid_log_integral(nodes, wts, beta, means, scales, weights))
        value = values[-1]
        err = abs(values[-1] - values[0]) + tail / math.exp(value)
        return value, err

    def _grid_log_integral(self, nodes, wts, beta, means, scales, weights) -> float:
        """log of sum over the tensor grid of weight * p(y)^beta (rows chunked)."""
        if self.dim == 1:
            y = nodes[0][:, None]
            lp = torch.logsumexp(self._component_log_densities(y, means, scales, weights), -1)
            return float(torch.logsumexp(beta * lp + torch.log(wts[0]), 0))
        x0, x1 = nodes
        lw1 = torch.log(wts[1])
        acc = []
        rows = max(1, 2**20 // (x1.numel() * self.num_components))
        for start in range(0, x0.numel(), rows):
            a = x0[start : start + rows]
            y = torch.stack(torch.meshgrid(a, x1, indexing="ij"), -1).reshape(-1, 2)
            lp = torch.logsumexp(self._component_log_densities(y, means, scales, weights), -1)
            lp = (
                (beta * lp).reshape(a.numel(), x1.numel())
                + lw1
                + torch.log(wts[0][start : start + rows])[:, None]
            )
            acc.append(torch.logsumexp(lp.reshape(-1), 0))
        return float(torch.logsumexp(torch.stack(acc), 0))
