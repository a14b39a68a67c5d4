r"""The numerical estimators behind `gibbsebm.diagnostics`: rank-normalized split R-hat, bulk
and tail ESS, MCSE and nested R-hat, in torch on the draws' device (the summary table and E-BFMI
are in `gibbsebm._run_stats`, the tails' Pareto k-hat in `gibbsebm._tails`).

Import them from `gibbsebm.diagnostics` (their public home, documented there); this module
holds the arithmetic so that the checks and the warning (`gibbsebm.diagnostics.check`) read
apart from it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "rhat",
    "ess",
    "mcse",
    "nested_rhat",
    "check_stats",
]

#: numpy's ``np.finfo(float).resolution``: arviz calls a coordinate constant below this range.
_CONSTANT_RANGE = 1e-15

#: Blom's (1958) offset for the normal scores of ranks.
_BLOM_C = 3.0 / 8.0


# --------------------------------------------------------------------------------------------
# shapes and building blocks (all on x shaped (B, C, N): coordinates, chains, draws; float64)
# --------------------------------------------------------------------------------------------
#: On the CPU the estimators run over chunks of coordinates holding about this many draws
#: (8 MiB of float64 each): every coordinate is independent, and small chunks keep the
#: temporaries (sorts, ranks, normal scores, centred copies) in the cache and on the heap
#: instead of a fresh ``mmap`` (and its page faults) per full-size array. Measured at
#: 4096 chains x 50 draws x 100 coordinates, one thread: see ``benchmarks/diagnostics_benchmark.py``.
_CPU_CHUNK_DRAWS = 1 << 20


def _flat_draws(draws: torch.Tensor, what: str) -> tuple[torch.Tensor, tuple, torch.dtype]:
    """``(C, N, B)`` view of the detached draws (no copy, no cast), the event shape, the dtype."""
    if not isinstance(draws, torch.Tensor):
        draws = torch.as_tensor(draws)
    if draws.dim() < 2:
        raise ValueError(
            f"{what}: draws must be shaped (chains, draws, *event), got {tuple(draws.shape)}"
        )
    c, n = draws.shape[0], draws.shape[1]
    event = tuple(draws.shape[2:])
    out_dtype = draws.dtype if draws.dtype.is_floating_point else torch.float64
    return draws.detach().reshape(c, n, -1), event, out_dtype


def _coord_slices(flat: torch.Tensor) -> list[slice]:
    """Chunks of coordinates of ``flat`` ``(C, N, B)``: one chunk off the CPU."""
    c, n, b = flat.shape
    if flat.device.type != "cpu" or b == 0:
        return [slice(0, b)]
    step = max(1, _CPU_CHUNK_DRAWS // max(1, c * n))
    return [slice(i, min(b, i + step)) for i in range(0, b, step)]


def _chunk_x(flat: torch.Tensor, sl: slice) -> torch.Tensor:
    """Coordinates ``sl`` of ``flat`` ``(C, N, B)`` as a contiguous float64 ``(b, C, N)``."""
    return flat[:, :, sl].permute(2, 0, 1).to(torch.float64, memory_format=torch.contiguous_format)


def _by_chunks(flat: torch.Tensor, fn) -> list[torch.Tensor]:
    """``fn(x)`` (a tuple of ``(b,)`` tensors) over the coordinate chunks, concatenated."""
    parts = [fn(_chunk_x(flat, sl)) for sl in _coord_slices(flat)]
    return [torch.cat(col) for col in zip(*parts)]


def _finish(v: torch.Tensor, event: tuple, dtype: torch.dtype) -> torch.Tensor:
    return v.reshape(event).to(dtype)


def _nonfinite(x: torch.Tensor) -> torch.Tensor:
    """``(B,)``: coordinates with a NaN or infinite draw.

    From the rows' largest and smallest values (NaN propagates through both, ``+inf`` shows
    in the largest, ``-inf`` in the smallest): two reductions instead of a boolean copy.
    """
    flat = x.flatten(1)
    if flat.shape[1] == 0:
        return torch.zeros(flat.shape[0], dtype=torch.bool, device=x.device)
    return ~(torch.isfinite(flat.amax(1)) & torch.isfinite(flat.amin(1)))


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
    r"""``(S,)``: \(\Phi^{-1}((r - 3/8) / (S + 1/4))\) for the ranks ``r = 1..S`` (no ties).

    The last result is kept (one tuple, swapped whole): the chunks of one call share it.
    """
    key = (s, like.device)
    cached = _SCORES_CACHE[0]
    if cached is None or cached[0] != key:
        r = torch.arange(1, s + 1, dtype=torch.float64, device=like.device)
        cached = (key, torch.special.ndtri((r - _BLOM_C) / (s - 2 * _BLOM_C + 1)))
        _SCORES_CACHE[0] = cached
    return cached[1]


_SCORES_CACHE: list = [None]


def _tie_scores(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Flat positions (in the sorted layout) of the tied draws and their normal scores.

    ``None`` without ties (continuous draws): then every row's scores are the
    :func:`_normal_scores`. Ties are found sparsely: the ``K`` positions ``p`` with
    ``v[p] == v[p - 1]`` form runs of consecutive positions; a run ``a..b`` is the tie group
    ``a - 1..b``, whose members all get the rank ``(a - 1 + b) / 2 + 1``. Work :math:`O(K)`
    beyond one comparison pass (the folded draws of R-hat have one tie per coordinate, the two
    draws around the median).
    """
    b, s = values.shape
    eq = (values[:, 1:] == values[:, :-1]).reshape(-1)
    if not bool(eq.any()):
        return None
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
    return torch.cat([key - 1, key]), zt[run].repeat(2)


def _z_sorted(values: torch.Tensor) -> torch.Tensor:
    """Normal scores of the average ranks of sorted rows (ties averaged, as ``scipy.stats.rankdata``).

    Without ties (continuous draws) the scores are the same for every row and computed once
    (:func:`_tie_scores` fixes the tied positions).
    """
    b, s = values.shape
    base = _normal_scores(s, values)
    ties = _tie_scores(values)
    if ties is None:
        return base.expand(b, s)
    z = base.expand(b, s).clone().reshape(-1)
    z[ties[0]] = ties[1]
    return z.reshape(b, s)


def _z_scale(x: torch.Tensor, sort: tuple | None = None) -> torch.Tensor:
    """Rank-normalise over all chains and draws of each coordinate: Phi^-1((r - 3/8) / (S + 1/4)).

    ``sort``: ``(values, order)`` of ``x``'s flattened rows when already computed. The
    untied scores are scattered from one shared ``(S,)`` row; the tied draws (few) are then
    overwritten where the order sends them.
    """
    b = x.shape[0]
    flat = x.reshape(b, -1)
    values, order = _sort_rows(flat.contiguous()) if sort is None else sort
    s = values.shape[1]
    z = torch.empty_like(values).scatter_(1, order, _normal_scores(s, values).expand(b, s))
    ties = _tie_scores(values)
    if ties is not None:
        pos, zt = ties
        row_start = torch.div(pos, s, rounding_mode="floor") * s
        z.view(-1)[row_start + order.reshape(-1)[pos]] = zt
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


def _var(x: torch.Tensor) -> torch.Tensor:
    """Sample variance (``ddof=1``) along the last dimension, two-pass as ``numpy.var``.

    ``torch.var`` on the CPU runs a per-row Welford update that is not vectorised across
    rows: on 4096 chains x 50 draws it took 11x the time of this mean, subtract, square and
    sum, which also rounds like NumPy (and arviz).
    """
    d = x - x.mean(-1, keepdim=True)
    return d.square_().sum(-1) / (x.shape[-1] - 1)


def _plain_rhat(x: torch.Tensor) -> torch.Tensor:
    r"""Gelman-Rubin \(\sqrt{(B/W + N - 1) / N}\) with \(B = N\,\mathrm{var}(\bar x_c)\)."""
    n = x.shape[-1]
    chain_mean = x.mean(-1)
    within = _var(x).mean(-1)
    between = n * _var(chain_mean)
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
        var_plus = var_plus + _var(x.mean(-1))
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
    flat, event, dtype = _flat_draws(draws, "rhat")
    if flat.shape[0] < 2 or _too_short(flat.shape[1]):
        return _nan(event, dtype, flat.device)
    (out,) = _by_chunks(flat, lambda x: (_rhat_x(x),))
    return _finish(out, event, dtype)


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
    ind = torch.empty((2 * b,) + split.shape[1:], dtype=torch.float64, device=x.device)
    for i, q in enumerate(qs):  # the indicators written as 0.0/1.0 in place
        torch.le(split, q[:, None, None], out=ind[i * b : (i + 1) * b])
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
    flat, event, dtype = _flat_draws(draws, "ess")
    if _too_short(flat.shape[1]):
        return _nan(event, dtype, flat.device)
    (out,) = _by_chunks(flat, lambda x: (_masked(x, _ess_x(x, kind)),))
    return _finish(out, event, dtype)


def _masked(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` ``(B,)`` with NaN for the coordinates of ``x`` that hold a non-finite draw."""
    return torch.where(_nonfinite(x), torch.full_like(out, math.nan), out)


def _ess_x(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bulk":
        return _ess_raw(_z_scale(_split(x)))
    if kind == "tail":
        return _ess_tail_x(x)
    return _ess_raw(_split(x))


def _check_x(x: torch.Tensor, with_rhat: bool, k: int | None) -> tuple[torch.Tensor, ...]:
    """Bulk ESS, tail ESS (and split R-hat, nested R-hat) of ``x`` ``(B, C, N)``, one sort.

    The sort of the split draws gives the normal scores of the bulk ESS and R-hat and, with
    an even number of draws (the split draws are then the same multiset), the tail
    quantiles; every value is the one `ess`, `rhat` and `nested_rhat` compute alone.
    """
    b, c, n = x.shape
    split = _split(x)
    sort = _sort_rows(split.reshape(b, -1).contiguous())
    z = _z_scale(split, sort)
    out = [
        _masked(x, _ess_raw(z)),
        _masked(x, _ess_tail_x(x, sort[0] if n % 2 == 0 else None)),
    ]
    if with_rhat:
        out.append(_rhat_x(x, sort, z))
    if k is not None:
        out.append(_nested_rhat_x(x, k))
    return tuple(out)


def check_stats(
    draws: torch.Tensor, rhat: bool = True, num_superchains: int | None = None
) -> dict[str, torch.Tensor]:
    """Bulk and tail ESS, split R-hat and nested R-hat of the draws in one pass.

    The values are those of `ess` (``kind="bulk"``, ``"tail"``), `rhat` and `nested_rhat`;
    they share one float64 copy and one sort of each coordinate's draws, and on the CPU they
    run over small chunks of coordinates. This is what `gibbsebm.diagnostics.check` (the
    post-run warning) uses.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)`` with at least 4 draws per chain.
    rhat : bool
        Whether to compute split R-hat too (only with at least 2 chains).
    num_superchains : int, optional
        Also compute nested R-hat with this many superchains.

    Returns
    -------
    dict of str to Tensor
        ``ess_bulk``, ``ess_tail`` and, when asked, ``rhat`` and ``nested_rhat``, each
        ``event``-shaped.

    Raises
    ------
    ValueError
        With fewer than 4 draws per chain, or a ``num_superchains`` that `nested_rhat`
        refuses.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import check_stats, ess
    >>> d = torch.randn(4, 100, 3, generator=torch.Generator().manual_seed(0))
    >>> out = check_stats(d)
    >>> sorted(out), bool(torch.equal(out["ess_tail"], ess(d, kind="tail")))
    (['ess_bulk', 'ess_tail', 'rhat'], True)
    """
    flat, event, dtype = _flat_draws(draws, "check_stats")
    c, n = flat.shape[:2]
    if _too_short(n):
        raise ValueError(f"check_stats needs at least 4 draws per chain, got {n}")
    with_rhat = rhat and c >= 2
    k = None if num_superchains is None else _check_superchains(c, num_superchains)
    cols = _by_chunks(flat, lambda x: _check_x(x, with_rhat, k))
    names = ["ess_bulk", "ess_tail"] + ["rhat"] * with_rhat + ["nested_rhat"] * (k is not None)
    return {name: _finish(v, event, dtype) for name, v in zip(names, cols)}


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
    flat, event, dtype = _flat_draws(draws, "mcse")
    if _too_short(flat.shape[1]):
        return _nan(event, dtype, flat.device)

    def one(x: torch.Tensor) -> tuple[torch.Tensor]:
        sd = torch.sqrt(_var(x.reshape(x.shape[0], -1)))
        return (_masked(x, sd / torch.sqrt(_ess_raw(_split(x)))),)

    (out,) = _by_chunks(flat, one)
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
    flat, event, dtype = _flat_draws(draws, "nested_rhat")
    c, n = flat.shape[:2]
    k = _check_superchains(c, num_superchains)
    (out,) = _by_chunks(flat, lambda x: (_nested_rhat_x(x, k),))
    return _finish(out, event, dtype)


def _check_superchains(c: int, num_superchains: int) -> int:
    k = int(num_superchains)
    if k < 2 or c % k:
        raise ValueError(
            f"num_superchains must be >= 2 and divide the number of chains ({c}), got {num_superchains!r}"
        )
    return k


def _nested_rhat_x(x: torch.Tensor, k: int) -> torch.Tensor:
    """Nested R-hat of ``x`` ``(B, C, N)`` with ``k`` superchains (NaN where non-finite)."""
    b, c, n = x.shape
    m = c // k
    xs = x.reshape(b, k, m, n)
    chain_mean = xs.mean(-1)  # (B, K, M)
    super_mean = chain_mean.mean(-1)  # (B, K)
    b_nu = _var(super_mean)
    b_tilde = _var(chain_mean) if m > 1 else torch.zeros_like(super_mean)
    w_tilde = _var(xs).mean(-1) if n > 1 else torch.zeros_like(super_mean)
    w_nu = (b_tilde + w_tilde).mean(-1)
    return _masked(x, torch.sqrt(1.0 + b_nu / w_nu))
