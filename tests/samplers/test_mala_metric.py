"""MALA's preconditioner: the ``metric`` option, the dense metric's correctness (moments and
cross moments within K MCSE, the asymmetric proposal density with a negative control) and,
marked slow, the efficiency the dense metric buys on a rotated ill-conditioned 100-D Gaussian."""

import math

import numpy as np
import pytest
import torch
from _sampler_mc import one_thread, zscore  # noqa: F401 (autouse fixture)

import gibbsebm
from gibbsebm.diagnostics import ess
from gibbsebm.energies import Gaussian
from gibbsebm.samplers import mala
from gibbsebm.samplers.base import logdensity_and_grad
from gibbsebm.samplers.metrics import dense_metric

DT = torch.float64
K = 5.0  # tolerance in Monte Carlo standard errors


def _rotated_gaussian(dim, cond, seed, device):
    """N(m, Q diag(s) Q^T), variances log-spaced over ``cond``, Q a fixed random rotation."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=DT))
    var = torch.logspace(-0.5 * math.log10(cond), 0.5 * math.log10(cond), dim, dtype=DT)
    cov = q @ torch.diag(var) @ q.T
    mean = torch.linspace(-1, 1, dim, dtype=DT)
    return mean.to(device), cov.to(device)


def test_metric_option_is_dense_mass(device):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(3, dtype=DT, device=device)))
    kw = dict(num_chains=4, num_samples=10, num_warmup=40, seed=3, progress=False, warn=False)
    a = gibbsebm.sample(d, "mala", metric="dense", **kw)
    b = gibbsebm.sample(d, "mala", dense_mass=True, **kw)
    c = gibbsebm.sample(d, "mala", metric="diag", **kw)
    assert torch.equal(a.draws, b.draws)
    assert a.adaptation["inverse_mass"].shape == (3, 3)
    assert c.adaptation["inverse_mass"].shape == (3,)
    with pytest.raises(ValueError, match="metric must be one of"):
        gibbsebm.sample(d, "mala", metric="lowrank", **kw)
    with pytest.raises(ValueError, match="contradicts"):
        gibbsebm.sample(d, "mala", metric="diag", dense_mass=True, **kw)


def _quartic(y):
    return -(0.25 * y**4 - y**2 + 0.5 * y).sum(-1)


@pytest.mark.parametrize("symmetric", [False, True])
def test_dense_proposal_density_is_the_asymmetric_langevin_one(device, symmetric):
    """The kernel's acceptance equals p(y')q(y|y') / p(y)q(y'|y) with
    q(y'|y) = N(y + tau M^-1 grad log p(y), 2 tau M^-1); negative control: dropping the q terms
    (a symmetric proposal's ratio) does not match it."""
    minv = torch.tensor(
        [[1.5, 0.4, 0.1], [0.4, 0.7, -0.2], [0.1, -0.2, 0.9]], dtype=DT, device=device
    )
    metric, mass, tau = dense_metric(minv), torch.linalg.inv(minv), 0.4
    y = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=DT).to(device)
    g = torch.Generator(device=device).manual_seed(5)
    g_copy = torch.Generator(device=device).manual_seed(5)
    _, info = mala.step(g, mala.init(y, _quartic), _quartic, step_size=tau, metric=metric)
    p = metric.sample_momentum(g_copy, y)  # the kernel's noise, replayed
    _, grad = logdensity_and_grad(_quartic, y)
    prop = y + tau * grad @ minv + math.sqrt(2 * tau) * p @ minv
    _, grad_p = logdensity_and_grad(_quartic, prop)

    def log_q(to, frm, grad_frm):
        r = to - frm - tau * grad_frm @ minv
        return -((r @ mass) * r).sum(-1) / (4 * tau)

    log_ratio = _quartic(prop) - _quartic(y)
    if not symmetric:
        log_ratio = log_ratio + log_q(y, prop, grad_p) - log_q(prop, y, grad)
    expected = torch.exp(log_ratio.clamp(max=0))
    matches = torch.allclose(info.acceptance_prob, expected, rtol=1e-9, atol=1e-12)
    assert matches != symmetric


def test_dense_mala_moments_and_cross_moments(device):
    """Mean, variances and covariances of a correlated 4-D Gaussian within K MCSE."""
    cov = torch.tensor(
        [[4.0, 1.8, 0.0, 0.5], [1.8, 1.0, 0.1, 0.2], [0.0, 0.1, 0.25, -0.1], [0.5, 0.2, -0.1, 1.0]],
        dtype=DT,
    )
    mean = torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=DT)
    d = gibbsebm.Gibbs(Gaussian(mean.to(device), covariance=cov.to(device)))
    s = gibbsebm.sample(
        d,
        "mala",
        metric="dense",
        num_chains=32,
        num_samples=300,
        num_warmup=300,
        seed=7,
        progress=False,
        warn=False,
    )
    x = s.draws.double().cpu()
    z_mean = zscore(x, mean.numpy())
    iu = torch.triu_indices(4, 4)
    dev = x - mean
    prods = dev[..., iu[0]] * dev[..., iu[1]]  # (C, D, 10): every (co)variance
    z_cov = zscore(prods, cov[iu[0], iu[1]].numpy())
    assert np.abs(z_mean).max() < K, z_mean
    assert np.abs(z_cov).max() < K, z_cov
    acc = float(s.stats["acceptance_prob"].double().mean())
    assert abs(acc - mala.OPTIMAL_ACCEPTANCE) < 0.1


@pytest.mark.slow
def test_dense_metric_mixes_a_rotated_ill_conditioned_gaussian(device):
    """100-D Gaussian, covariance condition number 1e3 in a random rotation, 32 chains x 1000
    draws after 1000 warmup: measured min bulk ESS per 1,000 draws 52 with ``metric="dense"``
    and 1.2 with the diagonal metric (which cannot undo the rotation). Thresholds: dense
    >= 25, diagonal <= 10 (the negative control)."""
    mean, cov = _rotated_gaussian(100, 1e3, 0, device)
    d = gibbsebm.Gibbs(Gaussian(mean, covariance=cov))
    kw = dict(num_chains=32, num_samples=1000, num_warmup=1000, seed=1, progress=False, warn=False)
    per_1000 = {}
    for metric in ("dense", "diag"):
        s = gibbsebm.sample(d, "mala", metric=metric, **kw)
        per_1000[metric] = float(ess(s.draws, kind="bulk").min()) / (32 * 1000) * 1000
    assert per_1000["dense"] >= 25, per_1000
    assert per_1000["diag"] <= 10, per_1000
