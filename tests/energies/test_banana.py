import math

import pytest
import torch
from scipy import integrate

from gibbsebm import Gibbs
from gibbsebm.energies import Banana


def test_energy_matches_definition():
    banana = Banana(dim=3, b=0.2, sigma1=3.0, dtype=torch.float64)
    y = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
    phi = torch.stack([y[:, 0], y[:, 1] + 0.2 * y[:, 0] ** 2 - 0.2 * 9.0, y[:, 2]], -1)
    c_inv = torch.diag(torch.tensor([1 / 9.0, 1.0, 1.0], dtype=torch.float64))
    ref = 0.5 * torch.einsum("ni,ij,nj->n", phi, c_inv, phi)
    torch.testing.assert_close(banana(y), ref)
    torch.testing.assert_close(banana.twist(banana.untwist(y)), y)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_log_partition_by_quadrature(beta):
    # nested adaptive quadrature of exp(-beta E) in the original (twisted) coordinates: checks
    # the unit-Jacobian claim; the energy itself is checked against its definition above
    b, s1 = 0.1, 4.0
    banana = Banana(dim=2, b=b, sigma1=s1, dtype=torch.float64)
    y = torch.tensor([[1.3, -0.4]], dtype=torch.float64)
    twisted = 0.5 * (1.3**2 / s1**2 + (-0.4 + b * 1.3**2 - b * s1**2) ** 2)
    assert float(banana(y)) == pytest.approx(twisted, rel=1e-14)
    half = 12 / math.sqrt(beta)

    def inner(y1):
        ridge = -b * y1**2 + b * s1**2

        def f(y2):
            return math.exp(-beta * 0.5 * (y1**2 / s1**2 + (y2 + b * y1**2 - b * s1**2) ** 2))

        return integrate.quad(f, ridge - half, ridge + half, epsabs=0, epsrel=1e-11)[0]

    value = integrate.quad(inner, -half * s1, half * s1, epsabs=0, epsrel=1e-10)[0]
    assert float(banana.exact_log_partition(beta)) == pytest.approx(math.log(value), abs=1e-8)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_exact_moments_against_exact_samples(beta, generator, device):
    banana = Banana(dim=3, b=0.1, sigma1=10.0, dtype=torch.float64, device=device)
    n = 100000
    y = Gibbs(banana, beta).sample((n,), generator=generator)
    assert y.shape == (n, 3)
    mean = banana.exact_mean(beta)
    cov = banana.exact_covariance(beta)
    # sample means within 4 standard errors
    z_mean = (y.mean(0) - mean) / (y.std(0) / math.sqrt(n))
    assert z_mean.abs().max() < 4
    # every covariance entry within 4 standard errors (SE from the products' spread)
    r = y - mean
    prod = r[:, :, None] * r[:, None, :]
    z_cov = (prod.mean(0) - cov) / (prod.std(0) / math.sqrt(n))
    assert z_cov.abs().max() < 4
    # negative control: the untwisted Gaussian's Var(y2) = 1/beta must be rejected
    z_wrong = (prod[:, 1, 1].mean() - 1 / beta) / (prod[:, 1, 1].std() / math.sqrt(n))
    assert abs(float(z_wrong)) > 4


def test_temperature_ladder_samples_and_shapes(generator, device):
    banana = Banana(dim=2, device=device)
    beta = torch.tensor([0.5, 2.0], device=device)
    d = Gibbs(banana, beta)
    y = d.sample((500,), generator=generator)
    assert y.shape == (500, 2, 2) and y.dtype == torch.get_default_dtype()
    assert banana.exact_mean(beta).shape == (2, 2)
    assert banana.exact_covariance(beta).shape == (2, 2, 2)
    assert banana.exact_log_partition(beta).dtype == torch.float64
    lp = d.log_prob(y)
    assert lp.shape == (500, 2) and torch.isfinite(lp).all()


def test_validation():
    with pytest.raises(ValueError, match="dim"):
        Banana(dim=1)
    with pytest.raises(ValueError, match="sigma1"):
        Banana(sigma1=0.0)
    with pytest.raises(ValueError, match="beta"):
        Banana().exact_mean(0.0)
