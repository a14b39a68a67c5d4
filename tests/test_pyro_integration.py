"""Gibbs inside Pyro models: a NUTS latent site, an energy-based likelihood, energy_factor.

Monte Carlo checks use tolerances of 5 Monte Carlo standard errors, MCSE = sd / sqrt(ESS)
with ESS from arviz, and each comes with a negative control that must fail.
"""

import math
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, TraceEnum_ELBO
from pyro.infer.autoguide import init_to_value
from torch.distributions import constraints

from gibbsebm import Gibbs, UnnormalizedLogProbWarning, energy_factor
from gibbsebm.constraints import spin

DT = torch.float64
K_MCSE = 5.0


def _within_mcse(draws, expected, k=K_MCSE):
    """|mean(draws) - expected| / MCSE for each column; draws (chain, draw, m)."""
    draws = np.asarray(draws)
    ess = np.array([float(az.ess(draws[..., j], method="mean")) for j in range(draws.shape[-1])])
    flat = draws.reshape(-1, draws.shape[-1])
    mcse = flat.std(0, ddof=1) / np.sqrt(ess)
    return np.abs(flat.mean(0) - np.asarray(expected)) / mcse, ess


def _moment_draws(y, mu):
    """Columns whose expectations are the mean and the covariance entries (i <= j)."""
    d = y.shape[-1]
    r = y - mu
    iu = np.triu_indices(d)
    return np.concatenate([y, (r[..., :, None] * r[..., None, :])[..., iu[0], iu[1]]], -1), iu


def _run_nuts(model, num_warmup, num_samples, seed, **kw):
    pyro.set_rng_seed(seed)
    kernel = NUTS(model, full_mass=True, max_plate_nesting=0, **kw)
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup, disable_progbar=True)
    mcmc.run()
    return mcmc


# Gibbs of a plain function has no log Z and no exact sampler: log_prob is unnormalized and
# warns. Inside MCMC over y that is harmless (log Z does not depend on y), so the warning is
# silenced here on purpose; the test also checks that it is emitted.
@pytest.mark.filterwarnings("ignore::gibbsebm.UnnormalizedLogProbWarning")
def test_gibbs_latent_site_nuts_moments():
    cov = torch.tensor([[1.0, 0.6, 0.2], [0.6, 1.5, -0.4], [0.2, -0.4, 0.8]], dtype=DT)
    prec = torch.linalg.inv(cov)
    mu = torch.tensor([1.0, -0.5, 2.0], dtype=DT)
    beta = 2.0

    def energy(y):
        r = y - mu
        return 0.5 * ((r @ prec) * r).sum(-1)

    def model():
        pyro.sample("y", Gibbs(energy, beta, event_shape=(3,)))

    with pytest.warns(UnnormalizedLogProbWarning):
        Gibbs(energy, beta, event_shape=(3,)).log_prob(mu)
    # Pyro's default init (init_to_uniform) calls sample(), which a Gibbs without an exact
    # sampler cannot do: give NUTS an initial value (see the Gibbs docstring)
    y0 = torch.zeros(3, dtype=DT)
    mcmc = _run_nuts(model, 100, 250, seed=1, init_strategy=init_to_value(values={"y": y0}))
    y = mcmc.get_samples(group_by_chain=True)["y"].numpy()  # (1, 250, 3)
    cols, iu = _moment_draws(y, mu.numpy())
    expected = np.concatenate([mu.numpy(), (cov / beta).numpy()[iu]])
    z, ess = _within_mcse(cols, expected)
    assert ess.min() > 50, ess
    assert (z < K_MCSE).all(), z
    # negative control: the moments of beta = 1 are far outside the error bars
    wrong = np.concatenate([mu.numpy(), cov.numpy()[iu]])
    z_wrong, _ = _within_mcse(cols, wrong)
    assert z_wrong.max() > K_MCSE


def test_gibbs_with_exact_sampler_uses_pyro_default_init():
    """An energy with exact_sample (Gaussian) needs nothing special in Pyro."""
    from gibbsebm.energies import Gaussian

    g = Gaussian(torch.tensor([0.5], dtype=DT), covariance=torch.tensor([[2.0]], dtype=DT))

    def model():
        pyro.sample("y", Gibbs(g, 4.0))

    trace = poutine.trace(model).get_trace()
    y = trace.nodes["y"]["value"]
    assert y.shape == (1,)
    ref = dist.Normal(0.5, math.sqrt(2.0 / 4.0)).log_prob(y).sum()
    torch.testing.assert_close(trace.log_prob_sum(), ref)


def _label_model(x, labels, beta, num_particles=None):
    num_classes = 3

    def model():
        w = pyro.sample("w", dist.Normal(torch.zeros(2, num_classes, dtype=DT), 1.0).to_event(2))

        def energy(x_, y_):
            return -(x_ @ w).gather(1, y_.long()[:, None]).squeeze(1)

        likelihood = Gibbs(
            energy,
            beta,
            condition=x,
            support=constraints.integer_interval(0, num_classes - 1),
            event_shape=(),
        )
        if num_particles is None:
            with pyro.plate("data", x.shape[0]):
                pyro.sample("y", likelihood, obs=labels)
        else:  # an outer plate makes Pyro expand the likelihood to (particles, N)
            with pyro.plate("particles", num_particles, dim=-2), pyro.plate("data", x.shape[0]):
                pyro.sample("y", likelihood, obs=labels)

    return model


def test_gibbs_as_likelihood_with_obs():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, generator=g, dtype=DT)
    labels = torch.tensor([0, 2, 1, 1, 0, 2], dtype=DT)
    beta = 1.7
    # the class-label support is enumerated, so log_prob is normalized: no warning may fire
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnnormalizedLogProbWarning)
        trace = poutine.trace(_label_model(x, labels, beta)).get_trace()
        w = trace.nodes["w"]["value"].clone().requires_grad_(True)
        cond = poutine.condition(_label_model(x, labels, beta), data={"w": w})
        log_joint = poutine.trace(cond).get_trace().log_prob_sum()
    hand = (
        dist.Normal(0.0, 1.0).log_prob(w).sum()
        + torch.log_softmax(beta * (x @ w), -1).gather(1, labels.long()[:, None]).sum()
    )
    torch.testing.assert_close(log_joint, hand)
    # gradients of the normalized likelihood (through the enumerated log Z) agree too
    (g1,) = torch.autograd.grad(log_joint, w)
    (g2,) = torch.autograd.grad(hand, w)
    torch.testing.assert_close(g1, g2)
    # expand: the likelihood broadcast over an outer plate of 2 counts each datum twice
    cond2 = poutine.condition(_label_model(x, labels, beta, num_particles=2), data={"w": w})
    tr2 = poutine.trace(cond2).get_trace()
    assert tr2.nodes["y"]["fn"].batch_shape == (2, 6)
    lik = hand - dist.Normal(0.0, 1.0).log_prob(w).sum()
    torch.testing.assert_close(
        tr2.log_prob_sum() - dist.Normal(0.0, 1.0).log_prob(w).sum(), 2 * lik
    )


def test_discrete_gibbs_latent_enumerated_by_pyro():
    """A spin-pair Gibbs latent per datum, summed out by Pyro's parallel enumeration.

    Pyro expands the Gibbs site over the plate and enumerates its 4 states
    (``enumerate_support(expand=False)``); the ELBO with an empty guide is then the exact
    log marginal likelihood, compared here with a hand computation.
    """

    def energy(s):
        return -0.7 * s[:, 0] * s[:, 1] - 0.3 * s.sum(-1)

    def model(obs):
        with pyro.plate("data", obs.shape[0]):
            s = pyro.sample(
                "s",
                Gibbs(energy, 1.2, support=spin, event_shape=(2,)),
                infer={"enumerate": "parallel"},
            )
            pyro.sample("x", dist.Normal(s.sum(-1), 1.0), obs=obs)

    def guide(obs):
        pass

    obs = torch.tensor([0.7, -1.5, 2.0])
    log_marginal = -TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, obs)
    states = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    log_p = torch.log_softmax(-1.2 * energy(states), 0)
    lik = dist.Normal(states.sum(-1)[:, None], 1.0).log_prob(obs)  # (4, 3)
    ref = torch.logsumexp(log_p[:, None] + lik, 0).sum()
    assert abs(log_marginal - float(ref)) < 1e-5


def test_energy_factor_gibbs_posterior_nuts():
    """pi(theta | D) ∝ N(theta; 0, s0^2) exp(-beta * 0.5 sum (d_i - theta)^2): Gaussian."""
    data = torch.tensor([2.3, 3.1, 1.6, 2.9, 3.6, 2.2, 2.7, 3.2], dtype=DT)
    beta, s0 = 0.5, 0.5  # a prior as strong as the data: beta moves mean and variance

    def model():
        theta = pyro.sample("theta", dist.Normal(torch.tensor(0.0, dtype=DT), s0))
        energy_factor("loss", 0.5 * (data - theta) ** 2, beta=beta)

    post_prec = 1 / s0**2 + beta * data.numel()
    post_mean = float(beta * data.sum() / post_prec)
    post_var = 1 / post_prec
    mcmc = _run_nuts(model, 100, 400, seed=2)
    th = mcmc.get_samples(group_by_chain=True)["theta"].numpy()[..., None]  # (1, 400, 1)
    cols, _ = _moment_draws(th, np.array([post_mean]))
    z, ess = _within_mcse(cols, [post_mean, post_var])
    assert ess.min() > 50, ess
    assert (z < K_MCSE).all(), z
    # negative control: beta = 1 (the ordinary Bayesian posterior) is rejected
    wrong_prec = 1 / s0**2 + data.numel()
    z_wrong, _ = _within_mcse(cols, [float(data.sum() / wrong_prec), 1 / wrong_prec])
    assert z_wrong.max() > K_MCSE
    # the factor that was added is -beta * sum(E)
    tr = poutine.trace(poutine.condition(model, {"theta": torch.tensor(0.5, dtype=DT)})).get_trace()
    torch.testing.assert_close(
        tr.nodes["loss"]["fn"].log_prob(tr.nodes["loss"]["value"]).sum(),
        -beta * 0.5 * ((data - 0.5) ** 2).sum(),
    )


@pytest.mark.parametrize(
    "energy, beta, match",
    [
        (torch.tensor(1.0), 0.0, "beta"),
        (torch.tensor(1.0), math.nan, "NaN"),
        (torch.tensor(1), 1.0, "floating-point"),
        (torch.tensor(math.nan), 1.0, "NaN"),
        (1.0, 1.0, "floating-point"),
    ],
)
def test_energy_factor_bad_input(energy, beta, match):
    with pytest.raises(ValueError, match=match):
        energy_factor("f", energy, beta)
