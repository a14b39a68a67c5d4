"""probabilities() and fit_beta(): recovery of a known beta, standard errors, bad inputs."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from torch.distributions import constraints

from gibbsebm import Gibbs
from gibbsebm.calibration import (
    fit_beta,
    free_energy_score,
    label_energies,
    nll_from_energies,
    probabilities,
)


def _gibbs_classifier_data(beta, n, k, seed, device="cpu"):
    """Energies E ~ N(0, 1) and labels drawn exactly from softmax(-beta E)."""
    g = torch.Generator(device=device).manual_seed(seed)
    e = torch.randn(n, k, generator=g, dtype=torch.float64, device=device)
    y = torch.multinomial(torch.softmax(-beta * e, 1), 1, generator=g).squeeze(1)
    return e, y


def test_probabilities_is_softmax_of_minus_beta_energy(device):
    e = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, -1.0]], device=device)
    p = probabilities(e, 0.7)
    assert p.dtype == torch.float32 and p.device == e.device
    assert torch.allclose(p, torch.softmax(-0.7 * e, 1), rtol=1e-6, atol=1e-7)
    pn = probabilities(e.cpu().numpy(), 0.7)
    assert isinstance(pn, np.ndarray) and pn.dtype == np.float64
    # per-row beta, and huge energies stay finite
    pr = probabilities(e, torch.tensor([1.0, 2.0], device=device))
    assert torch.allclose(pr[1], torch.softmax(-2.0 * e[1], 0), rtol=1e-6, atol=1e-7)
    big = probabilities(np.array([[0.0, 1e6]]), 1.0)
    assert big.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        probabilities([[0.0, 1.0]], beta)


def test_bad_energies_raise():
    with pytest.raises(ValueError, match="NaN"):
        probabilities([[0.0, float("nan")]], 1.0)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        probabilities([0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="beta must be a scalar or shaped"):
        probabilities([[0.0, 1.0]], torch.ones(3))
    with pytest.raises(ValueError, match="mismatched lengths"):
        fit_beta(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="out of range"):
        fit_beta(np.random.default_rng(0).normal(size=(3, 2)), [0, 1, 2])


@pytest.mark.parametrize("beta", [0.4, 2.0, 6.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fit_beta_recovers_true_beta(beta, seed):
    e, y = _gibbs_classifier_data(beta, 3000, 5, seed)
    fit = fit_beta(e, y)
    assert abs(fit.beta - beta) < 3 * fit.stderr, (fit.beta, fit.stderr)
    assert fit.nll <= fit.nll_at_one + 1e-12
    assert fit.temperature == pytest.approx(1 / fit.beta)


def test_fit_beta_negative_control():
    # labels generated at beta = 2 must not be consistent with beta = 2.5 (or with beta = 1)
    e, y = _gibbs_classifier_data(2.0, 3000, 5, 0)
    fit = fit_beta(e, y)
    assert abs(fit.beta - 2.5) > 3 * fit.stderr
    assert abs(fit.beta - 1.0) > 3 * fit.stderr


def test_fit_beta_is_the_minimum_and_stderr_is_observed_information():
    e, y = _gibbs_classifier_data(1.3, 800, 4, 7)

    def mean_nll(b):
        return float(nll_from_energies(e, y, b).mean())

    ref = minimize_scalar(mean_nll, bounds=(0.01, 20), method="bounded", options={"xatol": 1e-10})
    fit = fit_beta(e, y)
    assert fit.beta == pytest.approx(ref.x, rel=1e-6)
    assert fit.nll == pytest.approx(mean_nll(fit.beta), rel=1e-12)
    h = 1e-4
    second = (mean_nll(fit.beta + h) - 2 * mean_nll(fit.beta) + mean_nll(fit.beta - h)) / h**2
    assert fit.stderr == pytest.approx(1 / math.sqrt(800 * second), rel=1e-4)


def test_fit_beta_degenerate_data_raise():
    e = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="separable"):
        fit_beta(e, [0, 1])
    with pytest.raises(ValueError, match="not more likely"):
        fit_beta(e, [1, 0])
    with pytest.raises(ValueError, match="constant"):
        fit_beta(np.ones((3, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="two classes"):
        fit_beta(np.ones((3, 1)), [0, 0, 0])


def test_free_energy_score():
    e = np.array([[0.0, 0.0], [1.0, 3.0]])
    f = free_energy_score(e, 2.0)
    assert f[0].item() == pytest.approx(-math.log(2) / 2)
    assert f[1].item() == pytest.approx(-math.log(math.exp(-2) + math.exp(-6)) / 2)


def test_beta_posterior_by_nuts_agrees_with_mle():
    e, y = _gibbs_classifier_data(1.5, 600, 4, 11)
    state = torch.get_rng_state()
    fit = fit_beta(e, y, posterior_samples=150, posterior_warmup=100, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the caller's global RNG is untouched
    post = fit.posterior
    assert post.samples.shape == (1, 150)
    assert post.r_hat < 1.1 and post.ess > 30
    # with a wide prior and N = 600 the posterior is close to N(mle, stderr^2)
    assert abs(post.mean - fit.beta) < 0.5 * fit.stderr + 3 * post.mcse
    assert post.sd == pytest.approx(fit.stderr, rel=0.35)


@pytest.mark.slow
def test_fit_beta_z_scores_are_standard_normal():
    z = []
    for seed in range(200):
        e, y = _gibbs_classifier_data(2.0, 1000, 5, 1000 + seed)
        fit = fit_beta(e, y)
        z.append((fit.beta - 2.0) / fit.stderr)
    z = np.array(z)
    inside = np.mean(np.abs(z) < 1.96)
    # 95% nominal; binomial sd over 200 replications is 1.5%: allow 3 sd
    assert abs(inside - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 200)
    assert abs(z.mean()) < 3 / math.sqrt(200)


def test_label_energies_of_a_conditional_gibbs_feed_fit_beta():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64)

    def energy(xx, k):
        return -(xx @ w).gather(1, k.long()[:, None]).squeeze(1)

    d = Gibbs(energy, 1.7, condition=x, support=constraints.integer_interval(0, 3), event_shape=())
    e = label_energies(d)
    assert e.shape == (2000, 4)
    assert torch.allclose(e, -(x @ w))
    # labels drawn from the distribution itself (exact enumeration sampling) give back beta
    y = d.sample(generator=g).long()
    fit = fit_beta(e, y)
    assert abs(fit.beta - 1.7) < 3 * fit.stderr
    with pytest.raises(ValueError, match="conditional"):
        label_energies(
            Gibbs(
                lambda k: k.double(),
                1.0,
                support=constraints.integer_interval(0, 3),
                event_shape=(),
            )
        )
