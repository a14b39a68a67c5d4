"""Statistics of importance weights: log-mean-exp with delta-method error, ESS, Pareto k-hat.

These run once per estimate on the final log-weights (never inside a sampler step), so they
may synchronise with the device and use NumPy/SciPy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import gammaincc

from .._tails import gpd_fit

__all__ = [
    "log_mean_exp",
    "weight_ess",
    "pareto_khat",
    "summarize_log_weights",
    "rounding_error",
    "batch_homogeneity",
    "weights_estimate",
    "pool_log_mean_exp",
]


def _as_np(log_w: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(log_w, torch.Tensor):
        log_w = log_w.detach().to("cpu", torch.float64).numpy()
    return np.asarray(log_w, dtype=np.float64).reshape(-1)


def log_mean_exp(log_w: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """:math:`\\log \\frac1n \\sum_i w_i` and its delta-method standard error.

    With :math:`\\hat Z = \\bar w`, :math:`\\operatorname{se}(\\log \\hat Z) \\approx
    \\operatorname{sd}(w) / (\\sqrt n\\, \\bar w)` (first-order delta method), computed on
    weights rescaled by their maximum so nothing overflows.

    Returns
    -------
    tuple of float
        ``(log_mean, stderr)``; the stderr is ``inf`` for fewer than two weights.
    """
    lw = _as_np(log_w)
    n = lw.size
    if n == 0:
        raise ValueError("no log-weights")
    finite = lw[np.isfinite(lw)]
    if finite.size == 0 or np.isnan(lw).any() or (lw == np.inf).any():
        return float("nan"), float("inf")
    m = finite.max()
    w = np.exp(lw - m)
    mean = w.mean()
    log_mean = float(m + math.log(mean))
    if n < 2:
        return log_mean, float("inf")
    sd = w.std(ddof=1)
    return log_mean, float(sd / (math.sqrt(n) * mean))


def weight_ess(log_w: torch.Tensor | np.ndarray) -> float:
    """Kish effective sample size :math:`(\\sum w)^2 / \\sum w^2` of importance weights."""
    lw = _as_np(log_w)
    finite = lw[np.isfinite(lw)]
    if finite.size == 0:
        return 0.0
    w = np.exp(lw - finite.max())
    w[~np.isfinite(w)] = 0.0
    return float(w.sum() ** 2 / (w**2).sum())


#: Pareto k-hat above which importance weights' variance is (probably) infinite: a generalized
#: Pareto tail with shape k has finite moments of order < 1/k only, so for k > 1/2 the second
#: moment behind a delta-method stderr does not exist (Vehtari et al. 2024, section 3; Koopman,
#: Shephard & Creal 2009). Used by ``importance`` (``KHAT_FINITE_VARIANCE``) and by ``smc`` for
#: its reference (``REFERENCE_KHAT``).
KHAT_FINITE_VARIANCE = 0.5


def pareto_khat(log_w: torch.Tensor | np.ndarray) -> float:
    """Pareto k-hat of the right tail of importance weights (PSIS diagnostic).

    Fits a generalized Pareto distribution to the ``M = ceil(min(0.2 S, 3 sqrt(S)))``
    largest weights (exceedances over the next largest one), as in Pareto smoothed
    importance sampling.

    Returns
    -------
    float
        k-hat; ``nan`` when the tail is degenerate (all weights equal, the zero-variance case)
        and ``inf`` when fewer than five weights exceed the cutoff.

    References
    ----------
    Zhang, J. & Stephens, M. A. (2009). A new and efficient estimation method for the
    generalized Pareto distribution. *Technometrics* 51(3).
    Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed
    importance sampling. *JMLR* 25(72).
    """
    lw = _as_np(log_w)
    lw = lw[np.isfinite(lw)]
    s = lw.size
    if s < 5:
        return float("inf")
    tail_len = int(math.ceil(min(0.2 * s, 3.0 * math.sqrt(s))))
    x = np.sort(lw - lw.max())
    cutoff = x[-tail_len - 1]
    tail = x[x > cutoff]
    if tail.size == 0:
        return float("nan")
    if tail.size <= 4:
        return float("inf")
    exceed = np.exp(tail) - math.exp(cutoff)
    if exceed[-1] <= 1e-8 * math.exp(cutoff):
        # the tail weights agree to 8 digits: rounding noise, not a tail (the zero-variance
        # case, e.g. an exact base; the stderr then rests on the rounding floor)
        return float("nan")
    k, _ = gpd_fit(np.sort(exceed))
    return float(k)


def rounding_error(log_w: torch.Tensor | np.ndarray, dtype: torch.dtype) -> float:
    """Floating-point floor of a log-weight estimate: 4 eps max_i |log w_i|.

    Log-weights computed from energies in ``dtype`` carry a relative rounding error of order
    its machine epsilon; when the weights are (nearly) constant, e.g. importance sampling from
    an exact Laplace base, this floor is the whole error. The factor 4 covers the few
    roundings of an energy evaluation.
    """
    lw = _as_np(log_w)
    lw = lw[np.isfinite(lw)]
    if lw.size == 0:
        return float("nan")
    return float(4.0 * torch.finfo(dtype).eps * np.abs(lw).max())


def summarize_log_weights(log_w: torch.Tensor | np.ndarray) -> dict[str, float]:
    """``log_mean``, ``stderr``, ``ess``, ``ess_fraction``, ``khat`` and weight spread."""
    lw = _as_np(log_w)
    log_mean, se = log_mean_exp(lw)
    ess = weight_ess(lw)
    finite = lw[np.isfinite(lw)]
    return {
        "log_mean": log_mean,
        "stderr": se,
        "ess": ess,
        "ess_fraction": ess / lw.size,
        "khat": pareto_khat(lw),
        "log_weight_sd": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        "num_weights": int(lw.size),
        "num_nonfinite_weights": int(lw.size - finite.size),
    }


def batch_homogeneity(log_w: torch.Tensor | np.ndarray, num_batches: int) -> dict[str, object]:
    """Split weights into contiguous independent batches and test that they agree.

    Each batch ``b`` gives :math:`\\log \\hat Z_b` with delta-method error :math:`s_b`; the
    statistic :math:`Q = \\sum_b (\\log \\hat Z_b - \\bar\\ell)^2 / s_b^2` with the
    precision-weighted mean :math:`\\bar\\ell` is :math:`\\chi^2_{B-1}` when the batch errors
    are right (Cochran's Q). The batch-based standard error of the pooled estimate is
    :math:`\\operatorname{sd}(\\log \\hat Z_b) / \\sqrt B`.

    Returns
    -------
    dict
        ``batch_log_z`` (list), ``batch_stderr`` (list), ``batch_pvalue``,
        ``batch_based_stderr``.
    """
    lw = _as_np(log_w)
    n = lw.size
    if num_batches < 2 or n < 2 * num_batches:
        return {}
    ests, ses = [], []
    for idx in np.array_split(np.arange(n), num_batches):
        e, s = log_mean_exp(lw[idx])
        ests.append(e)
        ses.append(s)
    e_arr, s_arr = np.asarray(ests), np.asarray(ses)
    out: dict[str, object] = {
        "batch_log_z": e_arr.tolist(),
        "batch_stderr": s_arr.tolist(),
        "batch_based_stderr": float(e_arr.std(ddof=1) / math.sqrt(num_batches)),
    }
    if np.all(np.isfinite(e_arr)) and np.all(s_arr > 0) and np.all(np.isfinite(s_arr)):
        w = 1.0 / s_arr**2
        mean = (w * e_arr).sum() / w.sum()
        q = float((w * (e_arr - mean) ** 2).sum())
        out["batch_q"] = q
        out["batch_pvalue"] = float(gammaincc(0.5 * (num_batches - 1), 0.5 * q))  # chi2 sf
    return out


def weights_estimate(
    log_w: torch.Tensor,
    num_batches: int,
    dtype: torch.dtype,
    *,
    batch_floor: bool,
) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Summary, stderr and diagnostics of (pooled) log-weights.

    The stderr is the delta-method error, raised to the batch-based error when
    ``batch_floor`` (AIS: correlated particles make the delta method optimistic), plus the
    floating-point floor of :func:`~gibbsebm.partition._stats.rounding_error`.
    """
    summ = summarize_log_weights(log_w)
    batches = batch_homogeneity(log_w, num_batches)
    se = summ["stderr"]
    if batch_floor and batches.get("batch_based_stderr") is not None and math.isfinite(se):
        se = max(se, float(batches["batch_based_stderr"]))
    rounding = rounding_error(log_w, dtype)
    diag: dict[str, Any] = {
        "ess": summ["ess"],
        "ess_fraction": summ["ess_fraction"],
        "khat": summ["khat"],
        "log_weight_sd": summ["log_weight_sd"],
        "num_nonfinite_weights": summ["num_nonfinite_weights"],
        "rounding_error": rounding,
        **batches,
    }
    return summ, math.sqrt(se**2 + rounding**2), diag


def pool_log_mean_exp(
    log_means: list[float], stderrs: list[float], sizes: list[int]
) -> tuple[float, float, float]:
    """Exact pooled ``(log mean w, delta-method stderr, Kish ESS)`` from per-shard summaries.

    Shard ``k`` reports :math:`\\ell_k = \\log \\bar w_k` and
    :math:`s_k = \\mathrm{sd}(w)_k / (\\sqrt{n_k} \\bar w_k)`, which give its sums
    :math:`\\sum w = n_k \\bar w_k` and :math:`\\sum w^2 = (n_k - 1)\\,\\mathrm{sd}_k^2 +
    n_k \\bar w_k^2`; the pooled log-mean-exp, its delta-method error and the ESS
    :math:`(\\sum w)^2 / \\sum w^2` follow exactly (weights rescaled by the largest
    :math:`\\bar w_k`).
    """
    lm = torch.tensor(log_means, dtype=torch.float64)
    se = torch.tensor(stderrs, dtype=torch.float64)
    n = torch.tensor(sizes, dtype=torch.float64)
    if not bool(torch.isfinite(lm).all()):
        return float("nan"), float("inf"), 0.0
    top = lm.max()
    mean_k = torch.exp(lm - top)
    sd_k = torch.where(n > 1, se * n.sqrt() * mean_k, torch.zeros_like(mean_k))
    total = n.sum()
    s1 = (n * mean_k).sum()
    s2 = ((n - 1) * sd_k**2 + n * mean_k**2).sum()
    mean = s1 / total
    var = (s2 - total * mean**2) / (total - 1)
    log_mean = float(top + torch.log(mean))
    stderr = float(var.clamp(min=0).sqrt() / (total.sqrt() * mean))
    ess = float(s1**2 / s2) if math.isfinite(float(s2)) else float("nan")
    return log_mean, stderr, ess
