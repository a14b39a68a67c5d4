"""The Gibbs distribution: ladders, conditions, enumeration, exact sampling, validation."""

import itertools
import math
import warnings
from typing import NamedTuple

import pytest
import torch
from scipy import stats
from torch.distributions import constraints

from gibbsebm import Gibbs, UnnormalizedLogProbWarning
from gibbsebm.constraints import spin
from gibbsebm.energies import Gaussian

DT = torch.float64


def _gaussian(device):
    cov = torch.tensor([[1.5, 0.4], [0.4, 0.7]], dtype=DT, device=device)
    return Gaussian(torch.tensor([0.5, -1.0], dtype=DT, device=device), covariance=cov), cov


def _spin_chain_energy(J=0.8, h=0.3):
    """Open spin chain on a (2, 3) grid read row-major: E = -J sum s_i s_{i+1} - h sum s_i."""

    def energy(s):
        f = s.reshape(s.shape[0], -1)
        return -J * (f[:, 1:] * f[:, :-1]).sum(-1) - h * f.sum(-1)

    return energy


def _brute_force_spin_probs(energy, beta, device):
    states = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=6)), device=device)
    states = states.to(torch.get_default_dtype()).reshape(-1, 2, 3)
    lp = -beta * energy(states).to(DT)
    return states, lp - torch.logsumexp(lp, 0)


# ---------------------------------------------------------------- temperature ladders


def test_ladder_is_a_batch_shape(device, generator):
    g, cov = _gaussian(device)
    betas = torch.tensor([0.25, 1.0, 4.0], dtype=DT, device=device)
    d = Gibbs(g, betas)
    assert d.batch_shape == (3,) and d.event_shape == (2,)
    y = torch.randn(5, 1, 2, dtype=DT, device=device, generator=generator)
    lp = d.log_prob(y)
    assert lp.shape == (5, 3)
    for j, b in enumerate(betas):
        ref = torch.distributions.MultivariateNormal(g.mean, cov / b).log_prob(y[:, 0])
        torch.testing.assert_close(lp[:, j], ref)
        torch.testing.assert_close(d.at(b).log_prob(y[:, 0]), ref)
    torch.testing.assert_close(d.log_partition(), g.exact_log_partition(betas))
    # exact draws: one column per temperature, covariance cov / beta (within 5 stderr)
    s = d.sample((4000,), generator=generator)
    assert s.shape == (4000, 3, 2)
    var = s.var(0)  # (3, 2)
    se = var * math.sqrt(2 / (s.shape[0] - 1))
    ref_var = torch.diagonal(cov)[None] / betas[:, None]
    assert ((var - ref_var).abs() < 5 * se).all()
    # a 2-D ladder and at() between ladders
    d2 = d.at(betas.reshape(3, 1).expand(3, 2).contiguous())
    assert d2.batch_shape == (3, 2) and d2.log_prob(y[:, :, None]).shape == (5, 3, 2)


def test_conditional_ladder_and_condition(device):
    g = torch.Generator(device="cpu").manual_seed(0)
    W = torch.randn(4, 3, generator=g, dtype=DT).to(device)

    def energy(x, y):
        return -(x @ W).gather(1, y.long()[:, None]).squeeze(1)

    x = torch.randn(5, 4, generator=g, dtype=DT).to(device)
    labels = constraints.integer_interval(0, 2)
    betas = torch.tensor([[0.5], [2.0]], dtype=DT, device=device)
    d = Gibbs(energy, betas, condition=x, support=labels, event_shape=())
    assert d.batch_shape == (2, 5)
    support = d.enumerate_support()
    assert support.shape == (3, 2, 5)
    probs = d.log_prob(support).exp()  # (3, 2, 5)
    for j in range(2):
        ref = torch.softmax(betas[j, 0] * (x @ W), -1)
        torch.testing.assert_close(probs[:, j].T, ref)
    # condition(x) replaces the input; the ladder stays
    x2 = x[:2] * 3
    d3 = d.condition(x2)
    assert d3.batch_shape == (2, 2)
    torch.testing.assert_close(
        d3.log_prob(d3.enumerate_support()).exp()[:, 1].T, torch.softmax(2.0 * (x2 @ W), -1)
    )
    # dtype follows the condition for a plain-function energy
    assert d.beta.dtype == DT and d.enumerate_support().dtype == DT


# ---------------------------------------------------------------- enumeration


def test_enumeration_matches_brute_force(device):
    energy = _spin_chain_energy()
    d = Gibbs(energy, 0.7, support=spin, event_shape=(2, 3))
    assert d.num_states == 64 and d.has_enumerate_support and d.normalized
    states, ref = _brute_force_spin_probs(energy, 0.7, device)
    support = d.enumerate_support()
    assert support.shape == (64, 2, 3)
    torch.testing.assert_close(support, states.to(support.dtype))  # lexicographic
    torch.testing.assert_close(d.log_prob(support).to(DT), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        d.log_partition(),
        torch.logsumexp(-0.7 * energy(states).to(DT), 0),
        rtol=1e-6,
        atol=1e-6,
    )
    # boolean and integer-interval supports count states too
    assert (
        Gibbs(lambda y: y.sum(-1), support=constraints.boolean, event_shape=(5,)).num_states == 32
    )
    big = Gibbs(lambda y: y.sum(-1), support=constraints.boolean, event_shape=(30,))
    assert not big.has_enumerate_support
    with pytest.raises(ValueError, match="enumeration is limited"):
        big.enumerate_support()


def _chi_square_pvalue(counts, probs):
    n = counts.sum()
    expected = n * probs
    stat = ((counts - expected) ** 2 / expected).sum()
    return float(stats.chi2.sf(float(stat), df=probs.numel() - 1))


def test_exact_sampling_small_support(device, generator):
    """Draws by enumeration follow the exact probabilities (chi-square and total variation)."""
    energy = _spin_chain_energy()
    betas = torch.tensor([0.3, 1.0], device=device)
    d = Gibbs(energy, betas, support=spin, event_shape=(2, 3))
    n = 40000
    s = d.sample((n,), generator=generator)
    assert s.shape == (n, 2, 2, 3)
    for j, b in enumerate((0.3, 1.0)):
        states, ref = _brute_force_spin_probs(energy, b, device)
        p = ref.exp()
        idx = (
            (s[:, j].reshape(n, 6) > 0).long() * (2 ** torch.arange(5, -1, -1, device=device))
        ).sum(-1)
        counts = torch.bincount(idx, minlength=64).to(DT)
        # chi-square goodness of fit: p-value below 1e-4 would reject
        assert _chi_square_pvalue(counts, p) > 1e-4
        # total variation: E[TV] <= 0.5 * sum sqrt(p (1 - p) / n); allow 3x that
        tv = 0.5 * (counts / n - p).abs().sum()
        assert tv < 3 * 0.5 * torch.sqrt(p * (1 - p) / n).sum()
        # negative control: the same draws are rejected against the other temperature
        _, wrong = _brute_force_spin_probs(energy, 1.3 - b, device)
        assert _chi_square_pvalue(counts, wrong.exp()) < 1e-4


def test_exact_sampling_conditional_labels(device, generator):
    W = torch.tensor([[1.0, -0.5, 0.0], [0.3, 0.2, -1.0]], dtype=DT, device=device)

    def energy(x, y):
        return -(x @ W).gather(1, y.long()[:, None]).squeeze(1)

    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=DT, device=device)
    d = Gibbs(energy, 1.5, condition=x, support=constraints.integer_interval(0, 2), event_shape=())
    n = 30000
    s = d.sample((n,), generator=generator)
    assert s.shape == (n, 2)
    probs = torch.softmax(1.5 * (x @ W), -1)
    for i in range(2):
        counts = torch.bincount(s[:, i].long(), minlength=3).to(DT)
        assert _chi_square_pvalue(counts, probs[i]) > 1e-4
    # the rows are not interchangeable: row 0's draws do not fit row 1's probabilities
    assert _chi_square_pvalue(torch.bincount(s[:, 0].long(), minlength=3).to(DT), probs[1]) < 1e-4


def test_sample_without_exact_sampler_is_approximate_and_names_the_sampler():
    # issue 14: no exact sampler -> approximate draws of a short MCMC run, with a warning
    # that names the sampler for inference
    from gibbsebm import ApproximateSampleWarning

    d = Gibbs(lambda y: (y**4).sum(-1), event_shape=(2,))
    with pytest.warns(ApproximateSampleWarning, match="method='hmc'"):
        assert d.sample().shape == (2,)
    big = Gibbs(lambda y: y.sum(-1), support=constraints.boolean, event_shape=(30,))
    with pytest.warns(ApproximateSampleWarning, match="method='gwg'"):
        assert set(big.sample((2,)).unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------- normalization


class _Estimate(NamedTuple):
    log_z: torch.Tensor
    stderr: torch.Tensor


def test_attach_log_partition(device):
    def energy(y):
        return 0.5 * (y**2).sum(-1) + 0.1 * (y**4).sum(-1)

    d = Gibbs(energy, 2.0, event_shape=(1,))
    y = torch.linspace(-2, 2, 7)[:, None]
    assert not d.normalized
    with pytest.warns(UnnormalizedLogProbWarning, match="unnormalized"):
        lp = d.log_prob(y)
    torch.testing.assert_close(lp, d.unnormalized_log_prob(y))
    with pytest.raises(ValueError, match="no log Z is known"):
        d.log_partition()
    # 1-D quadrature of the log Z (trapezoid on a fine grid is accurate to ~1e-6 here)
    grid = torch.linspace(-8, 8, 20001, dtype=DT)[:, None]
    log_z = torch.log(torch.trapezoid(torch.exp(-2.0 * energy(grid)), grid[:, 0]))
    d2 = d.attach_log_partition(_Estimate(log_z, torch.tensor(1e-6)))
    assert d2.normalized
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(d2.log_prob(y), lp - log_z.float())
        # the normalized density integrates to 1
        dens = d2.log_prob(grid.float()).to(DT).exp()
        assert abs(float(torch.trapezoid(dens, grid[:, 0])) - 1) < 1e-5
    assert not d2.at(3.0).normalized  # another temperature drops the attached log Z
    ladder = d.at(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="batch shape"):
        ladder.attach_log_partition(torch.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        d.attach_log_partition(math.nan)


def test_base_measure(device):
    g, cov = _gaussian(device)
    base = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(2, dtype=DT, device=device), 3.0), 1
    )
    d = Gibbs(g, 1.5, base=base)
    y = torch.randn(4, 2, dtype=DT, device=device)
    torch.testing.assert_close(d.unnormalized_log_prob(y), base.log_prob(y) - 1.5 * g(y))
    torch.testing.assert_close(d.logdensity(y), d.unnormalized_log_prob(y))
    assert not d.normalized  # the energy's own log Z is for the Lebesgue base
    with pytest.raises(ValueError, match="base has event_shape"):
        Gibbs(g, base=torch.distributions.Normal(0.0, 1.0))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "beta, match",
    [
        (0.0, "> 0"),
        (-2.0, "> 0"),
        (math.nan, "NaN"),
        (math.inf, "finite"),
        (torch.tensor([1.0, -1.0]), "> 0"),
        (torch.tensor([1.0, math.nan]), "NaN"),
        ("hot", "positive number"),
    ],
)
def test_bad_beta(beta, match):
    g = Gaussian(torch.zeros(2))
    with pytest.raises(ValueError, match=match):
        Gibbs(g, beta)
    with pytest.raises(ValueError, match=match):
        Gibbs(g).at(beta)


def test_shape_errors():
    g = Gaussian(torch.zeros(2))
    d = Gibbs(g, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"end in the event shape \(2,\)"):
        d.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"does not broadcast with the batch shape \(3,\)"):
        d.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="event_shape is required"):
        Gibbs(lambda y: y.sum(-1))
    with pytest.raises(ValueError, match="do not broadcast"):
        Gibbs(lambda x, y: y, torch.tensor([1.0, 2.0]), condition=torch.zeros(3, 1), event_shape=())
    with pytest.raises(ValueError, match="leading batch dimension"):
        Gibbs(lambda x, y: y, condition=torch.tensor(1.0), event_shape=())
    with pytest.raises(ValueError, match=r"one value per input, shape \(4,\)"):
        Gibbs(lambda y: y, event_shape=(2,)).unnormalized_log_prob(torch.zeros(4, 2))


def test_energy_output_errors():
    with pytest.raises(ValueError, match="floating-point"):
        Gibbs(lambda y: (y > 0).all(-1), event_shape=(2,)).log_prob(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="torch.Tensor"):
        Gibbs(lambda y: 1.0, event_shape=(2,)).log_prob(torch.zeros(3, 2))
    d = Gibbs(lambda y: torch.log(y).sum(-1), event_shape=(2,))
    with pytest.raises(ValueError, match="NaN for 1 of 2"):
        d.unnormalized_log_prob(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    # the unchecked hot path propagates NaN instead (samplers reject such proposals)
    assert torch.isnan(d.logdensity(torch.tensor([[-1.0, 1.0]]))).all()


def test_device_and_dtype_mismatch():
    g = Gaussian(torch.zeros(2))  # float32
    with pytest.raises(ValueError, match="dtype torch.float64 but the energy's parameters"):
        Gibbs(g).log_prob(torch.zeros(3, 2, dtype=DT))
    lin = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    lin_meta = lin.to("meta")  # parameters on another device, no accelerator needed
    with pytest.raises(ValueError, match="on device cpu but the energy's parameters are on meta"):
        Gibbs(lin_meta, event_shape=(2,)).log_prob(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="condition has dtype torch.float64"):
        Gibbs(torch.nn.Bilinear(2, 2, 1), condition=torch.zeros(3, 2, dtype=DT), event_shape=(2,))


def test_non_callable_energy():
    with pytest.raises(ValueError, match="energy must be callable"):
        Gibbs(torch.zeros(3), event_shape=(3,))


# ---------------------------------------------------------------- expand (Pyro plates)


def test_expand(device):
    g, _ = _gaussian(device)
    d = Gibbs(g, 2.0).expand((4, 3))
    assert d.batch_shape == (4, 3)
    y = torch.zeros(2, dtype=DT, device=device)
    torch.testing.assert_close(d.log_prob(y), Gibbs(g, 2.0).log_prob(y).expand(4, 3))
    W = torch.eye(2, 3, dtype=DT, device=device)

    def energy(x, y):
        return -(x @ W).gather(1, y.long()[:, None]).squeeze(1)

    x = torch.randn(5, 2, dtype=DT, device=device)
    dc = Gibbs(energy, 1.0, condition=x, support=constraints.integer_interval(0, 2), event_shape=())
    de = dc.expand((7, 5))
    assert de.batch_shape == (7, 5)
    v = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0], dtype=DT, device=device)
    torch.testing.assert_close(de.log_prob(v), dc.log_prob(v).expand(7, 5))
    with pytest.raises(ValueError, match="cannot expand"):
        dc.expand((4,))
    attached = Gibbs(g, 2.0, log_partition=1.25).expand((3,))
    torch.testing.assert_close(attached.log_partition(), torch.full((3,), 1.25, dtype=DT))
