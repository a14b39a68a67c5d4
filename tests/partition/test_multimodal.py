"""Multimodal targets with exact log Z (issue 13).

E(y) = -log sum_k w_k N(y; mu_k, s_k^2 I) has log Z = log sum_k w_k = 0 at beta = 1 and
log sum_{j,k} w_j w_k N(mu_j; mu_k, (s_j^2 + s_k^2) I) at beta = 2.
"""

import math

import pytest
import torch

import gibbsebm
from gibbsebm.energies import GaussianMixture
from gibbsebm.partition import LogZWarning


def mixture(d, seed, num, spread, scales, weights, narrow_near=None):
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(num, d, generator=g, dtype=torch.float64)
    if narrow_near is not None:  # the last mode sits inside a broad one's basin
        means[-1] = 0.3 * means[narrow_near] + 0.2
    return GaussianMixture(
        means, torch.tensor(scales, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
    )


def exact_log_z(gm, beta):
    if beta == 1.0:
        return 0.0
    assert beta == 2.0
    mu, s, w = gm.means, gm.scales[:, 0], gm.weights
    d = mu.shape[1]
    v = s[:, None] ** 2 + s[None, :] ** 2
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    ln = -0.5 * d2 / v - 0.5 * d * torch.log(2 * math.pi * v)
    return float(torch.logsumexp((w.log()[:, None] + w.log()[None] + ln).reshape(-1), 0))


def findable_8d():
    # 5 modes, unequal weights and widths: all found by a local search from broad starts
    return mixture(8, 1, 5, 5.0, [1.0, 0.9, 1.1, 0.8, 1.0], [0.3, 0.25, 0.2, 0.15, 0.1])


def hidden_10d():
    # 4 modes; the narrow one (14 % of the mass at beta 1, most of it at beta 2) sits inside
    # a broad mode's basin where no local search from broad starts ends
    return mixture(10, 0, 4, 4.0, [1.0, 1.2, 0.8, 0.1], [0.4, 0.3, 0.16, 0.14], narrow_near=0)


def test_exact_formula_against_quadrature_in_2d():
    gm = mixture(2, 3, 3, 2.0, [0.5, 1.0, 0.7], [0.5, 0.3, 0.2])
    est = gibbsebm.log_partition(gibbsebm.Gibbs(gm, beta=2.0), method="exact")
    assert abs(est.log_z - exact_log_z(gm, 2.0)) < 1e-8


def test_find_modes_reports_basins_masses_and_its_start_distribution():
    gm = findable_8d()
    res = gibbsebm.find_modes(gibbsebm.Gibbs(gm), seed=0)
    assert res.num_modes == 5
    assert res.start_distribution["scaled_from"] == "energy"
    assert int(res.basin_counts.sum()) + res.num_unconverged == res.num_starts
    # local masses are the mixture weights (separated Gaussian modes), within their errors
    w_true = torch.sort(gm.weights, descending=True).values.to(torch.float64)
    assert torch.allclose(res.log_masses, w_true.log(), atol=1e-3)
    assert bool((res.log_mass_errors < 1e-2).all())
    # each found mode is within 0.1 of a component mean
    locs = res.locations.to(torch.float64)
    dist = torch.cdist(locs, gm.means).min(1).values
    assert bool((dist < 0.1).all())


def test_find_modes_degenerate_hessian_falls_back_to_moments():
    dist = gibbsebm.Gibbs(lambda y: (y**4).sum(-1) / 4, event_shape=(3,))
    res = gibbsebm.find_modes(dist, seed=0)
    assert res.num_modes == 1 and res.curvature == ["moments"]
    est = gibbsebm.log_partition(dist, method="importance", seed=0, progress=False)
    assert est.diagnostics["base"]["kind"] == "moment-matched gaussian"
    # log Z = 3 log(2 Gamma(1/4) 4^{1/4} / 4)
    truth = 3 * math.log(2 * math.gamma(0.25) * 4**0.25 / 4)
    assert abs(est.log_z - truth) < 4 * est.stderr + 1e-3


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_smc_right_when_the_modes_are_findable(beta):
    gm = findable_8d()
    truth = exact_log_z(gm, beta)
    dist = gibbsebm.Gibbs(gm, beta=beta)
    with pytest.warns(LogZWarning, match="5 modes found"):
        est = gibbsebm.log_partition(dist, method="smc", seed=0, progress=False)
    assert est.diagnostics["modes"]["num_modes"] == 5
    assert abs(est.log_z - truth) < 0.1
    assert abs(est.log_z - truth) < 3 * est.stderr
    assert 0 < est.stderr < 0.1
    # the caller who knows the list is complete accepts it: trusted, and right
    est = gibbsebm.log_partition(
        dist, method="smc", seed=1, progress=False, trust_thresholds={"max_modes": 5}
    )
    assert est.trusted and abs(est.log_z - truth) < 3 * est.stderr


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_default_method_right_when_the_modes_are_findable(beta):
    # issue 13's done-when: the default log_partition method, not a chosen one
    gm = findable_8d()
    truth = exact_log_z(gm, beta)
    dist = gibbsebm.Gibbs(gm, beta=beta)
    with pytest.warns(LogZWarning, match="5 modes found"):
        est = gibbsebm.log_partition(dist, seed=0, progress=False)
    assert not est.trusted and est.diagnostics["modes"]["num_modes"] == 5
    assert abs(est.log_z - truth) < 0.1
    assert abs(est.log_z - truth) <= 3 * est.stderr
    est = gibbsebm.log_partition(dist, seed=1, progress=False, trust_thresholds={"max_modes": 5})
    assert est.trusted and abs(est.log_z - truth) <= 3 * est.stderr


@pytest.mark.parametrize("method", ["smc", "importance", "ais"])
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_hidden_narrow_mode_is_flagged_never_trusted(method, beta):
    gm = hidden_10d()
    truth = exact_log_z(gm, beta)
    dist = gibbsebm.Gibbs(gm, beta=beta)
    opts = {"num_chains": 64, "num_steps": 50} if method == "ais" else {}
    est = gibbsebm.log_partition(
        dist, method=method, seed=0, progress=False, on_untrusted="ignore", **opts
    )
    wrong = abs(est.log_z - truth) > 4 * est.stderr + 0.02
    assert wrong  # the narrow mode is missed: every estimator is low ...
    assert est.log_z < truth
    assert not est.trusted  # ... and says it cannot be trusted
    assert any("modes found" in p for p in est.problems)


def test_negative_control_wrong_reference_is_flagged():
    # a reference on one mode only (a deliberately wrong reference): the estimate must not be
    # trusted-and-wrong
    gm = findable_8d()
    dist = gibbsebm.Gibbs(gm, beta=2.0)
    truth = exact_log_z(gm, 2.0)
    mean = gm.means[0]
    est = gibbsebm.log_partition(
        dist,
        method="importance",
        seed=0,
        progress=False,
        on_untrusted="ignore",
        base=(mean, 0.5 * torch.ones(8, dtype=torch.float64)),
        num_samples=4096,
    )
    assert abs(est.log_z - truth) > 4 * est.stderr  # wrong
    assert not est.trusted  # and flagged


def test_smc_plan_shards_pool_runs():
    from gibbsebm.executors import LocalExecutor

    gm = mixture(2, 3, 3, 3.0, [0.5, 1.0, 0.7], [0.5, 0.3, 0.2])
    dist = gibbsebm.Gibbs(gm)
    opts = dict(seed=3, progress=False, on_untrusted="ignore", num_runs=6, num_particles=128)
    a = gibbsebm.log_partition(dist, method="smc", **opts)
    b = gibbsebm.log_partition(dist, method="smc", executor=LocalExecutor(num_shards=3), **opts)
    assert len(b.diagnostics["run_log_z"]) == 6
    for est in (a, b):
        assert abs(est.log_z) < 4 * est.stderr + 1e-3
