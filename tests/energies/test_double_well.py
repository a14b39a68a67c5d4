import math

import numpy as np
import pytest
import torch
from scipy.special import ive

from gibbsebm import Gibbs
from gibbsebm.energies import DoubleWell


def bessel_log_z1(a: float, beta: float) -> float:
    """c = 0: Z_1 = (pi/2) e^{-x} [I_{-1/4}(x) + I_{1/4}(x)], x = beta a / 2."""
    x = beta * a / 2
    return math.log(math.pi / 2 * (ive(-0.25, x) + ive(0.25, x)))


@pytest.mark.parametrize("a", [0.5, 1.0, 4.0])
def test_log_partition_matches_bessel_closed_form(a):
    dw = DoubleWell(dim=1, a=a)
    for beta in (0.01, 0.5, 1.0, 10.0, 500.0):
        lz, err = dw.log_partition_1d(beta)
        assert err < 1e-10
        assert lz == pytest.approx(bessel_log_z1(a, beta), abs=1e-12)


def test_product_over_coordinates():
    beta = torch.tensor([0.3, 1.0, 7.0], dtype=torch.float64)
    one = DoubleWell(dim=1, a=2.0, c=0.4).exact_log_partition(beta)
    three = DoubleWell(dim=3, a=2.0, c=0.4).exact_log_partition(beta)
    assert three.shape == beta.shape and three.dtype == torch.float64
    torch.testing.assert_close(three, 3 * one, rtol=1e-14, atol=0)
    x = torch.tensor([[0.3, -1.2, 0.9]], dtype=torch.float64)
    e = DoubleWell(dim=3, a=2.0, c=0.4, dtype=torch.float64)(x)
    ref = sum(2.0 * (t * t - 1) ** 2 + 0.4 * t for t in x[0].tolist())
    assert float(e) == pytest.approx(ref, rel=1e-14)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_moments_are_derivatives_of_log_partition(beta):
    # d/dc log Z_1 = -beta E[y], d^2/dc^2 log Z_1 = beta^2 Var[y] (five-point stencils,
    # truncation O(h^4) ~ 1e-10 at h = 3e-3; quadrature noise 1e-13 / h^2 ~ 1e-8 in d2)
    a, c, h = 1.5, 0.3, 3e-3
    f = [DoubleWell(a=a, c=c + j * h).log_partition_1d(beta)[0] for j in (-2, -1, 0, 1, 2)]
    d1 = (f[0] - 8 * f[1] + 8 * f[3] - f[4]) / (12 * h)
    d2 = (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * h * h)
    mean, var = DoubleWell(a=a, c=c).exact_moments(beta)
    assert float(mean) == pytest.approx(-d1 / beta, abs=1e-9)
    assert float(var) == pytest.approx(d2 / beta**2, abs=1e-7)
    assert float(mean) < 0  # c > 0 tilts mass to the left well


def test_density_and_gibbs_normalization():
    dw = DoubleWell(dim=1, a=1.0, c=-0.5, dtype=torch.float64)
    grid = np.linspace(-4, 4, 8001)
    dens = dw.density(grid, 1.5)
    assert float(np.trapezoid(dens.numpy(), grid)) == pytest.approx(1.0, abs=1e-10)
    lp = Gibbs(dw, 1.5).log_prob(torch.as_tensor(grid)[:, None])
    torch.testing.assert_close(lp.exp(), dens)
    # a 2-D product: log_prob integrates to one on a grid
    dw2 = DoubleWell(dim=2, a=1.0, c=0.2, dtype=torch.float64)
    g = torch.linspace(-3, 3, 601, dtype=torch.float64)
    y = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = Gibbs(dw2, 0.8).log_prob(y).exp().reshape(601, 601).numpy()
    step = float(g[1] - g[0])
    assert float(p.sum() * step * step) == pytest.approx(1.0, abs=1e-6)


def test_validation():
    with pytest.raises(ValueError, match="a must be"):
        DoubleWell(a=0.0)
    with pytest.raises(ValueError, match="dim"):
        DoubleWell(dim=0)
    with pytest.raises(ValueError, match="beta"):
        DoubleWell().exact_log_partition(-2.0)
