"""Double-well energy, one well pair per coordinate; exact log Z by one-dimensional quadrature."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import integrate
from torch.distributions import constraints

from .._validation import as_beta_tensor, check_beta
from .base import EnergyModel

__all__ = ["DoubleWell"]

#: Relative accuracy requested from :func:`scipy.integrate.quad`, and the largest error
#: estimate that :meth:`DoubleWell.exact_log_partition` accepts.
_QUAD_EPSREL = 1e-13
_QUAD_MAX_ERR = 1e-10
#: The integrand exp(-beta (E - E_min)) is cut where beta (E - E_min) > 745, below the
#: smallest positive float64 (exp(-745) ~ 5e-324), so the dropped tails are below 1e-300.
_CUTOFF = 745.0


class DoubleWell(EnergyModel):
    """Product of independent one-dimensional double wells.

    .. math::

        E(y) = \\sum_{i=1}^{d} \\big[a (y_i^2 - 1)^2 + c\\, y_i\\big], \\qquad
        \\log Z(\\beta) = d \\log Z_1(\\beta), \\quad
        Z_1(\\beta) = \\int_{-\\infty}^{\\infty} e^{-\\beta (a (t^2-1)^2 + c t)}\\,dt .

    Wells at :math:`y_i \\approx \\pm 1` with barrier height a; c tilts them (c > 0 favours
    the left well). :math:`Z_1` is computed by adaptive Gauss-Kronrod quadrature
    (:func:`scipy.integrate.quad`) with breakpoints at the stationary points, after
    subtracting the minimum energy; its own error estimate is returned by
    :meth:`log_partition_1d` and must be below 1e-10 relative for
    :meth:`exact_log_partition` to return a value. For c = 0,
    :math:`Z_1 = \\tfrac\\pi2 e^{-\\beta a/2} [I_{-1/4}(\\beta a/2) + I_{1/4}(\\beta a/2)]`
    (modified Bessel functions), which the tests use as a cross-check.

    Parameters
    ----------
    dim : int
        Number of coordinates d >= 1.
    a : float
        Barrier height (> 0).
    c : float
        Linear tilt.
    dtype, device : optional
        Dtype and device of the energy.

    Examples
    --------
    >>> import math, torch
    >>> dw = DoubleWell(dim=2, a=2.0)
    >>> dw(torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    tensor([0., 4.])
    >>> lz1, err = dw.log_partition_1d(1.0)
    >>> bool(err < 1e-10) and math.isclose(float(dw.exact_log_partition(1.0)), 2 * lz1)
    True
    """

    support = constraints.real_vector

    def __init__(
        self,
        dim: int = 1,
        a: float = 1.0,
        c: float = 0.0,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not (a > 0 and math.isfinite(a)):
            raise ValueError(
                f"a must be a finite number > 0 (else exp(-beta E) is not integrable), got {a}"
            )
        if not math.isfinite(c):
            raise ValueError(f"c must be a finite number, got {c}")
        dtype = dtype or torch.get_default_dtype()
        self.a = float(a)
        self.c = float(c)
        self.register_buffer("_a", torch.tensor(self.a, dtype=dtype, device=device))
        self.register_buffer("_c", torch.tensor(self.c, dtype=dtype, device=device))
        self.event_shape = torch.Size([dim])
        # stationary points of the one-dimensional energy: 4a t^3 - 4a t + c = 0
        roots = np.roots([4 * self.a, 0.0, -4 * self.a, self.c])
        self._stationary = np.sort(roots[np.abs(roots.imag) < 1e-12].real)
        self._e_min = float(min(self._energy_1d_np(t) for t in self._stationary))

    @property
    def dim(self) -> int:
        return self.event_shape[0]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, a={self.a}, c={self.c}"

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Energy of ``y`` shaped ``(N, d)``; returns ``(N,)``."""
        y = y.to(self._a.dtype)
        return (self._a * (y * y - 1) ** 2 + self._c * y).sum(-1)

    def _energy_1d_np(self, t):
        return self.a * (t * t - 1) ** 2 + self.c * t

    # ------------------------------------------------------------------ quadrature
    def _integrate(self, beta: float, fn, epsabs: float = 0.0) -> tuple[float, float]:
        """int fn(t) exp(-beta (E1(t) - E_min)) dt over the region where it is > 0 in float64.

        ``epsabs`` must be positive for integrands that may integrate to zero (odd moments).
        """
        lo, hi = float(self._stationary[0]), float(self._stationary[-1])
        step = 1.0
        while beta * (self._energy_1d_np(lo) - self._e_min) < _CUTOFF:
            lo -= step
            step *= 2
        step = 1.0
        while beta * (self._energy_1d_np(hi) - self._e_min) < _CUTOFF:
            hi += step
            step *= 2

        def integrand(t: float) -> float:
            return fn(t) * math.exp(-beta * (self._energy_1d_np(t) - self._e_min))

        value, err = integrate.quad(
            integrand,
            lo,
            hi,
            points=[float(t) for t in self._stationary],
            epsabs=epsabs,
            epsrel=_QUAD_EPSREL,
            limit=500,
        )
        return value, err

    def log_partition_1d(self, beta: float) -> tuple[float, float]:
        """:math:`\\log Z_1(\\beta)` of one coordinate and the quadrature's error estimate.

        Parameters
        ----------
        beta : float
            Inverse temperature, > 0.

        Returns
        -------
        log_z1 : float
            :math:`\\log Z_1(\\beta)`.
        error : float
            The quadrature's absolute error estimate divided by the integral: the error of
            ``log_z1`` in log units (to first order).
        """
        check_beta(beta)
        beta = float(beta)
        value, err = self._integrate(beta, lambda t: 1.0)
        return math.log(value) - beta * self._e_min, err / value

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        """:math:`d \\log Z_1(\\beta)` in float64 (shape of ``beta``).

        Raises
        ------
        RuntimeError
            If the quadrature's error estimate exceeds 1e-10 relative.
        """
        b = as_beta_tensor(beta, dtype=torch.float64, device=self._a.device)
        out = torch.empty(b.numel(), dtype=torch.float64)
        for i, beta_i in enumerate(b.reshape(-1).tolist()):
            lz, err = self.log_partition_1d(beta_i)
            if err > _QUAD_MAX_ERR:
                raise RuntimeError(
                    f"quadrature of log Z_1 at beta={beta_i} has error estimate {err:.2e} > "
                    f"{_QUAD_MAX_ERR:.0e}"
                )
            out[i] = self.dim * lz
        return out.reshape(b.shape).to(b.device)

    def exact_moments(self, beta: Any = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of each coordinate under :math:`p_\\beta`, by quadrature.

        Returns
        -------
        mean, variance : Tensor
            float64, shape of ``beta`` (all coordinates share them).

        Examples
        --------
        >>> mean, var = DoubleWell(a=1.0, c=0.0).exact_moments(1.0)
        >>> round(float(mean), 12), round(float(var), 4)
        (0.0, 0.8327)
        """
        b = as_beta_tensor(beta, dtype=torch.float64, device=self._a.device)
        means, variances = [], []
        for beta_i in b.reshape(-1).tolist():
            z, _ = self._integrate(beta_i, lambda t: 1.0)
            # absolute tolerance relative to Z: the first moment may be exactly zero (c = 0)
            m1, _ = self._integrate(beta_i, lambda t: t, epsabs=_QUAD_EPSREL * z)
            mean = m1 / z
            m2, _ = self._integrate(
                beta_i, lambda t, mean=mean: (t - mean) ** 2, epsabs=_QUAD_EPSREL * z
            )
            means.append(mean)
            variances.append(m2 / z)
        shape = b.shape
        return (
            torch.tensor(means, dtype=torch.float64).reshape(shape).to(b.device),
            torch.tensor(variances, dtype=torch.float64).reshape(shape).to(b.device),
        )

    def density(self, y: Any, beta: float = 1.0) -> torch.Tensor:
        """Normalized density of one coordinate, :math:`e^{-\\beta E_1(y)} / Z_1(\\beta)`.

        For overlaying on histograms of samples.

        Parameters
        ----------
        y : array-like or Tensor
            Points (any shape).
        beta : float
            Inverse temperature, > 0.

        Returns
        -------
        Tensor
            float64 densities, shape of ``y``.

        Examples
        --------
        >>> import numpy as np
        >>> grid = np.linspace(-3, 3, 2001)
        >>> round(float(np.trapezoid(DoubleWell().density(grid, 2.0).numpy(), grid)), 6)
        1.0
        """
        log_z1, _ = self.log_partition_1d(beta)
        t = torch.as_tensor(y, dtype=torch.float64)
        e = self.a * (t * t - 1) ** 2 + self.c * t
        return torch.exp(-float(beta) * e - log_z1)
