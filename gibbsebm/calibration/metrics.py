"""Calibration metrics for K-class probabilities, with bootstrap confidence intervals.

Every metric takes probabilities ``probs`` shaped ``(N, K)`` and integer labels ``(N,)``,
computes in float64 on the input's device, and returns a :class:`MetricResult` with the
value, a seeded percentile-bootstrap confidence interval and, for the binned metrics, the
per-bin counts, mean confidences and accuracies (:class:`BinStats`).

Conventions (chosen to match the papers; see ``docs/calibration.md`` for where other
libraries differ):

* top-label ECE/MCE/RMSCE with equal-width bins that are **right-closed**,
  :math:`B_m = ((m-1)/M, m/M]` (Guo et al. 2017), the first bin also holding 0;
  bin edges are computed as ``m / M`` so that a confidence written as the decimal ``m/M``
  lands exactly on an edge and belongs to the bin on its left;
* empty bins contribute nothing and have ``accuracy = confidence = nan`` in :class:`BinStats`;
* classwise ECE as in Kull et al. (2019); Brier score in the multiclass sum form (range
  [0, 2]); NLL as a mean in nats; accuracy of the arg-max (ties go to the lowest index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .. import _validation
from ._inputs import check_probabilities, make_generator

__all__ = [
    "BinStats",
    "MetricResult",
    "expected_calibration_error",
    "classwise_calibration_error",
    "brier_score",
    "negative_log_likelihood",
    "accuracy",
    "DEFAULT_BOOTSTRAP",
]

#: Default number of bootstrap resamples. With B = 1000 the Monte Carlo error of a 95%
#: percentile endpoint is a few percent of the interval width (Efron & Tibshirani 1993, sec. 19.3).
DEFAULT_BOOTSTRAP = 1000
# Largest number of (replicate, sample) entries materialised at once in the bootstrap.
_CHUNK_ELEMS = 2**22

Binning = Literal["uniform", "quantile"]
Norm = Literal["l1", "l2", "max"]


@dataclass(frozen=True)
class BinStats:
    """Per-bin statistics of a binned calibration error.

    Arrays are shaped ``(M,)`` for the top-label error and ``(K, M)`` for the classwise error
    (one row per class).

    Attributes
    ----------
    edges : ndarray
        Bin edges, ``(M + 1,)`` or ``(K, M + 1)``; bin m is ``(edges[m], edges[m + 1]]``.
    counts : ndarray
        Number of samples in each bin (int).
    confidence : ndarray
        Mean predicted probability in each bin (``nan`` for an empty bin).
    accuracy : ndarray
        Observed frequency of the event in each bin (``nan`` for an empty bin).
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    def to_dict(self) -> dict:
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "confidence": _nan_to_none(self.confidence),
            "accuracy": _nan_to_none(self.accuracy),
        }


def _nan_to_none(a: np.ndarray) -> list:
    return np.where(np.isnan(a), None, a).tolist()


@dataclass(frozen=True)
class MetricResult:
    """A metric value with its bootstrap confidence interval.

    Attributes
    ----------
    name : str
        Metric name (e.g. ``"ece"``, ``"brier"``).
    value : float
        The metric on the data given.
    ci_low, ci_high : float
        Percentile-bootstrap confidence interval at level ``ci_level``.
    stderr : float
        Bootstrap standard deviation of the metric.
    ci_level : float
        Confidence level of the interval.
    n : int
        Number of samples.
    n_bootstrap : int
        Number of bootstrap resamples (0: no interval, ``ci_low = ci_high = nan``).
    ci_method : str
        ``"percentile"``: the interval describes the sampling variability of the estimator.
        Binned calibration errors are biased upward (a perfectly calibrated model still
        scores of order :math:`\\sqrt{M/N}` in ECE), so their interval need not contain the
        population value; compare with ``consistency``.
    bias : float
        Bootstrap estimate of the bias, mean of the replicates minus ``value``.
    consistency : dict
        Binned errors only: the same error for labels drawn from the predicted
        probabilities themselves ("consistency resampling", Bröcker & Smith 2007), i.e. what
        a perfectly calibrated model with these confidences would score: ``mean``, ``q95``
        and the Monte Carlo ``p_value`` of the observed value under perfect calibration.
    seed : int
        Seed of the bootstrap's ``torch.Generator``.
    bins : BinStats or None
        Per-bin statistics for binned metrics; ``None`` otherwise.
    params : dict
        The settings the metric was computed with (``n_bins``, ``binning``, ``norm``).
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    stderr: float
    ci_level: float
    n: int
    n_bootstrap: int
    seed: int
    bins: BinStats | None = None
    params: dict = field(default_factory=dict)
    ci_method: str = "percentile"
    bias: float = float("nan")
    consistency: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "value": _finite_or_str(self.value),
            "ci_low": _finite_or_str(self.ci_low),
            "ci_high": _finite_or_str(self.ci_high),
            "stderr": _finite_or_str(self.stderr),
            "ci_level": self.ci_level,
            "ci_method": self.ci_method,
            "bootstrap_bias": _finite_or_str(self.bias),
            "consistency": dict(self.consistency),
            "n": self.n,
            "n_bootstrap": self.n_bootstrap,
            "seed": self.seed,
            "params": dict(self.params),
        }
        if self.bins is not None:
            d["bins"] = self.bins.to_dict()
        return d

    def __format__(self, spec: str) -> str:
        spec = spec or ".4f"
        if self.n_bootstrap == 0:
            return format(self.value, spec)
        return f"{format(self.value, spec)} [{format(self.ci_low, spec)}, {format(self.ci_high, spec)}]"

    def __str__(self) -> str:
        return f"{self.name} = {self:.4f} ({int(round(100 * self.ci_level))}% bootstrap CI, n={self.n})"


def _finite_or_str(v: float) -> float | str | None:
    if v is None:
        return None
    if np.isnan(v):
        return None
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


# ----------------------------------------------------------------------------- bootstrap core
def _check_common(n_bootstrap: int, ci_level: float) -> None:
    if (
        isinstance(n_bootstrap, bool)
        or not isinstance(n_bootstrap, (int, np.integer))
        or n_bootstrap < 0
    ):
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if n_bootstrap > _validation.MAX_BOOTSTRAP:
        raise ValueError(
            f"n_bootstrap = {n_bootstrap} exceeds the limit gibbsebm._validation.MAX_BOOTSTRAP "
            f"= {_validation.MAX_BOOTSTRAP} (it would run for hours); raise it there if you "
            "really mean it"
        )
    try:
        ci_ok = 0.0 < float(ci_level) < 1.0
    except (TypeError, ValueError):
        ci_ok = False
    if not ci_ok:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")


def _bootstrap(
    stat_fn, n: int, n_bootstrap: int, seed: int, device: torch.device, row_cost: int = 1
) -> torch.Tensor:
    """Evaluate ``stat_fn(idx)`` on ``n_bootstrap`` resamples of ``range(n)``.

    ``stat_fn`` maps an index tensor ``(R, n)`` to statistics ``(R,)``. Resamples are drawn in
    chunks from one seeded generator, so the result depends only on ``seed``.
    """
    g = make_generator(seed, device)
    per = max(1, _CHUNK_ELEMS // max(1, n * row_cost))
    out = []
    done = 0
    while done < n_bootstrap:
        r = min(per, n_bootstrap - done)
        idx = torch.randint(0, n, (r, n), generator=g, device=device)
        out.append(stat_fn(idx))
        done += r
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=device)


def _summarize(
    name: str,
    value: float,
    reps: torch.Tensor,
    n: int,
    n_bootstrap: int,
    seed: int,
    ci_level: float,
    bins: BinStats | None = None,
    params: dict | None = None,
    ci_method: str = "percentile",
    consistency: dict | None = None,
) -> MetricResult:
    bias = float("nan")
    if n_bootstrap == 0:
        lo = hi = se = float("nan")
    else:
        r = reps.detach().to("cpu", torch.float64).numpy()
        alpha = (1.0 - ci_level) / 2.0
        if np.all(np.isfinite(r)):
            lo, hi = np.quantile(r, [alpha, 1.0 - alpha])
            se = float(np.std(r, ddof=1)) if r.size > 1 else float("nan")
        else:
            # e.g. NLL with zero-probability labels: order statistics still make sense
            lo, hi = np.quantile(np.sort(r), [alpha, 1.0 - alpha], method="nearest")
            se = float("inf")
        lo, hi = float(lo), float(hi)
        if np.all(np.isfinite(r)):
            bias = float(r.mean() - value)
    return MetricResult(
        name=name,
        value=float(value),
        ci_low=lo,
        ci_high=hi,
        stderr=se,
        ci_level=float(ci_level),
        n=n,
        n_bootstrap=int(n_bootstrap),
        seed=int(seed),
        bins=bins,
        params=params or {},
        ci_method=ci_method,
        bias=bias,
        consistency=consistency or {},
    )


def _mean_metric(
    name: str,
    per_sample: torch.Tensor,
    n_bootstrap: int,
    seed: int,
    ci_level: float,
    params: dict | None = None,
) -> MetricResult:
    """A metric that is the mean of a per-sample loss, bootstrapped by resampling samples."""
    n = per_sample.shape[0]
    value = float(per_sample.mean())
    reps = _bootstrap(lambda idx: per_sample[idx].mean(1), n, n_bootstrap, seed, per_sample.device)
    return _summarize(name, value, reps, n, n_bootstrap, seed, ci_level, params=params)


# ----------------------------------------------------------------------------- binned errors
def _uniform_edges(n_bins: int, device: torch.device) -> torch.Tensor:
    # m / M exactly (not 0 + m * (1/M)), so decimal confidences such as 0.3 sit on an edge
    return torch.arange(n_bins + 1, dtype=torch.float64, device=device) / n_bins


def _quantile_edges(conf: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Edges ``(R, M + 1)`` at the empirical quantiles of each row of ``conf`` ``(R, N)``."""
    q = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=conf.device)
    srt = conf.sort(dim=1).values
    n = conf.shape[1]
    # linear-interpolation quantiles (numpy's default "linear" method), done by hand so the
    # call works on any row count (torch.quantile caps the input size)
    pos = q * (n - 1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = pos.ceil().long().clamp(max=n - 1)
    frac = pos - lo.to(torch.float64)
    edges = srt[:, lo] * (1 - frac) + srt[:, hi] * frac
    edges[:, 0] = 0.0
    edges[:, -1] = 1.0
    return edges


def _binned(
    conf: torch.Tensor, hit: torch.Tensor, n_bins: int, binning: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin rows of ``conf`` ``(R, N)`` with right-closed bins.

    Returns ``edges (R, M+1)``, ``counts (R, M)``, ``conf_sum (R, M)``, ``hit_sum (R, M)``.
    """
    r = conf.shape[0]
    if binning == "uniform":
        edges = _uniform_edges(n_bins, conf.device).expand(r, n_bins + 1).contiguous()
    else:
        edges = _quantile_edges(conf, n_bins)
    # side="left": edges[j-1] < c <= edges[j]  ->  bin j-1  (right-closed); c = 0 -> bin 0
    idx = (torch.searchsorted(edges, conf.contiguous(), side="left") - 1).clamp_(0, n_bins - 1)
    z = torch.zeros(r, n_bins, dtype=torch.float64, device=conf.device)
    counts = z.clone().scatter_add_(1, idx, torch.ones_like(conf))
    conf_sum = z.clone().scatter_add_(1, idx, conf)
    hit_sum = z.clone().scatter_add_(1, idx, hit)
    return edges, counts, conf_sum, hit_sum


def _ce_from_bins(
    counts: torch.Tensor, conf_sum: torch.Tensor, hit_sum: torch.Tensor, norm: str
) -> torch.Tensor:
    n = counts.sum(1, keepdim=True)
    nonempty = counts > 0
    safe = counts.clamp(min=1)
    gap = torch.where(nonempty, (hit_sum - conf_sum) / safe, torch.zeros_like(counts)).abs()
    w = counts / n
    if norm == "l1":
        return (w * gap).sum(1)
    if norm == "l2":
        return (w * gap**2).sum(1).sqrt()
    return gap.amax(1)


def _check_binning_args(n_bins: int, binning: str, norm: str) -> None:
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if n_bins > _validation.MAX_BINS:
        raise ValueError(
            f"n_bins = {n_bins} exceeds the limit gibbsebm._validation.MAX_BINS = "
            f"{_validation.MAX_BINS} (each bin is a tensor row); raise it there if you mean it"
        )
    if binning not in ("uniform", "quantile"):
        raise ValueError(f"binning must be 'uniform' or 'quantile', got {binning!r}")
    if norm not in ("l1", "l2", "max"):
        raise ValueError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")


def _bin_stats(edges, counts, conf_sum, hit_sum) -> BinStats:
    c = counts.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mc = np.where(c > 0, conf_sum.cpu().numpy() / np.maximum(c, 1), np.nan)
        acc = np.where(c > 0, hit_sum.cpu().numpy() / np.maximum(c, 1), np.nan)
    return BinStats(
        edges=edges.cpu().numpy(), counts=c.astype(np.int64), confidence=mc, accuracy=acc
    )


def _bootstrap_ce(
    conf: torch.Tensor,
    hit: torch.Tensor,
    n_bins: int,
    binning: str,
    norm: str,
    n_bootstrap: int,
    seed: int,
) -> torch.Tensor:
    """Bootstrap replicates of the binned error averaged over the C rows of ``conf`` ``(C, N)``.

    With uniform bins a sample's bin does not depend on the resample, so a replicate is a
    weighted bin sum with weights = how often each sample was drawn (one ``index_add`` per
    row). Quantile bins move with the resample and are recomputed for each replicate.
    """
    c_rows, n = conf.shape
    device = conf.device
    if binning == "uniform":
        edges = _uniform_edges(n_bins, device)
        bin_of = (torch.searchsorted(edges, conf.contiguous(), side="left") - 1).clamp_(
            0, n_bins - 1
        )

        def design(j: int) -> torch.Tensor:  # (N, 3M): bin one-hot times [1, conf, hit]
            onehot = torch.nn.functional.one_hot(bin_of[j], n_bins).to(torch.float64)
            return torch.cat((onehot, onehot * conf[j, :, None], onehot * hit[j, :, None]), 1)

        def stat(idx: torch.Tensor) -> torch.Tensor:
            r = idx.shape[0]
            w = torch.zeros(r, n, dtype=torch.float64, device=device)
            w.scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64, device=device))
            total = torch.zeros(r, dtype=torch.float64, device=device)
            for j in range(c_rows):
                # per-bin [count, sum conf, sum hit] of every replicate as one product w @ H
                sums = (w @ design(j)).reshape(r, 3, n_bins)
                total += _ce_from_bins(sums[:, 0], sums[:, 1], sums[:, 2], norm)
            return total / c_rows

        return _bootstrap(stat, n, n_bootstrap, seed, device, row_cost=4)

    def stat_q(idx: torch.Tensor) -> torch.Tensor:
        r = idx.shape[0]
        c = conf[:, idx].reshape(c_rows * r, n)  # (C, R, N) -> (C*R, N)
        h = hit[:, idx].reshape(c_rows * r, n)
        _, c2, cs2, hs2 = _binned(c, h, n_bins, binning)
        return _ce_from_bins(c2, cs2, hs2, norm).reshape(c_rows, r).mean(0)

    return _bootstrap(stat_q, n, n_bootstrap, seed, device, row_cost=4 * c_rows)


def _consistency(
    p: torch.Tensor,
    conf: torch.Tensor,
    edges: torch.Tensor,
    n_bins: int,
    norm: str,
    observed: float,
    n_rep: int,
    seed: int,
    kind: str,
) -> dict:
    """The binned error under perfect calibration: labels drawn from ``p`` itself.

    The confidences (hence the bins) stay fixed; only the events are redrawn, ``n_rep``
    times: ``y* ~ Categorical(p_i)``, event = ``y* == argmax p_i`` (top-label) or
    ``y* == j`` (classwise, row j). Bröcker & Smith (2007), "Increasing the reliability of
    reliability diagrams", Weather and Forecasting 22(3).
    """
    if n_rep == 0:
        return {}
    c_rows, n = conf.shape
    device = p.device
    g = make_generator(seed, device)
    bin_of = (torch.searchsorted(edges.contiguous(), conf.contiguous(), side="left") - 1).clamp_(
        0, n_bins - 1
    )
    k = p.shape[1]
    pred = p.argmax(1)
    counts = torch.zeros(c_rows, n_bins, dtype=torch.float64, device=device)
    counts.scatter_add_(1, bin_of, torch.ones_like(conf))
    conf_sum = torch.zeros_like(counts).scatter_add_(1, bin_of, conf)
    cdf = p.cumsum(1)
    cdf[:, -1] = 1.0
    arange = torch.arange(n, device=device)
    per = max(1, _CHUNK_ELEMS // max(1, n * 3))
    reps, done = [], 0
    while done < n_rep:
        r = min(per, n_rep - done)
        u = torch.rand(n, r, generator=g, dtype=torch.float64, device=device)
        # inverse-CDF draw of y* ~ Categorical(p_i) for every sample and replicate: (R, N)
        ystar = torch.searchsorted(cdf, u, right=True).clamp_(max=k - 1).T
        hs = torch.zeros(r, c_rows * n_bins, dtype=torch.float64, device=device)
        if kind == "top":
            hit = (ystar == pred[None]).to(torch.float64)
            hs.scatter_add_(1, bin_of[0].expand(r, n), hit)
        else:
            # the event y* == j happens for exactly one class j = y*: one scatter per draw
            flat = ystar * n_bins + bin_of[ystar, arange[None]]
            hs.scatter_add_(1, flat, torch.ones(r, n, dtype=torch.float64, device=device))
        hs = hs.reshape(r * c_rows, n_bins)
        ce = _ce_from_bins(counts.repeat(r, 1), conf_sum.repeat(r, 1), hs, norm).reshape(r, c_rows)
        reps.append(ce.mean(1))
        done += r
    null = torch.cat(reps).cpu().numpy()
    return {
        "mean": float(null.mean()),
        "q95": float(np.quantile(null, 0.95)),
        "p_value": float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size)),
        "n_resamples": int(null.size),
    }


_NORM_NAME = {"l1": "ece", "l2": "rmsce", "max": "mce"}


def top_label(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-label confidence ``max_k p_k`` and correctness of the arg-max (float64, ``(N,)``)."""
    conf, pred = probs.max(dim=1)
    return conf, (pred == labels).to(torch.float64)


def expected_calibration_error(
    probs: Any,
    labels: Any,
    n_bins: int = 15,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    ci_level: float = 0.95,
    seed: int = 0,
) -> MetricResult:
    """Top-label calibration error: ECE (``l1``), RMSCE (``l2``) or MCE (``max``).

    .. math::

        \\mathrm{ECE} = \\sum_{m=1}^{M} \\frac{|B_m|}{N}\\,
            \\bigl|\\mathrm{acc}(B_m) - \\mathrm{conf}(B_m)\\bigr|,\\quad
        \\mathrm{RMSCE} = \\Bigl(\\sum_m \\frac{|B_m|}{N}
            (\\mathrm{acc}(B_m) - \\mathrm{conf}(B_m))^2\\Bigr)^{1/2},\\quad
        \\mathrm{MCE} = \\max_{m: |B_m| > 0} |\\mathrm{acc}(B_m) - \\mathrm{conf}(B_m)|,

    where sample i (confidence :math:`\\hat p_i = \\max_k p_{ik}`, prediction
    :math:`\\arg\\max_k p_{ik}`) falls in bin :math:`B_m = ((m-1)/M, m/M]`.

    Parameters
    ----------
    probs : array or Tensor, shape (N, K)
        Predicted probabilities; rows sum to 1.
    labels : array or Tensor, shape (N,)
        Integer labels in ``0..K-1``.
    n_bins : int
        Number of bins M (15 as in Guo et al. 2017).
    binning : {"uniform", "quantile"}
        Equal-width bins, or bins at the empirical quantiles of the confidences (equal
        mass; tied confidences stay in one bin, so some bins may be empty).
    norm : {"l1", "l2", "max"}
        ``l1`` = ECE, ``l2`` = RMSCE, ``max`` = MCE (over non-empty bins).
    n_bootstrap : int
        Bootstrap resamples for the confidence interval (0 to skip).
    ci_level : float
        Confidence level of the percentile interval.
    seed : int
        Seed of the bootstrap generator.

    Returns
    -------
    MetricResult
        ``value``, ``ci_low``/``ci_high``, ``consistency`` (the error a perfectly
        calibrated model with these confidences would show) and ``bins`` (edges, counts, per-bin mean
        confidence and accuracy; ``nan`` for empty bins).

    References
    ----------
    Naeini, Cooper & Hauskrecht (2015), "Obtaining well calibrated probabilities using
    Bayesian binning", AAAI. Guo, Pleiss, Sun & Weinberger (2017), "On calibration of modern
    neural networks", ICML.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> r = expected_calibration_error(p, [0, 1, 1], n_bins=5, n_bootstrap=0)
    >>> round(r.value, 4)  # bins (0.8,1]: |1-0.9|, (0.6,0.8]: |1-0.7|, (0.4,0.6]: |0-0.6|
    0.3333
    >>> r.bins.counts.tolist()
    [0, 0, 1, 1, 1]
    """
    _check_binning_args(n_bins, binning, norm)
    _check_common(n_bootstrap, ci_level)
    p, y = check_probabilities(probs, labels)
    conf, hit = top_label(p, y)
    n = conf.shape[0]
    edges, counts, cs, hs = _binned(conf[None], hit[None], n_bins, binning)
    value = float(_ce_from_bins(counts, cs, hs, norm)[0])
    conf_rows, kind = conf[None], "top"

    reps = _bootstrap_ce(conf[None], hit[None], n_bins, binning, norm, n_bootstrap, seed)
    return _summarize(
        _NORM_NAME[norm],
        value,
        reps,
        n,
        n_bootstrap,
        seed,
        ci_level,
        bins=_bin_stats(edges[0], counts[0], cs[0], hs[0]),
        params={"n_bins": int(n_bins), "binning": binning, "norm": norm},
        consistency=_consistency(p, conf_rows, edges, n_bins, norm, value, n_bootstrap, seed, kind),
    )


def classwise_calibration_error(
    probs: Any,
    labels: Any,
    n_bins: int = 15,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    ci_level: float = 0.95,
    seed: int = 0,
) -> MetricResult:
    """Classwise calibration error (classwise-ECE of Kull et al. 2019).

    .. math::

        \\text{classwise-ECE} = \\frac{1}{K} \\sum_{j=1}^{K} \\sum_{m=1}^{M}
            \\frac{|B_{mj}|}{N}\\,\\bigl|\\bar y_j(B_{mj}) - \\bar p_j(B_{mj})\\bigr|,

    where :math:`B_{mj}` holds the samples whose probability for class j lies in bin m
    (right-closed, the first bin including 0), :math:`\\bar p_j` is their mean probability for
    class j and :math:`\\bar y_j` the fraction of them whose label is j. ``norm="l2"``/``"max"``
    replace the inner sum as in :func:`expected_calibration_error`; the mean over classes stays.

    Parameters
    ----------
    probs, labels, n_bins, binning, norm, n_bootstrap, ci_level, seed
        As in :func:`expected_calibration_error`.

    Returns
    -------
    MetricResult
        ``bins`` holds per-class arrays shaped ``(K, M)`` (edges ``(K, M + 1)``).

    References
    ----------
    Kull, Perello-Nieto, Kängsepp, Silva Filho, Song & Flach (2019), "Beyond temperature
    scaling: obtaining well-calibrated multiclass probabilities with Dirichlet calibration",
    NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> r = classwise_calibration_error(p, [0, 1, 1], n_bins=5, n_bootstrap=0)
    >>> round(r.value, 4)
    0.3333
    """
    _check_binning_args(n_bins, binning, norm)
    _check_common(n_bootstrap, ci_level)
    p, y = check_probabilities(probs, labels)
    n, k = p.shape
    conf = p.T.contiguous()  # (K, N)
    hit = (y[None, :] == torch.arange(k, device=p.device)[:, None]).to(torch.float64)
    edges, counts, cs, hs = _binned(conf, hit, n_bins, binning)
    value = float(_ce_from_bins(counts, cs, hs, norm).mean())
    conf_rows, kind = conf, "classwise"

    reps = _bootstrap_ce(conf, hit, n_bins, binning, norm, n_bootstrap, seed)
    return _summarize(
        "classwise_" + _NORM_NAME[norm],
        value,
        reps,
        n,
        n_bootstrap,
        seed,
        ci_level,
        bins=_bin_stats(edges, counts, cs, hs),
        params={"n_bins": int(n_bins), "binning": binning, "norm": norm},
        consistency=_consistency(p, conf_rows, edges, n_bins, norm, value, n_bootstrap, seed, kind),
    )


def brier_score(
    probs: Any,
    labels: Any,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    ci_level: float = 0.95,
    seed: int = 0,
) -> MetricResult:
    """Multiclass Brier score :math:`\\frac1N \\sum_i \\sum_k (p_{ik} - [y_i = k])^2`, in [0, 2].

    This is Brier's (1950) original sum over all K classes. For K = 2 it is twice
    scikit-learn's binary ``brier_score_loss`` (which scores only the positive class).

    Parameters
    ----------
    probs, labels, n_bootstrap, ci_level, seed
        As in :func:`expected_calibration_error`.

    Returns
    -------
    MetricResult

    References
    ----------
    Brier (1950), "Verification of forecasts expressed in terms of probability",
    Monthly Weather Review 78(1).

    Examples
    --------
    >>> round(brier_score([[0.8, 0.2], [0.5, 0.5]], [0, 1], n_bootstrap=0).value, 4)
    0.29
    """
    _check_common(n_bootstrap, ci_level)
    p, y = check_probabilities(probs, labels)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).to(torch.float64)
    per = ((p - onehot) ** 2).sum(1)
    return _mean_metric("brier", per, n_bootstrap, seed, ci_level)


def negative_log_likelihood(
    probs: Any,
    labels: Any,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    ci_level: float = 0.95,
    seed: int = 0,
) -> MetricResult:
    """Mean negative log-likelihood :math:`-\\frac1N\\sum_i \\log p_{i y_i}` in nats.

    A label given probability 0 makes the value ``inf``. When probabilities come from
    energies, :func:`gibbsebm.calibration.nll_from_energies` computes the same number from
    the log-softmax without the round trip through probabilities.

    Parameters
    ----------
    probs, labels, n_bootstrap, ci_level, seed
        As in :func:`expected_calibration_error`.

    Returns
    -------
    MetricResult

    Examples
    --------
    >>> round(negative_log_likelihood([[0.5, 0.5], [0.25, 0.75]], [0, 1], n_bootstrap=0).value, 4)
    0.4904
    """
    _check_common(n_bootstrap, ci_level)
    p, y = check_probabilities(probs, labels)
    pt = p.gather(1, y[:, None]).squeeze(1)
    per = -torch.log(pt)
    return _mean_metric("nll", per, n_bootstrap, seed, ci_level)


def accuracy(
    probs: Any,
    labels: Any,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    ci_level: float = 0.95,
    seed: int = 0,
) -> MetricResult:
    """Top-1 accuracy of the arg-max (ties go to the lowest class index).

    Parameters
    ----------
    probs, labels, n_bootstrap, ci_level, seed
        As in :func:`expected_calibration_error`.

    Returns
    -------
    MetricResult

    Examples
    --------
    >>> accuracy([[0.9, 0.1], [0.6, 0.4]], [0, 1], n_bootstrap=0).value
    0.5
    """
    _check_common(n_bootstrap, ci_level)
    p, y = check_probabilities(probs, labels)
    _, hit = top_label(p, y)
    return _mean_metric("accuracy", hit, n_bootstrap, seed, ci_level)
