import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from gibbsebm import Gibbs
from gibbsebm.energies import GaussianMixture


def torch_mixture(gm: GaussianMixture) -> torch.distributions.Distribution:
    comp = torch.distributions.Independent(torch.distributions.Normal(gm.means, gm.scales), 1)
    return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gm.weights), comp)


@pytest.fixture
def mix1d():
    return GaussianMixture(
        torch.tensor([[-1.0], [2.5]], dtype=torch.float64),
        torch.tensor([1.0, 0.3], dtype=torch.float64),
        torch.tensor([0.3, 0.7], dtype=torch.float64),
    )


def test_energy_is_negative_mixture_log_density():
    gm = GaussianMixture(
        torch.tensor([[0.0, 1.0], [2.0, -1.0], [-3.0, 0.5]], dtype=torch.float64),
        torch.tensor([[1.0, 0.5], [0.3, 0.3], [2.0, 1.0]], dtype=torch.float64),
        torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64),  # normalized to (0.5, 0.25, 0.25)
    )
    y = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    torch.testing.assert_close(gm(y), -torch_mixture(gm).log_prob(y))
    torch.testing.assert_close(Gibbs(gm).log_prob(y), torch_mixture(gm).log_prob(y))
    assert float(gm.exact_log_partition(1.0)) == 0.0


@pytest.mark.parametrize("beta", [0.2, 0.7, 3.0])
def test_1d_quadrature_matches_scipy(mix1d, beta):
    def f(x):
        return math.exp(-beta * float(mix1d(torch.tensor([[x]], dtype=torch.float64))))

    parts = [
        integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)
        for a, b in [(-np.inf, -1.0), (-1.0, 2.5), (2.5, np.inf)]
    ]
    ref = math.log(sum(p[0] for p in parts))
    value, err = mix1d.quadrature_log_partition(beta)
    assert err < 1e-10
    assert value == pytest.approx(ref, abs=1e-9)
    assert float(mix1d.exact_log_partition(beta)) == value


def test_log_partition_cache_follows_in_place_updates(mix1d):
    before = float(mix1d.exact_log_partition(0.5))
    mix1d.scales.mul_(2.0)
    after = float(mix1d.exact_log_partition(0.5))
    assert after == pytest.approx(mix1d.quadrature_log_partition(0.5)[0], abs=1e-12)
    assert after != before


def test_2d_quadrature_of_a_product_mixture(mix1d):
    # components share the second coordinate's law: Z_2d(beta) = Z_1d(beta) * int N(0, s^2)^beta
    s2 = 0.8
    gm = GaussianMixture(
        torch.cat([mix1d.means, torch.zeros(2, 1, dtype=torch.float64)], 1),
        torch.stack([mix1d.scales[:, 0], torch.full((2,), s2, dtype=torch.float64)], 1),
        mix1d.weights,
    )
    beta = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    gauss = 0.5 * (1 - beta) * math.log(2 * math.pi * s2**2) - 0.5 * torch.log(beta)
    torch.testing.assert_close(
        gm.exact_log_partition(beta), mix1d.exact_log_partition(beta) + gauss, rtol=0, atol=1e-10
    )


def test_separated_modes_have_additive_partition():
    # modes 60 sigma apart: Z(beta) = sum_k w_k^beta int N_k^beta up to exp(-400)
    gm = GaussianMixture(
        torch.tensor([[0.0, 0.0], [30.0, 0.0]], dtype=torch.float64),
        torch.tensor([[0.5, 0.5], [1.0, 0.25]], dtype=torch.float64),
        torch.tensor([0.2, 0.8], dtype=torch.float64),
    )
    for beta in (0.5, 4.0):
        log_terms = (
            beta * gm.weights.log()
            + (1 - beta) * (math.log(2 * math.pi) + gm.scales.log().sum(-1))
            - math.log(beta)
        )
        ref = float(torch.logsumexp(log_terms, 0))
        assert float(gm.exact_log_partition(beta)) == pytest.approx(ref, abs=1e-10)


def test_exact_samples_through_gibbs(generator, device):
    gm = GaussianMixture.ring(
        num_modes=8, radius=4.0, scale=0.5, dtype=torch.float64, device=device
    )
    n = 40000
    y = Gibbs(gm).sample((n,), generator=generator)
    assert y.shape == (n, 2) and y.dtype == torch.float64
    # mode frequencies: chi^2 against the weights (7 dof, tail probability 1e-4)
    counts = torch.bincount(gm.component_of(y), minlength=8).double()
    expected = n * gm.weights
    threshold = stats.chi2.ppf(1 - 1e-4, df=7)
    assert float(((counts - expected) ** 2 / expected).sum()) < threshold
    # negative control: the same counts against unequal weights must be rejected
    skewed = torch.linspace(0.5, 1.5, 8, dtype=torch.float64, device=device)
    skewed = n * skewed / skewed.sum()
    assert float(((counts - skewed) ** 2 / skewed).sum()) > threshold
    # second moment E|y|^2 = r^2 + 2 s^2 within 4 standard errors
    r2 = (y * y).sum(-1)
    z = (r2.mean() - (16.0 + 2 * 0.25)) / (r2.std() / math.sqrt(n))
    assert abs(float(z)) < 4


def test_component_of_and_ring():
    gm = GaussianMixture.ring(num_modes=6, radius=2.0, scale=0.1)
    angle = 2 * math.pi * torch.arange(6) / 6
    pts = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], -1) + 0.05
    assert gm.component_of(pts).tolist() == list(range(6))
    torch.testing.assert_close(gm.weights, torch.full((6,), 1 / 6))


def test_errors():
    gm3 = GaussianMixture(torch.zeros(2, 3), torch.ones(2))
    assert float(gm3.exact_log_partition(1.0)) == 0.0
    with pytest.raises(NotImplementedError, match="d <= 2"):
        gm3.exact_log_partition(0.5)
    with pytest.raises(NotImplementedError, match="beta = 1"):
        Gibbs(gm3, 2.0).sample((3,))
    with pytest.raises(ValueError, match="scales"):
        GaussianMixture(torch.zeros(2, 2), -torch.ones(2))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 2), torch.ones(2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="beta"):
        gm3.exact_log_partition(-1.0)
