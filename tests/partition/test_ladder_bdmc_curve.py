"""TI, bridge sampling, BDMC, log Z curves and compare_estimates against exact answers.

Tolerances: k = 4 standard errors; fixed seeds.
"""

import pytest
import torch

import gibbsebm
from gibbsebm.partition import LogZEstimate, LogZWarning, compare_estimates
from gibbsebm.partition.bridge import bridge_log_ratio

from .conftest import within
from .test_exact_importance_ais import K, _ising, _rbm, aniso_gaussian


@pytest.mark.parametrize("method", ["ti", "bridge"])
def test_ladder_methods_gaussian_and_ising(method):
    dist = aniso_gaussian(10)
    est = gibbsebm.log_partition(dist, method=method, seed=1, base_scale=1.5, num_chains=32)
    assert est.stderr > 1e-3 and within(est, float(dist.log_partition()), K)
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(4), beta=0.44)
    est = gibbsebm.log_partition(dist, method=method, seed=2, num_chains=32)
    assert within(est, float(dist.log_partition()), K)
    assert est.diagnostics["defaults"]["kernel"] == "colored_gibbs"
    if method == "ti":
        assert len(est.diagnostics["rung_mean"]) == len(est.diagnostics["rung_mcse"])
        assert est.diagnostics["quadrature_error"] < est.stderr
    else:
        assert min(est.diagnostics["pair_min_ess"]) > 10


def test_ladder_methods_rbm_temperature_path():
    RBM = _rbm()
    rbm = RBM.random(12, 6, scale=0.6, generator=torch.Generator().manual_seed(5))
    dist = gibbsebm.Gibbs(rbm, beta=1.0)
    truth = float(rbm.exact_log_partition(1.0))
    for method in ("ti", "bridge"):
        est = gibbsebm.log_partition(dist, method=method, seed=3, num_chains=64)
        assert est.diagnostics["path"] == "temperature"
        assert within(est, truth, K), method


def test_ti_and_bridge_reuse_parallel_tempering_draws():
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(3), beta=0.44)
    samples = gibbsebm.sample(
        dist,
        "pt",
        num_chains=8,
        num_samples=16,
        num_warmup=10,
        seed=0,
        progress=False,
        kernel="metropolis",
        betas=torch.linspace(0.05, 0.44, 6),
        warn=False,
    )
    truth = float(dist.log_partition())
    for method in ("ti", "bridge"):
        est = gibbsebm.log_partition(dist, method=method, seed=4, samples=samples)
        assert "parallel tempering" in est.diagnostics["draws_from"]
        assert within(est, truth, K), method


def test_bridge_log_ratio_of_two_gaussians():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g, dtype=torch.float64)
    y = 1.0 + 2.0 * torch.randn(20000, generator=g, dtype=torch.float64)

    # pi_lower = exp(-x^2/2) (Z = sqrt(2 pi)), pi_upper = exp(-(y-1)^2/8) (Z = 2 sqrt(2 pi))
    def log_l(v):
        return -((v - 1.0) ** 2) / 8.0 + v**2 / 2.0

    est = bridge_log_ratio(log_l(x), log_l(y))
    assert est == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=0.03)


def test_bdmc_brackets_the_truth():
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(4), beta=0.44)
    truth = float(dist.log_partition())
    est = gibbsebm.log_partition(dist, method="bdmc", seed=5, num_steps=200, num_chains=64)
    assert est.diagnostics["target_samples"].startswith("exact draws")
    se = est.stderr
    assert est.lower <= truth + K * est.diagnostics["forward_stderr"] + 1e-9
    assert est.upper >= truth - K * est.diagnostics["reverse_stderr"] - 1e-9
    assert est.lower - 0.1 <= est.log_z <= est.upper + 0.1
    assert within(est, truth, K) and se > 0
    # without exact draws: resampled AIS particles + MCMC, stated as an assumption
    dist = gibbsebm.Gibbs(Ising2D(6), beta=0.44)
    est = gibbsebm.log_partition(dist, method="bdmc", seed=6, num_steps=150, num_chains=32)
    assert "ASSUMED" in est.diagnostics["target_samples"]
    assert within(est, float(dist.log_partition()), K)


def test_bdmc_gaussian_with_exact_draws():
    dist = aniso_gaussian(10)
    est = gibbsebm.log_partition(
        dist, method="bdmc", seed=7, base_scale=1.5, num_steps=100, num_chains=64
    )
    assert within(est, float(dist.log_partition()), K)
    assert est.upper is not None and est.lower is not None


def test_curve_ising_against_exact_curves():
    Ising2D = _ising()
    m = Ising2D(4)
    betas = torch.tensor([0.2, 0.44, 0.6])
    curve = gibbsebm.log_partition_curve(gibbsebm.Gibbs(m), betas, seed=8, num_chains=128)
    b = curve.betas
    for est, se, exact in (
        (curve.log_z, curve.log_z_stderr, m.exact_log_partition(b)),
        (curve.mean_energy, curve.mean_energy_stderr, m.exact_mean_energy(b)),
        (curve.heat_capacity, curve.heat_capacity_stderr, m.exact_heat_capacity(b)),
    ):
        assert bool(((est - exact).abs() <= K * se + 1e-6).all()), (est, exact, se)


def test_curve_gaussian_heat_capacity_is_half_the_dimension():
    from gibbsebm.energies import Gaussian

    d = gibbsebm.Gibbs(Gaussian(torch.zeros(4)))
    curve = gibbsebm.log_partition_curve(d, [0.5, 2.0], seed=9, num_chains=128)
    assert bool(((curve.heat_capacity - 2.0).abs() <= K * curve.heat_capacity_stderr).all())
    exact = Gaussian(torch.zeros(4)).exact_log_partition(curve.betas)
    assert bool(((curve.log_z - exact).abs() <= K * curve.log_z_stderr + 1e-5).all())
    with pytest.raises(ValueError, match="positive"):
        gibbsebm.log_partition_curve(d, [-1.0, 1.0])


def test_compare_estimates_flags_disagreement():
    a = LogZEstimate(10.0, 0.1, "ais")
    b = LogZEstimate(10.1, 0.1, "ti")
    c = LogZEstimate(11.0, 0.1, "bridge")
    ok = compare_estimates([a, b], on_disagreement="warn")
    assert ok.consistent and ok.combined_log_z == pytest.approx(10.05)
    with pytest.warns(LogZWarning, match="ais vs bridge"):
        bad = compare_estimates([a, b, c])
    assert not bad.consistent
    assert {(x, y) for x, y, _ in bad.disagreements} == {("ais", "bridge"), ("ti", "bridge")}
    assert bad.z[0][2] == pytest.approx(-1.0 / (0.1 * 2**0.5))
    exact = LogZEstimate(10.0, 0.0, "exact")
    assert compare_estimates([exact, a]).combined_log_z == 10.0
    with pytest.raises(ValueError, match="at least two"):
        compare_estimates([a])
