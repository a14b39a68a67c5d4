"""Calibration of energy-based classifiers: probabilities from energies, a fitted inverse
temperature, metrics that match the literature, and calibration reports.

An energy :math:`E(x, k)` over K labels gives :math:`p_\\beta(k \\mid x) =
\\operatorname{softmax}(-\\beta E(x, \\cdot))_k`; :func:`fit_beta` picks :math:`\\beta` by held-out
NLL (temperature scaling, :math:`T = 1/\\beta`). See ``docs/calibration.md``.
"""

from .combine import CombinationResult, CombinationRow, WeightFit, combine, fit_weights
from .continuous import (
    CRPS,
    PIT,
    Coverage,
    PredictiveBetaFit,
    crps,
    fit_predictive_beta,
    interval_coverage,
    pit_values,
)
from .metrics import (
    BinStats,
    MetricResult,
    accuracy,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    negative_log_likelihood,
)
from .report import CalibrationReport, SystemReport, report
from .scores import (
    AUROC,
    OODComparison,
    RiskCoverage,
    ScoreComparison,
    auroc,
    compare_confidence_scores,
    compare_ood_scores,
    confidence_scores,
    risk_coverage,
)
from .temperature import (
    BetaFit,
    BetaPosterior,
    beta_posterior,
    fit_beta,
    free_energy_score,
    label_energies,
    log_probabilities,
    nll_from_energies,
    probabilities,
)

__all__ = [
    "AUROC",
    "CRPS",
    "CombinationResult",
    "CombinationRow",
    "Coverage",
    "OODComparison",
    "PIT",
    "PredictiveBetaFit",
    "RiskCoverage",
    "ScoreComparison",
    "WeightFit",
    "CalibrationReport",
    "SystemReport",
    "report",
    "auroc",
    "combine",
    "compare_confidence_scores",
    "compare_ood_scores",
    "confidence_scores",
    "crps",
    "fit_predictive_beta",
    "fit_weights",
    "interval_coverage",
    "pit_values",
    "risk_coverage",
    "BetaFit",
    "BetaPosterior",
    "BinStats",
    "MetricResult",
    "accuracy",
    "beta_posterior",
    "brier_score",
    "classwise_calibration_error",
    "expected_calibration_error",
    "fit_beta",
    "free_energy_score",
    "label_energies",
    "log_probabilities",
    "negative_log_likelihood",
    "nll_from_energies",
    "probabilities",
]
