"""Tier 1 and 3 for ula / mala / hmc: hand-checked MH ratios, NaN handling, determinism,
moments within 5 MCSE of closed forms with >= 16 chains, and negative controls.

Statistical runs pass ``warn=False``: they use many short chains, whose split R-hat exceeds
1.01 even when every chain is stationary (about :math:`1 + (\tau - 1)/(2N)` for N draws with
integrated autocorrelation time tau), and estimate their errors across chains instead.
"""

import math

import numpy as np
import pytest
import torch
from _sampler_mc import one_thread, zscore  # noqa: F401 (autouse fixture)

import gibbsebm
from gibbsebm.energies import Banana, DoubleWell, Gaussian, GaussianMixture
from gibbsebm.samplers import hmc, mala, ula
from gibbsebm.samplers.base import logdensity_and_grad
from gibbsebm.samplers.metrics import dense_metric

DT = torch.float64
K = 5.0  # tolerance in Monte Carlo standard errors


def quartic(y):
    return -(0.25 * y**4 - y**2 + 0.5 * y).sum(-1)


# ---------------------------------------------------------------------- hand-checked MH ratios
def test_mala_acceptance_matches_explicit_gaussian_proposal_densities(device):
    """MALA's ratio p(y')q(y|y') / p(y)q(y'|y) written out with the Gaussian proposal."""
    minv = torch.tensor([[1.5, 0.4], [0.4, 0.7]], dtype=DT, device=device)
    metric = dense_metric(minv)
    mass = torch.linalg.inv(minv)
    tau = 0.3
    y = torch.tensor([[0.3, -1.2], [1.1, 0.4], [-0.8, 2.0]], dtype=DT, device=device)
    state = mala.init(y, quartic)
    g = torch.Generator(device=device).manual_seed(3)
    g_copy = torch.Generator(device=device).manual_seed(3)
    new, info = mala.step(g, state, quartic, step_size=tau, metric=metric)
    # replay the kernel's noise: p ~ N(0, M), noise = sqrt(2 tau) M^-1 p ~ N(0, 2 tau M^-1)
    p = metric.sample_momentum(g_copy, y)
    u = torch.rand(3, generator=g_copy, dtype=DT, device=device)
    _, grad = logdensity_and_grad(quartic, y)
    prop = y + tau * grad @ minv + math.sqrt(2 * tau) * p @ minv
    _, grad_p = logdensity_and_grad(quartic, prop)

    def log_q(to, frm, grad_frm):  # log N(to; frm + tau M^-1 grad, 2 tau M^-1) + const
        r = to - frm - tau * grad_frm @ minv
        return -((r @ mass) * r).sum(-1) / (4 * tau)

    log_ratio = quartic(prop) - quartic(y) + log_q(y, prop, grad_p) - log_q(prop, y, grad)
    expected = torch.exp(log_ratio.clamp(max=0))
    torch.testing.assert_close(info.acceptance_prob, expected)
    accepted = u < expected
    assert torch.equal(info.is_accepted, accepted)
    torch.testing.assert_close(new.position, torch.where(accepted[:, None], prop, y))


def test_hmc_acceptance_matches_a_hand_written_leapfrog(device):
    y = torch.tensor([[0.5, -0.3]], dtype=DT, device=device)
    state = hmc.init(y, quartic)
    g = torch.Generator(device=device).manual_seed(4)
    g_copy = torch.Generator(device=device).manual_seed(4)
    new, info = hmc.step(g, state, quartic, step_size=0.2, num_steps=3)
    p = torch.randn(1, 2, generator=g_copy, dtype=DT, device=device)
    # plain leapfrog, written out step by step (unit mass)
    x, q = y.clone(), p.clone()
    for _ in range(3):
        q = q + 0.1 * logdensity_and_grad(quartic, x)[1]
        x = x + 0.2 * q
        q = q + 0.1 * logdensity_and_grad(quartic, x)[1]
    h0 = -quartic(y) + 0.5 * (p**2).sum()
    h1 = -quartic(x) + 0.5 * (q**2).sum()
    torch.testing.assert_close(info.energy_error, h1 - h0)
    torch.testing.assert_close(info.acceptance_prob, torch.exp(-(h1 - h0)).clamp(max=1.0))


# ---------------------------------------------------------------------- NaN / inf handling
def nan_outside(y):
    """Standard normal log-density, NaN where y_0 > 1 and -inf where y_0 < -1.5."""
    ld = -0.5 * (y**2).sum(-1)
    ld = torch.where(y[:, 0] > 1.0, torch.full_like(ld, float("nan")), ld)
    return torch.where(y[:, 0] < -1.5, torch.full_like(ld, -float("inf")), ld)


@pytest.mark.parametrize(
    "kernel, params",
    [
        (ula, {"step_size": 0.5}),
        (mala, {"step_size": 0.5}),
        (hmc, {"step_size": 0.5, "num_steps": 4}),
    ],
)
def test_nonfinite_proposals_are_counted_rejections(device, kernel, params):
    g = torch.Generator(device=device).manual_seed(5)
    state = kernel.init(torch.zeros(256, 2, device=device), nan_outside)
    n_bad = torch.zeros((), dtype=torch.int64, device=device)
    for _ in range(30):
        state, info = kernel.step(g, state, nan_outside, **params)
        n_bad += info.is_nonfinite.sum()
        assert not bool(info.is_accepted[info.is_nonfinite].any())
        assert bool((info.acceptance_prob[info.is_nonfinite] == 0).all())
        assert bool(info.is_divergent[info.is_nonfinite].all())
    assert int(n_bad) > 100  # the bad region is hit often ...
    assert bool(torch.isfinite(state.position).all())  # ... and never entered
    assert bool(torch.isfinite(state.logdensity).all())
    assert bool((state.position[:, 0] <= 1.0).all() & (state.position[:, 0] >= -1.5).all())


def test_sample_counts_nonfinite_in_stats(device):
    def energy(y):
        e = 0.5 * (y**2).sum(-1)
        return torch.where(y[:, 0] > 1.0, torch.full_like(e, float("nan")), e)

    d = gibbsebm.Gibbs(energy, event_shape=(2,))
    init = torch.zeros(16, 2, device=device)
    with pytest.warns(gibbsebm.SamplingWarning, match="non-finite log-density"):
        s = gibbsebm.sample(
            d,
            "hmc",
            num_chains=16,
            num_samples=50,
            num_warmup=50,
            seed=0,
            init=init,
            progress=False,
            num_steps=5,
        )
    assert int(s.stats["is_nonfinite"].sum()) > 0
    assert bool(torch.isfinite(s.draws).all()) and bool((s.draws[..., 0] <= 1.0).all())


# ---------------------------------------------------------------------- determinism
@pytest.mark.parametrize("method", ["ula", "mala", "hmc"])
def test_same_seed_same_draws(device, method):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(3, device=device)))
    kw = dict(num_chains=4, num_samples=20, num_warmup=30, progress=False)
    a = gibbsebm.sample(d, method, seed=11, **kw, warn=False)
    b = gibbsebm.sample(d, method, seed=11, **kw, warn=False)
    c = gibbsebm.sample(d, method, seed=12, **kw, warn=False)
    assert torch.equal(a.draws, b.draws)
    for k in a.stats:
        assert torch.equal(a.stats[k], b.stats[k]), k
    assert not torch.equal(a.draws, c.draws)


# ---------------------------------------------------------------------- moments
def check_moments(draws, mean, var, k=K):
    z_mean = zscore(draws, mean)
    centered = (draws.double() - torch.as_tensor(mean, dtype=DT, device=draws.device)) ** 2
    z_var = zscore(centered, var)
    assert np.abs(z_mean).max() < k, f"mean off by {np.abs(z_mean).max():.1f} MCSE"
    assert np.abs(z_var).max() < k, f"variance off by {np.abs(z_var).max():.1f} MCSE"


@pytest.mark.parametrize("dim", [pytest.param(100, marks=pytest.mark.slow), 10])
def test_hmc_ill_conditioned_gaussian(device, dim):
    # standard deviations log-spaced from 0.1 to 10 (condition number 1e4), spread-out means;
    # the default run uses 10 dimensions, the slow one the 100
    sd = torch.logspace(-1, 1, dim, dtype=DT, device=device)
    mean = torch.linspace(-3, 3, dim, dtype=DT, device=device)
    d = gibbsebm.Gibbs(Gaussian(mean, covariance=sd**2))
    s = gibbsebm.sample(
        d, "hmc", num_chains=32, num_samples=150, num_warmup=300, seed=1, progress=False, warn=False
    )
    assert float(s.stats["is_divergent"].double().mean()) < 0.01
    check_moments(s.draws, mean.cpu().numpy(), (sd**2).cpu().numpy())
    # the adapted diagonal metric found the scales (within 25%)
    ratio = s.adaptation["inverse_mass"].double() / (sd**2).cpu()
    assert float(ratio.min()) > 0.75 and float(ratio.max()) < 1.25


def test_mala_correlated_gaussian_dense_metric(device):
    cov = torch.tensor([[4.0, 1.8, 0.0], [1.8, 1.0, 0.1], [0.0, 0.1, 0.25]], dtype=DT)
    d = gibbsebm.Gibbs(Gaussian(torch.ones(3, dtype=DT, device=device), covariance=cov.to(device)))
    s = gibbsebm.sample(
        d,
        "mala",
        num_chains=32,
        num_samples=300,
        num_warmup=300,
        seed=2,
        progress=False,
        dense_mass=True,
    )
    check_moments(s.draws, np.ones(3), np.diag(cov.numpy()))
    acc = float(s.stats["acceptance_prob"].double().mean())
    assert abs(acc - mala.OPTIMAL_ACCEPTANCE) < 0.1


def test_hmc_banana(device):
    banana = Banana(dim=2, b=0.1, sigma1=3.0, dtype=DT, device=device)
    d = gibbsebm.Gibbs(banana)
    s = gibbsebm.sample(
        d, "hmc", num_chains=32, num_samples=200, num_warmup=300, seed=3, progress=False, warn=False
    )
    mean = banana.exact_mean(1.0).cpu().numpy()
    var = torch.diagonal(banana.exact_covariance(1.0)).cpu().numpy()
    check_moments(s.draws, mean, var)


def test_hmc_double_well_against_quadrature(device):
    dw = DoubleWell(dim=2, a=1.0, c=0.3, dtype=DT, device=device)
    d = gibbsebm.Gibbs(dw, beta=2.0)
    s = gibbsebm.sample(
        d, "hmc", num_chains=32, num_samples=200, num_warmup=200, seed=4, progress=False, warn=False
    )
    mean, var = dw.exact_moments(2.0)
    check_moments(s.draws, np.full(2, float(mean)), np.full(2, float(var)))


def test_hmc_mixture_mode_weights(device):
    # two 1-D modes with a barrier that HMC crosses: weight of y > 0 vs. the exact one
    means = torch.tensor([[-1.5], [1.5]], dtype=DT, device=device)
    gm = GaussianMixture(means, torch.tensor([0.7, 0.7], dtype=DT), torch.tensor([0.3, 0.7]))
    d = gibbsebm.Gibbs(gm)
    s = gibbsebm.sample(
        d, "hmc", num_chains=32, num_samples=300, num_warmup=200, seed=5, progress=False, warn=False
    )
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=DT), 1.0)
    exact = 0.3 * (1 - normal.cdf(torch.tensor(1.5 / 0.7))) + 0.7 * normal.cdf(
        torch.tensor(1.5 / 0.7)
    )
    z = zscore((s.draws[..., 0] > 0).to(DT)[..., None], [float(exact)])
    assert abs(z[0]) < K


# ---------------------------------------------------------------------- ULA and negative controls
def test_ula_bias_matches_its_closed_form_and_fails_the_exact_check(device):
    """Negative control: ULA with a large step is visibly biased.

    On N(0, 1), y' = (1 - tau) y + sqrt(2 tau) xi has stationary variance 1 / (1 - tau/2):
    4/3 at tau = 0.5. The exact-variance check must fail (by far more than 5 MCSE) and the
    biased closed form must pass, which also checks that the test can tell them apart.
    """
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(1, dtype=DT, device=device)))
    s = gibbsebm.sample(
        d,
        "ula",
        num_chains=64,
        num_samples=400,
        num_warmup=50,
        seed=6,
        progress=False,
        step_size=0.5,
    )
    sq = s.draws.double() ** 2
    assert abs(zscore(sq, [1.0])[0]) > K  # the exact variance is rejected
    assert abs(zscore(sq, [1.0 / (1.0 - 0.25)])[0]) < K  # the ULA fixed point is not


def _mala_fixed_step_run(device):
    """MALA with the step 0.5 fixed (no adaptation) on N(0, 1)."""
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(1, dtype=DT, device=device)))
    s = gibbsebm.sample(
        d,
        "mala",
        num_chains=64,
        num_samples=400,
        num_warmup=50,
        seed=6,
        progress=False,
        step_size=0.5,
        adapt_step_size=False,
        adapt_mass_matrix=False,
    )
    return s


def test_mala_with_the_same_step_is_exact(device):
    s = _mala_fixed_step_run(device)
    check_moments(s.draws, [0.0], [1.0])


def test_wrong_mh_ratio_is_detected(device, monkeypatch):
    """Negative control: MALA whose MH ratio forgets the proposal correction (a common bug).

    Dropping q(y|y')/q(y'|y) is the same as dropping the kinetic energies, i.e. accepting with
    the target ratio alone. The same run as ``test_mala_with_the_same_step_is_exact`` must
    then fail the variance check.
    """
    from gibbsebm.samplers import metrics

    orig = metrics.Metric.kinetic_energy
    monkeypatch.setattr(metrics.Metric, "kinetic_energy", lambda self, p: 0.0 * orig(self, p))
    s = _mala_fixed_step_run(device)
    assert abs(zscore(s.draws.double() ** 2, [1.0])[0]) > K


def test_ula_decoupled_mode_reports_effective_beta(device):
    # tau = 0.05, sigma = 0.2: beta_eff = 2 * 0.05 / 0.04 = 2.5 on E = y^2/2 (beta = 1),
    # whose ULA fixed point is N(0, sigma^2 / (1 - (1 - tau)^2)) = N(0, 0.04 / 0.0975)
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(1, dtype=DT, device=device)))
    s = gibbsebm.sample(
        d,
        "ula",
        num_chains=64,
        num_samples=300,
        num_warmup=100,
        seed=8,
        progress=False,
        step_size=0.05,
        noise_scale=0.2,
        thin=2,
        warn=False,
    )
    assert torch.allclose(s.stats["effective_beta"], torch.tensor(2.5, dtype=DT))
    assert ula.effective_beta(0.05, 0.2) == pytest.approx(2.5)
    var = 0.04 / (1 - 0.95**2)
    assert abs(zscore(s.draws.double() ** 2, [var])[0]) < K
    assert abs(zscore(s.draws.double() ** 2, [1 / 2.5])[0]) < 2 * K  # ~ 1/beta_eff, O(tau) bias


def test_unknown_options_and_discrete_support_raise():
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)))
    for m in ("ula", "mala", "hmc", "nuts"):
        with pytest.raises(ValueError, match="unknown option"):
            gibbsebm.sample(d, m, num_chains=2, num_samples=1, num_warmup=0, stepsize=0.1)
    with pytest.raises(ValueError, match="step_size"):
        gibbsebm.sample(d, "hmc", num_chains=2, num_samples=1, num_warmup=0, step_size=-1.0)


@pytest.mark.parametrize("method", ["mala", "hmc"])
def test_nan_region_acts_as_truncation(device, method):
    """NaN energies are rejections, so the chains sample N(0, I) truncated to y_0 <= 1:
    E[y_0] = -phi(1) / Phi(1), E[y_1] = 0, with adaptation running through the NaN region."""

    def energy(y):
        e = 0.5 * (y**2).sum(-1)
        return torch.where(y[:, 0] > 1.0, torch.full_like(e, float("nan")), e)

    d = gibbsebm.Gibbs(energy, event_shape=(2,))
    init = torch.zeros(32, 2, dtype=DT, device=device)
    # the rejected NaN proposals are reported (and are expected at the edge of the support)
    with pytest.warns(gibbsebm.SamplingWarning, match="non-finite log-density"):
        s = gibbsebm.sample(
            d,
            method,
            num_chains=32,
            num_samples=200,
            num_warmup=200,
            seed=9,
            init=init,
            progress=False,
        )
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert np.abs(zscore(s.draws, [-phi / cdf, 0.0])).max() < K
    assert float(s.stats["is_nonfinite"].double().mean()) > 0.01
