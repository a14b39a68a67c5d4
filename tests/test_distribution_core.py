import math

import pytest
import torch
from torch.distributions import constraints

from gibbsebm import Gibbs
from gibbsebm.energies import Gaussian


def test_gaussian_log_prob_matches_torch():
    cov = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    g = Gaussian(torch.tensor([1.0, -1.0], dtype=torch.float64), covariance=cov)
    for beta in (0.5, 1.0, 3.0):
        d = Gibbs(g, beta)
        y = torch.randn(7, 2, dtype=torch.float64)
        ref = torch.distributions.MultivariateNormal(g.mean, cov / beta).log_prob(y)
        torch.testing.assert_close(d.log_prob(y), ref)


def test_enumeration_normalizes_conditional_labels():
    W = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))

    def energy(x, y):
        return -(x @ W).gather(1, y.long()[:, None]).squeeze(1)

    x = torch.randn(5, 4)
    d = Gibbs(energy, 2.0, condition=x, support=constraints.integer_interval(0, 2), event_shape=())
    probs = d.log_prob(d.enumerate_support()).exp()
    torch.testing.assert_close(probs.T, torch.softmax(2.0 * (x @ W), -1))


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf])
def test_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        Gibbs(Gaussian(torch.zeros(2)), beta)


def test_wrong_event_shape_raises():
    d = Gibbs(Gaussian(torch.zeros(2)))
    with pytest.raises(ValueError, match="event shape"):
        d.log_prob(torch.zeros(3))


def test_energy_wrong_output_shape_raises():
    d = Gibbs(lambda y: y.sum(), event_shape=(2,))
    with pytest.raises(ValueError, match="one value per input"):
        d.unnormalized_log_prob(torch.zeros(4, 2))
