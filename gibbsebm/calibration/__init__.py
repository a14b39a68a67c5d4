"""Calibration of energy-based classifiers: probabilities from energies, a fitted inverse
temperature, metrics that match the literature, and calibration reports.

An energy :math:`E(x, k)` over K labels gives :math:`p_\\beta(k \\mid x) =
\\operatorname{softmax}(-\\beta E(x, \\cdot))_k`; :func:`fit_beta` picks :math:`\\beta` by held-out
NLL (temperature scaling, :math:`T = 1/\\beta`). See ``docs/calibration.md``.
"""

from .metrics import (
    BinStats,
    MetricResult,
    accuracy,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    negative_log_likelihood,
)
from .temperature import (
    BetaFit,
    BetaPosterior,
    beta_posterior,
    fit_beta,
    free_energy_score,
    log_probabilities,
    nll_from_energies,
    probabilities,
)

__all__ = [
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
    "log_probabilities",
    "negative_log_likelihood",
    "nll_from_energies",
    "probabilities",
]
