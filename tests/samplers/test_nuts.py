"""Pyro's NUTS through the same Gibbs object: agrees with hmc within MCSE."""

import numpy as np
import pytest
import torch
from _sampler_mc import mean_mcse, one_thread  # noqa: F401 (autouse fixture)

import gibbsebm
from gibbsebm.energies import Gaussian

DT = torch.float64


@pytest.fixture(scope="module")
def target():
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=DT)
    return gibbsebm.Gibbs(Gaussian(torch.tensor([1.0, -1.0], dtype=DT), covariance=cov), beta=2.0)


def test_nuts_and_hmc_agree_on_a_gaussian(target):
    nuts = gibbsebm.sample(
        target,
        "nuts",
        num_chains=2,
        num_samples=300,
        num_warmup=150,
        seed=0,
        progress=False,
        warn=False,
    )
    hmc = gibbsebm.sample(
        target,
        "hmc",
        num_chains=16,
        num_samples=200,
        num_warmup=200,
        seed=0,
        progress=False,
        warn=False,
    )
    assert nuts.draws.shape == (2, 300, 2)
    assert set(nuts.stats) >= {"acceptance_prob", "is_divergent", "step_size", "energy"}
    assert 0.5 < float(nuts.stats["acceptance_prob"].mean()) <= 1.0
    torch.testing.assert_close(nuts.stats["energy"], target.energy_of(nuts.draws))
    exact_mean = np.array([1.0, -1.0])
    exact_var = np.array([0.5, 1.0])  # covariance / beta
    for x, what in (
        (lambda s: s.draws, "mean"),
        (lambda s: (s.draws - torch.tensor([1.0, -1.0], dtype=DT)) ** 2, "var"),
    ):
        mn, en = mean_mcse(x(nuts))
        mh, eh = mean_mcse(x(hmc))
        z = (mn - mh) / np.sqrt(en**2 + eh**2)
        assert np.abs(z).max() < 5, (what, z)
        exact = exact_mean if what == "mean" else exact_var
        assert np.abs((mn - exact) / en).max() < 5, (what, mn)
        assert np.abs((mh - exact) / eh).max() < 5, (what, mh)
    # reproducible from the seed, and the caller's global torch RNG is left alone
    state = torch.get_rng_state()
    again = gibbsebm.sample(
        target,
        "nuts",
        num_chains=1,
        num_samples=20,
        num_warmup=20,
        seed=0,
        progress=False,
        warn=False,
    )
    assert torch.equal(torch.get_rng_state(), state)
    twice = gibbsebm.sample(
        target,
        "nuts",
        num_chains=1,
        num_samples=20,
        num_warmup=20,
        seed=0,
        progress=False,
        warn=False,
    )
    assert torch.equal(again.draws, twice.draws)


def test_nuts_refuses_checkpoints(target, tmp_path):
    with pytest.raises(ValueError, match="checkpoint"):
        gibbsebm.sample(
            target,
            "nuts",
            num_chains=1,
            num_samples=2,
            num_warmup=0,
            seed=0,
            progress=False,
            checkpoint=tmp_path / "x",
        )


@pytest.mark.parametrize("depth", [0, -3, 2.5, True])
def test_nuts_refuses_a_max_tree_depth_below_one(target, depth):
    # was: ZeroDivisionError from inside the tree building
    with pytest.raises(ValueError, match="max_tree_depth must be an integer >= 1"):
        gibbsebm.sample(
            target,
            "nuts",
            num_chains=1,
            num_samples=2,
            num_warmup=2,
            max_tree_depth=depth,
            progress=False,
        )
