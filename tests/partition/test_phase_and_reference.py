"""Honest log Z across phase transitions and from wrong references (issue 13).

* ``smc``: the reference's own importance weights at the first particles. A reference whose
  tail is lighter than the target's (a 2-D Student-t, nu = 3, from its Laplace reference; a
  reference made deliberately too narrow) has Pareto k-hat > 0.7 with the largest weights in
  the reference's tail: the runs then agree on a value that is too low (measured: 29 of 40
  seeds low by more than 1.96 stderr on the Student-t), so the estimate must be untrusted. A
  Gaussian target from its (wider) Laplace reference stays trusted and right (control).
"""

import math
import warnings

import torch

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.partition.smc import REFERENCE_KHAT, reference_tail

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
