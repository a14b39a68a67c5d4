"""Slow: reported standard errors cover the truth at about their nominal rate.

Over independent seeds, z = (estimate - truth) / stderr should be roughly standard normal:
the 95 % interval (|z| < 1.96) should cover in about 95 % of runs. With 40 runs, the
binomial standard deviation of the coverage at 0.95 is 0.034, so a coverage below 0.85 (3
sd) or an sd(z) outside [0.6, 1.5] fails; an estimator whose stderr is half the true error
covers ~68 % and fails.
"""

import numpy as np
import pytest

import gibbsebm

from .test_exact_importance_ais import _ising, aniso_gaussian

NUM_SEEDS = 40


def _coverage(dist, truth, method, **opts):
    zs = []
    for seed in range(NUM_SEEDS):
        est = gibbsebm.log_partition(
            dist, method=method, seed=1000 + seed, on_untrusted="ignore", progress=False, **opts
        )
        zs.append((est.log_z - truth) / est.stderr)
    zs = np.asarray(zs)
    return float(np.mean(np.abs(zs) < 1.96)), float(zs.std()), zs


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,opts,beta",
    [
        ("ais", {}, 0.44),
        ("ais", {"num_chains": 32, "num_steps": 100}, 0.44),
        ("importance", {"num_samples": 4000}, 0.2),
        ("ti", {"num_chains": 64}, 0.44),
        ("bridge", {"num_chains": 64}, 0.44),
        ("bdmc", {"num_chains": 64, "num_steps": 200}, 0.44),
    ],
)
def test_stderr_covers_ising(method, opts, beta):
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(4), beta=beta)
    cover, sd, zs = _coverage(dist, float(dist.log_partition()), method, **opts)
    assert cover >= 0.85 and 0.6 <= sd <= 1.5, (cover, sd, zs)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ais", "importance"])
def test_stderr_covers_gaussian(method):
    dist = aniso_gaussian(10)
    cover, sd, zs = _coverage(dist, float(dist.log_partition()), method, base_scale=1.2)
    assert cover >= 0.85 and 0.6 <= sd <= 1.5, (cover, sd, zs)


def test_coverage_statistic_detects_a_halved_stderr():
    """Negative control for the coverage criterion itself: z-scores of an estimator whose
    stderr is half its true error (sd(z) = 2) fail it."""
    rng = np.random.default_rng(0)
    zs = 2.0 * rng.standard_normal(NUM_SEEDS)
    assert not (np.mean(np.abs(zs) < 1.96) >= 0.85 and 0.6 <= zs.std() <= 1.5)
