"""Bridge sampling (Bennett's acceptance ratio) chained along a ladder.

For neighbouring rungs :math:`\\pi_k, \\pi_{k+1}` with draws :math:`x_i \\sim \\pi_k`
(:math:`n_1`) and :math:`y_j \\sim \\pi_{k+1}` (:math:`n_2`) and
:math:`\\ell(y) = \\pi_{k+1}(y)/\\pi_k(y)`, the ratio :math:`r = Z_{k+1}/Z_k` solves the
fixed point of the optimal bridge (Meng & Wong 1996, eq. 4.1; Bennett 1976)

.. math::

    r^{(t+1)} = \\frac{\\frac1{n_1} \\sum_i \\frac{\\ell(x_i)}{s_1 \\ell(x_i) + s_2 r^{(t)}}}
                     {\\frac1{n_2} \\sum_j \\frac{1}{s_1 \\ell(y_j) + s_2 r^{(t)}}},
    \\qquad s_1 = \\frac{n_2}{n_1 + n_2},\\ s_2 = \\frac{n_1}{n_1 + n_2},

iterated in log space from the importance-sampling estimate. The log-ratios are summed along
the ladder; the standard error is a delete-one-group jackknife over independent chains.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..distribution import Gibbs
from ..runtime.plan import run_here
from ._rungs import LadderPlan, RungData, jackknife_stderr, phase_checks
from ._stats import weight_ess
from .result import LogZEstimate

__all__ = ["bridge_log_partition", "BridgePlan", "bridge_log_ratio", "bridge_from_rungs"]


def bridge_log_ratio(
    log_l_lower: torch.Tensor,
    log_l_upper: torch.Tensor,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> float:
    """Optimal-bridge estimate of :math:`\\log(Z_{upper}/Z_{lower})`.

    Parameters
    ----------
    log_l_lower : Tensor
        :math:`\\log \\pi_{upper}(x) - \\log \\pi_{lower}(x)` at draws ``x`` of the lower rung.
    log_l_upper : Tensor
        The same log-ratio at draws of the upper rung.

    Returns
    -------
    float
        The fixed point of Meng & Wong's iteration.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4000, generator=g, dtype=torch.float64)         # N(0, 1)
    >>> y = 0.5 + torch.randn(4000, generator=g, dtype=torch.float64)   # N(0.5, 1)
    >>> ll = lambda v: -0.5 * (v - 0.5) ** 2 + 0.5 * v ** 2 + 0.3       # Z ratio e^0.3
    >>> round(bridge_log_ratio(ll(x), ll(y)), 1)
    0.3
    """
    a = log_l_lower.reshape(-1).to(torch.float64)
    b = log_l_upper.reshape(-1).to(torch.float64)
    a = a[~torch.isnan(a)]
    b = b[~torch.isnan(b)]
    n1, n2 = a.numel(), b.numel()
    log_s1 = math.log(n2 / (n1 + n2))
    log_s2 = math.log(n1 / (n1 + n2))
    log_r = float(torch.logsumexp(a, 0) - math.log(n1))
    if not math.isfinite(log_r):
        log_r = 0.0
    for _ in range(max_iter):
        lr = torch.tensor(log_r + log_s2, dtype=torch.float64)
        num = torch.logsumexp(a - torch.logaddexp(log_s1 + a, lr), 0) - math.log(n1)
        den = torch.logsumexp(-torch.logaddexp(log_s1 + b, lr), 0) - math.log(n2)
        new = float(num - den)
        if not math.isfinite(new):
            return new
        if abs(new - log_r) < tol:
            return new
        log_r = new
    return log_r


def _chain_total(rungs: RungData, keep: torch.Tensor | None = None) -> float:
    r = rungs.num_rungs
    down = rungs.down
    total = 0.0
    for k in range(1, r):
        a, b = rungs.fwd[k], -rungs.bwd[k + 1]
        if down is not None:
            a = torch.cat([a, down.fwd[k]], 1)
            b = torch.cat([b, -down.bwd[k + 1]], 1)
        if keep is not None:
            a, b = a[keep], b[keep]
        total += bridge_log_ratio(a, b)
    return total


def bridge_from_rungs(rungs: RungData) -> tuple[float, float, dict[str, Any]]:
    """Chained bridge estimate, jackknife stderr and per-pair diagnostics.

    With a down pass (``rungs.down``), each pair's draws pool both passes, and half the
    difference between the up-only and down-only chains (the hysteresis) enters the
    standard error as a systematic term. The ladder is checked for a phase transition
    (:func:`~gibbsebm.partition._rungs.phase_checks`); the bridge needs no quadrature, so
    only the flags apply (an unresolved spike shows as poor overlap of the pair).
    """
    r = rungs.num_rungs
    c = rungs.num_chains
    pieces = [bridge_log_ratio(rungs.fwd[k], -rungs.bwd[k + 1]) for k in range(1, r)]
    chain_sum = _chain_total(rungs)
    jk_se, _ = jackknife_stderr(lambda keep: _chain_total(rungs, keep), c) if r > 1 else (0.0, [])
    hyst = 0.0
    diag_h: dict[str, Any] = {}
    if rungs.down is not None and r > 1:
        up = sum(pieces)
        down = sum(bridge_log_ratio(rungs.down.fwd[k], -rungs.down.bwd[k + 1]) for k in range(1, r))
        hyst = abs(up - down) / 2.0
        diag_h = {"total_up": up, "total_down": down, "hysteresis": hyst}
    overlap = [min(weight_ess(rungs.fwd[k]), weight_ess(rungs.bwd[k + 1])) for k in range(1, r)]
    log_z = rungs.first_log_z + chain_sum
    phase_diag, extra, _ = phase_checks(rungs)
    se = math.sqrt(rungs.first_stderr**2 + jk_se**2 + hyst**2)
    n_draws = rungs.fwd[1].numel() if r > 1 else 0
    if overlap and min(overlap) < 10:
        extra.append(
            f"poor overlap between neighbouring rungs (ESS {min(overlap):.1f} of {n_draws} "
            "draws): use more rungs"
        )
    diag = {
        "pair_log_ratio_up": pieces,
        "pair_min_ess": overlap,
        "jackknife_stderr": jk_se,
        **diag_h,
        "phase": phase_diag,
        "first_interval_log_z": rungs.first_log_z,
        "first_interval_stderr": rungs.first_stderr,
        "ess": rungs.first_ess,
        "num_rungs": r,
        "rung_s": rungs.s[1:].tolist(),
        "extra_problems": extra,
        **rungs.info,
    }
    return log_z, se, diag


def bridge_log_partition(
    dist: Gibbs,
    generator: torch.Generator,
    *,
    progress: bool = True,
    samples: Any = None,
    **options: Any,
) -> LogZEstimate:
    """``method="bridge"``: optimal bridge sampling chained along a ladder.

    The arguments (the distribution, a generator, ``progress``, an optional parallel-tempering
    run ``samples`` to reuse, and the ladder options) are those of
    :func:`~gibbsebm.partition.ti.ti_log_partition`.

    Returns
    -------
    LogZEstimate
        ``diagnostics``: ``pair_log_ratio_up`` (one per neighbouring pair, up pass), ``pair_min_ess``
        (overlap of each pair), ``jackknife_stderr``.

    References
    ----------
    Bennett, C. H. (1976). Efficient estimation of free energy differences from Monte Carlo
    data. *J. Comput. Phys.* 22.
    Meng, X.-L. & Wong, W. H. (1996). Simulating ratios of normalizing constants via a
    simple identity. *Statistica Sinica* 6.

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> est = gibbsebm.log_partition(d, method="bridge", seed=0, base_scale=1.5, progress=False)
    >>> abs(est.log_z - float(d.log_partition())) < 5 * est.stderr
    True
    """
    return run_here(BridgePlan(dist, generator, samples=samples, **options), progress=progress)


class BridgePlan(LadderPlan):
    """``method="bridge"`` as a plan (see :class:`~gibbsebm.partition._rungs.LadderPlan`)."""

    method = "bridge"

    def reduce(self, rungs: RungData) -> tuple[float, float, dict[str, Any]]:
        return bridge_from_rungs(rungs)
