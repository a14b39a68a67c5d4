"""gibbsebm.sample warns (one SamplingWarning per run) on bad runs and stays silent on good ones."""

import warnings

import pytest
import torch

import gibbsebm
from gibbsebm.energies import Gaussian, GaussianMixture


def _mixture(device):
    """1-D mixture of N(-8, 1) and N(8, 1): no chain crosses between the modes."""
    means = torch.tensor([[-8.0], [8.0]], device=device)
    return gibbsebm.Gibbs(GaussianMixture(means, torch.ones(2, 1, device=device)))


def test_two_modes_from_one_mode_starts_warn(device):
    # every chain starts in one of the modes (half at -8, half at +8) and stays there
    init = torch.tensor([-8.0] * 4 + [8.0] * 4, device=device)[:, None]
    with pytest.warns(gibbsebm.SamplingWarning) as rec:
        s = gibbsebm.sample(
            _mixture(device),
            "mala",
            num_chains=8,
            num_samples=50,
            num_warmup=50,
            init=init,
            seed=0,
            progress=False,
        )
    assert len(rec) == 1  # one warning per run, listing every problem
    text = str(rec[0].message)
    assert "R-hat" in text and "ESS" in text
    checks = {p.check: p for p in s.diagnose()}
    assert checks["rhat"].figure > 1.5  # rank-normalized: bounded, about 1.7 for two groups
    assert text.count("\n  - ") == len(checks)


def test_too_large_fixed_step_size_warns(device):
    # no warmup, so no adaptation: a step size of 3 on a unit Gaussian in 10-D diverges
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(10, device=device)))
    with pytest.warns(gibbsebm.SamplingWarning, match="diverged") as rec:
        s = gibbsebm.sample(
            d,
            "hmc",
            num_chains=8,
            num_samples=100,
            num_warmup=0,
            step_size=3.0,
            num_steps=10,
            seed=0,
            progress=False,
        )
    assert len(rec) == 1
    names = {p.check for p in s.diagnose()}
    assert {"divergences", "stuck_chains"} <= names


def test_good_run_is_silent_and_warn_false_skips(device):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, device=device)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = gibbsebm.sample(
            d, "hmc", num_chains=8, num_samples=500, num_warmup=300, seed=0, progress=False
        )
    assert s.diagnose() == []
    init = torch.tensor([-8.0] * 4 + [8.0] * 4, device=device)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bad = gibbsebm.sample(
            _mixture(device),
            "mala",
            num_chains=8,
            num_samples=20,
            num_warmup=20,
            init=init,
            seed=0,
            progress=False,
            warn=False,
        )
    assert bad.diagnose()  # the problems are still there as data


def test_sharded_run_warns_once(device):
    init = torch.tensor([-8.0] * 2 + [8.0] * 2, device=device)[:, None]
    with pytest.warns(gibbsebm.SamplingWarning, match="R-hat") as rec:
        s = gibbsebm.sample(
            _mixture(device),
            "mala",
            num_chains=4,
            num_samples=50,
            num_warmup=50,
            init=init,
            seed=0,
            progress=False,
            executor=gibbsebm.LocalExecutor(num_shards=2),
        )
    assert len(rec) == 1 and s.num_chains == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_short_chains_of_a_correct_sampler_are_silent(device, seed, one_thread):
    """512 chains x 50 draws of MALA on a Gaussian: the chains are stationary but shorter than
    a few autocorrelation times, so split R-hat exceeds 1.01 (about 1.04); the default check
    uses nested R-hat for many short chains (`diagnostics.default_superchains`) and is silent."""
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(4, device=device)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = gibbsebm.sample(
            d, "mala", num_chains=512, num_samples=50, num_warmup=100, seed=seed, progress=False
        )
    assert s.diagnose() == []
    # negative control: the split R-hat rule flags this good run
    assert "rhat" in {p.check for p in s.diagnose(num_superchains=None)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_short_chains_stuck_in_two_modes_warn(device, seed, one_thread):
    g = torch.Generator().manual_seed(seed)
    init = torch.where(torch.rand(512, generator=g) < 0.5, -8.0, 8.0)[:, None].to(device)
    with pytest.warns(gibbsebm.SamplingWarning, match="nested R-hat") as rec:
        s = gibbsebm.sample(
            _mixture(device),
            "mala",
            num_chains=512,
            num_samples=50,
            num_warmup=100,
            init=init,
            seed=seed,
            progress=False,
        )
    assert len(rec) == 1
    checks = {p.check: p for p in s.diagnose()}
    assert "nested_rhat" in checks and "rhat" not in checks
