"""Simple importance sampling of Z from a base distribution.

.. math::

    \\hat Z = \\frac1n \\sum_{i=1}^n \\frac{\\gamma(y_i)}{q(y_i)}, \\quad y_i \\sim q,
    \\qquad \\gamma(y) = b(y) e^{-\\beta E(y)},

reported as :math:`\\log \\hat Z` with the delta-method standard error, the Kish ESS and the
Pareto k-hat of the weights (which flags a base whose tails are too light).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..distribution import Gibbs
from ._common import EvalCounter, make_base, progress_bar
from ._stats import batch_homogeneity, rounding_error, summarize_log_weights
from .result import LogZEstimate

__all__ = ["importance_log_partition", "DEFAULT_NUM_SAMPLES"]

#: Default number of importance draws: 2**14 keeps the relative Monte Carlo error of the
#: stderr itself near 1/sqrt(2n) < 1 % while costing well under a second for cheap energies.
DEFAULT_NUM_SAMPLES = 2**14
#: Independent batches for the homogeneity check (Cochran's Q with 7 degrees of freedom).
DEFAULT_NUM_BATCHES = 8
_CHUNK = 4096


def importance_log_partition(
    dist: Gibbs,
    generator: torch.Generator,
    *,
    progress: bool = True,
    num_samples: int | None = None,
    base: Any = None,
    base_scale: float = 1.0,
    num_batches: int = DEFAULT_NUM_BATCHES,
    chunk_size: int = _CHUNK,
) -> LogZEstimate:
    """``method="importance"``: :math:`\\log Z` by importance sampling from a base.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch Gibbs distribution.
    generator : torch.Generator
        Randomness.
    progress : bool
        Show a progress bar on a terminal.
    num_samples : int, optional
        Number of draws (default :data:`DEFAULT_NUM_SAMPLES`).
    base : str, tuple or torch distribution, optional
        ``"laplace"`` (default for continuous y: Gaussian, or a mixture over the modes found,
        from a Laplace approximation), ``"standard"`` (:math:`N(0, I)`), ``"uniform"``
        (default for finite discrete supports), a ``(mean, covariance)`` pair or a torch
        ``Normal``/``MultivariateNormal``.
    base_scale : float
        Multiplies the base's standard deviations.
    num_batches : int
        Independent batches for the homogeneity check and the batch-based error.
    chunk_size : int
        Draws per energy call (bounds memory).

    Returns
    -------
    LogZEstimate
        ``diagnostics``: ``ess``, ``ess_fraction``, ``khat``, ``log_weight_sd``, batch
        estimates, ``base`` and ``defaults``.

    References
    ----------
    Geweke, J. (1989). Bayesian inference in econometric models using Monte Carlo
    integration. *Econometrica* 57(6).
    """
    defaults: dict[str, Any] = {}
    if num_samples is None:
        num_samples = DEFAULT_NUM_SAMPLES
        defaults["num_samples"] = num_samples
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    if base is None:
        defaults["base"] = "uniform" if dist.is_discrete else "laplace"
    q = make_base(dist, base, generator, base_scale=base_scale)
    counter = EvalCounter()
    ld = counter.wrap(dist.logdensity, len(dist.event_shape))
    log_w = []
    bar = progress_bar(num_samples, "importance", progress)
    with torch.no_grad():
        for start in range(0, num_samples, chunk_size):
            n = min(chunk_size, num_samples - start)
            y = q.sample(n, generator)
            lw = ld(y).to(torch.float64) - q.log_prob(y).to(torch.float64)
            lw = torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw)
            log_w.append(lw)
            bar.update(n)
    bar.close()
    log_w = torch.cat(log_w)
    summ = summarize_log_weights(log_w)
    diag: dict[str, Any] = {
        "ess": summ["ess"],
        "ess_fraction": summ["ess_fraction"],
        "khat": summ["khat"],
        "log_weight_sd": summ["log_weight_sd"],
        "num_nonfinite_weights": summ["num_nonfinite_weights"],
        "base": q.describe(),
        "defaults": defaults,
    }
    diag.update(batch_homogeneity(log_w, num_batches))
    rounding = rounding_error(log_w, dist.beta.dtype)
    diag["rounding_error"] = rounding
    return LogZEstimate(
        log_z=summ["log_mean"],
        stderr=math.sqrt(summ["stderr"] ** 2 + rounding**2),
        method="importance",
        num_energy_evals=counter.n,
        diagnostics=diag,
    )
