r"""MCMC convergence diagnostics in torch, on the draws' device: R-hat, ESS, MCSE, nested R-hat.

Every function takes draws shaped ``(chains, draws, *event)`` (the arviz order, as
``Samples.draws``) and returns one value per coordinate, shaped ``event``, computed for all
coordinates at once (no Python loop over coordinates or chains, no host synchronisation) on
the draws' device. Arithmetic is in float64; results come back in the draws' floating dtype
(float64 for integer or boolean draws).

The estimators are those of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), as
implemented by Stan and arviz, and agree with `arviz.rhat` (``method="rank"``),
`arviz.ess` (``method="bulk"``, ``"tail"``, ``"mean"``) and `arviz.mcse`
(``method="mean"``) to rounding (the tests check \(10^{-6}\) relative).

Edge cases (the same as arviz unless stated):

* fewer than 4 draws per chain: NaN (too few to split the chains and estimate
  autocorrelations);
* R-hat with a single chain: NaN (arviz's rule; split R-hat of one chain only compares its two
  halves, run several chains);
* a coordinate containing NaN or \(\pm\infty\) in any draw: NaN everywhere (arviz ranks
  infinities and returns finite bulk values; we refuse to summarise non-finite draws);
* a coordinate that is constant over all draws of all chains: ESS equals the number of draws
  (nothing to estimate), R-hat is NaN (0/0: no variance to compare). Chains that are each
  constant at *different* values give R-hat \(+\infty\) (no within-chain variance, some
  between-chain variance): they have not mixed. `check` reports the second case as an
  R-hat problem and the first as none (but a chain that never moves is reported as stuck).

Besides the estimators, this module defines `SamplingWarning` and `check`, the
Stan-style checks that `gibbsebm.sample` runs after every run (``warn=True``) and that
`gibbsebm.Samples.diagnose` returns as data.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B., Bürkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved \(\widehat{R}\) for assessing convergence of MCMC.
*Bayesian Analysis* 16(2), 667-718.

Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4), 473-483.

Margossian, C. C., Hoffman, M. D., Sountsov, P., Riou-Durand, L., Vehtari, A., Gelman, A. (2023).
Nested \(\widehat{R}\): assessing the convergence of Markov chain Monte Carlo when running
many short chains. *Bayesian Analysis* (advance publication), arXiv:2110.13017.

Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte
Carlo. arXiv:1604.00695 (E-BFMI).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "rhat",
    "ess",
    "mcse",
    "nested_rhat",
    "ebfmi",
    "summary_stats",
    "SamplingWarning",
    "Problem",
    "check",
    "format_problems",
    "warn_problems",
    "RHAT_THRESHOLD",
    "default_superchains",
    "ESS_PER_CHAIN",
    "EBFMI_THRESHOLD",
]

#: R-hat above this signals chains that disagree (Vehtari et al. 2021, section 4).
RHAT_THRESHOLD = 1.01
#: Bulk and tail ESS should reach 100 per chain, counted for at most 4 chains (Vehtari et al.
#: 2021 recommend 100 per chain with Stan's 4 chains; see `check` for many chains).
ESS_PER_CHAIN = 100
#: E-BFMI below this signals poor momentum resampling (Betancourt 2016; Stan's threshold).
EBFMI_THRESHOLD = 0.3
#: Parallel tempering: a chain whose replicas completed fewer round trips (coldest ->
#: hottest -> coldest) than this during the draws never brought a configuration from the hot
#: end back to the target, so tempering did nothing for its draws.
PT_MIN_ROUND_TRIPS = 1
#: Parallel tempering: a pair of neighbouring temperatures whose mean swap acceptance is below
#: this cuts the ladder in two (the default ladder is spaced for about 0.25, Vousden et al.
#: 2016; 0.01 is 25 times less, about one exchange per 100 proposals).
PT_MIN_SWAP_RATE = 0.01
#: numpy's ``np.finfo(float).resolution``: arviz calls a coordinate constant below this range.
_CONSTANT_RANGE = 1e-15
#: Many short chains (`default_superchains`): at least this many chains ...
NESTED_MIN_CHAINS = 64
#: ... and fewer draws per chain than this switch the default R-hat check to nested R-hat.
NESTED_MAX_DRAWS = 200
#: Chains per superchain: the divisor of the number of chains in [8, 32] closest to 16.
NESTED_CHAINS_PER_SUPERCHAIN = 16
NESTED_CHAINS_PER_SUPERCHAIN_RANGE = (8, 32)
#: Blom's (1958) offset for the normal scores of ranks.
_BLOM_C = 3.0 / 8.0


class SamplingWarning(UserWarning):
    """The draws of a sampling run failed a convergence check (R-hat, ESS, divergences, ...).

    Issued once per `gibbsebm.sample` call (``warn=True``), listing every problem with
    its figure; `gibbsebm.Samples.diagnose` returns the same problems as data.
    """


# --------------------------------------------------------------------------------------------
# shapes and building blocks (all on x shaped (B, C, N): coordinates, chains, draws; float64)
# --------------------------------------------------------------------------------------------
def _prepare(draws: torch.Tensor, what: str) -> tuple[torch.Tensor, tuple, torch.dtype]:
    if not isinstance(draws, torch.Tensor):
        draws = torch.as_tensor(draws)
    if draws.dim() < 2:
        raise ValueError(
            f"{what}: draws must be shaped (chains, draws, *event), got {tuple(draws.shape)}"
        )
    c, n = draws.shape[0], draws.shape[1]
    event = tuple(draws.shape[2:])
    out_dtype = draws.dtype if draws.dtype.is_floating_point else torch.float64
    x = draws.detach().to(torch.float64).reshape(c, n, -1).permute(2, 0, 1).contiguous()
    return x, event, out_dtype


def _finish(v: torch.Tensor, event: tuple, dtype: torch.dtype) -> torch.Tensor:
    return v.reshape(event).to(dtype)


def _nonfinite(x: torch.Tensor) -> torch.Tensor:
    """``(B,)``: coordinates with a NaN or infinite draw."""
    return ~torch.isfinite(x).flatten(1).all(1)


def _split(x: torch.Tensor) -> torch.Tensor:
    """Split every chain in two halves (dropping the middle draw when odd): ``(B, 2C, N // 2)``.

    With an even number of draws this is a view: the halves of chain ``c`` become chains
    ``2c`` and ``2c + 1`` (every estimator here is invariant to the order of the chains), and
    the flattened rows of the split draws are those of ``x``, so one sort serves both.
    """
    b, c, n = x.shape
    half = n // 2
    if n % 2 == 0 and x.is_contiguous():
        return x.view(b, 2 * c, half)
    return torch.cat([x[..., :half], x[..., n - half :]], dim=-2)


def _np_ok(t: torch.Tensor) -> bool:
    """Whether ``t`` can be handed to NumPy without a copy (a contiguous CPU float64 tensor)."""
    return t.device.type == "cpu" and t.dtype == torch.float64 and t.is_contiguous()


def _sort_rows(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, order)`` of every row of ``flat`` ``(B, S)`` sorted ascending.

    On the CPU the order comes from NumPy's ``argsort`` (its SIMD quicksort: about 3x
    faster than ``torch.sort`` on 100 rows of 10^5 float64 draws, 0.33 s against 1.06 s of CPU
    time) and the values from one ``gather``; elsewhere ``torch.sort``. The order among
    equal values is irrelevant: tied draws get their average rank.
    """
    if _np_ok(flat):
        order = torch.from_numpy(np.argsort(flat.numpy(), axis=-1))
        return flat.gather(1, order), order
    values, order = torch.sort(flat, dim=-1)
    return values, order


def _sorted_values(flat: torch.Tensor) -> torch.Tensor:
    """The rows of ``flat`` sorted ascending (NumPy's SIMD sort on the CPU: ~10x torch.sort)."""
    if _np_ok(flat):
        return torch.from_numpy(np.sort(flat.numpy(), axis=-1))
    return torch.sort(flat, dim=-1).values


def _normal_scores(s: int, like: torch.Tensor) -> torch.Tensor:
    r"""``(S,)``: \(\Phi^{-1}((r - 3/8) / (S + 1/4))\) for the ranks ``r = 1..S`` (no ties)."""
    r = torch.arange(1, s + 1, dtype=torch.float64, device=like.device)
    return torch.special.ndtri((r - _BLOM_C) / (s - 2 * _BLOM_C + 1))


def _z_sorted(values: torch.Tensor) -> torch.Tensor:
    """Normal scores of the average ranks of sorted rows (ties averaged, as ``scipy.stats.rankdata``).

    Without ties (continuous draws) the scores are the same for every row and computed once.
    Ties are fixed sparsely: the ``K`` positions ``p`` with ``v[p] == v[p - 1]`` form runs of
    consecutive positions; a run ``a..b`` is the tie group ``a - 1..b``, whose members all get
    the rank ``(a - 1 + b) / 2 + 1``. Work :math:`O(K)` beyond one comparison pass (the folded
    draws of R-hat have one tie per coordinate, the two draws around the median).
    """
    b, s = values.shape
    base = _normal_scores(s, values)
    eq = (values[:, 1:] == values[:, :-1]).reshape(-1)
    if not bool(eq.any()):
        return base.expand(b, s)
    k = torch.nonzero(eq).squeeze(1)
    row = torch.div(k, s - 1, rounding_mode="floor")
    key = k + row + 1  # flat position (row * S + p) of the second member of each tied pair
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = (
        key[1:] != key[:-1] + 1
    )  # rows never chain: a row's last and the next's p=1 differ by 2
    last = torch.ones_like(first)
    last[:-1] = first[1:]
    run = torch.cumsum(first.to(torch.int64), 0) - 1
    lo = key[first] - 1
    hi = key[last]
    rank = (lo + hi).to(torch.float64) / 2.0 - (row[first] * s).to(torch.float64) + 1.0
    zt = torch.special.ndtri((rank - _BLOM_C) / (s - 2 * _BLOM_C + 1))
    z = base.expand(b, s).clone().reshape(-1)
    z[torch.cat([key - 1, key])] = zt[run].repeat(2)
    return z.reshape(b, s)


def _z_scale(x: torch.Tensor, sort: tuple | None = None) -> torch.Tensor:
    """Rank-normalise over all chains and draws of each coordinate: Phi^-1((r - 3/8) / (S + 1/4)).

    ``sort``: ``(values, order)`` of ``x``'s flattened rows when already computed.
    """
    b = x.shape[0]
    flat = x.reshape(b, -1)
    values, order = _sort_rows(flat.contiguous()) if sort is None else sort
    z = torch.empty_like(values).scatter_(1, order, _z_sorted(values))
    return z.reshape(x.shape)


def _median_sorted(sorted_flat: torch.Tensor) -> torch.Tensor:
    s = sorted_flat.shape[-1]
    return 0.5 * (sorted_flat[:, (s - 1) // 2] + sorted_flat[:, s // 2])


def _quantile_index(s: int, p: float) -> tuple[int, float]:
    """``k, gamma`` of the type-7 quantile: ``(1 - gamma) x_(k-1) + gamma x_(k)`` (0-based order stats)."""
    aleph = s * p + (1.0 - p)
    k = min(max(int(math.floor(aleph)), 1), s - 1) if s > 1 else 1
    return k, min(max(aleph - k, 0.0), 1.0)


def _quantile_sorted(sorted_flat: torch.Tensor, p: float) -> torch.Tensor:
    """Type-7 quantile (R's default; ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)``)."""
    s = sorted_flat.shape[-1]
    k, gamma = _quantile_index(s, p)
    lo = sorted_flat[:, k - 1]
    hi = sorted_flat[:, min(k, s - 1)]
    return (1.0 - gamma) * lo + gamma * hi


def _quantile_select(flat: torch.Tensor, p: float) -> torch.Tensor:
    """:func:`_quantile_sorted` without a full sort: the two order statistics by ``topk``."""
    s = flat.shape[-1]
    k, gamma = _quantile_index(s, p)
    if s < 2:
        return flat[:, 0]
    if k + 1 <= s - k + 1:  # order stats 0..k hold x_(k-1), x_(k) as their two largest
        two = (
            torch.topk(flat, k + 1, dim=-1, largest=False, sorted=False)
            .values.topk(2, dim=-1)
            .values
        )
        lo, hi = two[:, 1], two[:, 0]
    else:  # order stats k-1..s-1 hold them as their two smallest
        part = torch.topk(flat, s - k + 1, dim=-1, largest=True, sorted=False).values
        two = part.topk(2, dim=-1, largest=False).values
        lo, hi = two[:, 0], two[:, 1]
    return (1.0 - gamma) * lo + gamma * hi


def _quantiles_select(flat: torch.Tensor, ps: tuple[float, ...]) -> list[torch.Tensor]:
    """Type-7 quantiles of every row without a full sort.

    On the CPU one ``numpy.partition`` (introselect) places all the order statistics needed;
    elsewhere :func:`_quantile_select` (``topk``) per probability.
    """
    s = flat.shape[-1]
    if s < 2 or not _np_ok(flat):
        return [_quantile_select(flat, p) for p in ps]
    idx = [_quantile_index(s, p) for p in ps]
    kth = sorted({j for k, _ in idx for j in (k - 1, k)})
    part = torch.from_numpy(np.partition(flat.numpy(), kth, axis=-1))
    return [(1.0 - g) * part[:, k - 1] + g * part[:, k] for k, g in idx]


def _plain_rhat(x: torch.Tensor) -> torch.Tensor:
    r"""Gelman-Rubin \(\sqrt{(B/W + N - 1) / N}\) with \(B = N\,\mathrm{var}(\bar x_c)\)."""
    n = x.shape[-1]
    chain_mean = x.mean(-1)
    within = x.var(-1, correction=1).mean(-1)
    between = n * chain_mean.var(-1, correction=1)
    return torch.sqrt((between / within + n - 1) / n)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (an FFT length every backend handles fast)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


#: Chains of at most this many draws get their autocovariances from a Gram matrix (one batched
#: matrix product, :math:`O(N^2)` per chain) instead of FFTs (:math:`O(N \log N)` with a large
#: per-transform overhead): measured on one CPU thread, 100 coordinates x 2048 chains, the
#: Gram route took 0.12 s against 0.82 s at N = 50 and 0.28 s against 1.54 s at N = 100; at
#: N = 500 it was slower.
_GRAM_MAX_DRAWS = 128
#: Elements of the Gram matrices ``(B, N, N)`` built at once (64 MiB of float64).
_GRAM_CHUNK = 1 << 23


def _mean_autocov(x: torch.Tensor) -> torch.Tensor:
    r"""Autocovariance at every lag averaged over the chains (biased, divided by N): ``(B, N)``.

    Short chains: \(\frac{1}{CN}\sum_t G_{t, t+k}\) summed along the diagonals of the
    upper triangle of the Gram matrix \(G = \sum_c x_c x_c^\top\) of the centred chains.
    Long chains: by FFT, the chains' power spectra averaged before the one inverse transform
    per coordinate (the inverse FFT is linear). Both agree with arviz's per-chain FFT to
    rounding.
    """
    b, c, n = x.shape
    xc = x - x.mean(-1, keepdim=True)
    if n <= _GRAM_MAX_DRAWS:
        step = max(1, _GRAM_CHUNK // (n * n))
        parts = []
        for i in range(0, b, step):
            blk = xc[i : i + step]
            g = torch.bmm(blk.transpose(1, 2), blk).triu_()  # (b', N, N)
            # row-major, G[t, t + k] sits at t (N + 1) + k: pad each matrix by N and read it
            # as (N, N + 1); the wrapped entries come from the zeroed lower triangle
            flat = torch.nn.functional.pad(g.reshape(-1, n * n), (0, n))
            parts.append(flat.view(-1, n, n + 1).sum(1)[:, :n])
        return torch.cat(parts) / (c * n)
    m = _fast_len(2 * n)
    f = torch.fft.rfft(xc, n=m, dim=-1)
    power = torch.view_as_real(f).square().sum(-1).mean(-2)  # mean over chains of |f|^2
    acov = torch.fft.irfft(power, n=m, dim=-1)[..., :n]
    return acov / n


def _ess_raw(x: torch.Tensor) -> torch.Tensor:
    r"""Multi-chain ESS of ``x`` ``(B, C, N)`` (Stan / arviz ``_ess``), ``(B,)``.

    \(\hat\rho_t = 1 - (W - \overline{\mathrm{acov}}_t) / \widehat{\mathrm{var}}^+\), summed
    in pairs \(P_k = \hat\rho_{2k} + \hat\rho_{2k+1}\) while they are positive (Geyer's
    initial positive sequence), made non-increasing (initial monotone sequence), and
    \(\hat\tau = -1 + 2 \sum_{k<K} P_k + \hat\rho_{2K}\), \(\mathrm{ESS} = CN/\hat\tau\).
    """
    b, c, n = x.shape
    size = c * n
    flat = x.reshape(b, -1)
    constant = (flat.amax(-1) - flat.amin(-1)) < _CONSTANT_RANGE
    mean_acov = _mean_autocov(x)  # (B, N)
    mean_var = mean_acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + x.mean(-1).var(-1, correction=1)
    rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
    rho = torch.cat([torch.ones_like(rho[:, :1]), rho[:, 1:]], dim=-1)
    # pairs P_k, k = 0..kmax; arviz computes pair k >= 1 while 2k - 1 < N - 3 and P_{k-1} > 0
    kmax = (n - 3) // 2
    npairs = max(kmax, 0) + 1
    pairs = rho[:, : 2 * npairs].reshape(b, npairs, 2).sum(-1)
    if kmax >= 1:
        prefix_positive = torch.cumprod((pairs[:, :kmax] > 0).to(torch.int64), dim=-1)
        k_last = prefix_positive.sum(-1)  # K: the last pair computed
    else:
        k_last = torch.zeros(b, dtype=torch.int64, device=x.device)
    monotone = torch.cummin(pairs, dim=-1).values
    idx = torch.arange(npairs, device=x.device)
    body = torch.where(idx[None, :] < k_last[:, None], monotone, torch.zeros_like(monotone)).sum(-1)
    rho_even = rho.gather(1, (2 * k_last)[:, None])[:, 0]
    p_last = pairs.gather(1, k_last[:, None])[:, 0]
    last = torch.where((p_last >= 0) | (rho_even > 0), rho_even, torch.zeros_like(rho_even))
    tau = -1.0 + 2.0 * body + last
    tau = torch.clamp(tau, min=1.0 / math.log10(size))
    out = size / tau
    out = torch.where(constant, torch.full_like(out, float(size)), out)
    return torch.where(torch.isfinite(rho).all(-1) | constant, out, torch.full_like(out, math.nan))


def _too_short(n: int) -> bool:
    return n < 4


def _nan(event: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.full(event, math.nan, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# public estimators
# --------------------------------------------------------------------------------------------
def _rhat_x(
    x: torch.Tensor, sort: tuple | None = None, z_bulk: torch.Tensor | None = None
) -> torch.Tensor:
    """Split R-hat of ``x`` ``(B, C, N)``; ``sort`` of the split draws' flattened rows and
    their normal scores ``z_bulk`` when already computed."""
    split = _split(x)
    b = split.shape[0]
    if sort is None:
        sort = _sort_rows(split.reshape(b, -1).contiguous())
    bulk = _plain_rhat(_z_scale(split, sort) if z_bulk is None else z_bulk)
    # folded draws |x - median| in the sorted order of x fall and then rise (two runs), so a
    # stable sort (NumPy's timsort, which merges runs) orders them in about linear time; the
    # result composed with x's order is the sort of the folded draws
    values, order = sort
    folded_sorted_x = (values - _median_sorted(values)[:, None]).abs()
    if _np_ok(folded_sorted_x):
        o2 = torch.from_numpy(np.argsort(folded_sorted_x.numpy(), axis=-1, kind="stable"))
    else:
        o2 = torch.sort(folded_sorted_x, dim=-1, stable=True).indices
    fold = (folded_sorted_x.gather(1, o2), order.gather(1, o2))
    tail = _plain_rhat(_z_scale(split, fold))
    out = torch.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail), as arviz
    return torch.where(_nonfinite(x), torch.full_like(out, math.nan), out)


def rhat(draws: torch.Tensor) -> torch.Tensor:
    r"""Rank-normalised split \(\widehat{R}\): the larger of the bulk and the folded (tail) one.

    Each chain is split in half (``2C`` chains of ``N // 2`` draws); the draws of each
    coordinate are replaced by normal scores of their ranks over all chains,
    \(z = \Phi^{-1}((r - 3/8) / (S + 1/4))\) (\(S\) draws in all, ties averaged), and

    $$
    \widehat{R} = \sqrt{\frac{\frac{N-1}{N} W + \frac{1}{N} B}{W}},\quad
    W = \frac{1}{C}\sum_c s_c^2,\quad B = \frac{N}{C-1}\sum_c (\bar z_c - \bar z)^2 .
    $$

    The folded version does the same with \(|x - \mathrm{median}(x)|\). Equal to
    `arviz.rhat` with ``method="rank"``.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)``.

    Returns
    -------
    Tensor
        ``event``-shaped; NaN with one chain, fewer than 4 draws or non-finite draws, NaN for a
        coordinate constant over all draws, \(+\infty\) for chains constant at different
        values (see the module notes).

    References
    ----------
    Vehtari et al. (2021), section 4.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import rhat
    >>> g = torch.Generator().manual_seed(0)
    >>> r = rhat(torch.randn(4, 200, 3, generator=g, dtype=torch.float64))
    >>> r.shape, bool((r < 1.02).all())
    (torch.Size([3]), True)
    """
    x, event, dtype = _prepare(draws, "rhat")
    if x.shape[1] < 2 or _too_short(x.shape[2]):
        return _nan(event, dtype, x.device)
    return _finish(_rhat_x(x), event, dtype)


def _ess_tail_x(x: torch.Tensor, sorted_full: torch.Tensor | None = None) -> torch.Tensor:
    """The smaller ESS of the indicators ``x <= q_0.05`` and ``x <= q_0.95``, both in one
    batched :func:`_ess_raw` call."""
    b = x.shape[0]
    ps = (0.05, 0.95)
    if sorted_full is None:
        qs = _quantiles_select(x.reshape(b, -1), ps)
    else:
        qs = [_quantile_sorted(sorted_full, p) for p in ps]
    split = _split(x)
    ind = torch.cat([split <= q[:, None, None] for q in qs]).to(torch.float64)
    out = _ess_raw(ind)
    return torch.minimum(out[:b], out[b:])


def ess(draws: torch.Tensor, kind: str = "bulk") -> torch.Tensor:
    r"""Effective sample size: ``"bulk"`` (rank-normalised), ``"tail"`` or ``"mean"``.

    All three split the chains in half and estimate

    $$
    \mathrm{ESS} = \frac{C N}{\hat\tau},\qquad
    \hat\tau = -1 + 2\sum_{k=0}^{K-1} P_k + \hat\rho_{2K},\qquad
    \hat\rho_t = 1 - \frac{W - \frac{1}{C}\sum_c \hat\gamma_{c,t}}{\widehat{\mathrm{var}}^+},
    $$

    where \(\hat\gamma_{c,t}\) are the FFT autocovariances of chain \(c\),
    \(\widehat{\mathrm{var}}^+ = \frac{N-1}{N} W + \frac{B}{N}\), and the pair sums
    \(P_k = \hat\rho_{2k} + \hat\rho_{2k+1}\) are taken while positive (Geyer's initial
    positive sequence) and made non-increasing (initial monotone sequence);
    \(\hat\tau \ge 1/\log_{10}(CN)\). ``"mean"`` applies this to the draws, ``"bulk"`` to
    their rank-normalised z-scores, ``"tail"`` to the indicators \(x \le q_{0.05}\) and
    \(x \le q_{0.95}\) (type-7 quantiles over all draws), taking the smaller.
    Equal to `arviz.ess` with ``method=kind``.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)``.
    kind : {"bulk", "tail", "mean"}
        Which ESS.

    Returns
    -------
    Tensor
        ``event``-shaped; NaN with fewer than 4 draws per chain or non-finite draws; the
        number of draws for a constant coordinate.

    References
    ----------
    Vehtari et al. (2021), section 3; Geyer (1992).

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import ess
    >>> g = torch.Generator().manual_seed(0)
    >>> e = ess(torch.randn(4, 500, generator=g, dtype=torch.float64), kind="bulk")
    >>> bool(1000 < e < 3000)
    True
    """
    if kind not in ("bulk", "tail", "mean"):
        raise ValueError(f"kind must be 'bulk', 'tail' or 'mean', got {kind!r}")
    x, event, dtype = _prepare(draws, "ess")
    if _too_short(x.shape[2]):
        return _nan(event, dtype, x.device)
    if kind == "bulk":
        out = _ess_raw(_z_scale(_split(x)))
    elif kind == "tail":
        out = _ess_tail_x(x)
    else:
        out = _ess_raw(_split(x))
    out = torch.where(_nonfinite(x), torch.full_like(out, math.nan), out)
    return _finish(out, event, dtype)


def mcse(draws: torch.Tensor) -> torch.Tensor:
    r"""Monte Carlo standard error of the mean: \(\mathrm{sd}(x) / \sqrt{\mathrm{ESS}_\mathrm{mean}}\).

    \(\mathrm{sd}\) over all chains and draws (``ddof=1``) and the split-chain ESS of the
    draws (`ess` with ``kind="mean"``); equal to `arviz.mcse` with
    ``method="mean"``.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)``.

    Returns
    -------
    Tensor
        ``event``-shaped; NaN where `ess` is NaN.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import mcse
    >>> g = torch.Generator().manual_seed(0)
    >>> m = mcse(torch.randn(4, 2500, generator=g, dtype=torch.float64))
    >>> bool(0.005 < m < 0.02)  # about 1 / sqrt(10000)
    True
    """
    x, event, dtype = _prepare(draws, "mcse")
    if _too_short(x.shape[2]):
        return _nan(event, dtype, x.device)
    sd = x.reshape(x.shape[0], -1).std(-1, correction=1)
    out = sd / torch.sqrt(_ess_raw(_split(x)))
    out = torch.where(_nonfinite(x), torch.full_like(out, math.nan), out)
    return _finish(out, event, dtype)


def nested_rhat(draws: torch.Tensor, num_superchains: int) -> torch.Tensor:
    r"""Nested \(\widehat{R}\) for many short chains grouped in superchains (Margossian et al. 2023).

    The ``C`` chains form ``K = num_superchains`` superchains of ``M = C / K`` consecutive
    chains (chains ``k M, ..., (k+1) M - 1``), which should each start from one common point
    (drawn independently per superchain). With chain means \(\bar x_{\cdot mk}\),
    superchain means \(\bar x_{\cdot\cdot k}\) and the overall mean
    \(\bar x_{\cdot\cdot\cdot}\),

    $$
    \widehat{B}_\nu = \frac{1}{K-1}\sum_k (\bar x_{\cdot\cdot k} - \bar x_{\cdot\cdot\cdot})^2,
    \quad
    \widehat{W}_\nu = \frac{1}{K}\sum_k \big(\tilde B_k + \tilde W_k\big),
    $$

    $$
    \tilde B_k = \frac{1}{M-1}\sum_m (\bar x_{\cdot mk} - \bar x_{\cdot\cdot k})^2,
    \quad
    \tilde W_k = \frac{1}{M}\sum_m \frac{1}{N-1}\sum_n (x_{nmk} - \bar x_{\cdot mk})^2,
    $$

    and \(\mathfrak{n}\widehat{R} = \sqrt{1 + \widehat{B}_\nu / \widehat{W}_\nu}\)
    (\(\tilde B_k = 0\) when \(M = 1\), \(\tilde W_k = 0\) when \(N = 1\)).
    Unlike `rhat` it is neither split nor rank-normalised (as in the paper), and it
    stays informative with very short chains (even one draw each), where split R-hat and ESS
    cannot be estimated. Values near 1 (the paper discusses thresholds \(1 + \delta\)
    with \(\delta\) about 0.01 to 0.05 depending on ``M``) mean the superchains agree.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)`` with ``chains`` a multiple of ``num_superchains``.
    num_superchains : int
        ``K >= 2``.

    Returns
    -------
    Tensor
        ``event``-shaped; NaN for non-finite draws or a constant coordinate (0/0),
        \(+\infty\) if every superchain is constant but they differ.

    Raises
    ------
    ValueError
        If ``num_superchains < 2`` or does not divide the number of chains.

    References
    ----------
    Margossian et al. (2023), definition 2.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import nested_rhat
    >>> g = torch.Generator().manual_seed(0)
    >>> r = nested_rhat(torch.randn(64, 10, 2, generator=g, dtype=torch.float64), 8)
    >>> r.shape, bool((r < 1.05).all())
    (torch.Size([2]), True)
    """
    x, event, dtype = _prepare(draws, "nested_rhat")
    b, c, n = x.shape
    k = int(num_superchains)
    if k < 2 or c % k:
        raise ValueError(
            f"num_superchains must be >= 2 and divide the number of chains ({c}), got {num_superchains!r}"
        )
    m = c // k
    xs = x.reshape(b, k, m, n)
    chain_mean = xs.mean(-1)  # (B, K, M)
    super_mean = chain_mean.mean(-1)  # (B, K)
    b_nu = super_mean.var(-1, correction=1)
    b_tilde = chain_mean.var(-1, correction=1) if m > 1 else torch.zeros_like(super_mean)
    w_tilde = xs.var(-1, correction=1).mean(-1) if n > 1 else torch.zeros_like(super_mean)
    w_nu = (b_tilde + w_tilde).mean(-1)
    out = torch.sqrt(1.0 + b_nu / w_nu)
    out = torch.where(_nonfinite(x), torch.full_like(out, math.nan), out)
    return _finish(out, event, dtype)


def ebfmi(hamiltonian: torch.Tensor) -> torch.Tensor:
    r"""Energy Bayesian fraction of missing information, per chain.

    $$
    \mathrm{E\text{-}BFMI}_c = \frac{\frac{1}{N-1}\sum_{n=2}^{N} (H_{c,n} - H_{c,n-1})^2}
    {\frac{1}{N-1}\sum_{n=1}^{N} (H_{c,n} - \bar H_c)^2}
    $$

    where \(H\) is the *Hamiltonian* (potential plus kinetic energy) of each transition,
    as `arviz.bfmi`. The potential energy \(E(y)\) of the draws alone is not that
    quantity; a kernel that does not record its Hamiltonian cannot be checked.

    Parameters
    ----------
    hamiltonian : Tensor
        ``(chains, draws, *batch)``.

    Returns
    -------
    Tensor
        ``(chains, *batch)``; values below 0.3 signal poor exploration of the energy levels.

    References
    ----------
    Betancourt (2016).

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import ebfmi
    >>> g = torch.Generator().manual_seed(0)
    >>> bool((ebfmi(torch.randn(2, 1000, generator=g)) > 1.5).all())  # i.i.d.: about 2
    True
    """
    h = hamiltonian.detach().to(torch.float64)
    dtype = hamiltonian.dtype if hamiltonian.dtype.is_floating_point else torch.float64
    num = h.diff(dim=1).pow(2).mean(1)
    den = h.var(1, correction=1)
    return (num / den).to(dtype)


def summary_stats(draws: torch.Tensor, hdi_prob: float = 0.94) -> dict[str, torch.Tensor]:
    """The columns of `arviz.summary` (``stat_focus="mean"``), computed in torch.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)``.
    hdi_prob : float
        Probability of the highest-density interval (arviz's default 0.94).

    Returns
    -------
    dict of str to Tensor
        ``mean``, ``sd``, ``hdi_low``, ``hdi_high``, ``mcse_mean``, ``mcse_sd``, ``ess_bulk``,
        ``ess_tail``, ``r_hat``, each ``event``-shaped, as `arviz.summary` computes them
        (R-hat as `rhat`, whose folding uses the median of the split chains).

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import summary_stats
    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(summary_stats(torch.randn(4, 100, 2, generator=g)))[:3]
    ['ess_bulk', 'ess_tail', 'hdi_high']
    """
    if not 0.0 < hdi_prob <= 1.0:
        raise ValueError(f"hdi_prob must be in (0, 1], got {hdi_prob!r}")
    x, event, dtype = _prepare(draws, "summary_stats")
    b, c, n = x.shape
    flat = x.reshape(b, -1)
    s = flat.shape[-1]
    short = _too_short(n)
    if not short:
        # one sort of the split draws serves the HDI and tail quantiles too when N is even
        # (the split draws are then the same multiset, in the same memory)
        split = _split(x)
        sort_split = _sort_rows(split.reshape(b, -1).contiguous())
        sorted_full = sort_split[0] if n % 2 == 0 else _sorted_values(flat)
    else:
        sorted_full = _sorted_values(flat)
    out: dict[str, torch.Tensor] = {}
    out["mean"] = flat.mean(-1)
    out["sd"] = flat.std(-1, correction=1)
    inc = int(math.floor(hdi_prob * s))
    if s - inc >= 1:
        width = sorted_full[:, inc:] - sorted_full[:, : s - inc]
        i = torch.argmin(width, dim=-1, keepdim=True)
        out["hdi_low"] = sorted_full.gather(1, i)[:, 0]
        out["hdi_high"] = sorted_full.gather(1, i + inc)[:, 0]
    else:
        out["hdi_low"] = out["hdi_high"] = torch.full(
            (b,), math.nan, dtype=torch.float64, device=x.device
        )
    names = ("mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
    if short:
        for k in names:
            out[k] = torch.full((b,), math.nan, dtype=torch.float64, device=x.device)
    else:
        ess_mean = _ess_raw(split)
        out["mcse_mean"] = torch.sqrt(out["sd"] ** 2 / ess_mean)
        c2 = (x - out["mean"][:, None, None]) ** 2
        evar = c2.reshape(b, -1).mean(-1)
        varvar = ((c2**2).reshape(b, -1).mean(-1) - evar**2) / _ess_raw(_split(c2))
        out["mcse_sd"] = torch.sqrt(varvar / evar / 4)
        z_bulk = _z_scale(split, sort_split)
        out["ess_bulk"] = _ess_raw(z_bulk)
        out["ess_tail"] = _ess_tail_x(x, sorted_full)
        out["r_hat"] = (
            _rhat_x(x, sort_split, z_bulk)
            if c >= 2
            else torch.full((b,), math.nan, dtype=torch.float64, device=x.device)
        )
    bad = _nonfinite(x)
    for k in names:
        out[k] = torch.where(bad, torch.full_like(out[k], math.nan), out[k])
    return {k: _finish(v, event, dtype) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# checks (Stan / Pyro style) and the warning
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """One failed check of a sampling run.

    Attributes
    ----------
    check : str
        ``"rhat"``, ``"nested_rhat"``, ``"ess_bulk"``, ``"ess_tail"``, ``"divergences"``,
        ``"tree_depth"``, ``"ebfmi"``, ``"nonfinite_proposals"``, ``"stuck_chains"``,
        ``"nonfinite_draws"``, ``"pt_round_trips"`` or ``"pt_swap_rate"``.
    figure : float
        The measured value (the worst R-hat, the smallest ESS, a count, ...).
    threshold : float
        The value it was compared with.
    message : str
        One line saying what is wrong and what to do.
    coordinates : tuple of tuple of int
        Offending coordinates (indices into ``(*batch, *event)``), at most 10, worst first.
    chains : tuple of int
        Offending chains (at most 10), where the check is per chain.
    count : int
        How many coordinates, chains or transitions failed.
    """

    check: str
    figure: float
    threshold: float
    message: str
    coordinates: tuple = ()
    chains: tuple = ()
    count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        d = dataclasses.asdict(self)
        d["coordinates"] = [list(c) for c in self.coordinates]
        d["chains"] = list(self.chains)
        return d


_MAX_LISTED = 10


def _worst(values: torch.Tensor, bad: torch.Tensor, largest: bool) -> tuple[tuple, int]:
    """Indices (into ``values.shape``) of at most 10 flagged entries, worst first; and the count."""
    flat_bad = bad.reshape(-1)
    count = int(flat_bad.sum())
    if count == 0:
        return (), 0
    key = values.reshape(-1).to(torch.float64).nan_to_num(nan=math.inf if largest else -math.inf)
    key = torch.where(flat_bad, key, torch.full_like(key, -math.inf if largest else math.inf))
    order = torch.argsort(key, descending=largest)[: min(count, _MAX_LISTED)].tolist()
    shape = tuple(values.shape)
    coords = []
    for i in order:
        idx = []
        for d in reversed(shape):
            idx.append(i % d)
            i //= d
        coords.append(tuple(reversed(idx)))
    return tuple(coords), count


def default_superchains(num_chains: int, num_draws: int) -> int | None:
    r"""The number of superchains of the default check, or ``None`` for split R-hat.

    Split R-hat compares each chain's variance with the pooled variance, so a correct sampler
    whose chains are shorter than a few autocorrelation times (AR(1) chains with
    \(\rho = 0.7\), 1024 chains of 50 draws: split R-hat 1.10) fails the 1.01 rule although
    the chains are stationary. Nested R-hat (`nested_rhat`, Margossian et al. 2023) compares
    superchain means instead; at stationarity
    \(\mathfrak{n}\widehat R^2 - 1 \approx 1 / (M\,\mathrm{ESS}_{\text{chain}})\) for
    superchains of ``M`` chains, so the same 1.01 threshold (`RHAT_THRESHOLD`) fires once
    \(M\,\mathrm{ESS}_{\text{chain}} \lesssim 50\): it asks the superchains, not each chain,
    to have forgotten their starts.

    Chains stuck in different modes (each chain in a mode at random) give
    \(\mathfrak{n}\widehat R^2 - 1 \approx 1/M\) or more, whatever their length. The ratio
    of the two is the per-chain ESS, and ``M`` sets both: ``M = 16`` flags stuck chains at
    \(\mathfrak{n}\widehat R \approx 1.03\) and passes correct chains down to a per-chain
    ESS of about 6 (measured: 512 chains of 50 draws stuck in two modes at random gave
    1.013 and 1.008 with ``M = 32`` on two seeds, one missed; ``M = 16``: see
    ``tests/test_sampling_warnings.py``).

    Rule: with ``num_chains >= NESTED_MIN_CHAINS`` (64) and ``num_draws < NESTED_MAX_DRAWS``
    (200), superchains of ``M`` consecutive chains, ``M`` the divisor of ``num_chains`` in
    ``NESTED_CHAINS_PER_SUPERCHAIN_RANGE`` (8 to 32) closest to 16 (the smaller on a tie), and
    ``K = num_chains / M`` superchains. Otherwise (few chains, long chains, or no such
    divisor, e.g. a prime number of chains) ``None``: split R-hat. Chains need not share a
    start within a superchain (the library starts each chain on its own): the check then
    compares groups of independently started chains.

    Parameters
    ----------
    num_chains, num_draws : int
        Shape of the run.

    Returns
    -------
    int or None
        ``K``.

    Examples
    --------
    >>> default_superchains(1024, 50), default_superchains(100, 50), default_superchains(8, 50)
    (64, 5, None)
    """
    if num_chains < NESTED_MIN_CHAINS or num_draws >= NESTED_MAX_DRAWS:
        return None
    lo, hi = NESTED_CHAINS_PER_SUPERCHAIN_RANGE
    fits = [m for m in range(lo, hi + 1) if num_chains % m == 0]
    if not fits:
        return None
    m = min(fits, key=lambda m: (abs(m - NESTED_CHAINS_PER_SUPERCHAIN), m))
    return num_chains // m


def _ess_threshold(num_chains: int) -> float:
    return float(ESS_PER_CHAIN * min(num_chains, 4))


def check(
    draws: torch.Tensor,
    stats: Mapping[str, torch.Tensor] | None = None,
    *,
    method: str = "",
    max_tree_depth: int | None = None,
    num_superchains: int | None = None,
) -> list[Problem]:
    r"""Stan-style checks of a run's draws and per-draw statistics; the failed ones as data.

    Checks, each reported only when it fails:

    * ``rhat``: the largest rank-normalised split R-hat (`rhat`) over coordinates
      exceeds 1.01 (\(+\infty\) included: chains constant at different values). With
      ``num_superchains`` it is replaced by ``nested_rhat`` (`nested_rhat`, same
      threshold), the check meant for many short chains.
    * ``ess_bulk``, ``ess_tail``: the smallest bulk / tail ESS is below
      \(100 \times \min(C, 4)\). Stan asks 100 per chain for its 4 chains; with many
      short chains 100 per chain is out of reach and beside the point (the ESS sets the
      Monte Carlo error, \(\mathrm{sd}/\sqrt{\mathrm{ESS}}\), sd/20 at 400), so the
      threshold stops growing at 400 in total.
    * ``divergences``: transitions with ``is_divergent`` (hmc, nuts, mala: energy error above
      the kernel's threshold), any; proposals with a non-finite log-density, which the
      kernels also mark divergent, are counted by ``nonfinite_proposals`` instead.
    * ``tree_depth``: transitions whose recorded ``tree_depth`` reached ``max_tree_depth``
      (only for kernels that record ``tree_depth``; the Pyro-backed ``nuts`` does not yet).
    * ``ebfmi``: chains with E-BFMI below 0.3 (`ebfmi`), only for kernels that record
      their ``hamiltonian``: the stat ``energy`` is the potential \(E(y)\) of the draw,
      not the Hamiltonian, and E-BFMI computed from it would be a different quantity; no
      kernel of the library records it yet, so this check is skipped for them.
    * ``nonfinite_proposals``: transitions whose proposal had a non-finite log-density
      (``is_nonfinite``; rejected and counted, any).
    * ``stuck_chains``: chains that accepted no move during the recorded draws
      (``is_accepted`` never true; without that stat, chains whose draws never change).
    * ``nonfinite_draws``: draws containing NaN or infinities.
    * ``pt_round_trips`` (parallel tempering, from the stat ``round_trips``): chains whose
      replicas completed fewer than :data:`PT_MIN_ROUND_TRIPS` round trips between the
      coldest and the hottest temperature during the draws.
    * ``pt_swap_rate`` (from the stat ``swap_rate``): neighbouring temperatures whose mean
      swap acceptance, pooled over chains, is below :data:`PT_MIN_SWAP_RATE`.

    R-hat and ESS need 4 draws per chain (R-hat 2 chains); with fewer they are not checked.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *coords)``.
    stats : mapping of str to Tensor, optional
        Per-draw statistics ``(chains, draws, ...)`` as in ``Samples.stats``.
    method : str
        Sampler name, for the messages.
    max_tree_depth : int, optional
        For the ``tree_depth`` check (default 10, NUTS's).
    num_superchains : int, optional
        Use nested R-hat with this many superchains of consecutive chains instead of R-hat.

    Returns
    -------
    list of Problem
        Empty when every check passes.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import check
    >>> g = torch.Generator().manual_seed(0)
    >>> check(torch.randn(4, 500, 2, generator=g))
    []
    >>> bad = torch.randn(4, 500, generator=g) + torch.tensor([0.0, 0.0, 0.0, 8.0])[:, None]
    >>> [p.check for p in check(bad)]
    ['rhat', 'ess_bulk', 'ess_tail']
    """
    stats = dict(stats or {})
    problems: list[Problem] = []
    c, n = int(draws.shape[0]), int(draws.shape[1])
    if c == 0 or n == 0:
        return problems
    who = f"{method}: " if method else ""
    finite = torch.isfinite(draws.detach())
    coord_shape = tuple(draws.shape[2:])
    bad_coord = ~finite.reshape(c, n, -1).all(1).all(0)
    if bool(bad_coord.any()):
        coords, count = _worst(
            bad_coord.reshape(coord_shape).to(torch.float64), bad_coord.reshape(coord_shape), True
        )
        nbad = int((~finite).sum())
        problems.append(
            Problem(
                "nonfinite_draws",
                float(nbad),
                0.0,
                f"{who}{nbad} draw values are NaN or infinite (in {count} coordinates); the "
                "target or the sampler broke down",
                coords,
                (),
                count,
            )
        )
    if num_superchains is not None and num_superchains > 0:
        r = nested_rhat(draws, num_superchains)
        name, label = "nested_rhat", f"nested R-hat ({num_superchains} superchains)"
    elif c >= 2 and n >= 4:
        r = rhat(draws)
        name, label = "rhat", "rank-normalized split R-hat"
    else:
        r = None
    if r is not None:
        bad = r > RHAT_THRESHOLD  # NaN (constant coordinate) is not flagged; +inf is
        if bool(bad.any()):
            coords, count = _worst(r, bad, True)
            worst = float(r.reshape(-1)[bad.reshape(-1)].max())
            problems.append(
                Problem(
                    name,
                    worst,
                    RHAT_THRESHOLD,
                    f"{who}{label} is {worst:.3g} > {RHAT_THRESHOLD} for {count} coordinates: "
                    + (
                        "the chains have not mixed; with tempering this often means chains "
                        "that stayed in the modes they started in, or a mode some chains found "
                        "and others did not (lower beta_min, add temperatures, run longer)"
                        if method == "pt"
                        else "the chains have not mixed (run longer, reparametrize, or use "
                        "tempering)"
                    ),
                    coords,
                    (),
                    count,
                )
            )
    if n >= 4:
        threshold = _ess_threshold(c)
        for kind in ("bulk", "tail"):
            e = ess(draws, kind=kind)
            bad = e < threshold
            if bool(bad.any()):
                coords, count = _worst(e, bad, False)
                worst = float(e.reshape(-1)[bad.reshape(-1)].min())
                problems.append(
                    Problem(
                        f"ess_{kind}",
                        worst,
                        threshold,
                        f"{who}{kind} ESS is {worst:.3g} < {threshold:g} for {count} coordinates: "
                        f"{'means and medians' if kind == 'bulk' else 'the 5% and 95% quantiles'} "
                        "are unreliable (run more or longer chains)",
                        coords,
                        (),
                        count,
                    )
                )
    div = stats.get("is_divergent")
    nonfinite = stats.get("is_nonfinite")
    if div is not None and nonfinite is not None and nonfinite.shape == div.shape:
        div = div.bool() & ~nonfinite.bool()  # non-finite proposals are counted on their own
    _count_check(
        problems,
        {"is_divergent": div},
        "is_divergent",
        "divergences",
        who,
        "transitions diverged (energy error above the threshold): the step size is too "
        "large for the target's curvature (lower it, raise target_accept, reparametrize)",
    )
    depth = stats.get("tree_depth")
    if depth is not None:
        max_depth = 10 if max_tree_depth is None else int(max_tree_depth)
        _count_check(
            problems,
            {"tree_depth": depth >= max_depth},
            "tree_depth",
            "tree_depth",
            who,
            f"transitions hit the maximum tree depth {max_depth}: trajectories were cut "
            "short (raise max_tree_depth or reparametrize)",
        )
    ham = stats.get("hamiltonian")
    if ham is not None and n >= 2:
        e = ebfmi(ham)
        bad = e < EBFMI_THRESHOLD
        if bool(bad.any()):
            coords, count = _worst(e, bad, False)
            worst = float(e.reshape(-1)[bad.reshape(-1)].min())
            problems.append(
                Problem(
                    "ebfmi",
                    worst,
                    EBFMI_THRESHOLD,
                    f"{who}E-BFMI is {worst:.3g} < {EBFMI_THRESHOLD} in {count} chains: momentum "
                    "resampling explores the energy levels poorly (reparametrize)",
                    (),
                    tuple(int(cc[0]) for cc in coords),
                    count,
                )
            )
    _count_check(
        problems,
        stats,
        "is_nonfinite",
        "nonfinite_proposals",
        who,
        "proposals had a non-finite log-density and were rejected (expected at the edge "
        "of a bounded support; otherwise the step is too large or the energy overflows)",
    )
    acc = stats.get("is_accepted")
    if acc is not None:
        moved = acc.detach().bool().reshape(c, n, -1).any(1)  # (C, batch)
        how = "accepted no move"
    else:
        d0 = draws.detach()
        moved = (d0 != d0[:, :1]).reshape(c, -1).any(-1, keepdim=True)  # (C, 1)
        how = "never moved"
    stuck = ~moved
    if bool(stuck.any()):
        nstuck = int(stuck.sum())
        chains = tuple(torch.nonzero(stuck.any(-1)).reshape(-1)[:_MAX_LISTED].tolist())
        problems.append(
            Problem(
                "stuck_chains",
                float(nstuck),
                0.0,
                f"{who}{nstuck} of {stuck.numel()} chains {how} in {n} draws: they are stuck "
                "(lower the step size or check the initial positions)",
                (),
                chains,
                nstuck,
            )
        )
    _pt_checks(problems, stats, who, n)
    return problems


def _pt_checks(problems: list, stats: Mapping, who: str, n: int) -> None:
    """The round-trip and swap-rate checks of parallel tempering (see `check`)."""
    trips, rate = stats.get("round_trips"), stats.get("swap_rate")
    if trips is None or rate is None or trips.dim() != 2 or rate.dim() != 3:
        return
    per_chain = trips.detach()[:, -1].to(torch.float64)  # cumulative: the last draw's count
    few = per_chain < PT_MIN_ROUND_TRIPS
    pooled = rate.detach()[:, -1].to(torch.float64).nanmean(0)  # (R - 1,)
    pairs = "; swap rates of the pairs of temperatures: " + ", ".join(
        f"{float(v):.2f}" for v in pooled
    )
    if bool(few.any()):
        k = int(few.sum())
        problems.append(
            Problem(
                "pt_round_trips",
                float(per_chain.min()),
                float(PT_MIN_ROUND_TRIPS),
                f"{who}{k} of {few.numel()} chains made no round trip between the coldest and "
                f"the hottest temperature in {n} draws (round trips per chain: median "
                f"{float(per_chain.median()):g}){pairs}: tempering did not carry "
                "configurations between the target and the hot end, so those chains may sit "
                "in the modes they started in (run longer, add temperatures or lower beta_min)",
                (),
                tuple(torch.nonzero(few).reshape(-1)[:_MAX_LISTED].tolist()),
                k,
            )
        )
    low = pooled < PT_MIN_SWAP_RATE
    if bool(low.any()):
        idx = torch.nonzero(low).reshape(-1).tolist()
        problems.append(
            Problem(
                "pt_swap_rate",
                float(pooled[low].min()),
                PT_MIN_SWAP_RATE,
                f"{who}swaps between neighbouring temperatures (pairs {idx[:_MAX_LISTED]}) were "
                f"accepted with probability < {PT_MIN_SWAP_RATE}{pairs}: the ladder is cut "
                "there (add temperatures between them)",
                (),
                (),
                len(idx),
            )
        )


def _count_check(problems: list, stats: Mapping, key: str, name: str, who: str, what: str) -> None:
    t = stats.get(key)
    if t is None or t.numel() == 0:
        return
    t = t.detach().bool()
    count = int(t.sum())
    if count == 0:
        return
    per_chain = t.reshape(t.shape[0], -1).any(-1)
    chains = tuple(torch.nonzero(per_chain).reshape(-1)[:_MAX_LISTED].tolist())
    problems.append(
        Problem(
            name,
            float(count),
            0.0,
            f"{who}{count} of {t.numel()} {what}",
            (),
            chains,
            count,
        )
    )


def format_problems(problems: list[Problem]) -> str:
    """The lines of a `SamplingWarning`: one per problem (what the CLI prints).

    Examples
    --------
    >>> print(format_problems([Problem("divergences", 3.0, 0.0, "hmc: 3 of 100 transitions diverged")]))
    sampling diagnostics found 1 problem:
      - hmc: 3 of 100 transitions diverged
    """
    k = len(problems)
    head = f"sampling diagnostics found {k} problem{'s' if k != 1 else ''}:"
    return "\n".join([head] + [f"  - {p.message}" for p in problems])


def warn_problems(problems: list[Problem], stacklevel: int = 2) -> None:
    """Issue one `SamplingWarning` listing ``problems`` (nothing when empty)."""
    if problems:
        warnings.warn(format_problems(problems), SamplingWarning, stacklevel=stacklevel + 1)
