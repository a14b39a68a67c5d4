"""Gibbs as a first-class Pyro site, and doubly intractable likelihoods.

Every Pyro tool that calls ``sample()`` on a latent site (init strategies, Predictive,
autoguides, arviz.from_pyro) runs on a model with a Gibbs latent site whose energy has no
exact sampler; the approximate draws warn with ApproximateSampleWarning.
"""

import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_sample, init_to_uniform

import gibbsebm
from gibbsebm import Gibbs
from gibbsebm.constraints import spin

DT = torch.float64
pytestmark = [
    pytest.mark.filterwarnings("ignore::gibbsebm.UnnormalizedLogProbWarning"),
    pytest.mark.filterwarnings("ignore::gibbsebm.ApproximateSampleWarning"),
]


def _quad(y):
    return 0.5 * ((y - 1.0) ** 2).sum(-1) / 0.25  # N(1, 0.25 I) at beta = 1


def _model(data=None):
    y = pyro.sample("y", Gibbs(_quad, 1.0, event_shape=(2,)))
    pyro.sample("obs", dist.Normal(y.sum(-1), 1.0), obs=data)


def test_sample_is_approximate_and_warns_then_warm_and_moments():
    d = Gibbs(_quad, 1.0, event_shape=(2,))
    g = torch.Generator().manual_seed(0)
    with pytest.warns(gibbsebm.ApproximateSampleWarning):
        y = d.sample((2000,), generator=g)
    assert y.shape == (2000, 2)
    # 2000 independent chains (exact-ish draws): mean 1, sd 0.5 within 5 standard errors
    se = 0.5 / math.sqrt(2000)
    assert (y.mean(0) - 1.0).abs().max() < 5 * se, y.mean(0)
    assert (y.std(0) - 0.5).abs().max() < 5 * 0.5 / math.sqrt(2 * 2000)
    # negative control: the sd of beta = 1/4 (sd 1.0) is far outside
    assert (y.std(0) - 1.0).abs().min() > 5 * 0.5 / math.sqrt(2 * 2000)
    # warm: a second call continues from the cached state, batched draws of the right shape
    with pytest.warns(gibbsebm.ApproximateSampleWarning):
        y2 = d.sample((3,), generator=g)
    assert y2.shape == (3, 2)


def test_discrete_fallback_spins():
    def ising_chain(s):  # 1d ferromagnetic ring of 30 spins, too many to enumerate
        return -(s * s.roll(1, -1)).sum(-1)

    d = Gibbs(ising_chain, 0.5, support=spin, event_shape=(30,))
    g = torch.Generator().manual_seed(1)
    s = d.sample((200,), generator=g)
    assert set(s.unique().tolist()) <= {-1.0, 1.0}
    # nearest-neighbour correlation tanh(beta) on a long ring
    corr = (s * s.roll(1, -1)).mean()
    se = float((s * s.roll(1, -1)).mean(-1).std()) / math.sqrt(200)
    assert abs(float(corr) - math.tanh(0.5)) < 5 * se + 0.02, corr


@pytest.mark.parametrize("init", [init_to_uniform, init_to_sample])
def test_nuts_with_default_and_sample_inits(init):
    pyro.set_rng_seed(0)
    kernel = NUTS(_model, init_strategy=init)
    mcmc = MCMC(kernel, num_samples=30, warmup_steps=30, disable_progbar=True)
    mcmc.run(torch.tensor(2.5, dtype=DT))
    assert mcmc.get_samples()["y"].shape == (30, 2)


def test_predictive_prior_and_posterior():
    pyro.set_rng_seed(0)
    prior = Predictive(_model, num_samples=20)()
    assert prior["y"].shape == (20, 2) and prior["obs"].shape == (20,)
    post = Predictive(_model, posterior_samples={"y": torch.zeros(5, 2, dtype=DT)})()
    assert post["obs"].shape == (5,)


@pytest.mark.parametrize("guide_cls", [AutoNormal, AutoDelta])
def test_svi_autoguides(guide_cls):
    """A functional test: SVI runs and moves the guide to the posterior region."""
    from gibbsebm.distribution import _WARM_CACHE

    _WARM_CACHE.clear()  # the approximate sampler's cache consumes random numbers when cold
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = guide_cls(_model)
    svi = SVI(_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    data = torch.tensor(4.0, dtype=DT)
    for _ in range(150):
        svi.step(data)
    med = guide.median(data)["y"]
    # conjugate: s = y1 + y2 ~ N(2, 1/2) a priori, obs ~ N(s, 1): E[s | obs = 4] = 10/3 and
    # sd(s | obs) = 1/sqrt(3) = 0.58; after 150 noisy steps the guide's location lies within
    # one posterior sd of the mean, and far from the prior mean (2)
    post_mean, post_sd = (2.0 / 0.5 + 4.0) / (1 / 0.5 + 1.0), 1 / math.sqrt(3.0)
    assert abs(float(med.sum()) - post_mean) < post_sd, med
    assert abs(float(med.sum()) - 2.0) > abs(float(med.sum()) - post_mean)


def test_arviz_from_pyro():
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(_model), num_samples=20, warmup_steps=20, disable_progbar=True)
    mcmc.run(torch.tensor(2.0, dtype=DT))
    idata = az.from_pyro(mcmc)
    assert "y" in idata.posterior
    assert np.asarray(idata.posterior["y"]).shape[-1] == 2


# ---------------------------------------------------------------- batched Pyro models


def _conjugate(data):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=DT), 2.0))
    s = pyro.sample("s", dist.LogNormal(torch.tensor(0.0, dtype=DT), 0.5))
    with pyro.plate("n", data.shape[0]):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=data)
    return s


def test_pyro_model_potential_matches_pyro():
    from pyro.infer.mcmc.util import initialize_model

    from gibbsebm.interop.pyro import PyroModelPotential

    data = torch.linspace(-1, 2, 10, dtype=DT)
    pot = PyroModelPotential(_conjugate, (data,))
    assert pot.dim == 2 and pot.max_plate_nesting == 1
    u = pot.init(5, torch.Generator().manual_seed(0))
    _, pf, _, _ = initialize_model(_conjugate, (data,))
    ref = torch.stack([-pf(pot._split(u[c])) for c in range(5)])
    torch.testing.assert_close(pot.logdensity(u), ref)


def test_sample_pyro_model_batched_hmc_conjugate():
    data = torch.linspace(-1, 2, 10, dtype=DT)
    s = gibbsebm.sample(
        _conjugate, "hmc", model_args=(data,), num_chains=64, num_samples=100, num_warmup=150,
        seed=0, progress=False, warn=False,  # many short chains: errors estimated across chains
    )  # fmt: skip
    assert s.sites["mu"].shape == (64, 100) and s.sites["s"].shape == (64, 100)
    assert (s.sites["s"] > 0).all()
    idata = s.to_inference_data()
    assert set(idata.posterior.data_vars) == {"mu", "s"}
    # exact: mu | data ~ N(m, v) with v = 1 / (1/4 + 10), m = v * sum(data); s ~ LogNormal(0, .5)
    v = 1.0 / (0.25 + 10.0)
    m = v * float(data.sum())
    cols = np.stack([s.sites["mu"].numpy(), s.sites["s"].numpy()], -1)
    ess = np.array([float(az.ess(cols[..., j])) for j in range(2)])
    flat = cols.reshape(-1, 2)
    z = np.abs(flat.mean(0) - [m, math.exp(0.125)]) / (flat.std(0) / np.sqrt(ess))
    assert (z < 5).all(), z
    assert abs(flat[:, 0].std() - math.sqrt(v)) < 0.1 * math.sqrt(v)
    # negative control: the prior mean of mu (0) is far outside
    assert abs(flat[:, 0].mean()) / (flat[:, 0].std() / np.sqrt(ess[0])) > 5


def test_pyro_model_that_cannot_be_vectorized_is_a_clear_error():
    def bad():
        x = pyro.sample("x", dist.Normal(torch.zeros(3, dtype=DT), 1.0))  # no plate, no to_event
        pyro.sample("o", dist.Normal(x.sum(), 1.0), obs=torch.tensor(0.0, dtype=DT))

    with pytest.raises(ValueError, match="vectorized"):
        gibbsebm.sample(bad, "hmc", num_chains=4, num_samples=2, num_warmup=2, progress=False)


# ---------------------------------------------------------------- doubly intractable


def _precision_data(n=50, lam=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=DT) / math.sqrt(lam)


A0, B0 = 2.0, 1.0


def _exact_gamma(x):
    a, b = A0 + x.numel() / 2, B0 + 0.5 * float((x**2).sum())
    return a / b, math.sqrt(a) / b  # posterior mean and sd of lambda


def _closure_model(x):
    lam = pyro.sample("lam", dist.Gamma(torch.tensor(A0, dtype=DT), B0))
    pyro.sample("x", Gibbs(lambda y: 0.5 * lam * (y**2).sum(-1), event_shape=(x.numel(),)), obs=x)


def _gaussian_model(x):
    from gibbsebm.energies import Gaussian

    lam = pyro.sample("lam", dist.Gamma(torch.tensor(A0, dtype=DT), B0))
    energy = Gaussian(torch.zeros(1, dtype=DT), precision=lam.reshape(1))
    with pyro.plate("n", x.numel()):
        pyro.sample("x", Gibbs(energy), obs=x[:, None])


def test_observed_gibbs_depending_on_a_latent_raises_under_nuts_and_hmc():
    x = _precision_data()
    pyro.set_rng_seed(0)
    # Pyro re-raises it as "Error while computing log_prob_sum at site 'x'" (a ValueError)
    with pytest.raises(ValueError, match="exchange") as info:
        MCMC(NUTS(_closure_model), num_samples=5, warmup_steps=5, disable_progbar=True).run(x)
    err = info.value
    while not isinstance(err, gibbsebm.DoublyIntractableError) and err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, gibbsebm.DoublyIntractableError)
    with pytest.raises(gibbsebm.DoublyIntractableError):
        gibbsebm.sample(_closure_model, "hmc", model_args=(x,), num_chains=4, num_samples=2,
                        num_warmup=2, progress=False)  # fmt: skip
    # an energy with an exact log Z(lambda) stays valid (and differentiable) under NUTS
    assert issubclass(gibbsebm.DoublyIntractableError, ValueError)


def _check_gamma(s, x, k=5.0):
    m, sd = _exact_gamma(x)
    lam = s.sites["lam"].numpy()
    ess = float(az.ess(lam))
    mcse_mean = lam.std() / math.sqrt(ess)
    assert ess > 100, ess
    z_mean = abs(lam.mean() - m) / mcse_mean
    # sd: MCSE of the sd ~ sd / sqrt(2 ESS)
    z_sd = abs(lam.std() - sd) / (sd / math.sqrt(2 * ess))
    return z_mean, z_sd, m


@pytest.mark.slow  # about 20 s
def test_exchange_exact_auxiliary_gaussian_precision():
    x = _precision_data()
    # warn=False: the exchange random walk has an autocorrelation time near 10, so 150 draws
    # per chain give split R-hat about 1.03 (> Stan's 1.01) on a correct run; the check
    # below uses the run's own ESS-based standard errors
    s = gibbsebm.sample(_gaussian_model, "exchange", model_args=(x,), num_chains=16,
                        num_samples=150, num_warmup=100, seed=1, warn=False)  # fmt: skip
    assert s.attrs["exact_auxiliary"] is True
    z_mean, z_sd, m = _check_gamma(s, x)
    assert z_mean < 5 and z_sd < 5, (z_mean, z_sd, s.sites["lam"].mean(), m)
    # negative control: the posterior that drops log Z(lambda) (mean about 0.2, the issue's
    # measurement) is far outside the error bars
    lam = s.sites["lam"].numpy()
    assert (
        abs(lam.mean() - A0 / (B0 + 0.5 * float((x**2).sum())))
        / (lam.std() / math.sqrt(float(az.ess(lam))))
        > 5
    )


def test_ising_coupling_as_a_latent_is_differentiable_and_exact():
    from gibbsebm.energies import Ising2D

    spins = torch.ones(1, 8, 8, dtype=DT)
    spins[0, :4] = -1.0

    def loglik(j):
        return Gibbs(Ising2D(8, J=j, dtype=DT), 0.3).log_prob(spins).sum()

    j = torch.tensor(0.7, dtype=DT, requires_grad=True)
    (grad,) = torch.autograd.grad(loglik(j), j)
    eps = 1e-5
    with torch.no_grad():
        fd = loglik(torch.tensor(0.7 + eps, dtype=DT)) - loglik(torch.tensor(0.7 - eps, dtype=DT))
    assert abs(float(grad) - float(fd) / (2 * eps)) < 1e-5 * max(1.0, abs(float(grad)))
    # negative control: the gradient of the energy term alone (log Z dropped) differs
    e_only = 0.3 * float((spins * (spins.roll(-1, -2) + spins.roll(-1, -1))).sum())
    assert abs(float(grad) - e_only) > 1.0


def test_pyro_model_with_a_broadcasting_mistake_is_an_error_not_a_wrong_density():
    from gibbsebm.interop.pyro import PyroModelPotential

    x = torch.randn(7, 3, dtype=DT)

    def model():  # (C, 1, N) + (C, 1) broadcasts to (C, C, N) when batched on chains
        b = pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=DT), 1.0))
        w = pyro.sample("w", dist.Normal(torch.zeros(3, dtype=DT), 1.0).to_event(1))
        logits = (x @ w.unsqueeze(-1)).squeeze(-1) + b
        with pyro.plate("n", 7):
            pyro.sample("o", dist.Bernoulli(logits=logits), obs=torch.ones(7, dtype=DT))

    with pytest.raises(ValueError, match="vectorized"):
        PyroModelPotential(model).logdensity(torch.zeros(4, 4, dtype=DT))


def test_workflow_guide_code_is_the_tested_example():
    import re
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = (root / "examples" / "bayesian_workflow.py").read_text()
    doc = (root / "docs" / "guides" / "bayesian_workflow.md").read_text()
    excerpts = [
        textwrap.dedent(m)
        for m in re.findall(r"# --8<-- \[start:\w+\]\n(.*?)\n\s*# --8<-- \[end:\w+\]", src, re.S)
    ]
    blocks = re.findall(r"```python\n(.*?)\n```", doc, re.S)
    assert len(excerpts) == 6
    for e in excerpts:
        assert e in blocks, e[:60]


@pytest.mark.slow  # about 35 s
def test_ising_coupling_posterior_under_nuts_matches_the_exact_grid():
    """J of an 8x8 torus Ising model as a Pyro latent: the likelihood is exact (Kaufman's
    log Z(J), differentiable), so NUTS samples the posterior, which is exact on a grid."""
    from gibbsebm.energies import Ising2D
    from gibbsebm.energies.ising import kaufman_log_partition

    g = torch.Generator().manual_seed(3)
    # data: 4 configurations (any data: the posterior given them is exact whatever made them)
    s = 1.0 - 2.0 * (torch.rand(4, 8, 8, generator=g, dtype=DT) < 0.5).to(DT)
    s[:, :5] = 1.0
    stat = float((s * (s.roll(-1, -2) + s.roll(-1, -1))).sum())

    def model():
        j = pyro.sample("J", dist.HalfNormal(torch.tensor(1.0, dtype=DT)))
        pyro.sample("s", Gibbs(Ising2D(8, J=j, dtype=DT), 1.0).expand([4]), obs=s)

    grid = torch.linspace(1e-4, 2.0, 4001, dtype=DT)
    logz = kaufman_log_partition(grid, 8, 8)
    logpost = dist.HalfNormal(torch.tensor(1.0, dtype=DT)).log_prob(grid) + grid * stat - 4 * logz
    w = torch.softmax(logpost, 0)
    m = float((w * grid).sum())
    sd = float((w * (grid - m) ** 2).sum().sqrt())
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(model), num_samples=400, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples(group_by_chain=True)["J"].numpy()
    ess = float(az.ess(draws))
    z = abs(draws.mean() - m) / (draws.std() / math.sqrt(ess))
    assert ess > 50 and z < 5, (draws.mean(), m, ess)
    assert abs(draws.std() - sd) < 5 * sd / math.sqrt(2 * ess)
    # negative control: the grid posterior that drops log Z(J) (prior x e^{J S}) is far away
    w_wrong = torch.softmax(logpost + 4 * logz, 0)
    m_wrong = float((w_wrong * grid).sum())
    assert abs(draws.mean() - m_wrong) / (draws.std() / math.sqrt(ess)) > 5


def test_sites_survive_shards_and_save_load(tmp_path):
    """Samples.sites is merged across shards like draws and kept by save/load."""
    from gibbsebm.executors import LocalExecutor
    from gibbsebm.interop.pyro import PyroModelPotential
    from gibbsebm.run import SamplePlan
    from gibbsebm.samples import Samples

    data = torch.linspace(-1, 2, 10, dtype=DT)
    opts = dict(model_args=(data,), num_chains=6, num_samples=5, num_warmup=5, seed=3,
                progress=False, warn=False)  # fmt: skip
    sharded = gibbsebm.sample(_conjugate, "hmc", executor=LocalExecutor(num_shards=2), **opts)
    assert sharded.attrs.get("num_shards", 2) == 2
    pot = PyroModelPotential(_conjugate, (data,))
    for k, v in pot.constrain(sharded.draws).items():
        torch.testing.assert_close(sharded.sites[k], v, rtol=0, atol=0)
    # the merge of shards that carry sites concatenates them (the chain dimension)
    plan = SamplePlan(pot.as_gibbs(), "hmc", num_chains=6, num_samples=5, num_warmup=5, thin=1,
                      seed=3, init=None, kernel_options={})  # fmt: skip
    parts = []
    for shard in plan.shards(2):
        r = plan.run_shard(shard, progress=False)
        parts.append(Samples(**{**r.__dict__, "sites": pot.constrain(r.draws)}))
    merged = plan.merge(parts, run_info={"num_shards": 2})
    for k in pot.site_names:
        torch.testing.assert_close(merged.sites[k], torch.cat([p.sites[k] for p in parts], 0))
        torch.testing.assert_close(merged.sites[k], sharded.sites[k], rtol=0, atol=0)
    # save / load round trip keeps every site, bit for bit
    path = tmp_path / "s.pt"
    sharded.save(path)
    back = Samples.load(path)
    assert set(back.sites) == {"mu", "s"}
    for k in back.sites:
        torch.testing.assert_close(back.sites[k], sharded.sites[k], rtol=0, atol=0)
    # negative control: a run without sites loads without them
    unsharded = gibbsebm.sample(pot.as_gibbs(), "hmc", **{k: v for k, v in opts.items()
                                                          if k != "model_args"})  # fmt: skip
    unsharded.save(tmp_path / "u.pt")
    assert Samples.load(tmp_path / "u.pt").sites is None
