"""Gibbs posteriors and learning-rate calibration (gibbsebm.workflow).

Closed forms used: for the squared loss l = (z - theta)^2 / 2 and a N(0, tau^2) prior, the
Gibbs posterior at rate w is N(w n zbar / (w n + tau^-2), 1 / (w n + tau^-2)); the
loss-likelihood-bootstrap rate is tr(J I^-1 J) / tr(J) = 1 / (mean squared residual).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import gibbsebm
from gibbsebm.workflow import (
    calibrate_learning_rate,
    credible_region_contains,
    gibbs_posterior,
    gibbs_posterior_model,
    loss_likelihood_bootstrap,
    minimize_loss,
    sandwich_learning_rate,
    weighted_gibbs_posterior,
)

F64 = torch.float64
TAU = 10.0


def sq_loss(theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (z[None, :] - theta[:, :1]) ** 2


def prior1() -> dist.Distribution:
    return dist.Normal(torch.zeros(1, dtype=F64), TAU).to_event(1)


def data(n: int, sd: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 1.5 + sd * torch.randn(n, generator=g, dtype=F64)


def test_minimize_loss_and_sandwich_rate_closed_form():
    z = data(80, 2.0, 0)
    theta_hat = minimize_loss(sq_loss, z, torch.zeros(1, dtype=F64))
    assert float(theta_hat) == pytest.approx(float(z.mean()), abs=1e-9)
    w, info = sandwich_learning_rate(sq_loss, z, theta_hat)
    # J = 1, I = mean squared residual
    assert float(info["J"]) == pytest.approx(1.0, abs=1e-12)
    assert w == pytest.approx(1.0 / float(((z - z.mean()) ** 2).mean()), rel=1e-8)


def test_gibbs_posterior_matches_the_conjugate_gaussian():
    z = data(40, 2.0, 1)
    n, w = z.shape[0], 0.25
    post = gibbs_posterior(sq_loss, z, prior1(), beta=w)
    prec = w * n + TAU**-2
    mean, sd = w * float(z.sum()) / prec, prec**-0.5
    # the unnormalized log density is log prior - w * sum of losses
    theta = torch.tensor([[0.3], [2.0]], dtype=F64)
    expected = prior1().log_prob(theta) - w * sq_loss(theta, z).sum(-1)
    assert torch.allclose(post.unnormalized_log_prob(theta), expected, atol=1e-10)
    s = gibbsebm.sample(
        post, method="mala", num_chains=8, num_samples=250, num_warmup=150, seed=2, progress=False
    )
    summ = s.summary(round_to="none")
    assert s.draws.dtype == F64
    assert abs(float(summ["mean"].iloc[0]) - mean) < 5 * float(summ["mcse_mean"].iloc[0])
    assert abs(float(summ["sd"].iloc[0]) - sd) < 5 * float(summ["mcse_sd"].iloc[0])


def test_weighted_posterior_blocks_are_independent_gibbs_posteriors():
    z = data(30, 1.0, 3)
    w = torch.stack([torch.ones(30, dtype=F64), 2 * torch.ones(30, dtype=F64)])
    post = weighted_gibbs_posterior(
        sq_loss, z, w, prior1(), beta=torch.tensor([1.0, 0.5], dtype=F64)
    )
    theta = torch.tensor([[[0.1], [0.7]]], dtype=F64)  # (N=1, K=2, d=1)
    lp0 = prior1().log_prob(theta[0, :1]) - sq_loss(theta[0, 0:1], z).sum()
    # weights 2 at rate 0.5 equal weights 1 at rate 1
    lp1 = prior1().log_prob(theta[0, 1:]) - sq_loss(theta[0, 1:2], z).sum()
    assert torch.allclose(post.unnormalized_log_prob(theta), (lp0 + lp1).reshape(1), atol=1e-10)


def test_pyro_model_log_density_is_prior_minus_tempered_loss():
    z = data(20, 1.0, 4)
    model = gibbs_posterior_model(sq_loss, prior1(), beta=0.3)
    theta = torch.tensor([0.4], dtype=F64)
    conditioned = pyro.poutine.condition(model, data={"theta": theta})
    trace = pyro.poutine.trace(conditioned).get_trace(z)
    expected = prior1().log_prob(theta) - 0.3 * sq_loss(theta[None], z).sum()
    assert float(trace.log_prob_sum()) == pytest.approx(float(expected), abs=1e-9)


def test_credible_region_coverage_of_exact_draws():
    g = torch.Generator().manual_seed(5)
    draws = torch.randn(20000, 1, 1, generator=g, dtype=F64)
    # 1-D: the region is |theta - mean| <= 1.96 sd (up to Monte Carlo error in the quantile)
    inside = credible_region_contains(
        draws.expand(-1, 2, -1), torch.tensor([[1.90], [2.05]], dtype=F64), 0.95
    )
    assert inside.tolist() == [True, False]
    with pytest.raises(ValueError, match="level"):
        credible_region_contains(draws, torch.zeros(1), 1.5)


def _conjugate_covers(z: torch.Tensor, w: float, truth: float) -> bool:
    n = z.shape[0]
    prec = w * n + TAU**-2
    mean = w * float(z.sum()) / prec
    return abs(mean - truth) <= 1.959963984540054 / math.sqrt(prec)


def test_llb_rate_gives_nominal_frequentist_coverage_and_w1_does_not():
    """Coverage over many data sets: within 3 binomial se of 0.95 after calibration.

    The negative control, w = 1 with noise sd 2, covers about P(|N(0,1)| < 0.98) = 0.67.
    """
    m, n, sd, truth = 300, 60, 2.0, 1.5
    cover_llb, cover_1 = 0, 0
    for i in range(m):
        z = data(n, sd, 1000 + i)
        w = calibrate_learning_rate(
            sq_loss, z, prior=prior1(), theta_init=torch.zeros(1, dtype=F64), method="llb"
        ).beta
        cover_llb += _conjugate_covers(z, w, truth)
        cover_1 += _conjugate_covers(z, 1.0, truth)
    se = math.sqrt(0.95 * 0.05 / m)
    # plug-in variance with n = 60 makes intervals slightly narrow (t vs normal): the
    # finite-sample coverage is about 0.944; 3 se is 0.038
    assert abs(cover_llb / m - 0.95) < 3 * se
    assert cover_1 / m < 0.95 - 10 * se


def test_gpc_finds_the_rate_that_covers():
    """GPC on a location problem with noise sd 2: rate near 1 / s^2, coverage near 0.95.

    The bootstrap coverage estimate has se sqrt(0.95 * 0.05 / B) = 0.022 (B = 100); its slope
    in log w at 0.95 is about 2 phi(1.96) 1.96 / 2 = 0.11, so log w is determined to about
    0.022 / 0.11 = 0.2; the tolerance below is 3 of those.
    """
    z = data(60, 2.0, 7)
    res = calibrate_learning_rate(
        sq_loss,
        z,
        prior=prior1(),
        theta_init=torch.zeros(1, dtype=F64),
        method="gpc",
        num_bootstrap=100,
        sampler="mala",
        # short posterior runs inside the bootstrap; coverage is what is checked here
        sampler_options={"num_chains": 4, "num_samples": 150, "num_warmup": 100, "warn": False},
        seed=0,
    )
    target = 1.0 / float(((z - z.mean()) ** 2).mean())
    assert abs(math.log(res.beta) - math.log(target)) < 0.6
    assert abs(res.coverage - 0.95) <= res.diagnostics["tol"] + 1e-12
    # coverage decreases with the rate along the search (common random numbers)
    hist = sorted(res.history)
    assert hist[0][1] >= hist[-1][1]
    assert res.beta < 0.5  # the uncalibrated w = 1 is far off


def test_loss_likelihood_bootstrap_spread_matches_sampling_sd():
    z = data(200, 2.0, 8)
    g = torch.Generator().manual_seed(9)
    draws = loss_likelihood_bootstrap(sq_loss, z, torch.zeros(1, dtype=F64), 2000, generator=g)
    # LLB draws of the mean have sd about s / sqrt(n); sd of the sd estimate ~ sd / sqrt(2 B)
    expected = float(z.std()) / math.sqrt(200)
    assert abs(float(draws.std()) - expected) < 5 * expected / math.sqrt(2 * 2000)


def test_bad_inputs_raise():
    z = data(10, 1.0, 0)
    with pytest.raises(ValueError, match="method"):
        calibrate_learning_rate(
            sq_loss, z, prior=prior1(), theta_init=torch.zeros(1, dtype=F64), method="x"
        )
    with pytest.raises(ValueError, match="level"):
        calibrate_learning_rate(
            sq_loss, z, prior=prior1(), theta_init=torch.zeros(1, dtype=F64), level=1.0
        )
    with pytest.raises(ValueError, match=r"\(C, n\)"):
        minimize_loss(lambda th, z: (z - th).sum(-1), z, torch.zeros(1, dtype=F64))
    with pytest.raises(ValueError, match="beta"):
        gibbs_posterior(sq_loss, z, prior1(), beta=0.0)
    with pytest.raises(ValueError, match="weights"):
        weighted_gibbs_posterior(sq_loss, z, -torch.ones(2, 10, dtype=F64), prior1())


@pytest.mark.slow
def test_gpc_rates_give_nominal_frequentist_coverage():
    """GPC calibrated on each of 60 data sets: the regions at those rates cover at ~95%.

    Each rate carries its own bootstrap error, which spreads the per-data-set coverage around
    0.95; the tolerance is 3 binomial standard errors over data sets plus 0.03 for that
    spread (at B = 100 the rate is known to about 0.2 in log w, which moves the coverage of a
    1-D 95% interval by about 0.02). The negative control at w = 1 must fail.
    """
    m, n, sd, truth = 60, 50, 2.0, 1.5
    covered, covered_1 = 0, 0
    for i in range(m):
        z = data(n, sd, 5000 + i)
        res = calibrate_learning_rate(
            sq_loss,
            z,
            prior=prior1(),
            theta_init=torch.zeros(1, dtype=F64),
            method="gpc",
            num_bootstrap=100,
            sampler="mala",
            sampler_options={"num_chains": 4, "num_samples": 150, "num_warmup": 100},
            seed=i,
        )
        covered += _conjugate_covers(z, res.beta, truth)
        covered_1 += _conjugate_covers(z, 1.0, truth)
    se = math.sqrt(0.95 * 0.05 / m)
    assert abs(covered / m - 0.95) < 3 * se + 0.03
    assert covered_1 / m < 0.8
