"""Thermodynamic integration over a ladder of intermediate distributions.

.. math::

    \\log Z_1 = \\log Z_{s_1} + \\int_{s_1}^{1} E_{\\pi_s}\\big[\\partial_s \\log \\pi_s(y)\\big]\\, ds,

which on the temperature path is :math:`\\log Z(\\beta) = \\log Z(\\beta_1) -
\\int_{\\beta_1}^{\\beta} \\langle E \\rangle_b\\, db` (Kirkwood 1935; Gelman & Meng 1998).
The integral is the trapezoid rule over the rungs; its Monte Carlo error comes from the
spread of per-chain integrals over independent chains, and its quadrature error from the
Richardson estimate :math:`|T_h - T_{2h}|/3` (the trapezoid error is :math:`O(h^2)`).
:math:`\\log Z_{s_1}` is bridged from the base by importance sampling.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..distribution import Gibbs
from ..runtime.plan import run_here
from ._rungs import LadderPlan, RungData, phase_checks
from .result import LogZEstimate

__all__ = ["ti_log_partition", "TIPlan", "ti_from_rungs"]


def _trapezoid(s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule over the last axis of ``m`` at nodes ``s``."""
    ds = s[1:] - s[:-1]
    return (ds * 0.5 * (m[..., 1:] + m[..., :-1])).sum(-1)


def _per_chain(rungs: RungData) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-rung per-chain means ``(C, R)`` and per-chain trapezoid integrals ``(C,)``."""
    r = rungs.num_rungs
    m = torch.stack([rungs.deriv[k].mean(1) for k in range(1, r + 1)], -1)
    return m, _trapezoid(rungs.s[1:], m)


def ti_from_rungs(rungs: RungData) -> tuple[float, float, dict[str, Any]]:
    """log Z, its standard error and diagnostics from rung data.

    With a down pass (``rungs.down``), the up and down integrals are averaged per chain and
    half their difference (the hysteresis, the first-order effect of chains lagging behind
    the ladder) enters the standard error as a systematic term. The ladder is checked for a
    phase transition (:func:`~gibbsebm.partition._rungs.phase_checks`): passes in different
    phases, chains split between basins and an unresolved heat-capacity spike make the
    estimate untrusted, and the spike's monotone quadrature bound is added to the stderr.
    """
    r = rungs.num_rungs
    s = rungs.s[1:]  # rungs 1..R
    m, per_chain = _per_chain(rungs)
    hyst = 0.0
    diag_h: dict[str, Any] = {}
    if rungs.down is not None:
        m_d, per_chain_d = _per_chain(rungs.down)
        up, down = float(per_chain.mean()), float(per_chain_d.mean())
        hyst = abs(up - down) / 2.0
        diag_h = {"integral_up": up, "integral_down": down, "hysteresis": hyst}
        m = 0.5 * (m + m_d)
        per_chain = 0.5 * (per_chain + per_chain_d)
    c = m.shape[0]
    integral = float(per_chain.mean())
    mc_se = float(per_chain.std() / math.sqrt(c))
    coarse_idx = list(range(0, r, 2))
    if coarse_idx[-1] != r - 1:
        coarse_idx.append(r - 1)
    coarse = float(_trapezoid(s[coarse_idx], m.mean(0)[coarse_idx]))
    quad_err = abs(integral - coarse) / 3.0
    log_z = rungs.first_log_z + integral
    phase_diag, phase_problems, phase_extra = phase_checks(rungs)
    se = math.sqrt(rungs.first_stderr**2 + mc_se**2 + quad_err**2 + hyst**2 + phase_extra**2)
    diag = {
        "integral": integral,
        "mc_stderr": math.sqrt(mc_se**2 + rungs.first_stderr**2),
        "quadrature_error": quad_err,
        **diag_h,
        "first_interval_log_z": rungs.first_log_z,
        "first_interval_stderr": rungs.first_stderr,
        "ess": rungs.first_ess,
        "rung_s": s.tolist(),
        "rung_mean": m.mean(0).tolist(),
        "rung_mcse": (m.std(0) / math.sqrt(c)).tolist(),
        "num_rungs": r,
        "phase": phase_diag,
        "extra_problems": phase_problems,
        **rungs.info,
    }
    return log_z, se, diag


def ti_log_partition(
    dist: Gibbs,
    generator: torch.Generator,
    *,
    progress: bool = True,
    samples: Any = None,
    **options: Any,
) -> LogZEstimate:
    """``method="ti"``: thermodynamic integration along the annealing path.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch target.
    generator : torch.Generator
        Randomness.
    progress : bool
        Progress bar on a terminal.
    samples : Samples, optional
        A ``gibbsebm.sample(dist, "pt", ...)`` run whose ladder ends at ``dist.beta``: its
        replicas at every beta are reused (the hottest beta's log Z comes from importance
        sampling). Without it, chains are moved up a conditional-ESS ladder.
    **options
        ``num_chains`` (128), ``num_rungs`` (default: the pilot's conditional-ESS ladder),
        ``burn`` / ``draws`` (kernel steps discarded / recorded per rung, 4 / 4),
        ``hysteresis`` (default True: the chains also walk back down the ladder; the two
        passes are averaged and half their difference is added to the stderr), ``kernel``,
        ``steps_per_stage``, ``kernel_options``, ``base``, ``base_scale``, ``cess``.

    Returns
    -------
    LogZEstimate
        ``stderr`` combines the Monte Carlo error (independent chains), the quadrature
        error estimate and the first interval's importance-sampling error. ``diagnostics``:
        ``rung_mean`` / ``rung_mcse`` (per-rung means of the integrand and their MCSE),
        ``quadrature_error``, ``mc_stderr``.

    References
    ----------
    Gelman, A. & Meng, X.-L. (1998). Simulating normalizing constants: from importance
    sampling to bridge sampling to path sampling. *Statistical Science* 13(2).

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> est = gibbsebm.log_partition(d, method="ti", seed=0, base_scale=1.5, progress=False)
    >>> abs(est.log_z - float(d.log_partition())) < 5 * est.stderr
    True
    """
    return run_here(TIPlan(dist, generator, samples=samples, **options), progress=progress)


class TIPlan(LadderPlan):
    """``method="ti"`` as a plan (see :class:`~gibbsebm.partition._rungs.LadderPlan`)."""

    method = "ti"

    def reduce(self, rungs: RungData) -> tuple[float, float, dict[str, Any]]:
        return ti_from_rungs(rungs)
