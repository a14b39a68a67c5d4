"""Coverage of ``method="bdmc"`` error bars (issue 13).

On main before this file, bdmc on the 2-D standard Gaussian (64 chains, 200 steps, exact
reverse starts) stated 2.3e-16 and was 8.9e-16 to 1.1e-15 off (z = +3.7 on average over 8
seeds, ``benchmarks/coverage_benchmark.py``): both bounds were exact up to floating-point
round-off, which the Monte Carlo stderr does not see. The stderr now has the round-off floor
added, the midpoint's Monte Carlo variance is bounded for any correlation when the reverse
chains start from the forward particles, and half the gap between the bounds stays in the
stderr (the truth lies between the bounds, so the interval spans both).
"""

import math

import pytest
import torch

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.partition._common import roundoff_stderr

from .test_exact_importance_ais import _ising, _rbm

#: Two-sided 95 % normal quantile.
Z95 = 1.959964


def _bdmc(dist, seed, **opts):
    opts = {"num_chains": 32, "num_steps": 50, **opts}
    return gibbsebm.log_partition(
        dist, method="bdmc", seed=seed, progress=False, on_untrusted="ignore", **opts
    )


def _gauss2():
    return gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)), beta=1.0)


def _student_t(nu=3.0, d=2):
    def energy(y):
        return 0.5 * (nu + d) * torch.log1p((y * y).sum(-1) / nu)

    log_z = math.lgamma(nu / 2) + 0.5 * d * math.log(nu * math.pi) - math.lgamma((nu + d) / 2)
    return gibbsebm.Gibbs(energy, beta=1.0, event_shape=(d,)), log_z


def test_roundoff_floor_covers_exact_bounds_on_a_gaussian():
    """The benchmark's seed 2 (trusted on main at z = +4.7) is now covered; the formula of
    main (no floor) would still miss it, which is what this case pins down."""
    dist = _gauss2()
    truth = float(dist.log_partition())
    est = _bdmc(dist, 1002, num_chains=64, num_steps=200)
    d = est.diagnostics
    assert d["bounds_correlated"] is False  # exact reverse starts: independent bounds
    assert d["roundoff_stderr"] == pytest.approx(roundoff_stderr(dist, est.log_z))
    assert est.stderr >= d["roundoff_stderr"]
    assert est.trusted, est.problems
    assert abs(est.log_z - truth) < Z95 * est.stderr
    old = math.sqrt(
        max(d["gap"], 0) ** 2 / 4 + (d["forward_stderr"] ** 2 + d["reverse_stderr"] ** 2) / 4
    )
    assert abs(est.log_z - truth) > Z95 * old  # trusted-and-wrong with main's formula


def test_correlated_bounds_use_the_conservative_midpoint_variance():
    """No exact draws of a Student-t: the reverse chains start from resampled forward
    particles, so the stated midpoint variance is ((se_f + se_r) / 2)^2, which bounds the
    variance for any correlation between the bounds; with exact draws it is
    (se_f^2 + se_r^2) / 4."""
    dist, _ = _student_t()
    d = _bdmc(dist, 1000).diagnostics
    assert d["bounds_correlated"] is True
    assert d["midpoint_stderr"] == pytest.approx(0.5 * (d["forward_stderr"] + d["reverse_stderr"]))
    d = _bdmc(_gauss2(), 1000).diagnostics
    assert d["bounds_correlated"] is False
    assert d["midpoint_stderr"] == pytest.approx(
        0.5 * math.hypot(d["forward_stderr"], d["reverse_stderr"])
    )


def test_negative_control_wrong_target_samples_are_flagged():
    """Reverse chains started from N(3, I) instead of the target N(0, I): the 'upper' bound
    falls far below the lower one and the estimate must not be trusted."""
    dist = _gauss2()
    gen = torch.Generator().manual_seed(0)
    wrong = 3.0 + torch.randn(32, 2, generator=gen, dtype=torch.float64)
    est = _bdmc(dist, 1000, target_samples=wrong, base_scale=2.0)
    assert not est.trusted
    assert any("below the lower bound" in p for p in est.problems)


def test_trusted_bdmc_estimates_cover_over_seeds():
    """8 seeds x 3 cells (exact reverse starts: Ising 4 x 4 at beta 0.44, a 6 x 3 RBM;
    resampled forward starts: Student-t). The number of trusted runs covered is at least
    its Binomial(N, 0.95) mean minus 3 sd, and no trusted |z| exceeds 4. Whenever the upper
    bound lies above the lower one, log_z +- stderr spans both bounds."""
    gen = torch.Generator().manual_seed(0)
    rbm = gibbsebm.Gibbs(
        _rbm()(0.5 * torch.randn(6, 3, generator=gen), torch.zeros(6), torch.zeros(3)),
        beta=1.0,
    )
    ising = gibbsebm.Gibbs(_ising()(4), beta=0.44)
    st, st_lz = _student_t()
    cells = [
        (rbm, gibbsebm.log_partition(rbm, method="exact").log_z),
        (ising, float(ising.log_partition())),
        (st, st_lz),
    ]
    zs, spans = [], 0
    for dist, truth in cells:
        for seed in range(8):
            est = _bdmc(dist, 3000 + seed)
            if est.upper > est.lower:
                spans += 1
                assert est.log_z - est.stderr <= est.lower <= est.upper <= est.log_z + est.stderr
            if est.trusted:
                zs.append((est.log_z - truth) / est.stderr)
    n = len(zs)
    assert n >= 8 and spans > 0
    covered = sum(abs(z) < Z95 for z in zs)
    assert covered >= 0.95 * n - 3 * math.sqrt(n * 0.95 * 0.05), zs
    assert max(abs(z) for z in zs) < 4.0, zs
