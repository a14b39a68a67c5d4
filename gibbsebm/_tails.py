r"""Pareto k-hat of the tails of draws (`tail_khat`) and the generalized Pareto fit behind it
and behind the importance-weight k-hat of `gibbsebm.partition` (`gpd_fit`).

Public through `gibbsebm.diagnostics`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._convergence import (
    _flat_draws,
)

__all__ = ["gpd_fit", "tail_khat"]


# --------------------------------------------------------------------------------------------
# Pareto k-hat of the tails of the draws (Vehtari et al. 2024)
# --------------------------------------------------------------------------------------------
#: Weakly informative prior on the generalized Pareto shape (Vehtari et al. 2024, appendix C):
#: ``k`` is shrunk toward 0.5 with the weight of this many pseudo-observations ...
_GPD_PRIOR_K = 10.0
#: ... and the grid of Zhang & Stephens (2009) is scaled by the first quartile of the
#: exceedances divided by this (their ``prior_bs``).
_GPD_PRIOR_BS = 3.0


def gpd_fit(x: np.ndarray) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Generalized Pareto fit of sorted exceedances ``x`` > 0 (Zhang & Stephens 2009).

    Empirical-Bayes estimate of the shape ``k`` and scale ``sigma`` with the weakly
    informative prior on ``k`` of Vehtari et al. (2024, appendix C): ``k`` is shrunk toward
    0.5 with the weight of 10 pseudo-observations.

    Parameters
    ----------
    x : ndarray
        ``(n,)`` exceedances sorted ascending, or ``(B, n)``: ``B`` independent fits at once
        (each row sorted ascending, all positive).

    Returns
    -------
    k, sigma : float, or ndarray ``(B,)`` for 2-D ``x``
        The shape and scale estimates.

    References
    ----------
    Zhang, J. & Stephens, M. A. (2009). A new and efficient estimation method for the
    generalized Pareto distribution. *Technometrics* 51(3), 316-325.

    Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed
    importance sampling. *JMLR* 25(72).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> k, sigma = gpd_fit(np.sort(rng.pareto(2.0, 2000)))  # Lomax: k = 1/2, sigma = 1/2
    >>> round(k, 1), round(sigma, 1)
    (0.5, 0.5)
    """
    if x.ndim == 2:
        return _gpd_fit_rows(x)
    n = x.size
    m = 30 + int(math.sqrt(n))
    b = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    b /= _GPD_PRIOR_BS * x[int(n / 4 + 0.5) - 1]
    b += 1.0 / x[-1]
    k = np.log1p(-b[:, None] * x).mean(axis=1)
    len_scale = n * (np.log(-(b / k)) - k - 1.0)
    with np.errstate(over="ignore"):
        weights = 1.0 / np.exp(len_scale - len_scale[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    weights, b = weights[keep], b[keep]
    weights /= weights.sum()
    b_post = float((b * weights).sum())
    k_post = float(np.log1p(-b_post * x).mean())
    sigma = -k_post / b_post
    k_post = (n * k_post + _GPD_PRIOR_K * 0.5) / (n + _GPD_PRIOR_K)
    return k_post, sigma


def _gpd_fit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`gpd_fit` of every row of ``x`` ``(B, n)`` at once (negligible weights masked, not dropped)."""
    rows, n = x.shape
    m = 30 + int(math.sqrt(n))
    grid = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))  # (m,)
    b = grid[None, :] / (_GPD_PRIOR_BS * x[:, int(n / 4 + 0.5) - 1 : int(n / 4 + 0.5)])
    b += 1.0 / x[:, -1:]  # (B, m)
    # k(b) = mean log1p(-b x), over groups of rows so the (rows, m, n) temporary stays small.
    # numpy's log1p is not vectorised (about 15x slower than its log here), so log(1 - b x)
    # except at the grid points with |b| max x < 0.1, where it would lose the relative
    # precision of k(b) that log(-b / k) needs: there (one or two points per row) log1p
    k = np.empty((rows, m))
    group = max(1, (1 << 20) // (m * n))
    for lo in range(0, rows, group):
        t = b[lo : lo + group, :, None] * x[lo : lo + group, None, :]
        np.subtract(1.0, t, out=t)
        k[lo : lo + group] = np.log(t, out=t).mean(axis=2)
    rr, jj = np.nonzero(np.abs(b) * x[:, -1:] < 0.1)
    if rr.size:
        k[rr, jj] = np.log1p(-b[rr, jj, None] * x[rr]).mean(axis=1)
    len_scale = n * (np.log(-(b / k)) - k - 1.0)
    with np.errstate(over="ignore"):
        weights = 1.0 / np.exp(len_scale[:, None, :] - len_scale[:, :, None]).sum(axis=2)
    weights = np.where(weights >= 10 * np.finfo(float).eps, weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    b_post = (b * weights).sum(axis=1)  # (B,)
    k_post = np.log1p(-b_post[:, None] * x).mean(axis=1)
    sigma = -k_post / b_post
    k_post = (n * k_post + _GPD_PRIOR_K * 0.5) / (n + _GPD_PRIOR_K)
    return k_post, sigma


#: Fewer positive exceedances than this leave the tail's shape unidentified (PSIS's rule,
#: ``gibbsebm.partition._stats.pareto_khat``).
_MIN_TAIL = 5


def _tail_len(s: int) -> int:
    """PSIS's tail length ``M = ceil(min(0.2 S, 3 sqrt(S)))`` (Vehtari et al. 2024, section 3)."""
    return int(math.ceil(min(0.2 * s, 3.0 * math.sqrt(s))))


#: The tails are found from a strided subsample of every this many draws: the draws beyond
#: (twice the tail's share of) the subsample's extremes hold the tail, which is then selected
#: exactly among them; when they do not hold it (fewer than ``M + 1`` candidates), the whole
#: coordinate is partitioned. Same result as a full partition, several times cheaper.
_TAIL_STRIDE = 16
#: Coordinates per pass: a pass holds about this many draws (boolean masks of 32 MiB; index
#: arrays of about 4 (M + 1) per coordinate, ties excepted: see `_tails_khat`).
_TAIL_CHUNK_DRAWS = 1 << 25


def _by_column(cols: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """The entries of each column of ``cols`` ``(S, b)`` where ``mask`` holds, one array each
    (one ``flatnonzero`` and a radix sort of the column index)."""
    b = cols.shape[1]
    row, col = np.divmod(np.flatnonzero(mask), b)
    order = np.argsort(col.astype(np.int16 if b < 2**15 else np.int64), kind="stable")
    row, col = row[order], col[order]
    return np.split(cols[row, col], np.cumsum(np.bincount(col, minlength=b))[:-1])


def _extreme(beyond: np.ndarray, tie: float, m: int, smallest: bool) -> np.ndarray:
    """The ``m`` smallest (or largest) of ``beyond`` and of at least ``m`` copies of ``tie``
    (the draws equal to the threshold, all of them nearer the centre than ``beyond``)."""
    if beyond.size < m:
        return np.concatenate([beyond, np.full(m - beyond.size, tie)])
    if smallest:
        return np.partition(beyond, m - 1)[:m]
    return np.partition(beyond, beyond.size - m)[beyond.size - m :]


def _tails_khat(cols: np.ndarray) -> np.ndarray:
    """``(b,)``: the larger of the left- and right-tail k-hat of every column of ``cols``.

    ``cols`` ``(S, b)`` float32 or float64 (any strides, not modified), every column
    finite. NaN for a column whose tails are degenerate (fewer than 5 draws strictly beyond
    the cutoff on both sides).
    """
    s, b = cols.shape
    out = np.full(b, np.nan)
    mt = _tail_len(s)
    if b == 0 or mt < _MIN_TAIL or s < 2 * mt + 2:
        return out
    sub = cols[::_TAIL_STRIDE]
    q = min(2 * (mt + 1) // _TAIL_STRIDE + 2, (sub.shape[0] - 1) // 2)
    sub = np.partition(sub, [q, sub.shape[0] - q - 1], axis=0)
    lo, hi = sub[q], sub[sub.shape[0] - q - 1]
    # the draws at or beyond the thresholds, grouped by column; when ties make them many
    # more than the ~4 (M + 1) per column expected (discrete draws), only those strictly
    # beyond (the ties are known by value)
    mask = (cols <= lo) | (cols >= hi)
    strict = np.count_nonzero(mask) > 8 * (mt + 1) * b
    n_lo, n_hi = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
    if strict:
        n_lo = np.count_nonzero(cols <= lo, axis=0)
        n_hi = np.count_nonzero(cols >= hi, axis=0)
        mask = (cols < lo) | (cols > hi)
    cand = _by_column(cols, mask)
    low, high = np.empty((b, mt + 1)), np.empty((b, mt + 1))
    for i in range(b):
        v = cand[i]
        if not strict:
            n_lo[i], n_hi[i] = np.count_nonzero(v <= lo[i]), np.count_nonzero(v >= hi[i])
        if n_lo[i] < mt + 1 or n_hi[i] < mt + 1 or lo[i] >= hi[i]:  # the subsample misled
            v = np.partition(cols[:, i], [mt, s - mt - 1])
            low[i], high[i] = v[: mt + 1], v[s - mt - 1 :]
            continue
        low[i] = _extreme(v[v < lo[i]], lo[i], mt + 1, smallest=True)
        high[i] = _extreme(v[v > hi[i]], hi[i], mt + 1, smallest=False)
    low.sort(axis=1)
    high.sort(axis=1)
    # exceedances over the cutoff, sorted ascending: right tail, then the mirrored left tail
    right = high[:, 1:] - high[:, :1]
    left = low[:, mt : mt + 1] - low[:, mt - 1 :: -1]
    ex = np.concatenate([right, left], axis=0)  # (2b, M)
    k = np.full(2 * b, np.nan)
    full = ex[:, 0] > 0  # every tail draw strictly beyond the cutoff (continuous draws)
    if full.any():
        k[full] = _gpd_fit_rows(ex[full])[0]
    for i in np.nonzero(~full)[0]:  # ties with the cutoff (repeated draws): fit the rest
        e = ex[i][ex[i] > 0]
        if e.size >= _MIN_TAIL:
            k[i] = gpd_fit(np.ascontiguousarray(e))[0]
    return np.fmax(k[:b], k[b:])  # the larger of the two (NaN only when both are NaN)


def tail_khat(draws: torch.Tensor) -> torch.Tensor:
    r"""Pareto \(\hat k\) of the heavier tail of each coordinate's draws.

    For each coordinate, the draws of all chains are pooled (``S = chains * draws``); a
    generalized Pareto distribution is fitted (`gpd_fit`) to the exceedances of the
    ``M = ceil(min(0.2 S, 3 sqrt(S)))`` most extreme draws over the next one, on the right
    and on the left (negated draws), as Pareto smoothed importance sampling does for its
    weights and the ``posterior`` R package's ``pareto_khat`` for MCMC draws; the larger
    of the two shapes is returned. The moments of order \(r\) of a tail with shape
    \(k > 0\) are finite only for \(r < 1/k\): \(\hat k > 1/4\) puts the fourth moment
    (which the MCSE of the variance and sd needs) in doubt, \(\hat k > 1/2\) the variance
    (which the MCSE of the mean needs). A Gaussian tail has \(k = 0\), Student's t with
    \(\nu\) degrees of freedom \(k = 1/\nu\).

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)``.

    Returns
    -------
    Tensor
        ``event``-shaped, in the draws' floating dtype (float64 for integer draws). NaN for
        a coordinate with non-finite draws, and for one whose tails are degenerate (fewer
        than 5 draws strictly beyond the cutoff on either side: constant or nearly discrete
        draws, or fewer than 25 draws in all).

    References
    ----------
    Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed
    importance sampling. *JMLR* 25(72), section 3 and appendix C.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import tail_khat
    >>> g = torch.Generator().manual_seed(0)
    >>> gauss = torch.randn(4, 1000, generator=g)
    >>> cauchy = torch.distributions.Cauchy(0.0, 1.0).sample((4, 1000))
    >>> bool(tail_khat(gauss) < 0.25), bool(tail_khat(cauchy) > 0.7)
    (True, True)
    """
    flat, event, dtype = _flat_draws(draws, "tail_khat")
    c, n, nb = flat.shape
    out = np.full(nb, np.nan)
    if c * n > 0 and nb > 0:
        # (S, B): a view of float32 / float64 CPU draws (the tails are selected in their
        # dtype and fitted in float64), a float64 copy of anything else
        cols = flat.reshape(c * n, nb).cpu()
        if cols.dtype not in (torch.float32, torch.float64):
            cols = cols.to(torch.float64)
        cols = cols.numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(cols.sum(axis=0))  # NaN and infinities propagate ...
        for i in np.nonzero(~finite)[0]:  # ... and so may an overflow: look closer
            finite[i] = np.isfinite(cols[:, i]).all()
        step = max(1, _TAIL_CHUNK_DRAWS // (c * n))
        for lo in range(0, nb, step):
            part, ok = cols[:, lo : lo + step], finite[lo : lo + step]
            if ok.all():
                out[lo : lo + step] = _tails_khat(part)
            elif ok.any():
                out[lo : lo + step][ok] = _tails_khat(part[:, ok])
    return torch.from_numpy(out).to(flat.device).reshape(event).to(dtype)
