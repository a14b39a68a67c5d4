"""Bidirectional Monte Carlo: forward AIS (stochastic lower bound) and reverse AIS (stochastic
upper bound) of log Z (Grosse, Ghahramani & Adams 2015; Burda, Grosse & Salakhutdinov 2015).

Reverse AIS starts from draws of the target and anneals back to the base along the same
schedule, collecting

.. math::

    \\log \\rho = \\sum_{k=K}^{1} \\big[\\log\\pi_{k-1}(z_k) - \\log\\pi_k(z_k)\\big],
    \\qquad E[\\rho] = Z_0 / Z_K = 1/Z,

so :math:`-\\log \\frac1n\\sum \\rho_i` is a stochastic *upper* bound of :math:`\\log Z`
(Jensen), while forward AIS is a stochastic lower bound. **Assumption**: the reverse chains
start from exact draws of the target. They are exact where the distribution can be sampled
exactly (enumeration, closed form) or given by the caller; otherwise they are forward-AIS
particles resampled by their weights and then moved by many kernel steps at the target, and
the upper bound is only as good as those draws (stated in ``diagnostics["target_samples"]``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..distribution import Gibbs
from ..runtime.plan import Shard, run_here
from ._common import progress_bar, roundoff_stderr
from ._plan import LogZPlan, check_options, keyword_options
from ._stats import batch_homogeneity, summarize_log_weights
from .ais import DEFAULT_NUM_BATCHES, anneal, prepare_annealing
from .result import TRUST_THRESHOLDS, LogZEstimate

__all__ = ["bdmc_log_partition", "BDMCPlan", "DEFAULT_TARGET_STEPS"]

#: Kernel steps applied at the target to resampled forward-AIS particles when no exact draws
#: are available (and then the upper bound rests on these draws having mixed).
DEFAULT_TARGET_STEPS = 200


def _exact_draws(dist: Gibbs, n: int, generator: torch.Generator) -> torch.Tensor | None:
    if dist.has_enumerate_support:
        return dist.sample((n,), generator=generator)
    if (
        dist.base is None
        and dist.x is None
        and dist.latent is None
        and getattr(dist.energy, "has_exact_sample", False)
    ):
        try:
            return dist.sample((n,), generator=generator)
        except NotImplementedError:  # exact draws at some betas only (GaussianMixture: 1)
            return None
    return None


def bdmc_log_partition(
    dist: Gibbs,
    generator: torch.Generator,
    *,
    progress: bool = True,
    target_samples: torch.Tensor | None = None,
    target_steps: int = DEFAULT_TARGET_STEPS,
    num_batches: int = DEFAULT_NUM_BATCHES,
    **options: Any,
) -> LogZEstimate:
    """``method="bdmc"``: forward and reverse AIS bracketing log Z.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch target.
    generator : torch.Generator
        Randomness.
    progress : bool
        Progress bar on a terminal.
    target_samples : Tensor, optional
        ``(C, *event_shape)`` exact draws of the target (e.g. simulated data, or a long PT
        run you trust). Default: exact draws where possible, else resampled forward-AIS
        particles moved ``target_steps`` kernel steps at the target.
    target_steps : int
        See above.
    num_batches : int
        Independent batches for the batch checks.
    **options
        As for ``method="ais"`` (``num_chains``, ``num_steps``, ``schedule``, ``kernel``, ...).

    Returns
    -------
    LogZEstimate
        ``lower`` (forward AIS) and ``upper`` (reverse AIS); ``log_z`` is their midpoint and
        ``stderr`` = :math:`\\sqrt{(\\text{gap}/2)^2 + v_{mid} + r^2}`, so the interval
        ``log_z +- stderr`` covers both bounds. :math:`v_{mid}` is the Monte Carlo variance
        of the midpoint: :math:`(se_f^2 + se_r^2)/4` when the reverse chains start from
        independent draws (exact or given), and the bound :math:`((se_f + se_r)/2)^2` (any
        correlation) when they start from the forward run's own particles
        (``diagnostics["bounds_correlated"]``); :math:`r` is the floating-point floor
        (``diagnostics["roundoff_stderr"]``, :func:`~gibbsebm.partition._common.roundoff_stderr`).
        ``diagnostics``: ``gap``, both directions' ESS / k-hat / stderr, ``target_samples``
        (where the reverse chains started), ``midpoint_stderr`` (:math:`\\sqrt{v_{mid}}`).

    References
    ----------
    Grosse, R. B., Ghahramani, Z. & Adams, R. P. (2015). Sandwiching the marginal likelihood
    using bidirectional Monte Carlo. arXiv:1511.02543.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2015). Accurate and conservative estimates of
    MRF log-likelihood using reverse annealing. *AISTATS*.

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> est = gibbsebm.log_partition(d, method="bdmc", seed=0, base_scale=1.5, progress=False)
    >>> est.lower <= float(d.log_partition()) + 3 * est.stderr
    True
    """
    plan = BDMCPlan(
        dist,
        generator,
        target_samples=target_samples,
        target_steps=target_steps,
        num_batches=num_batches,
        **options,
    )
    return run_here(plan, progress=progress)


class BDMCPlan(LogZPlan):
    """``method="bdmc"`` as a plan. The reverse chains start from the forward run's particles
    when no exact draws exist, so the method runs as one shard (``shardable = False``)."""

    method = "bdmc"
    shardable = False

    def __init__(
        self,
        dist: Gibbs,
        generator: torch.Generator,
        *,
        seed: int | None = None,
        target_samples: torch.Tensor | None = None,
        target_steps: int = DEFAULT_TARGET_STEPS,
        num_batches: int = DEFAULT_NUM_BATCHES,
        **options: Any,
    ) -> None:
        super().__init__(dist, seed, options)
        check_options("bdmc", options, keyword_options(prepare_annealing))
        if isinstance(target_steps, bool) or not isinstance(target_steps, int) or target_steps < 0:
            raise ValueError(f"target_steps must be a non-negative int, got {target_steps!r}")
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
            raise ValueError(f"num_batches must be an int >= 0, got {num_batches!r}")
        self.target_samples = target_samples
        self.target_steps = target_steps
        self.num_batches = num_batches
        self.setup = prepare_annealing(dist, generator, **options)
        self.num_items = self.setup.num_chains
        self.steps_per_item = 2 * (self.setup.s.numel() - 1)
        self._finish_setup(generator)

    def work(self, shard: Shard) -> int:
        return self.steps_per_item

    def run_shard(self, shard: Shard, *, progress: bool | str = False) -> LogZEstimate:
        return _bdmc(
            self.dist,
            self.setup,
            self.shard_generator(shard),
            target_samples=self.target_samples,
            target_steps=self.target_steps,
            num_batches=self.num_batches,
            progress=bool(progress),
        )

    def merge(
        self, results: list[LogZEstimate], run_info: dict[str, Any] | None = None
    ) -> LogZEstimate:
        (est,) = results
        return est


def _bdmc(
    dist: Gibbs,
    setup: Any,
    generator: torch.Generator,
    *,
    target_samples: torch.Tensor | None,
    target_steps: int,
    num_batches: int,
    progress: bool,
) -> LogZEstimate:
    """Forward AIS, target draws, reverse AIS along the setup's schedule (see the module)."""
    path, trans, s = setup.path, setup.trans, setup.s
    c = setup.num_chains
    k = s.numel() - 1
    bar = progress_bar(2 * k, "bdmc", progress)
    fwd = anneal(path, trans, s, path.sample_base(c, generator), generator, bar=bar)
    lw_f = fwd.log_w
    defaults = setup.defaults
    correlated = False  # reverse chains start from the forward run's own particles
    if target_samples is not None:
        y = torch.as_tensor(target_samples).to(device=dist.beta.device, dtype=dist.beta.dtype)
        if tuple(y.shape[1:]) != tuple(dist.event_shape):
            raise ValueError(
                f"target_samples must be shaped (C, {tuple(dist.event_shape)}), got {tuple(y.shape)}"
            )
        source = "given by the caller (assumed exact draws of the target)"
    else:
        y = _exact_draws(dist, c, generator)
        if y is not None:
            source = "exact draws (enumeration or closed form)"
        else:
            w = torch.softmax(torch.nan_to_num(lw_f, nan=-math.inf), 0)
            idx = torch.multinomial(w.to(torch.float64), c, replacement=True, generator=generator)
            z = fwd.state.position[idx]
            state = trans.init(z, 1.0)
            for _ in range(target_steps):
                state, _ = trans.step(generator, state, 1.0)
            y = path.to_y(state.position)
            source = (
                f"forward-AIS particles resampled by weight, then {target_steps} kernel steps at "
                "the target (ASSUMED near-exact; the upper bound is only as good as this)"
            )
            defaults["target_samples"] = "resampled AIS particles + MCMC"
            correlated = True
    rev = anneal(path, trans, s.flip(0), path.to_z(y), generator, bar=bar)
    bar.close()
    lw_r = rev.log_w  # log rho, E[rho] = 1/Z
    sf = summarize_log_weights(lw_f)
    sr = summarize_log_weights(lw_r)
    lower = sf["log_mean"]
    upper = -sr["log_mean"]
    gap = upper - lower
    half = max(gap, 0.0) / 2.0
    log_z = 0.5 * (lower + upper)
    # Monte Carlo variance of the midpoint (lower + upper) / 2. With independent reverse starts
    # the two bounds are independent: (se_f^2 + se_r^2) / 4. When the reverse chains start from
    # the forward particles (resampled), the bounds share randomness with an unknown
    # correlation rho in [-1, 1]; (se_f^2 + se_r^2 + 2 rho se_f se_r) / 4 <= ((se_f + se_r) / 2)^2
    # for every rho, so that bound is stated.
    if correlated:
        mid_var = (0.5 * (sf["stderr"] + sr["stderr"])) ** 2
    else:
        mid_var = (sf["stderr"] ** 2 + sr["stderr"] ** 2) / 4.0
    # The gap is a bias bound, not noise: log Z lies (stochastically) between the bounds, so
    # half the gap is added to the stderr (the interval log_z +- stderr spans both bounds)
    # rather than the estimate being untrusted; a negative gap beyond the noise is flagged below.
    floor = roundoff_stderr(dist, log_z)
    se = math.sqrt(half**2 + mid_var + floor**2)
    extra = []
    # noise of the gap upper - lower: the bounds' Monte Carlo errors (added when independent,
    # at most their sum when correlated) and the round-off of each bound (up to ``floor``)
    noise = sf["stderr"] + sr["stderr"] if correlated else math.hypot(sf["stderr"], sr["stderr"])
    joint = math.hypot(noise, 2.0 * floor)
    if gap < -3.0 * joint:
        extra.append(
            f"the upper bound lies {-gap:.3g} below the lower bound (> 3 stderr): the target "
            "samples do not come from the target"
        )
    if math.isfinite(sr["khat"]) and sr["khat"] > TRUST_THRESHOLDS["khat"]:
        extra.append(f"reverse-AIS Pareto k-hat {sr['khat']:.2f} > {TRUST_THRESHOLDS['khat']}")
    diag = {
        "gap": gap,
        "ess": sf["ess"],
        "khat": sf["khat"],
        "forward_stderr": sf["stderr"],
        "reverse_stderr": sr["stderr"],
        "reverse_ess": sr["ess"],
        "reverse_khat": sr["khat"],
        "forward_log_weight_sd": sf["log_weight_sd"],
        "reverse_log_weight_sd": sr["log_weight_sd"],
        "target_samples": source,
        "bounds_correlated": correlated,
        "midpoint_stderr": math.sqrt(mid_var),
        "roundoff_stderr": floor,
        "num_chains": c,
        "num_steps": k,
        "schedule": s.tolist(),
        "kernel": trans.describe(),
        "defaults": defaults,
        "extra_problems": extra,
        **setup.diag,
        **path.describe(),
    }
    fb = batch_homogeneity(lw_f, num_batches)
    if "batch_pvalue" in fb:
        diag["batch_pvalue"] = fb["batch_pvalue"]
    return LogZEstimate(
        log_z=log_z,
        stderr=se,
        method="bdmc",
        num_energy_evals=setup.counter.n,
        diagnostics=diag,
        lower=lower,
        upper=upper,
    )
