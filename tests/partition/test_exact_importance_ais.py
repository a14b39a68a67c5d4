"""log Z estimators against closed forms, quadrature and enumeration.

Tolerances are k = 4 standard errors of the estimate (two-sided normal tail 6e-5), fixed
seeds; each problem is set up so that a wrong estimator is off by many standard errors.
"""

import math

import pytest
import torch

import gibbsebm
from gibbsebm.constraints import spin
from gibbsebm.energies import Gaussian
from gibbsebm.partition import LogZWarning, UntrustedLogZError

from .conftest import within

K = 4.0


def _ising():
    return pytest.importorskip("gibbsebm.energies.ising").Ising2D


def _rbm():
    return pytest.importorskip("gibbsebm.energies.rbm").RBM


def aniso_gaussian(d: int) -> gibbsebm.Gibbs:
    g = torch.Generator().manual_seed(d)
    A = torch.randn(d, d, generator=g) / math.sqrt(d)
    cov = A @ A.T + torch.diag(torch.logspace(-1, 0.5, d))
    cov = 0.5 * (cov + cov.T)
    return gibbsebm.Gibbs(Gaussian(torch.randn(d, generator=g), covariance=cov), beta=2.0)


# ---------------------------------------------------------------------------------- exact
def test_exact_closed_form_enumeration_and_quadrature(double_well):
    d = aniso_gaussian(3)
    est = gibbsebm.log_partition(d, method="exact")
    assert est.stderr == 0 and est.log_z == pytest.approx(float(d.log_partition()), abs=1e-10)
    assert "closed form" in est.diagnostics["source"]

    # enumeration: a spin energy without a closed form
    J = torch.tensor([[0.0, 0.7, -0.3], [0.7, 0.0, 0.5], [-0.3, 0.5, 0.0]])
    dist = gibbsebm.Gibbs(
        lambda s: -0.5 * torch.einsum("ni,ij,nj->n", s, J, s),
        beta=1.3,
        event_shape=(3,),
        support=spin,
    )
    est = gibbsebm.log_partition(dist, method="exact")
    states = dist.enumerate_support()
    brute = torch.logsumexp(1.3 * 0.5 * torch.einsum("ni,ij,nj->n", states, J, states), 0)
    assert est.diagnostics["source"] == "enumeration"
    assert est.log_z == pytest.approx(float(brute), abs=1e-5)

    # quadrature, 1-D and 2-D, against scipy's adaptive quadrature
    for dim in (1, 2):
        dist, truth = double_well(1.5, dim)
        est = gibbsebm.log_partition(dist, method="exact")
        assert est.diagnostics["source"] == "trapezoid quadrature"
        assert abs(est.log_z - truth) < 1e-5
        assert est.stderr < 1e-5


def test_exact_rejects_what_it_cannot_do():
    dist = gibbsebm.Gibbs(lambda y: (y**2).sum(-1), event_shape=(5,))
    with pytest.raises(ValueError, match="dimension <= 3"):
        gibbsebm.log_partition(dist, method="exact")
    with pytest.raises(ValueError, match="unknown method"):
        gibbsebm.log_partition(dist, method="magic")
    with pytest.raises(ValueError, match="batch shape"):
        gibbsebm.log_partition(dist.at(torch.tensor([1.0, 2.0])), method="ais")


# ----------------------------------------------------------------------------- importance
@pytest.mark.parametrize("d", [2, 10])
def test_importance_gaussian_from_a_mismatched_base(d):
    dist = aniso_gaussian(d)
    est = gibbsebm.log_partition(dist, method="importance", seed=1, base_scale=1.15)
    assert est.stderr > 0 and within(est, float(dist.log_partition()), K)
    assert est.diagnostics["khat"] < 0.7


def test_importance_laplace_base_is_exact_for_a_100d_gaussian():
    dist = aniso_gaussian(100)
    est = gibbsebm.log_partition(dist, method="importance", seed=0, num_samples=512)
    assert abs(est.log_z - float(dist.log_partition())) < 1e-3
    assert est.diagnostics["base"]["kind"] == "laplace"


def test_importance_small_ising_uniform_base():
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(3), beta=0.3)
    est = gibbsebm.log_partition(dist, method="importance", seed=2)
    assert est.diagnostics["base"]["kind"] == "uniform"
    assert within(est, float(dist.log_partition()), K)


def test_importance_with_light_tails_is_flagged():
    # a base 3x too narrow: weights with infinite variance, k-hat well above 0.7
    dist = aniso_gaussian(10)
    with pytest.warns(LogZWarning, match="k-hat"):
        gibbsebm.log_partition(dist, method="importance", seed=3, base_scale=0.33)


# ------------------------------------------------------------------------------------ AIS
@pytest.mark.parametrize("d", [2, 10])
def test_ais_gaussian_hmc_from_a_wide_base(d):
    dist = aniso_gaussian(d)
    # on_untrusted="ignore": since the Laplace base comes from find_modes (issue 13) the 10-D
    # run of seed 4 draws one heavy AIS weight and its batch check flags it (p = 1.7e-12)
    # while it is right (-0.010 +- 0.054); over 40 seeds 2 flag, 38 cover at 95 %. A flag on
    # a right estimate is allowed; what must never happen is trusted-and-wrong.
    est = gibbsebm.log_partition(
        dist,
        method="ais",
        seed=4,
        base_scale=1.5,
        num_chains=64,
        num_steps=100,
        on_untrusted="ignore",
    )
    assert est.diagnostics["kernel"]["kernel"] == "hmc"
    assert est.stderr > 1e-3 and within(est, float(dist.log_partition()), K)


def test_ais_double_well_default_options(double_well):
    dist, truth = double_well(1.5, 2)
    # four wells: the estimate is conditional on the modes found, so it says so (issue 13)
    with pytest.warns(LogZWarning, match="4 modes found"):
        est = gibbsebm.log_partition(dist, method="ais", seed=5)
    assert est.diagnostics["defaults"]["base"] == "laplace"
    assert est.diagnostics["base"]["num_modes_found"] == 4
    assert est.diagnostics["modes"]["num_modes"] == 4
    assert within(est, truth, K)
    # the caller who knows the list is complete (symmetry) accepts it explicitly
    est = gibbsebm.log_partition(dist, method="ais", seed=5, trust_thresholds={"max_modes": 4})
    assert est.trusted and within(est, truth, K)


def test_ais_small_ising_default_options_and_schedules():
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(4), beta=0.44)
    truth = float(dist.log_partition())
    est = gibbsebm.log_partition(dist, method="ais", seed=6)
    assert est.diagnostics["kernel"]["kernel"] == "colored_gibbs"
    assert est.diagnostics["kernel"]["num_colors"] == 2  # checkerboard
    assert within(est, truth, K)
    assert est.lower == est.log_z
    for sched in ("linear", "geometric", "sigmoidal"):
        est = gibbsebm.log_partition(
            dist, method="ais", seed=7, schedule=sched, num_steps=300, num_chains=64
        )
        assert within(est, truth, K), sched


@pytest.mark.parametrize("kernel", ["metropolis", "gwg"])
def test_ais_ising_with_the_generic_discrete_kernels(kernel):
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    est = gibbsebm.log_partition(
        dist,
        method="ais",
        seed=8,
        kernel=kernel,
        num_steps=150,
        num_chains=64,
        steps_per_stage=1 if kernel == "metropolis" else 3,
    )
    assert est.diagnostics["kernel"]["kernel"] == kernel
    assert within(est, float(dist.log_partition()), K)


def test_ais_gaussian_with_mala():
    dist = aniso_gaussian(3)
    est = gibbsebm.log_partition(
        dist, method="ais", seed=10, kernel="mala", base_scale=1.5, num_chains=64, num_steps=100
    )
    assert est.diagnostics["kernel"]["kernel"] == "mala"
    assert est.stderr > 1e-3 and within(est, float(dist.log_partition()), K)


def test_ais_rbm_block_gibbs_against_hidden_enumeration():
    RBM = _rbm()
    rbm = RBM.random(16, 8, scale=0.6, generator=torch.Generator().manual_seed(3))
    dist = gibbsebm.Gibbs(rbm, beta=1.0)
    est = gibbsebm.log_partition(dist, method="ais", seed=9, num_steps=400, num_chains=64)
    assert est.diagnostics["kernel"]["kernel"] == "block_gibbs"
    assert est.diagnostics["path"] == "temperature"
    assert within(est, float(rbm.exact_log_partition(1.0)), K)


def test_ais_same_seed_same_estimate():
    dist = aniso_gaussian(2)
    a = gibbsebm.log_partition(
        dist,
        method="ais",
        seed=11,
        base_scale=1.5,
        num_steps=20,
        num_chains=16,
        on_untrusted="ignore",
    )
    b = gibbsebm.log_partition(
        dist,
        method="ais",
        seed=11,
        base_scale=1.5,
        num_steps=20,
        num_chains=16,
        on_untrusted="ignore",
    )
    assert a.log_z == b.log_z


def test_negative_control_ais_with_far_too_few_steps_is_flagged():
    """Two annealing steps on an 8x8 Ising model in the ordered phase: the weights are
    dominated by one particle, and the estimator must say so."""
    Ising2D = _ising()
    dist = gibbsebm.Gibbs(Ising2D(8), beta=0.6)
    with pytest.warns(LogZWarning):
        est = gibbsebm.log_partition(dist, method="ais", seed=12, num_steps=2, num_chains=128)
    assert not est.trusted
    with pytest.raises(UntrustedLogZError) as info:
        gibbsebm.log_partition(
            dist, method="ais", seed=12, num_steps=2, num_chains=128, on_untrusted="raise"
        )
    # the attached estimate is far below the truth: AIS is a stochastic lower bound
    assert info.value.estimate.log_z < float(dist.log_partition()) - 1.0
