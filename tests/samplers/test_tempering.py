"""Parallel tempering (method="pt"): swaps by hand, ladders, replicas, and mode weights.

Mode weights are compared with the truth within 5 Monte Carlo standard errors computed from
the per-chain fractions of independent chains (no autocorrelation model needed). Every chain
starts in the same mode; plain MALA / Metropolis from that start must fail the same check
(the negative controls).
"""

from __future__ import annotations

import math

import pytest
import torch

import gibbsebm
from gibbsebm import Gibbs
from gibbsebm.energies import Gaussian, Ising2D
from gibbsebm.samplers import tempering
from gibbsebm.samplers.registry import get_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def fraction_with_se(indicator: torch.Tensor) -> tuple[float, float]:
    """Mean of a ``(C, D)`` indicator and its standard error from the per-chain means."""
    per_chain = indicator.double().mean(1)
    return float(per_chain.mean()), float(per_chain.std() / math.sqrt(per_chain.numel()))


# ----------------------------------------------------------------------------- bimodal 1-D

#: Mixture 0.3 N(-4, 0.5^2) + 0.7 N(4, 0.5^2): the density at 0 is e^-32 below the modes.
W_RIGHT, MU, SD = 0.7, 4.0, 0.5


def bimodal_energy(y: torch.Tensor) -> torch.Tensor:
    x = y[:, 0]
    logs = torch.stack(
        [
            math.log(1 - W_RIGHT) - 0.5 * ((x + MU) / SD) ** 2,
            math.log(W_RIGHT) - 0.5 * ((x - MU) / SD) ** 2,
        ],
        -1,
    )
    return -torch.logsumexp(logs, -1)


def _bimodal_run(method: str, device, num_chains, num_warmup, num_samples, **options):
    dist = Gibbs(bimodal_energy, beta=torch.tensor(1.0, device=device), event_shape=(1,))
    init = torch.full((num_chains, 1), -MU, device=device)
    return gibbsebm.sample(
        dist,
        method,
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        seed=11,
        init=init,
        progress=False,
        **options,
    )


def test_pt_recovers_mode_weights_where_mala_fails(device):
    # 200 draws per chain are short against the mode switching time: split R-hat is about
    # 1.04 (sample() would warn), the pooled weight over 128 chains is what is checked here
    s = _bimodal_run("pt", device, 128, 200, 200, kernel="mala", warn=False)
    frac, se = fraction_with_se(s.draws[..., 0] > 0)
    assert se < 0.02, se  # enough draws that a wrong weight would show
    assert abs(frac - W_RIGHT) < 5 * se, (frac, se)
    # swaps happened between every neighbouring pair
    swap = s.stats["swap_acceptance_prob"]
    mean_swap = torch.nanmean(swap.reshape(-1, swap.shape[-1]), 0)
    assert bool((mean_swap > 0.05).all()), mean_swap
    # per-temperature step sizes grow as beta falls (hot replicas are wider)
    per_beta = s.adaptation["step_size_per_beta"]
    assert bool((per_beta[1:] > per_beta[:-1]).all()), per_beta

    # negative control: plain MALA from the same start never leaves the left mode
    # (and sample() says so: the chains disagree on the right mode's weight)
    with pytest.warns(gibbsebm.SamplingWarning, match="R-hat"):
        m = _bimodal_run("mala", device, 64, 100, 100)
    frac_m, se_m = fraction_with_se(m.draws[..., 0] > 0)
    assert abs(frac_m - W_RIGHT) > 5 * se_m + 0.1, (frac_m, se_m)


# ----------------------------------------------------------------------------- Ising 3x3


def test_pt_ising_low_temperature(device):
    """beta = 0.7 on the 3x3 torus: the +/- magnetised halves are separated by a barrier of
    about 0.7 * 12 = 8.4 nats; single-site Metropolis from all spins up stays up."""
    dist = Gibbs(Ising2D(3, device=device), beta=0.7)
    init = torch.ones(128, 3, 3, device=device)
    kw = dict(num_chains=128, num_samples=100, num_warmup=40, seed=3, init=init, progress=False)
    s = gibbsebm.sample(dist, "pt", kernel="metropolis", **kw, warn=False)
    frac, se = fraction_with_se(s.draws.flatten(2).sum(-1) > 0)
    assert se < 0.03, se
    assert abs(frac - 0.5) < 5 * se, (frac, se)

    # every temperature's replicas have the exact mean energy within 5 MCSE
    betas, reps, energies = tempering.replica_draws(s)
    assert reps.shape == (128, 100, betas.numel(), 3, 3)
    states = dist.enumerate_support()
    e_states = dist.energy(states).double()
    for r, b in enumerate(betas.tolist()):
        p = torch.softmax(-b * e_states, 0)
        exact = float((p * e_states).sum())
        per_chain = energies[:, :, r].double().mean(1)
        mcse = float(per_chain.std() / math.sqrt(per_chain.numel()))
        assert abs(float(per_chain.mean()) - exact) < 5 * mcse, (b, float(per_chain.mean()), exact)
    # recorded energies are the replicas' energies
    flat = reps[:2, :3].reshape(-1, 3, 3)
    assert torch.allclose(energies[:2, :3].reshape(-1), dist.energy(flat))

    # negative control: plain Metropolis from all spins up
    kw.update(num_chains=64, num_warmup=20, num_samples=50, init=init[:64])
    m = gibbsebm.sample(dist, "metropolis", **kw, warn=False)
    frac_m, se_m = fraction_with_se(m.draws.flatten(2).sum(-1) > 0)
    assert abs(frac_m - 0.5) > 5 * se_m + 0.1, (frac_m, se_m)


# ----------------------------------------------------------------------------- by hand


def test_swap_probability_by_hand(device, generator):
    """With a zero-length inner move (MALA, step 0) the swap acceptance is
    min(1, exp((b_r - b_{r+1}) (E_r - E_{r+1}))) for the proposed pairs, NaN for the others,
    and the pairs alternate even/odd."""
    dist = Gibbs(Gaussian(torch.zeros(2, device=device)), beta=1.0)
    betas = torch.tensor([1.0, 0.6, 0.3, 0.1], device=device)
    spec = get_spec("pt", dist, kernel="mala", betas=betas)
    y = torch.randn(64, 4, 2, generator=generator, device=device)
    state = spec.init(y)
    energy = 0.5 * (y**2).sum(-1)  # (C, R)
    new, info = spec.step(generator, state, None, step_size=0.0)
    expect = torch.clamp(((betas[:-1] - betas[1:]) * (energy[:, :-1] - energy[:, 1:])).exp(), max=1)
    assert info.is_swap_proposed[0].tolist() == [True, False, True]
    assert torch.allclose(info.swap_acceptance_prob[:, 0::2], expect[:, 0::2], atol=1e-5)
    assert bool(info.swap_acceptance_prob[:, 1].isnan().all())
    # accepted pairs exchanged their states; the others kept theirs
    reps = new.inner.position.reshape(64, 4, 2)
    for pair in (0, 2):
        sw = info.is_swapped[:, pair]
        assert torch.equal(reps[sw, pair], y[sw, pair + 1])
        assert torch.equal(reps[~sw, pair], y[~sw, pair])
    assert bool(info.is_swapped.any()) and not bool(info.is_swapped.all())
    # the target replica is reported as the position
    assert torch.equal(new.position, reps[:, 0])
    _, info2 = spec.step(generator, new, None, step_size=0.0)
    assert info2.is_swap_proposed[0].tolist() == [False, True, False]


def test_exchange_by_rescaling_matches_reevaluation(device, generator):
    """For log p_beta = -beta E, exchanging replicas by permuting positions and rescaling the
    cached log-density and gradient equals evaluating them afresh at the new temperatures."""
    from gibbsebm.samplers import mala

    betas = torch.tensor([1.0, 0.6, 0.3, 0.1], device=device)
    ladder = Gibbs(Gaussian(torch.zeros(2, device=device)), beta=1.0).at(betas)

    def ld_flat(y):
        return ladder.logdensity(y.reshape(-1, 4, 2)).reshape(-1)

    y = torch.randn(16 * 4, 2, generator=generator, device=device)
    state = mala.init(y, ld_flat)
    partner = torch.tensor([1, 0, 3, 2], device=device)
    fast = tempering._exchanged_by_rescaling(state, partner, betas, 16, 4)
    moved = y.reshape(16, 4, 2)[:, partner].reshape(-1, 2)
    slow = mala.init(moved, ld_flat)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, atol=1e-5)


def test_default_ladder():
    ladder = tempering.beta_ladder(2.0, 9)
    assert float(ladder[0]) == 2.0
    assert math.isclose(float(ladder[-1]), 2.0 / tempering.HOTTEST_RATIO, rel_tol=1e-12)
    ratios = ladder[:-1] / ladder[1:]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric
    assert float(ratios[0]) <= 1 + 2 * math.sqrt(math.log(4) / 9) + 1e-12
    # more dimensions: a denser ladder
    assert tempering.beta_ladder(1.0, 100).numel() > tempering.beta_ladder(1.0, 4).numel()


def test_bad_input_raises(device):
    dist = Gibbs(Gaussian(torch.zeros(2, device=device)), beta=1.0)
    with pytest.raises(ValueError, match="target beta"):
        get_spec("pt", dist, betas=[0.5, 0.25])
    with pytest.raises(ValueError, match="kernel"):
        get_spec("pt", dist, kernel="nuts")
    with pytest.raises(ValueError, match="kernel"):
        get_spec("pt", dist, kernel="pt")
    with pytest.raises(ValueError, match="batch shape"):
        get_spec("pt", dist.at(torch.tensor([1.0, 0.5])))
    with pytest.raises(ValueError, match="duplicate"):
        get_spec("pt", dist, betas=[1.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="beta_min"):
        tempering.beta_ladder(1.0, 2, beta_min=2.0)
    with pytest.raises(ValueError, match="no replicas"):
        tempering.replica_draws(
            gibbsebm.sample(
                dist, "mala", num_chains=2, num_samples=2, num_warmup=0, seed=0, progress=False
            )
        )


# ----------------------------------------------------------------------------- RBM, discrete


def test_pt_rbm_tempered_free_energy(device):
    """An RBM's marginal energy F_beta depends on beta, so the swap ratio must use the
    log-densities at the exchanged temperatures (not (b_r - b_s)(E_r - E_s) with fixed E).
    Block Gibbs inside pt: the target replica and the hottest replica both match their exact
    distributions in total variation."""
    from test_discrete import TV_POWER, small_rbm, tv_test

    dist = small_rbm(device)
    s = gibbsebm.sample(
        dist,
        "pt",
        kernel="block_gibbs",
        betas=[1.0, 0.5, 0.2],
        num_chains=500,
        num_samples=60,
        num_warmup=20,
        seed=4,
        progress=False,
    )
    betas, reps, energies = tempering.replica_draws(s)
    for r in (0, 2):
        tv, tol, _ = tv_test(dist.at(float(betas[r])), reps[:, :, r])
        assert tol < TV_POWER
        assert tv < tol, (float(betas[r]), tv, tol)
    # the recorded energy of an RBM replica is its free energy at that replica's beta
    v = reps[:3, :2, 2].reshape(-1, 8)
    expect = dist.energy.tempered_energy(v, float(betas[2]))
    assert torch.allclose(energies[:3, :2, 2].reshape(-1), expect, atol=1e-5)


def test_pt_discrete_default_kernel_and_per_beta_step_size(device):
    dist = Gibbs(Ising2D(3, device=device), beta=0.6)
    spec = get_spec("pt", dist)
    assert spec.discrete
    s = gibbsebm.sample(
        dist,
        "pt",
        kernel="dmala",
        num_chains=32,
        num_samples=5,
        num_warmup=40,
        seed=1,
        progress=False,
        warn=False,
    )
    per_beta = s.adaptation["step_size_per_beta"]
    assert per_beta.shape == (tempering.beta_ladder(0.6, 9).numel(),)
    assert bool(torch.isfinite(per_beta).all()) and bool((per_beta > 0).all())
    assert s.extra["replicas"].shape[:3] == (32, 5, per_beta.numel())


def test_pt_hmc_replicas_have_tempered_variances(device):
    """Every replica of a standard Gaussian target at beta_r has variance 1 / beta_r (within 5
    MCSE over independent chains); hmc's trajectory length becomes a shared step count."""
    dist = Gibbs(Gaussian(torch.zeros(2, device=device)), beta=1.0)
    s = gibbsebm.sample(
        dist,
        "pt",
        kernel="hmc",
        num_chains=32,
        num_samples=100,
        num_warmup=150,
        seed=2,
        progress=False,
        warn=False,
    )
    betas, reps, _ = tempering.replica_draws(s)
    per_chain = (reps.double() ** 2).mean((1, 3))  # (C, R): E[y^2] per chain and replica
    est = per_chain.mean(0)
    mcse = per_chain.std(0) / math.sqrt(per_chain.shape[0])
    z = (est - 1 / betas.double()) / mcse
    assert bool((z.abs() < 5).all()), (est, 1 / betas, z)
    assert isinstance(s.adaptation["num_steps"], int)
    assert bool((s.adaptation["step_size_per_beta"].diff() > 0).all())
