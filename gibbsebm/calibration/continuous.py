"""Calibration of continuous predictions from a conditional Gibbs predictive.

For a scalar output with predictive :math:`p_\\beta(y \\mid x) \\propto b(y)\\,e^{-\\beta E(x, y)}`
the checks take ``S`` draws per input, shaped ``(S, N)`` (e.g. from
:func:`gibbsebm.sample` on ``Gibbs(energy, beta0).condition(x)``, or exact draws), and the
observed ``y`` shaped ``(N,)``:

* :func:`pit_values`: probability integral transform :math:`F(y_i \\mid x_i)`, uniform on
  [0, 1] for a calibrated predictive (Dawid 1984; Gneiting, Balabdaoui & Raftery 2007);
* :func:`interval_coverage`: coverage of central intervals at several levels;
* :func:`crps`: continuous ranked probability score (Gneiting & Raftery 2007, eq. 21);
* :func:`fit_predictive_beta`: the inverse temperature that calibrates the predictive,
  from the same draws by self-normalised importance weights
  :math:`w_s \\propto e^{-(\\beta - \\beta_0) E(x, y_s)}` (no re-sampling per candidate beta).

The likelihood fit uses :math:`\\log p_\\beta(y\\mid x) = \\log b(y) -\\beta E(x,y) -
\\log Z_\\beta(x)` with :math:`\\log Z_\\beta(x) - \\log Z_{\\beta_0}(x) = \\log \\frac1S\\sum_s
e^{-(\\beta-\\beta_0)E(x,y_s)}` estimated from the draws, so the held-out NLL in beta has the
same convex form as the classifier case (:mod:`gibbsebm.calibration.temperature`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from ._inputs import as_float_tensor, check_beta_value

__all__ = [
    "PIT",
    "Coverage",
    "CRPS",
    "PredictiveBetaFit",
    "pit_values",
    "interval_coverage",
    "crps",
    "fit_predictive_beta",
]


def _check_draws(samples: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s = as_float_tensor(samples, "samples")
    t = as_float_tensor(y, "y", device=s.device)
    if s.dim() != 2:
        raise ValueError(
            f"samples must be shaped (S, N) (draws x inputs) for scalar outputs, got {tuple(s.shape)}"
        )
    if t.dim() != 1 or t.shape[0] != s.shape[1]:
        raise ValueError(
            f"y must be shaped (N,) = ({s.shape[1]},) to match samples (S, N), got "
            f"{tuple(t.shape)} (mismatched lengths)"
        )
    if s.shape[0] < 2:
        raise ValueError("need at least 2 draws per input (samples shaped (S, N), S >= 2)")
    for name, v in (("samples", s), ("y", t)):
        bad = ~torch.isfinite(v)
        if bad.any():
            raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite values")
    return s, t


def _weighted_cdf_at(s: torch.Tensor, w: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    """Mid-CDF :math:`P(Y < y) + \\tfrac12 P(Y = y)` of each column's (weighted) draws."""
    if w is None:
        w = torch.full_like(s, 1.0 / s.shape[0])
    below = (w * (s < y[None])).sum(0)
    equal = (w * (s == y[None])).sum(0)
    return below + 0.5 * equal


@dataclass(frozen=True)
class PIT:
    """PIT values with a uniformity check.

    Attributes
    ----------
    values : ndarray, shape (N,)
        :math:`\\hat F(y_i \\mid x_i)` (mid-CDF of the draws).
    ks_statistic, ks_pvalue : float
        Kolmogorov-Smirnov test of uniformity (scipy). With S draws the PIT is discrete
        with resolution 1/S; the test is meaningful for S much larger than the number of
        KS quantiles that matter (S >= 100).
    histogram : ndarray
        Counts in ``n_bins`` equal bins of [0, 1].
    """

    values: np.ndarray
    ks_statistic: float
    ks_pvalue: float
    histogram: np.ndarray

    def to_dict(self) -> dict:
        return {
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "histogram": self.histogram.tolist(),
            "n": int(self.values.size),
        }


def pit_values(samples: Any, y: Any, *, n_bins: int = 10) -> PIT:
    """Probability integral transform of ``y`` under the predictive draws.

    Parameters
    ----------
    samples : array or Tensor, shape (S, N)
        S predictive draws for each of N inputs.
    y : array or Tensor, shape (N,)
        Observed outputs.
    n_bins : int
        Histogram bins.

    Returns
    -------
    PIT

    References
    ----------
    Gneiting, Balabdaoui & Raftery (2007), "Probabilistic forecasts, calibration and
    sharpness", JRSS B 69(2).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> pit = pit_values(torch.randn(500, 300, generator=g), torch.randn(300, generator=g))
    >>> pit.ks_pvalue > 0.01
    True
    """
    s, t = _check_draws(samples, y)
    v = _weighted_cdf_at(s, None, t).cpu().numpy()
    ks = stats.kstest(v, "uniform")
    hist, _ = np.histogram(v, bins=n_bins, range=(0.0, 1.0))
    return PIT(
        values=v, ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue), histogram=hist
    )


def _weighted_quantiles(s: torch.Tensor, w: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor:
    """Quantiles ``(Q, N)`` of each column of draws ``s`` ``(S, N)`` with weights ``w``.

    Unweighted: the inverse of the empirical CDF at its mid-points (Hyndman & Fan type 5);
    weighted: the same rule on the weighted CDF.
    """
    srt, order = s.sort(0)
    ww = None if w is None else w.gather(0, order)
    return _sorted_weighted_quantiles(srt, ww, q)


def _sorted_weighted_quantiles(
    srt: torch.Tensor, ww: torch.Tensor | None, q: torch.Tensor
) -> torch.Tensor:
    """:func:`_weighted_quantiles` for draws already sorted along dim 0 (weights aligned)."""
    s = srt
    if ww is None:
        ww = torch.full_like(s, 1.0 / s.shape[0])
    mid = ww.cumsum(0) - 0.5 * ww  # (S, N), increasing
    # position of q within the mid-points of each column, then linear interpolation
    qq = q[:, None].expand(-1, s.shape[1]).T.contiguous()  # (N, Q)
    idx = torch.searchsorted(mid.T.contiguous(), qq).T  # (Q, N)
    hi = idx.clamp(max=s.shape[0] - 1)
    lo = (idx - 1).clamp(min=0)
    m_lo, m_hi = mid.gather(0, lo), mid.gather(0, hi)
    x_lo, x_hi = srt.gather(0, lo), srt.gather(0, hi)
    frac = torch.where(m_hi > m_lo, (q[:, None] - m_lo) / (m_hi - m_lo), torch.zeros_like(m_lo))
    return x_lo + frac.clamp(0, 1) * (x_hi - x_lo)


@dataclass(frozen=True)
class Coverage:
    """Coverage of central predictive intervals.

    Attributes
    ----------
    levels : ndarray
        Nominal levels.
    coverage : ndarray
        Fraction of ``y`` inside the central interval at each level.
    stderr : ndarray
        Binomial standard error :math:`\\sqrt{c(1-c)/N}` of each coverage.
    ci_low, ci_high : ndarray
        Wilson 95% score intervals of each coverage.
    mean_width : ndarray
        Mean interval width (sharpness).
    n : int
    """

    levels: np.ndarray
    coverage: np.ndarray
    stderr: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    mean_width: np.ndarray
    n: int

    def to_dict(self) -> dict:
        return {
            k: (getattr(self, k).tolist() if isinstance(getattr(self, k), np.ndarray) else self.n)
            for k in ("levels", "coverage", "stderr", "ci_low", "ci_high", "mean_width", "n")
        }


def _wilson(c: np.ndarray, n: int, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    # Wilson (1927) score interval; z = Phi^{-1}(0.975)
    den = 1 + z**2 / n
    centre = (c + z**2 / (2 * n)) / den
    half = z * np.sqrt(c * (1 - c) / n + z**2 / (4 * n**2)) / den
    return centre - half, centre + half


def _coverage_from(
    s, w, t, levels: torch.Tensor, *, presorted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.cat(((1 - levels) / 2, (1 + levels) / 2))
    qs = _sorted_weighted_quantiles(s, w, q) if presorted else _weighted_quantiles(s, w, q)
    lo, hi = qs[: levels.shape[0]], qs[levels.shape[0] :]
    inside = ((t[None] >= lo) & (t[None] <= hi)).to(torch.float64)
    return inside.mean(1), (hi - lo).mean(1)


def _check_levels(levels: Any) -> torch.Tensor:
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float64)).reshape(-1)
    if lv.numel() == 0 or ((lv <= 0) | (lv >= 1)).any():
        raise ValueError(f"levels must be numbers in (0, 1), got {np.asarray(levels).tolist()}")
    return lv


def interval_coverage(samples: Any, y: Any, levels: Any = (0.5, 0.8, 0.9, 0.95)) -> Coverage:
    """Coverage of the central ``level`` intervals of the predictive draws.

    The interval at level :math:`\\ell` runs between the :math:`(1-\\ell)/2` and
    :math:`(1+\\ell)/2` sample quantiles of each input's draws.

    Parameters
    ----------
    samples : array or Tensor, shape (S, N)
    y : array or Tensor, shape (N,)
    levels : sequence of float
        Nominal levels in (0, 1).

    Returns
    -------
    Coverage

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> cov = interval_coverage(torch.randn(400, 2000, generator=g), torch.randn(2000, generator=g), [0.9])
    >>> bool(abs(cov.coverage[0] - 0.9) < 3 * cov.stderr[0])
    True
    """
    s, t = _check_draws(samples, y)
    lv = _check_levels(levels).to(s.device)
    c, width = _coverage_from(s, None, t, lv)
    c = c.cpu().numpy()
    n = t.shape[0]
    lo, hi = _wilson(c, n)
    return Coverage(
        levels=lv.cpu().numpy(),
        coverage=c,
        stderr=np.sqrt(c * (1 - c) / n),
        ci_low=lo,
        ci_high=hi,
        mean_width=width.cpu().numpy(),
        n=n,
    )


@dataclass(frozen=True)
class CRPS:
    """Continuous ranked probability score (lower is better).

    Attributes
    ----------
    values : ndarray, shape (N,)
        Per-input CRPS.
    mean : float
    stderr : float
        Standard error of the mean over inputs, ``std / sqrt(N)``.
    """

    values: np.ndarray
    mean: float
    stderr: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "n": int(self.values.size)}


def crps(samples: Any, y: Any) -> CRPS:
    """CRPS of the empirical predictive: :math:`\\mathbb E|X - y| - \\tfrac12\\mathbb E|X - X'|`.

    Computed exactly for the empirical distribution of the S draws in
    :math:`O(S \\log S)` per input from the sorted draws,
    :math:`\\mathbb E|X-X'| = \\frac{2}{S^2}\\sum_{j=1}^S (2j - S - 1)\\,x_{(j)}`.

    Parameters
    ----------
    samples : array or Tensor, shape (S, N)
    y : array or Tensor, shape (N,)

    Returns
    -------
    CRPS

    References
    ----------
    Gneiting & Raftery (2007), "Strictly proper scoring rules, prediction, and estimation",
    JASA 102(477), eq. (21).

    Examples
    --------
    >>> import torch
    >>> round(crps(torch.tensor([[0.0], [2.0]]), torch.tensor([1.0])).mean, 6)  # 1 - 0.5
    0.5
    """
    s, t = _check_draws(samples, y)
    m = s.shape[0]
    term1 = (s - t[None]).abs().mean(0)
    srt = s.sort(0).values
    j = torch.arange(1, m + 1, dtype=torch.float64, device=s.device)[:, None]
    term2 = (2.0 / m**2) * ((2 * j - m - 1) * srt).sum(0)
    v = (term1 - 0.5 * term2).cpu().numpy()
    return CRPS(
        values=v,
        mean=float(v.mean()),
        stderr=float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan"),
    )


@dataclass(frozen=True)
class PredictiveBetaFit:
    """Result of :func:`fit_predictive_beta`.

    Attributes
    ----------
    beta : float
        Fitted inverse temperature.
    stderr : float
        Standard error (observed information for ``method="likelihood"``, delta method on
        the binomial coverage for ``method="coverage"``).
    beta0 : float
        The inverse temperature the draws came from.
    method : str
    coverage_before, coverage_after : Coverage
        Interval coverage at ``beta0`` and at the fitted beta (importance-reweighted draws).
    min_ess, median_ess : float
        Kish effective sample size of the importance weights at the fitted beta, over inputs.
    n : int
    """

    beta: float
    stderr: float
    beta0: float
    method: str
    coverage_before: Coverage
    coverage_after: Coverage
    min_ess: float
    median_ess: float
    n: int

    def to_dict(self) -> dict:
        return {
            "beta": self.beta,
            "stderr": self.stderr,
            "beta0": self.beta0,
            "method": self.method,
            "coverage_before": self.coverage_before.to_dict(),
            "coverage_after": self.coverage_after.to_dict(),
            "min_ess": self.min_ess,
            "median_ess": self.median_ess,
            "n": self.n,
        }


#: Smallest acceptable Kish ESS of the importance weights per input, as a fraction of S:
#: below it the reweighted predictive rests on a handful of draws (Kong 1992's rule of thumb
#: reads ESS ~ S / (1 + Var w); 10% means the weights' variance exceeds 9).
MIN_ESS_FRACTION = 0.1


def _log_weights(se: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.log_softmax(-delta * se, dim=0)


def fit_predictive_beta(
    samples: Any,
    sample_energies: Any,
    y: Any,
    y_energies: Any,
    *,
    beta0: float,
    method: str = "likelihood",
    level: float = 0.9,
    levels: Any = (0.5, 0.8, 0.9, 0.95),
    tol: float = 1e-8,
) -> PredictiveBetaFit:
    """Fit the inverse temperature of a continuous Gibbs predictive from draws at ``beta0``.

    The draws :math:`y_{s,i} \\sim p_{\\beta_0}(\\cdot\\mid x_i)` are reweighted to any beta by
    :math:`w_{s,i} \\propto e^{-(\\beta-\\beta_0)E(x_i, y_{s,i})}`. With
    ``method="likelihood"`` beta minimises the held-out NLL

    .. math::

        \\ell(\\beta) = \\frac1N\\sum_i \\Bigl[(\\beta-\\beta_0) E(x_i, y_i)
            + \\log \\frac1S \\sum_s e^{-(\\beta-\\beta_0)E(x_i, y_{s,i})}\\Bigr] + \\text{const},

    convex in beta (its second derivative is the mean weighted variance of the energies);
    with ``method="coverage"`` beta makes the central ``level`` interval cover a fraction
    ``level`` of the ``y`` (bisection on a log scale; coverage falls as beta grows).

    Parameters
    ----------
    samples : array or Tensor, shape (S, N)
        Predictive draws at ``beta0``.
    sample_energies : array or Tensor, shape (S, N)
        :math:`E(x_i, y_{s,i})` of each draw.
    y : array or Tensor, shape (N,)
        Held-out observations.
    y_energies : array or Tensor, shape (N,)
        :math:`E(x_i, y_i)` of the observations.
    beta0 : float
        Inverse temperature the draws were made at.
    method : {"likelihood", "coverage"}
    level : float
        Target level for ``method="coverage"``.
    levels : sequence of float
        Levels reported in ``coverage_before``/``coverage_after``.
    tol : float
        Relative tolerance on beta.

    Returns
    -------
    PredictiveBetaFit

    Raises
    ------
    ValueError
        On bad input, when no finite optimum exists, or when the importance weights at the
        fitted beta have a Kish ESS below ``MIN_ESS_FRACTION * S`` for some input (the
        reweighted predictive cannot be trusted: draw again at a beta0 near the estimate).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> mu = torch.randn(1000, generator=g, dtype=torch.float64)
    >>> y = mu + torch.randn(1000, generator=g, dtype=torch.float64) / 2.0  # true beta = 4
    >>> draws = mu + torch.randn(2000, 1000, generator=g, dtype=torch.float64) / 1.5  # beta0 = 2.25
    >>> fit = fit_predictive_beta(draws, (draws - mu) ** 2 / 2, y, (y - mu) ** 2 / 2, beta0=2.25)
    >>> abs(fit.beta - 4.0) < 3 * fit.stderr
    True
    """
    s, t = _check_draws(samples, y)
    se = as_float_tensor(sample_energies, "sample_energies", device=s.device)
    ye = as_float_tensor(y_energies, "y_energies", device=s.device)
    if se.shape != s.shape:
        raise ValueError(
            f"sample_energies must have the shape of samples {tuple(s.shape)}, got {tuple(se.shape)}"
        )
    if ye.shape != t.shape:
        raise ValueError(f"y_energies must be shaped (N,) = ({t.shape[0]},), got {tuple(ye.shape)}")
    for name, v in (("sample_energies", se), ("y_energies", ye)):
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} has NaN or infinite values")
    check_beta_value(beta0, "beta0")
    beta0 = float(beta0)
    if method not in ("likelihood", "coverage"):
        raise ValueError(f"method must be 'likelihood' or 'coverage', got {method!r}")
    lv = _check_levels(levels).to(s.device)
    n, m = t.shape[0], s.shape[0]

    def derivs(b: float) -> tuple[float, float, float]:
        d = b - beta0
        lw = _log_weights(se, d)
        w = lw.exp()
        mean_e = (w * se).sum(0)
        var_e = (w * (se - mean_e) ** 2).sum(0)
        nll = (d * ye + torch.logsumexp(-d * se, 0) - math.log(m)).mean()
        return float(nll), float((ye - mean_e).mean()), float(var_e.mean())

    # the draws do not move with beta, only their weights: sort them once
    s_sorted, order = s.sort(0)
    se_sorted = se.gather(0, order)
    target = torch.tensor([level], dtype=torch.float64, device=s.device)

    def cover(b: float) -> float:
        w = _log_weights(se_sorted, b - beta0).exp()
        c, _ = _coverage_from(s_sorted, w, t, target, presorted=True)
        return float(c[0])

    if method == "likelihood":
        b, _ = _solve_monotone(lambda b: derivs(b)[1], beta0, tol, slope=lambda b: derivs(b)[1:])
        h = derivs(b)[2]
        if h <= 0:
            raise ValueError("the NLL is flat in beta at the optimum (constant energies?)")
        stderr = 1.0 / math.sqrt(n * h)
    else:
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        # coverage is a step function of beta (jumps of 1/N): a relative tolerance of 1e-4
        # is finer than any jump that matters
        b, _ = _solve_monotone(lambda b: level - cover(b), beta0, max(tol, 1e-4))
        # delta method: se(coverage) = sqrt(l(1-l)/N), divided by |d coverage / d beta|; the
        # slope is a secant over +-20% of beta, wide enough to average over the 1/N steps
        db = 0.2 * b
        slope = (cover(b + db) - cover(b - db)) / (2 * db)
        stderr = math.sqrt(level * (1 - level) / n) / abs(slope) if slope != 0 else float("inf")
    w = _log_weights(se, b - beta0).exp()
    ess = (1.0 / (w**2).sum(0)).cpu().numpy()
    if ess.min() < MIN_ESS_FRACTION * m:
        raise ValueError(
            f"importance weights from beta0={beta0:g} to beta={b:.4g} are degenerate "
            f"(min Kish ESS {ess.min():.1f} of {m} draws): draw the predictive again at a "
            f"beta0 closer to {b:.4g} and refit"
        )
    c_after, width = _coverage_from(s, w, t, lv)
    c_after = c_after.cpu().numpy()
    lo, hi = _wilson(c_after, n)
    after = Coverage(
        levels=lv.cpu().numpy(),
        coverage=c_after,
        stderr=np.sqrt(c_after * (1 - c_after) / n),
        ci_low=lo,
        ci_high=hi,
        mean_width=width.cpu().numpy(),
        n=n,
    )
    return PredictiveBetaFit(
        beta=b,
        stderr=stderr,
        beta0=beta0,
        method=method,
        coverage_before=interval_coverage(s, t, lv.cpu().numpy()),
        coverage_after=after,
        min_ess=float(ess.min()),
        median_ess=float(np.median(ess)),
        n=n,
    )


def _solve_monotone(
    fn, start: float, tol: float, max_iter: int = 200, slope=None
) -> tuple[float, int]:
    """Root of an increasing function of beta > 0: log-scale bracket, then bisection on log beta.

    With ``slope(b) -> (f(b), f'(b))`` the bisection becomes safeguarded Newton (Numerical
    Recipes' ``rtsafe``): a Newton step in beta is taken whenever it stays inside the bracket.
    """
    lo_t = hi_t = math.log(start)
    f0 = fn(start)
    if f0 == 0:
        return start, 0
    step = 0.5
    it = 0
    if f0 < 0:
        while fn(math.exp(hi_t)) < 0:
            hi_t += step
            it += 1
            if hi_t - math.log(start) > 40:
                raise ValueError(
                    "no finite beta solves the fit: the objective keeps improving as beta grows"
                )
    else:
        while fn(math.exp(lo_t)) > 0:
            lo_t -= step
            it += 1
            if math.log(start) - lo_t > 40:
                raise ValueError(
                    "no finite beta solves the fit: the objective keeps improving as beta shrinks"
                )
    if slope is not None:
        lo, hi = math.exp(lo_t), math.exp(hi_t)
        b = 0.5 * (lo + hi)
        for _ in range(max_iter):
            it += 1
            f, d = slope(b)
            if f < 0:
                lo = b
            else:
                hi = b
            nb = b - f / d if d > 0 else 0.5 * (lo + hi)
            if not lo < nb < hi:
                nb = 0.5 * (lo + hi)
            if abs(nb - b) <= tol * b:
                return nb, it
            b = nb
        return b, it
    for _ in range(max_iter):
        it += 1
        mid = 0.5 * (lo_t + hi_t)
        if fn(math.exp(mid)) < 0:
            lo_t = mid
        else:
            hi_t = mid
        if hi_t - lo_t < tol:
            break
    return math.exp(0.5 * (lo_t + hi_t)), it
