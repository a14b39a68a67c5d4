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
from ..runtime.plan import Shard, run_here
from ._common import EvalCounter, make_base, progress_bar
from ._plan import LogZPlan
from ._stats import summarize_log_weights, weights_estimate
from .result import LogZEstimate

__all__ = ["importance_log_partition", "ImportancePlan", "DEFAULT_NUM_SAMPLES"]

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
    plan = ImportancePlan(
        dist,
        generator,
        num_samples=num_samples,
        base=base,
        base_scale=base_scale,
        num_batches=num_batches,
        chunk_size=chunk_size,
    )
    return run_here(plan, progress=progress)


class ImportancePlan(LogZPlan):
    """``method="importance"`` as a plan: the base is fitted once, the draws are sharded and
    their log-weights pooled before the log-mean-exp."""

    method = "importance"

    def __init__(
        self,
        dist: Gibbs,
        generator: torch.Generator,
        *,
        seed: int | None = None,
        num_samples: int | None = None,
        base: Any = None,
        base_scale: float = 1.0,
        num_batches: int = DEFAULT_NUM_BATCHES,
        chunk_size: int = _CHUNK,
    ) -> None:
        given = {"num_samples": num_samples, "base": base, "base_scale": base_scale}
        super().__init__(
            dist, seed, {**given, "num_batches": num_batches, "chunk_size": chunk_size}
        )
        self.defaults: dict[str, Any] = {}
        if num_samples is None:
            num_samples = DEFAULT_NUM_SAMPLES
            self.defaults["num_samples"] = num_samples
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
            raise ValueError(f"num_batches must be an int >= 0, got {num_batches!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        if base is None:
            self.defaults["base"] = "uniform" if dist.is_discrete else "laplace"
        self.base = make_base(dist, base, generator, base_scale=base_scale)
        self.num_items = num_samples
        self.num_batches = num_batches
        self.chunk_size = chunk_size
        self._finish_setup(generator)

    def transport_parts(self) -> dict[str, Any]:
        return {**super().transport_parts(), "the base distribution": self.base}

    def run_shard(self, shard: Shard, *, progress: bool | str = False) -> dict[str, Any]:
        dist, q = self.dist, self.base
        counter = EvalCounter()
        ld = counter.wrap(dist.logdensity, len(dist.event_shape))
        g = self.shard_generator(shard)
        out = []
        bar = progress_bar(shard.size, "importance", bool(progress))
        with torch.no_grad():
            for start in range(0, shard.size, self.chunk_size):
                n = min(self.chunk_size, shard.size - start)
                y = q.sample(n, g)
                lw = ld(y).to(torch.float64) - q.log_prob(y).to(torch.float64)
                out.append(torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw))
                bar.update(n)
        bar.close()
        return {
            "log_w": torch.cat(out).detach().to("cpu", torch.float64),
            "num_energy_evals": counter.n,
        }

    def merge(
        self, results: list[dict[str, Any]], run_info: dict[str, Any] | None = None
    ) -> LogZEstimate:
        log_w = torch.cat([r["log_w"] for r in results])
        summ, se, wdiag = weights_estimate(
            log_w, self.num_batches, self.dist.beta.dtype, batch_floor=False
        )
        diag: dict[str, Any] = {**wdiag, "base": self.base.describe(), "defaults": self.defaults}
        if run_info is not None:
            diag["shards"] = {
                **self.shard_record(run_info, results),
                "shard_log_z": [summarize_log_weights(r["log_w"])["log_mean"] for r in results],
            }
        return LogZEstimate(
            log_z=summ["log_mean"],
            stderr=se,
            method="importance",
            num_energy_evals=sum(r["num_energy_evals"] for r in results),
            diagnostics=diag,
        )
