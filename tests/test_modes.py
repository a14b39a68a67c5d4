"""gibbsebm.find_modes and initial_positions (issue 13)."""

import pytest
import torch

import gibbsebm
from gibbsebm.energies import GaussianMixture
from gibbsebm.modes import initial_positions


def _mix():
    means = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    return GaussianMixture(
        means,
        torch.tensor([0.3, 1.0, 0.6], dtype=torch.float64),
        torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
    )


def test_find_modes_2d_mixture_masses_and_determinism():
    dist = gibbsebm.Gibbs(_mix())
    a = gibbsebm.find_modes(dist, seed=0, num_starts=64)
    b = gibbsebm.find_modes(dist, seed=0, num_starts=64)
    assert a.num_modes == 3
    assert torch.equal(a.locations, b.locations)
    assert torch.allclose(a.weights, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=1e-3)
    desc = a.describe()
    assert desc["num_modes"] == 3 and len(desc["modes"]) == 3
    assert 0.0 <= a.unseen_probability <= 1.0


def test_find_modes_rejects_discrete_and_bad_arguments():
    from gibbsebm.constraints import spin

    with pytest.raises(ValueError, match="real support"):
        gibbsebm.find_modes(gibbsebm.Gibbs(lambda s: s.sum(-1), event_shape=(3,), support=spin))
    with pytest.raises(ValueError, match="num_starts"):
        gibbsebm.find_modes(gibbsebm.Gibbs(_mix()), num_starts=0)


def test_initial_positions_cover_every_mode_in_proportion():
    dist = gibbsebm.Gibbs(_mix())
    y = initial_positions(dist, 100, seed=1)
    assert y.shape == (100, 2)
    comp = _mix().component_of(y)
    counts = torch.bincount(comp, minlength=3).tolist()
    assert counts == [50, 30, 20]
    few = initial_positions(dist, 2, seed=1)
    assert few.shape == (2, 2)
