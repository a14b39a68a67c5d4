"""Raw energy vs calibrated probability as confidence scores.

The lowest energy and the highest probability pick the same label (the arg-min of
:math:`E(x,\\cdot)` is the arg-max of :math:`p_\\beta(\\cdot\\mid x)` for every beta > 0), but as
*scores* they mean different things: :math:`\\min_k E(x,k)` is an absolute level, while
:math:`\\max_k p_\\beta(k\\mid x) = 1 / \\sum_k e^{-\\beta (E(x,k) - \\min_j E(x,j))}` depends only
on the gaps between the energies of one input. This module compares them for

* **error detection / selective prediction**: how well a score ranks correct predictions
  above wrong ones (AUROC with a DeLong standard error) and the risk-coverage curve
  (Geifman & El-Yaniv 2017) with its area (AURC);
* **out-of-distribution detection**: the free energy
  :math:`F_\\beta(x) = -\\beta^{-1}\\log\\sum_k e^{-\\beta E(x,k)}` against the maximum
  probability, as in Liu et al. (2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import norm as _normal

from ._inputs import as_float_tensor, as_labels, check_energies, make_generator
from .temperature import _beta_tensor

__all__ = [
    "AUROC",
    "RiskCoverage",
    "ScoreComparison",
    "OODComparison",
    "auroc",
    "risk_coverage",
    "confidence_scores",
    "compare_confidence_scores",
    "compare_ood_scores",
]


@dataclass(frozen=True)
class AUROC:
    """Area under the ROC curve with its DeLong standard error.

    Attributes
    ----------
    value : float
        :math:`P(s^+ > s^-) + \\tfrac12 P(s^+ = s^-)` over positive/negative pairs.
    stderr : float
        DeLong et al. (1988) standard error.
    ci_low, ci_high : float
        Normal interval ``value ± z stderr`` clipped to [0, 1].
    n_pos, n_neg : int
        Numbers of positives and negatives.
    """

    value: float
    stderr: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict:
        return {k: _num(getattr(self, k)) for k in self.__dataclass_fields__}


def _num(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _midranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties given their average rank (float64)."""
    n = x.shape[0]
    order = torch.argsort(x, stable=True)
    xs = x[order]
    # start/end of each run of ties
    new = torch.ones(n, dtype=torch.bool, device=x.device)
    new[1:] = xs[1:] != xs[:-1]
    run_id = torch.cumsum(new.to(torch.int64), 0) - 1
    pos = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    n_runs = int(run_id[-1]) + 1
    sums = torch.zeros(n_runs, dtype=torch.float64, device=x.device).index_add_(0, run_id, pos)
    cnts = torch.zeros(n_runs, dtype=torch.float64, device=x.device).index_add_(
        0, run_id, torch.ones_like(pos)
    )
    ranks = torch.empty(n, dtype=torch.float64, device=x.device)
    ranks[order] = (sums / cnts)[run_id]
    return ranks


def auroc(scores: Any, positives: Any, *, ci_level: float = 0.95) -> AUROC:
    """AUROC of ``scores`` for separating ``positives`` (True) from negatives.

    Computed from mid-ranks (ties count one half), with the DeLong variance
    :math:`S_{10}/m + S_{01}/n` of the structural components.

    Parameters
    ----------
    scores : array or Tensor, shape (N,)
        Higher means "more likely positive".
    positives : array or Tensor of bool, shape (N,)
    ci_level : float
        Level of the normal confidence interval.

    Returns
    -------
    AUROC
        ``nan`` value when one of the two groups is empty.

    References
    ----------
    DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more
    correlated receiver operating characteristic curves", Biometrics 44(3).
    Sun & Xu (2014), "Fast implementation of DeLong's algorithm", IEEE SPL 21(11).

    Examples
    --------
    >>> auroc([0.9, 0.8, 0.3, 0.1], [True, False, True, False]).value
    0.75
    """
    s = as_float_tensor(scores, "scores").reshape(-1)
    pos = torch.as_tensor(
        positives.detach() if isinstance(positives, torch.Tensor) else np.asarray(positives)
    ).to(device=s.device)
    if pos.shape != s.shape:
        raise ValueError(
            f"positives has shape {tuple(pos.shape)} but scores has {tuple(s.shape)} (mismatched lengths)"
        )
    if torch.isnan(s).any():
        raise ValueError("scores contain NaN")
    pos = pos.to(torch.bool)
    x, y = s[pos], s[~pos]
    m, n = x.shape[0], y.shape[0]
    if m == 0 or n == 0:
        nan = float("nan")
        return AUROC(nan, nan, nan, nan, ci_level, m, n)
    r_all = _midranks(torch.cat((x, y)))
    rx, ry = _midranks(x), _midranks(y)
    auc = float((r_all[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (r_all[:m] - rx) / n  # fraction of negatives below each positive
    v01 = 1.0 - (r_all[m:] - ry) / m  # fraction of positives above each negative
    s10 = float(v10.var()) if m > 1 else 0.0
    s01 = float(v01.var()) if n > 1 else 0.0
    se = math.sqrt(s10 / m + s01 / n)
    z = float(_normal.ppf(0.5 + ci_level / 2))
    return AUROC(auc, se, max(0.0, auc - z * se), min(1.0, auc + z * se), ci_level, m, n)


@dataclass(frozen=True)
class RiskCoverage:
    """Risk-coverage curve of selective prediction.

    Attributes
    ----------
    coverage : ndarray
        ``k / N`` for k = 1..N (keep the k most confident predictions).
    risk : ndarray
        Error rate among the kept predictions.
    aurc : float
        Area under the curve, the mean of ``risk`` over k (lower is better).
    aurc_ci_low, aurc_ci_high, aurc_stderr : float
        Seeded percentile-bootstrap interval and standard deviation of the AURC.
    """

    coverage: np.ndarray
    risk: np.ndarray
    aurc: float
    aurc_stderr: float
    aurc_ci_low: float
    aurc_ci_high: float

    def to_dict(self, max_points: int = 200) -> dict:
        step = max(1, len(self.coverage) // max_points)
        return {
            "aurc": self.aurc,
            "aurc_stderr": _num(self.aurc_stderr),
            "aurc_ci_low": _num(self.aurc_ci_low),
            "aurc_ci_high": _num(self.aurc_ci_high),
            "coverage": self.coverage[::step].tolist(),
            "risk": self.risk[::step].tolist(),
        }


def _aurc_rows(scores: torch.Tensor, errors: torch.Tensor) -> torch.Tensor:
    """AURC of each row of ``scores``/``errors`` ``(R, N)``; ties broken by stable order."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    e = errors.gather(1, order)
    k = torch.arange(1, e.shape[1] + 1, dtype=torch.float64, device=e.device)
    return (e.cumsum(1) / k).mean(1)


def risk_coverage(
    scores: Any,
    correct: Any,
    *,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> RiskCoverage:
    """Risk-coverage curve and its area (AURC) for confidence ``scores``.

    Parameters
    ----------
    scores : array or Tensor, shape (N,)
        Confidence of each prediction (higher = kept first).
    correct : array or Tensor of bool, shape (N,)
        Whether each prediction is right.
    n_bootstrap, ci_level, seed
        Bootstrap settings for the AURC interval (``n_bootstrap=0`` skips it).

    Returns
    -------
    RiskCoverage

    References
    ----------
    Geifman & El-Yaniv (2017), "Selective classification for deep neural networks", NeurIPS.

    Examples
    --------
    >>> rc = risk_coverage([0.9, 0.8, 0.7], [True, False, True], n_bootstrap=0)
    >>> rc.risk.tolist()
    [0.0, 0.5, 0.3333333333333333]
    """
    s = as_float_tensor(scores, "scores").reshape(-1)
    c = torch.as_tensor(
        correct.detach() if isinstance(correct, torch.Tensor) else np.asarray(correct)
    ).to(device=s.device)
    if c.shape != s.shape:
        raise ValueError(
            f"correct has shape {tuple(c.shape)} but scores has {tuple(s.shape)} (mismatched lengths)"
        )
    if s.numel() == 0:
        raise ValueError("scores is empty")
    err = (~c.to(torch.bool)).to(torch.float64)
    order = torch.argsort(s, descending=True, stable=True)
    k = torch.arange(1, s.shape[0] + 1, dtype=torch.float64, device=s.device)
    risk = err[order].cumsum(0) / k
    aurc = float(risk.mean())
    lo = hi = se = float("nan")
    if n_bootstrap:
        g = make_generator(seed, s.device)
        n = s.shape[0]
        per = max(1, 2**21 // n)
        reps = []
        done = 0
        while done < n_bootstrap:
            r = min(per, n_bootstrap - done)
            idx = torch.randint(0, n, (r, n), generator=g, device=s.device)
            reps.append(_aurc_rows(s[idx], err[idx]))
            done += r
        rr = torch.cat(reps).cpu().numpy()
        a = (1 - ci_level) / 2
        lo, hi = (float(v) for v in np.quantile(rr, [a, 1 - a]))
        se = float(rr.std(ddof=1)) if rr.size > 1 else float("nan")
    return RiskCoverage(
        coverage=(k / s.shape[0]).cpu().numpy(),
        risk=risk.cpu().numpy(),
        aurc=aurc,
        aurc_stderr=se,
        aurc_ci_low=lo,
        aurc_ci_high=hi,
    )


def confidence_scores(energies: Any, beta: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
    """Three confidence scores of the arg-min prediction, each "higher = more confident".

    * ``"energy"``: :math:`-\\min_k E(x,k)`, the raw energy of the predicted label;
    * ``"probability"``: :math:`\\max_k p_\\beta(k \\mid x)`;
    * ``"neg_free_energy"``: :math:`-F_\\beta(x) = \\beta^{-1}\\log\\sum_k e^{-\\beta E(x,k)}`.

    Returns
    -------
    dict of str to Tensor
        Each ``(N,)`` float64.
    """
    e = check_energies(energies)
    b = _beta_tensor(beta, e)
    lse = torch.logsumexp(-b * e, dim=1)
    return {
        "energy": -e.amin(1),
        "probability": torch.exp((-b * e).amax(1) - lse),
        "neg_free_energy": lse / b.reshape(-1),
    }


@dataclass(frozen=True)
class ScoreComparison:
    """Confidence scores compared for error detection and selective prediction.

    Attributes
    ----------
    beta : float
        The inverse temperature of the probability score.
    accuracy : float
        Accuracy of the (shared) arg-min prediction.
    auroc : dict of str to AUROC
        Error-detection AUROC of each score (positives = correct predictions).
    risk_coverage : dict of str to RiskCoverage
        Risk-coverage curve of each score.
    """

    beta: float
    accuracy: float
    auroc: dict
    risk_coverage: dict

    def to_dict(self) -> dict:
        return {
            "beta": self.beta,
            "accuracy": self.accuracy,
            "auroc": {k: v.to_dict() for k, v in self.auroc.items()},
            "risk_coverage": {k: v.to_dict() for k, v in self.risk_coverage.items()},
        }


def compare_confidence_scores(
    energies: Any,
    labels: Any,
    beta: float = 1.0,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> ScoreComparison:
    """Raw energy vs calibrated probability (and free energy) as error-detection scores.

    Parameters
    ----------
    energies : array or Tensor, shape (N, K)
        Evaluation energies.
    labels : array or Tensor, shape (N,)
    beta : float
        Inverse temperature for the probability and free-energy scores (e.g. ``fit.beta``).
    n_bootstrap, seed
        Bootstrap settings for the AURC intervals.

    Returns
    -------
    ScoreComparison

    Examples
    --------
    >>> import torch
    >>> e = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    >>> y = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(1))
    >>> cmp = compare_confidence_scores(e, y, beta=1.0, n_bootstrap=0)
    >>> sorted(cmp.auroc)
    ['energy', 'neg_free_energy', 'probability']
    """
    e = check_energies(energies)
    y = as_labels(labels, e.shape[0], e.shape[1], device=e.device)
    correct = e.argmin(1) == y
    scores = confidence_scores(e, beta)
    return ScoreComparison(
        beta=float(beta),
        accuracy=float(correct.to(torch.float64).mean()),
        auroc={k: auroc(v, correct) for k, v in scores.items()},
        risk_coverage={
            k: risk_coverage(v, correct, n_bootstrap=n_bootstrap, seed=seed)
            for k, v in scores.items()
        },
    )


@dataclass(frozen=True)
class OODComparison:
    """Free energy vs maximum probability as out-of-distribution scores.

    Attributes
    ----------
    beta : float
    auroc : dict of str to AUROC
        In-distribution inputs are the positives; higher score = more in-distribution.
    fpr_at_95_tpr : dict of str to float
        Fraction of OOD inputs accepted when 95% of in-distribution inputs are accepted.
    n_in, n_out : int
    """

    beta: float
    auroc: dict
    fpr_at_95_tpr: dict
    n_in: int
    n_out: int

    def to_dict(self) -> dict:
        return {
            "beta": self.beta,
            "auroc": {k: v.to_dict() for k, v in self.auroc.items()},
            "fpr_at_95_tpr": dict(self.fpr_at_95_tpr),
            "n_in": self.n_in,
            "n_out": self.n_out,
        }


def compare_ood_scores(energies_in: Any, energies_out: Any, beta: float = 1.0) -> OODComparison:
    """Negative free energy vs max probability for telling in- from out-of-distribution inputs.

    Parameters
    ----------
    energies_in : array or Tensor, shape (N, K)
        Energies of in-distribution inputs.
    energies_out : array or Tensor, shape (M, K)
        Energies of out-of-distribution inputs over the same K labels.
    beta : float
        Inverse temperature of both scores.

    Returns
    -------
    OODComparison

    References
    ----------
    Liu, Wang, Owens & Li (2020), "Energy-based out-of-distribution detection", NeurIPS.
    Hendrycks & Gimpel (2017), "A baseline for detecting misclassified and
    out-of-distribution examples in neural networks", ICLR.
    """
    ei = check_energies(energies_in, "energies_in")
    eo = check_energies(energies_out, "energies_out").to(ei.device)
    if ei.shape[1] != eo.shape[1]:
        raise ValueError(f"energies_in has {ei.shape[1]} labels but energies_out has {eo.shape[1]}")
    si, so = confidence_scores(ei, beta), confidence_scores(eo, beta)
    out_auc, out_fpr = {}, {}
    for name in ("neg_free_energy", "probability"):
        s = torch.cat((si[name], so[name]))
        pos = torch.cat(
            (
                torch.ones_like(si[name], dtype=torch.bool),
                torch.zeros_like(so[name], dtype=torch.bool),
            )
        )
        out_auc[name] = auroc(s, pos)
        # threshold keeping 95% of in-distribution scores (the 5% quantile)
        thr = torch.quantile(si[name], 0.05)
        out_fpr[name] = float((so[name] >= thr).to(torch.float64).mean())
    return OODComparison(
        beta=float(beta),
        auroc=out_auc,
        fpr_at_95_tpr=out_fpr,
        n_in=ei.shape[0],
        n_out=eo.shape[0],
    )
