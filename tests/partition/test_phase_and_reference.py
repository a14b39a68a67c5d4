"""Honest log Z across phase transitions and from wrong references (issue 13).

* ``smc``: the reference's own importance weights at the first particles. A reference whose
  tail is lighter than the target's (a 2-D Student-t, nu = 3, from its Laplace reference; a
  reference made deliberately too narrow) has Pareto k-hat > 0.5 with the largest weights in
  the reference's tail: the runs then agree on a value that is too low (measured: 29 of 40
  seeds low by more than 1.96 stderr on the Student-t), so the estimate must be untrusted. A
  Gaussian target from its (wider) Laplace reference stays trusted and right (control).
* ``ti``/``bridge``/``ais`` near the first-order transition of the mean-field p-spin model
  (:class:`.test_phase_transition.PSpinCW`, p = 4, N = 40, transition near beta = 0.7, exact
  log Z by summing over the magnetisation): chains from the uniform base stay in the
  metastable paramagnet, every estimate is more than 1 nat low, and must be flagged (per-rung
  energy R-hat across chains, threshold 2.2; for AIS the final particles' log-density R-hat
  over their last steps). The same model at beta = 0.3 (one phase) and, for AIS, the 4 x 4
  Ising model stay trusted and right.
"""

import math
import warnings

import pytest
import torch

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.partition._path import PHASE_THRESHOLDS
from gibbsebm.partition.ais import final_particle_check
from gibbsebm.partition.smc import REFERENCE_KHAT, reference_tail

from .test_phase_transition import PSpinCW

#: Small SMC runs: 8 runs of 256 particles (the error bar still has 7 degrees of freedom).
SMC_SMALL = {"num_runs": 8, "num_particles": 256}


def _smc(dist, seed=0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gibbsebm.log_partition(
            dist, method="smc", seed=seed, progress=False, on_untrusted="ignore", **SMC_SMALL, **kw
        )


def _student_t(nu=3.0, d=2):
    def energy(y):
        return 0.5 * (nu + d) * torch.log1p((y * y).sum(-1) / nu)

    log_z = math.lgamma(nu / 2) + 0.5 * d * math.log(nu * math.pi) - math.lgamma((nu + d) / 2)
    return gibbsebm.Gibbs(energy, beta=1.0, event_shape=(d,)), log_z


def _gauss(d=2):
    return gibbsebm.Gibbs(Gaussian(torch.zeros(d, dtype=torch.float64)), beta=1.0)


def test_reference_tail_separates_heavy_tails_from_a_wide_reference():
    g = torch.Generator().manual_seed(0)
    # q = N(0, 1) against a wider target N(0, 3^2): weights exp(4 y^2 / 9) grow in q's tails
    y = torch.randn(8192, generator=g, dtype=torch.float64)
    log_q = -0.5 * y * y
    k, tail = reference_tail(-y * y / 18 - log_q, log_q)
    assert k > REFERENCE_KHAT and tail < 0.1
    # q = N(0, 1.5^2 I) against N(0, I) in 50-D: bounded weights, largest in q's bulk, whose
    # k-hat still exceeds 0.7 (a scaled chi-square log-weight): not a heavy tail
    y = 1.5 * torch.randn(8192, 50, generator=g, dtype=torch.float64)
    log_q = -0.5 * (y * y).sum(-1) / 2.25
    k, tail = reference_tail(-0.5 * (y * y).sum(-1) - log_q, log_q)
    assert k > REFERENCE_KHAT and tail > 0.9


def test_smc_heavy_tailed_target_is_flagged():
    dist, truth = _student_t()
    est = _smc(dist)
    assert est.diagnostics["reference_khat"] > REFERENCE_KHAT
    assert est.diagnostics["reference_tail_quantile"] < 0.1
    assert not est.trusted
    assert any("reference k-hat" in p for p in est.problems)


def test_smc_deliberately_narrow_reference_is_flagged():
    # negative control: the reference's standard deviations at 0.3 of the target's
    est = _smc(_gauss(), reference_scale=0.3)
    assert est.diagnostics["reference_khat"] > REFERENCE_KHAT
    assert not est.trusted
    assert any("reference k-hat" in p for p in est.problems)


def test_smc_unimodal_control_stays_trusted_and_right():
    dist = _gauss(10)
    truth = float(dist.log_partition())
    est = _smc(dist)
    assert est.trusted, est.problems
    assert est.diagnostics["reference_tail_quantile"] > 0.9
    assert abs(est.log_z - truth) < 4 * est.stderr


#: Small ladders on the p-spin model; AIS at its defaults (its own schedule and length).
PSPIN_OPTIONS = {"ti": {"num_chains": 32}, "bridge": {"num_chains": 32}, "ais": {}}


def _est(dist, method, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gibbsebm.log_partition(
            dist,
            method=method,
            seed=seed,
            progress=False,
            on_untrusted="ignore",
            **PSPIN_OPTIONS[method],
        )


@pytest.mark.parametrize("method", ["ti", "bridge", "ais"])
def test_near_the_transition_is_flagged(method):
    e = PSpinCW(40)
    truth = float(e.exact_log_partition(0.7))
    est = _est(gibbsebm.Gibbs(e, beta=0.7), method)
    assert est.log_z < truth - 0.5  # the ordered phase is missed ...
    assert not est.trusted  # ... and said
    key = "phases" if method == "ais" else "basins"
    assert any(key in p for p in est.problems), est.problems


@pytest.mark.parametrize("method", ["ti", "bridge"])
def test_single_phase_control_stays_trusted_and_right(method):
    e = PSpinCW(40)
    truth = float(e.exact_log_partition(0.3))
    est = _est(gibbsebm.Gibbs(e, beta=0.3), method)
    assert est.trusted, est.problems
    assert abs(est.log_z - truth) < 4 * est.stderr + 1e-3, (est.log_z - truth, est.stderr)


def test_ais_single_phase_control_stays_trusted_and_right():
    # the 4 x 4 Ising model at beta = 0.44 (one phase on so small a lattice; Kaufman's log Z)
    from gibbsebm.energies.ising import Ising2D

    dist = gibbsebm.Gibbs(Ising2D(4), beta=0.44)
    est = _est(dist, "ais")
    assert est.trusted, est.problems
    assert est.diagnostics["final_rhat"] < PHASE_THRESHOLDS["split_rhat"]
    assert abs(est.log_z - float(dist.log_partition())) < 4 * est.stderr


def test_final_particle_check_on_synthetic_particles():
    g = torch.Generator().manual_seed(0)
    one = torch.randn(128, 8, generator=g, dtype=torch.float64)
    r, probs = final_particle_check(one, True)
    assert r < 1.2 and probs == []
    two = one.clone()
    two[:32] += 6.0  # a quarter of the particles at another energy level
    r, probs = final_particle_check(two, True)
    assert r > PHASE_THRESHOLDS["split_rhat"] and len(probs) == 1
    # recorded, not a problem, on a continuous support; too few draws: no verdict
    assert final_particle_check(two, False)[1] == []
    assert math.isnan(final_particle_check(one[:, :1], True)[0])


def test_ladder_split_between_2_2_and_3_is_flagged():
    """Chains split between two energy levels 4.8 sds apart: R-hat about
    sqrt(1 + 4.8^2 / 4) = 2.6, between the new threshold (2.2) and the old one (3)."""
    from gibbsebm.partition._rungs import RungData, phase_checks

    g = torch.Generator().manual_seed(0)
    s = torch.linspace(0, 1, 3, dtype=torch.float64)
    deriv = {k: torch.randn(64, 4, generator=g, dtype=torch.float64) for k in (1, 2)}
    deriv[2][:32] += 4.8
    diag, probs, _ = phase_checks(RungData(s, 0.0, 0.0, 1.0, {}, {}, deriv, {}))
    assert 2.2 < diag["rung_rhat"][1] < 3.0
    assert any("basins" in p for p in probs)
