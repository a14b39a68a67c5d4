"""Simple importance sampling of Z from a base distribution.

.. math::

    \\hat Z = \\frac1n \\sum_{i=1}^n \\frac{\\gamma(y_i)}{q(y_i)}, \\quad y_i \\sim q,
    \\qquad \\gamma(y) = b(y) e^{-\\beta E(y)},

reported as :math:`\\log \\hat Z` with the delta-method standard error, the Kish ESS and the
Pareto k-hat of the weights (which flags a base whose tails are too light).

Three honesty rules on top of the delta method (each measured by
``benchmarks/coverage_benchmark.py``, issue 13):

* the stderr has the floating-point floor of :func:`~gibbsebm.partition._common.roundoff_stderr`
  added in quadrature (a mode-mixture base on a Gaussian mixture stated 1e-17 and was 2e-16
  off: z = +20);
* Pareto k-hat above :data:`KHAT_FINITE_VARIANCE` = 1/2 means the weights' variance is
  probably infinite, so the delta-method stderr (a variance estimate) is not reliable:
  ``trusted=False`` (the 4 x 4 Ising model from a uniform base was trusted at z = -5);
* on a finite support with a uniform base, a greedy local search from the heaviest draws
  finds heavy states (``diagnostics["found_states"]``); states found but never drawn whose
  weight would dominate the variance (``diagnostics["delta_stderr"]``) or whose mass
  exceeds the stated error (``diagnostics["found_mass_fraction"]``) make the estimate
  untrusted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.special import gammaincc

from ..distribution import Gibbs
from ..runtime.plan import Shard, run_here
from ._common import EvalCounter, UniformBase, make_base, progress_bar, roundoff_stderr
from ._plan import LogZPlan
from ._stats import KHAT_FINITE_VARIANCE, summarize_log_weights, weights_estimate
from .result import LogZEstimate

__all__ = [
    "importance_log_partition",
    "ImportancePlan",
    "DEFAULT_NUM_SAMPLES",
    "KHAT_FINITE_VARIANCE",
    "local_search_states",
]

#: Default number of importance draws: 2**14 keeps the relative Monte Carlo error of the
#: stderr itself near 1/sqrt(2n) < 1 % while costing well under a second for cheap energies.
DEFAULT_NUM_SAMPLES = 2**14
#: Independent batches for the homogeneity check (Cochran's Q with 7 degrees of freedom).
DEFAULT_NUM_BATCHES = 8
_CHUNK = 4096
#: Starts of the greedy local search on a finite support: the heaviest distinct draws (each
#: sweep costs starts x |values| x sites energy evaluations; the sweeps are capped so the
#: search costs at most the number of importance draws).
LOCAL_SEARCH_STARTS = 8


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
        estimates, ``roundoff_stderr``, ``base`` and ``defaults``; with a uniform base also
        ``found_states``, ``local_search``, ``delta_stderr`` and ``found_mass_fraction``
        (see the module). Pareto k-hat above :data:`KHAT_FINITE_VARIANCE` makes it untrusted.

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
        keep = isinstance(q, UniformBase)
        top_y, top_lw = None, None
        bar = progress_bar(shard.size, "importance", bool(progress))
        with torch.no_grad():
            for start in range(0, shard.size, self.chunk_size):
                n = min(self.chunk_size, shard.size - start)
                y = q.sample(n, g)
                lw = ld(y).to(torch.float64) - q.log_prob(y).to(torch.float64)
                lw = torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw)
                out.append(lw)
                if keep:  # the heaviest draws: starts of the local search (merge)
                    top_y, top_lw = _keep_heaviest(top_y, top_lw, y, lw, _TOP_DRAWS)
                bar.update(n)
        bar.close()
        res: dict[str, Any] = {
            "log_w": torch.cat(out).detach().to("cpu", torch.float64),
            "num_energy_evals": counter.n,
        }
        if keep:
            res["top_y"] = top_y.detach().to("cpu")
            res["top_log_w"] = top_lw.detach().to("cpu", torch.float64)
        return res

    def merge(
        self, results: list[dict[str, Any]], run_info: dict[str, Any] | None = None
    ) -> LogZEstimate:
        log_w = torch.cat([r["log_w"] for r in results])
        summ, se, wdiag = weights_estimate(
            log_w, self.num_batches, self.dist.beta.dtype, batch_floor=False
        )
        diag: dict[str, Any] = {**wdiag, "base": self.base.describe(), "defaults": self.defaults}
        extra: list[str] = []
        # floating-point floor (round-off of the log-sum-exp and of the energies)
        floor = roundoff_stderr(self.dist, summ["log_mean"])
        diag["roundoff_stderr"] = floor
        if math.isfinite(se):
            se = math.hypot(se, floor)
        if "batch_q" in diag:  # the batches' errors carry the same floor
            diag.update(_batch_test_with_floor(diag["batch_log_z"], diag["batch_stderr"], floor))
        khat = summ["khat"]
        if math.isfinite(khat) and khat > KHAT_FINITE_VARIANCE:
            extra.append(
                f"Pareto k-hat {khat:.2f} > {KHAT_FINITE_VARIANCE}: the importance weights' "
                "variance may be infinite, so the delta-method stderr is not reliable (the "
                "estimate is typically too low by more than its stated error)"
            )
        evals = sum(r["num_energy_evals"] for r in results)
        if isinstance(self.base, UniformBase) and math.isfinite(summ["log_mean"]):
            evals += self._check_found_states(
                results, log_w.numel(), summ["log_mean"], se, diag, extra
            )
        diag["extra_problems"] = extra
        if run_info is not None:
            diag["shards"] = {
                **self.shard_record(run_info, results),
                "shard_log_z": [summarize_log_weights(r["log_w"])["log_mean"] for r in results],
            }
        return LogZEstimate(
            log_z=summ["log_mean"],
            stderr=se,
            method="importance",
            num_energy_evals=evals,
            diagnostics=diag,
        )

    def _check_found_states(
        self,
        results: list[dict[str, Any]],
        n: int,
        log_z: float,
        se: float,
        diag: dict[str, Any],
        extra: list[str],
    ) -> int:
        """Greedy local search from the heaviest draws (uniform base on a finite support).

        A state ``s`` never drawn adds :math:`e^{2 \\ell_s} / (|S|\\, n Z^2)` to the relative
        variance of :math:`\\hat Z` (:math:`\\ell_s = \\log\\gamma(s) + \\log|S|`, its
        log-weight); the square root of their sum over the found, never-drawn states is
        ``delta_stderr``; their mass relative to :math:`\\hat Z` (the relative bias of a run
        that never draws them) is ``found_mass_fraction``. When either exceeds the stated
        stderr, the stated error rests on not having drawn these states and the estimate is
        flagged. Returns the evaluations used.
        """
        q = self.base
        top_y = torch.cat([r["top_y"] for r in results])
        top_lw = torch.cat([r["top_log_w"] for r in results])
        top_y, top_lw = _keep_heaviest(None, None, top_y, top_lw, _TOP_DRAWS)
        dev = self.dist.beta.device
        top_y = top_y.to(dev)
        # distinct starts, heaviest first
        starts = _unique_rows(top_y)[:LOCAL_SEARCH_STARTS]
        counter = EvalCounter()
        ld = counter.wrap(self.dist.logdensity, len(self.dist.event_shape))
        per_sweep = max(1, starts.shape[0] * q.vals.numel() * math.prod(q.event_shape))
        max_sweeps = max(1, min(50, n // per_sweep))
        found, found_ld, converged = local_search_states(ld, starts, q.vals.to(dev), max_sweeps)
        found_lw = found_ld.to(torch.float64).cpu() + q.log_norm
        # drawn? exact for a state at least as heavy as the lightest kept draw
        cutoff = float(top_lw.min()) if top_lw.numel() else math.inf
        flat_top = top_y.reshape(top_y.shape[0], -1)
        records, undrawn = [], []
        for i in range(found.shape[0]):
            lw_i = float(found_lw[i])
            row = found[i].reshape(1, -1)
            drawn: bool | None
            if bool((flat_top == row).all(-1).any()):
                drawn = True
            elif lw_i > cutoff or top_y.shape[0] < _TOP_DRAWS:  # < _TOP_DRAWS: all kept
                drawn = False
            else:
                drawn = None  # lighter than every kept draw: not checked
            if drawn is False:
                undrawn.append(lw_i)
            records.append({"log_weight": lw_i, "drawn": drawn, "state": found[i].cpu().tolist()})
        log_n = math.log(n)
        if undrawn:
            lw_u = torch.tensor(undrawn, dtype=torch.float64)
            lse = float(torch.logsumexp(2 * lw_u, 0))
            delta = math.exp(0.5 * (lse - q.log_norm - log_n) - log_z)
            # their own mass, gamma(s) = exp(lw_s) / |S|, relative to the estimate: a run that
            # never draws them estimates Z minus (about) this mass
            mass = math.exp(float(torch.logsumexp(lw_u, 0)) - q.log_norm - log_z)
        else:
            delta = mass = 0.0
        diag["found_states"] = records
        diag["local_search"] = {
            "starts": int(starts.shape[0]),
            "sweeps_max": max_sweeps,
            "converged": converged,
            "energy_evals": counter.n,
        }
        diag["delta_stderr"] = delta
        diag["found_mass_fraction"] = mass
        if delta > se or mass > se:
            extra.append(
                f"a greedy local search found {len(undrawn)} heavy state(s) the uniform base "
                f"never drew, holding {mass:.3g} of the estimated Z and a share {delta:.3g} of "
                f"its stderr (stated {se:.3g}): the estimate rests on states the base rarely "
                "draws (diagnostics['found_states'])"
            )
        return counter.n


def _batch_test_with_floor(
    batch_log_z: list[float], batch_stderr: list[float], floor: float
) -> dict[str, float]:
    """Cochran's Q of the batch estimates with the round-off floor added to each batch's
    stderr (:func:`~gibbsebm.partition._stats.batch_homogeneity` without it raised false
    alarms at p < 1e-6 on exact bases, where the batches differ by round-off only)."""
    e = torch.tensor(batch_log_z, dtype=torch.float64)
    v = torch.tensor(batch_stderr, dtype=torch.float64) ** 2 + floor**2
    if not bool(torch.isfinite(e).all()) or not bool((v > 0).all()):
        return {}
    w = 1.0 / v
    mean = (w * e).sum() / w.sum()
    q = float((w * (e - mean) ** 2).sum())
    dof = e.numel() - 1
    return {"batch_q": q, "batch_pvalue": float(gammaincc(0.5 * dof, 0.5 * q))}


#: Heaviest draws kept per shard (and after pooling): the local search starts from the
#: distinct ones among them, and a found state heavier than the lightest kept draw was drawn
#: if and only if it is among them. 64 is a memory bound (64 states), not a tuned value.
_TOP_DRAWS = 64


def _keep_heaviest(
    top_y: torch.Tensor | None,
    top_lw: torch.Tensor | None,
    y: torch.Tensor,
    lw: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` heaviest of the kept and the new draws (sorted, heaviest first)."""
    if top_y is not None:
        y = torch.cat([top_y, y.to(top_y.device)])
        lw = torch.cat([top_lw, lw.to(top_lw.device)])
    order = torch.argsort(lw, descending=True)[:k]
    return y[order], lw[order]


def _unique_rows(y: torch.Tensor) -> torch.Tensor:
    """Distinct states of ``y`` (leading dimension), in their first-seen order."""
    flat = y.reshape(y.shape[0], -1)
    keep: list[int] = []
    for i in range(flat.shape[0]):
        if not any(bool((flat[i] == flat[j]).all()) for j in keep):
            keep.append(i)
    return y[keep]


def local_search_states(
    logdensity: Any,
    starts: torch.Tensor,
    vals: torch.Tensor,
    max_sweeps: int,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Greedy coordinate ascent of the log-density on a finite product support.

    Each sweep visits the sites in order and sets each to its best value given the others
    (iterated conditional modes, i.e. single-site flips that lower the energy) for all starts
    at once, until a sweep changes nothing or ``max_sweeps`` is reached.

    Parameters
    ----------
    logdensity : callable
        ``(m, *event) -> (m,)``.
    starts : Tensor
        ``(m, *event)`` starting states.
    vals : Tensor
        The values each site can take.
    max_sweeps : int
        Sweep budget.

    Returns
    -------
    states, log_density, converged : Tensor, Tensor, bool
        The distinct end states (heaviest first), their log-densities, and whether every
        start reached a local maximum within the budget.

    Examples
    --------
    >>> import torch
    >>> ld = lambda y: -(y - 1.0).abs().sum(-1)
    >>> s, l, ok = local_search_states(ld, torch.zeros(2, 3), torch.tensor([0.0, 1.0]), 5)
    >>> s.tolist(), ok
    ([[1.0, 1.0, 1.0]], True)
    """
    m = starts.shape[0]
    event = starts.shape[1:]
    x = starts.reshape(m, -1).clone()
    nsite, nv = x.shape[1], vals.numel()
    vals = vals.to(x.dtype)
    converged = False
    with torch.no_grad():
        cur = logdensity(x.reshape((m,) + event)).to(torch.float64)
        for _ in range(max_sweeps):
            changed = False
            for j in range(nsite):
                cand = x[:, None, :].expand(m, nv, nsite).clone()
                cand[:, :, j] = vals
                lc = logdensity(cand.reshape((m * nv,) + event)).to(torch.float64).reshape(m, nv)
                lc = torch.nan_to_num(lc, nan=-math.inf)
                best, arg = lc.max(1)
                better = best > cur
                if bool(better.any()):
                    changed = True
                    x[better] = cand[better, arg[better]]
                    cur = torch.where(better, best, cur)
            if not changed:
                converged = True
                break
    order = torch.argsort(cur, descending=True)
    x, cur = x[order], cur[order]
    uniq = _unique_rows(x)
    keep = [int(((x == r).all(-1)).nonzero()[0]) for r in uniq]
    return uniq.reshape((-1,) + event), cur[keep], converged
