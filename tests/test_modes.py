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


@pytest.mark.parametrize("dtype,beta", [(torch.float32, 5.0), (torch.float64, 1.0)])
def test_ill_conditioned_gaussian_is_one_mode(dtype, beta):
    # a rotated 10-D Gaussian with condition number 1e4: the ascent stops short along flat
    # directions and the Newton steps finish the job; points that Newton takes to a kept mode
    # are the same mode (before: 27 and 7 "modes" 1.5e-8 apart, every estimate untrusted)
    g = torch.Generator().manual_seed(123)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    ev = torch.logspace(-2, 2, 10, dtype=torch.float64)
    prec = ((q * ev) @ q.T).to(dtype)
    mu = torch.linspace(-1, 1, 10, dtype=dtype)

    def energy(y):
        r = y - mu
        return 0.5 * ((r @ prec) * r).sum(-1)

    dist = gibbsebm.Gibbs(energy, beta=torch.tensor(beta, dtype=dtype), event_shape=(10,))
    for seed in range(3):
        res = gibbsebm.find_modes(dist, seed=seed)
        assert res.num_modes == 1, (seed, res.num_modes)
        assert float((res.locations[0].double() - mu.double()).abs().max()) < 1e-3
