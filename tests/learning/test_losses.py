"""Known optima: DSM and SSM recover a Gaussian's mean and covariance, NCE its log Z.

Each fit runs full-batch (no mini-batch noise), Adam at lr 0.1 then 0.01,
so the fitted parameters sit at the optimum of the empirical objective; the checks compare
them with the data-generating Gaussian at k = 4 standard errors of the sample mean and
covariance (the optimum of score matching on a Gaussian family is the sample mean and
covariance, Hyvarinen 2005; DSM's is the covariance of the noisy data, S + sigma^2 I).
Negative controls: the same checks against a wrong truth fail.
"""

from __future__ import annotations

import math

import pytest
import torch
from _models import QuadraticEnergy, gaussian_data

from gibbsebm.learning import cd_loss, dsm_loss, fit, nce_loss, ssm_loss
from gibbsebm.learning.losses import GaussianNoise

K = 4.0  # standard errors
N = 2000


def _decay(opt):
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[150], gamma=0.1)


def _within(est, truth, se):
    return bool(((est - truth).abs() <= K * se).all())


@pytest.fixture(scope="module")
def data():
    return gaussian_data(N, seed=3)


def test_ssm_recovers_mean_and_covariance(data):
    x, mu, S, se_mu, se_cov = data
    e = QuadraticEnergy().double()
    fit(e, x, "ssm", epochs=250, batch_size=N, lr=0.1, scheduler=_decay, progress=False, seed=0)
    assert _within(e.mu.detach(), mu, se_mu)
    assert _within(e.covariance(), S, se_cov)
    # negative control: a covariance off by 20% is detected
    assert not _within(e.covariance(), 1.2 * S, se_cov)


def test_dsm_recovers_noisy_covariance(data):
    x, mu, S, se_mu, se_cov = data
    sigma = 0.3
    e = QuadraticEnergy().double()
    fit(
        e,
        x,
        "dsm",
        epochs=250,
        batch_size=N,
        lr=0.1,
        scheduler=_decay,
        noise_std=sigma,
        progress=False,
        seed=0,
    )
    target = S + sigma**2 * torch.eye(2, dtype=torch.float64)
    assert _within(e.mu.detach(), mu, se_mu)
    assert _within(e.covariance(), target, se_cov)
    # negative control: forgetting the sigma^2 I of the noisy density is detected
    assert not _within(e.covariance(), S, se_cov)


def test_nce_recovers_log_partition(data):
    x, mu, S, se_mu, se_cov = data
    e = QuadraticEnergy().double()
    # start within a standard deviation of the data: far from the noise distribution the NCE
    # objective is flat (both classes are told apart perfectly) and Adam stalls there
    with torch.no_grad():
        e.mu.copy_(torch.tensor([0.5, -1.5]))
    res = fit(
        e,
        x,
        "nce",
        epochs=250,
        batch_size=N,
        lr=0.1,
        scheduler=_decay,
        progress=False,
        seed=0,
        noise_ratio=1.0,
    )
    true_log_z = math.log(2 * math.pi) + 0.5 * float(torch.logdet(S))
    # Var(log det S_hat) ~ 2 d / n for Gaussian data (d = 2), so se(log Z) ~ sqrt(1 / n)
    se_log_z = math.sqrt(1.0 / N)
    assert abs(res.log_z - e.log_partition()) < K * se_log_z  # the learned log Z is the model's
    assert abs(res.log_z - true_log_z) < K * se_log_z
    assert _within(e.mu.detach(), mu, 2 * se_mu)  # NCE is less efficient than the MLE
    # negative control: the log Z of a Gaussian twice as wide is detected
    assert not abs(res.log_z - (true_log_z + math.log(2.0))) < K * se_log_z


def test_losses_are_pure_and_seeded():
    e = QuadraticEnergy().double()
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for fn in (
        lambda g: dsm_loss(e, x, 0.2, g),
        lambda g: ssm_loss(e, x, g, num_projections=2),
        lambda g: nce_loss(e, x, torch.zeros((), dtype=torch.float64), GaussianNoise.fit(x), g),
    ):
        a = fn(torch.Generator().manual_seed(5))
        b = fn(torch.Generator().manual_seed(5))
        c = fn(torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_cd_loss_value_and_l2():
    e = QuadraticEnergy().double()
    pos = torch.zeros(3, 2, dtype=torch.float64)
    neg = torch.ones(3, 2, dtype=torch.float64)
    assert float(cd_loss(e, pos, neg).detach()) == pytest.approx(-1.0)
    # l2 on energies: 0.1 * (0 + 1^2)
    assert float(cd_loss(e, pos, neg, l2_weight=0.1).detach()) == pytest.approx(-0.9)


def test_ssm_matches_exact_score_matching_objective():
    """E_v[v^T grad(v^T s)] = tr(grad s): the sliced loss averages to Hyvarinen's objective."""
    e = QuadraticEnergy().double()
    with torch.no_grad():
        e.raw.copy_(torch.tensor([[0.2, 0.0], [0.5, -0.3]]))
        e.mu.copy_(torch.tensor([0.5, 0.1]))
    x = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    L = e.chol().detach()
    P = L @ L.T
    s = -(x - e.mu.detach()) @ P
    exact = float((0.5 * (s**2).sum(-1)).mean() - torch.trace(P))
    g = torch.Generator().manual_seed(2)
    xr = x.repeat(50, 1)  # 2000 rows: each replicate averages 2000 projections
    vals = torch.stack([ssm_loss(e, xr, g).detach() for _ in range(100)])
    se = float(vals.std() / math.sqrt(len(vals)))
    assert abs(float(vals.mean()) - exact) < K * se
    assert not abs(float(vals.mean()) - (exact + 10 * se)) < K * se  # negative control
