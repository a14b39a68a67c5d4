"""Checks at the boundary (issue 12, items 3 and 4): each test fails on the code before them."""

from __future__ import annotations

import pytest
import torch

import gibbsebm
from gibbsebm import _validation
from gibbsebm.energies import Gaussian, Ising2D

torch.set_num_threads(1)


# short runs: these tests are about the checks at the boundary, not the draws' quality
pytestmark = [
    pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning"),
    pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning"),
]


def _gauss(dtype=torch.float32):
    return gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=dtype)))


def test_scalar_energy_for_a_batch_is_an_error_naming_the_shapes():
    d = gibbsebm.Gibbs(lambda y: (y**2).sum(), event_shape=(2,))
    with pytest.raises(ValueError, match=r"shape \(4,\), got shape \(\)"):
        gibbsebm.sample(d, "hmc", num_chains=4, num_samples=5, num_warmup=5, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        gibbsebm.log_partition(d, method="ais", seed=0, num_chains=8, num_steps=4)


@pytest.mark.parametrize("beta", [1e-300, 1e39])
def test_beta_checked_in_the_dtype_it_is_used_in(beta):
    with pytest.raises(ValueError, match="float32"):
        gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=beta)
    # float64 represents both
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)), beta=beta)
    assert float(d.beta) == beta


@pytest.mark.parametrize("method", ["ais", "bdmc"])
def test_zero_annealing_steps_is_an_error(method):
    with pytest.raises(ValueError, match="num_steps"):
        gibbsebm.log_partition(_gauss(), method=method, num_steps=0, seed=0)


def test_discrete_init_outside_the_support_is_an_error():
    d = gibbsebm.Gibbs(Ising2D(3))
    init = torch.ones(2, 3, 3)
    init[1, 0, 0] = 0.0
    with pytest.raises(ValueError, match=r"outside the support.*chains \[1\]"):
        gibbsebm.sample(
            d, "gwg", num_chains=2, num_samples=3, num_warmup=0, init=init, seed=0, progress=False
        )


def test_huge_energy_offset_in_float32_warns_to_use_float64():
    g = Gaussian(torch.zeros(2))
    d = gibbsebm.Gibbs(lambda y: g(y) + 1e30, event_shape=(2,))
    with pytest.warns(UserWarning, match="float64"):
        gibbsebm.sample(d, "hmc", num_chains=2, num_samples=3, num_warmup=3, seed=0, progress=False)


def test_ising_log_prob_outside_support():
    e = Ising2D(2)
    d = gibbsebm.Gibbs(e)
    y = torch.ones(4, 2, 2)
    y[1, 0, 0] = 0.0
    y[2, 1, 1] = 2.0
    y[3, 0, 1] = 0.5
    lp = d.log_prob(y)
    assert torch.isfinite(lp[0])
    assert torch.isneginf(lp[1:]).all()
    with pytest.raises(ValueError, match="outside the support"):
        gibbsebm.Gibbs(e, validate_args=True).log_prob(y)


def test_huge_thin_is_refused_and_the_limit_overridable(monkeypatch):
    with pytest.raises(ValueError, match="MAX_ITERATIONS"):
        gibbsebm.sample(
            _gauss(), "hmc", num_chains=2, num_samples=10, num_warmup=0, thin=10**15, progress=False
        )
    monkeypatch.setattr(_validation, "MAX_ITERATIONS", 5)
    with pytest.raises(ValueError, match="MAX_ITERATIONS"):
        gibbsebm.sample(_gauss(), "hmc", num_chains=2, num_samples=3, num_warmup=3, progress=False)


def test_huge_bootstrap_is_refused():
    from gibbsebm.calibration import expected_calibration_error

    p = torch.full((10, 2), 0.5)
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="MAX_BOOTSTRAP"):
        expected_calibration_error(p, y, n_bootstrap=10**9)


def _log_energy(y):
    # NaN where a coordinate is negative: log of a negative number
    return 0.5 * (torch.log(y) ** 2).sum(-1)


def test_nan_region_starts_are_redrawn_and_counted():
    d = gibbsebm.Gibbs(_log_energy, event_shape=(2,))
    s = gibbsebm.sample(
        d, "hmc", num_chains=16, num_samples=30, num_warmup=30, seed=0, progress=False
    )
    redraws = s.stats["init_redraws"][:, 0]
    assert redraws.shape == (16,)
    assert int((redraws > 0).sum()) >= 4  # P(start in y > 0) = 1/4 per chain
    assert torch.isfinite(s.draws).all() and (s.draws > 0).all()
    assert not s.stats["stuck_chains"].any()


def test_explicit_init_in_the_nan_region_names_the_chains():
    d = gibbsebm.Gibbs(_log_energy, event_shape=(2,))
    init = torch.ones(3, 2)
    init[2, 0] = -1.0
    with pytest.raises(ValueError, match=r"chains: \[2\]"):
        gibbsebm.sample(
            d, "hmc", num_chains=3, num_samples=5, num_warmup=0, init=init, seed=0, progress=False
        )


def test_start_region_that_cannot_be_left_is_an_error():
    d = gibbsebm.Gibbs(lambda y: torch.log(y - 10.0).sum(-1), event_shape=(2,))
    with pytest.raises(ValueError, match="cannot be left"):
        gibbsebm.sample(d, "hmc", num_chains=2, num_samples=5, num_warmup=0, seed=0, progress=False)


def test_stuck_chains_are_reported():
    # a step size of 100 on a unit Gaussian, no warmup: every proposal is rejected
    with pytest.warns(gibbsebm.SamplingWarning, match="4 of 4 chains"):
        s = gibbsebm.sample(
            _gauss(torch.float64),
            "hmc",
            num_chains=4,
            num_samples=20,
            num_warmup=0,
            step_size=100.0,
            seed=0,
            progress=False,
        )
    assert s.stats["stuck_chains"][:, 0].all()
    # negative control: a sane run reports no stuck chain (its 80 draws are too few for the
    # ESS checks, which are not what this test is about)
    s = gibbsebm.sample(
        _gauss(torch.float64),
        "hmc",
        num_chains=4,
        num_samples=20,
        num_warmup=300,
        seed=0,
        progress=False,
        warn=False,
    )
    assert not s.stats["stuck_chains"].any()
    assert not [p for p in s.diagnose() if p.check == "stuck_chains"]


def test_free_energy_beta_checked_in_the_dtype_it_is_used_in():
    y = torch.zeros(3, 2)  # float32
    z = torch.linspace(-1, 1, 5)[:, None].expand(5, 2).contiguous()
    with pytest.raises(ValueError, match="float32"):
        gibbsebm.free_energy(lambda y, z: ((y - z) ** 2).sum(-1), y, 1e-300, latent=z)


def test_huge_bin_count_is_refused():
    from gibbsebm.calibration import expected_calibration_error

    p = torch.full((10, 2), 0.5)
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="MAX_BINS"):
        expected_calibration_error(p, y, n_bins=10**9, n_bootstrap=0)
