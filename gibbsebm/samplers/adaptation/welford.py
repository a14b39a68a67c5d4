"""Running mean and (co)variance pooled across chains (Welford 1962; Chan et al. 1979).

Each update receives a batch ``(C, d)`` (one position per chain) and merges its mean and
sum of squared deviations into the running totals with the pairwise formula of Chan, Golub &
LeVeque (1979):

.. math::

    n = n_a + n_b, \\quad \\delta = \\bar x_b - \\bar x_a, \\quad
    \\bar x = \\bar x_a + \\delta\\, n_b / n, \\quad
    M_2 = M_{2,a} + M_{2,b} + \\delta \\delta^\\top n_a n_b / n,

which is numerically stable and needs no Python loop over chains. Accumulation runs in
float64. :func:`welford` ``final`` applies Stan's regularisation of the estimate towards
:math:`10^{-3} I` with weight :math:`5 / (n + 5)` (Stan's ``diag_e``/``dense_e`` adaptation).

References
----------
.. [1] B. P. Welford, "Note on a method for calculating corrected sums of squares and
   products", Technometrics 4, 1962.
.. [2] T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise algorithm
   for computing sample variances", 1979.
.. [3] Stan Reference Manual, "HMC algorithm parameters: Euclidean metric".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["WelfordState", "welford"]


class WelfordState(NamedTuple):
    """Running ``mean`` ``(d,)``, ``m2`` ``(d,)`` or ``(d, d)`` and ``count`` (Python int)."""

    mean: torch.Tensor
    m2: torch.Tensor
    count: int


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def welford(dense: bool = False) -> tuple[Callable, Callable, Callable]:
    """Pooled Welford estimator as an ``(init, update, final)`` triple.

    Parameters
    ----------
    dense : bool
        Estimate the full covariance ``(d, d)`` instead of the variances ``(d,)``.

    Returns
    -------
    init : callable
        ``init(d: int, like: Tensor) -> WelfordState``.
    update : callable
        ``update(state, x: Tensor (C, d)) -> WelfordState``.
    final : callable
        ``final(state, regularize=True) -> Tensor``: the unbiased (co)variance estimate,
        shrunk as Stan does when ``regularize`` (in the float64 accumulation dtype).

    Examples
    --------
    >>> import torch
    >>> init, update, final = welford()
    >>> s = update(init(1, torch.zeros(1)), torch.tensor([[1.0], [3.0]]))
    >>> final(s, regularize=False).tolist()
    [2.0]
    """

    def init(d: int, like: torch.Tensor) -> WelfordState:
        dt = _acc_dtype(like.device)
        mean = torch.zeros(d, dtype=dt, device=like.device)
        m2 = torch.zeros((d, d) if dense else (d,), dtype=dt, device=like.device)
        return WelfordState(mean, m2, 0)

    def update(state: WelfordState, x: torch.Tensor) -> WelfordState:
        x = x.reshape(x.shape[0], -1).to(state.mean.dtype)
        nb = x.shape[0]
        mean_b = x.mean(0)
        xc = x - mean_b
        m2_b = xc.T @ xc if dense else (xc * xc).sum(0)
        na = state.count
        n = na + nb
        delta = mean_b - state.mean
        mean = state.mean + delta * (nb / n)
        corr = torch.outer(delta, delta) if dense else delta * delta
        m2 = state.m2 + m2_b + corr * (na * nb / n)
        return WelfordState(mean, m2, n)

    def final(state: WelfordState, regularize: bool = True) -> torch.Tensor:
        n = state.count
        if n < 2:
            raise ValueError(f"a (co)variance needs at least 2 draws, got {n}")
        cov = state.m2 / (n - 1)
        if regularize:
            # Stan: (n / (n + 5)) * cov + 1e-3 * (5 / (n + 5)) * I
            shrink = 5.0 / (n + 5.0)
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device) if dense else 1.0
            cov = (n / (n + 5.0)) * cov + 1e-3 * shrink * eye
        return cov

    return init, update, final
