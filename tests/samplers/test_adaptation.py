"""Adaptation blocks: dual averaging, pooled Welford, Stan windows, ChEES; warmup outcomes."""

import math
import warnings

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.samplers import hmc
from gibbsebm.samplers.adaptation import build_schedule, chees, dual_averaging, halton, welford
from gibbsebm.samplers.adaptation.warmup import pooled_accept_stat
from gibbsebm.samplers.metrics import as_metric

DT = torch.float64


def test_dual_averaging_reaches_the_target_on_a_known_acceptance_curve():
    # acceptance a(eps) = exp(-eps): the target 0.8 is reached at eps* = -log(0.8)
    init, update, final = dual_averaging()
    s = init(torch.tensor(1.0, dtype=DT))
    for _ in range(3000):
        s = update(s, torch.exp(-s.log_step_size.exp()), 0.8)
    assert float(final(s)) == pytest.approx(-math.log(0.8), rel=0.02)
    # first iterate: mu - sqrt(1)/gamma * (1/(1+t0)) * (delta - a) with Hoffman-Gelman constants
    s0 = init(torch.tensor(1.0, dtype=DT))
    s1 = update(s0, torch.tensor(0.3, dtype=DT), 0.8)
    expected = math.log(10.0) - (1 / 0.05) * (0.5 / 11)
    assert float(s1.log_step_size) == pytest.approx(expected)
    assert float(s1.log_step_size_avg) == pytest.approx(expected)  # weight 1^-0.75 = 1


def test_dual_averaging_per_chain_shapes():
    init, update, final = dual_averaging()
    s = init(torch.tensor([0.1, 1.0, 10.0]))
    s = update(s, torch.tensor([0.9, 0.5, 0.1]), 0.8)
    assert final(s).shape == (3,)
    with pytest.raises(ValueError):
        dual_averaging(kappa=0.2)


@pytest.mark.parametrize("dense", [False, True])
def test_welford_pooled_matches_direct_estimates(dense):
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 4, generator=g, dtype=DT) * 3 + 1 for n in (1, 7, 32, 5)]
    init, update, final = welford(dense)
    s = init(4, batches[0])
    for b in batches:
        s = update(s, b)
    x = torch.cat(batches)
    direct = torch.cov(x.T) if dense else x.var(0)
    torch.testing.assert_close(final(s, regularize=False), direct)
    torch.testing.assert_close(s.mean, x.mean(0))
    n = x.shape[0]
    shrunk = n / (n + 5) * direct + 1e-3 * 5 / (n + 5) * (torch.eye(4, dtype=DT) if dense else 1)
    torch.testing.assert_close(final(s), shrunk)
    with pytest.raises(ValueError, match="at least 2"):
        final(update(init(4, x), x[:1]))


def test_stan_windows():
    assert build_schedule(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert build_schedule(19) == []
    # too short for the defaults: 15% / 75% / 10%, final buffer >= 10
    assert build_schedule(100) == [(15, 90)]
    for n in (20, 150, 333, 2000, 5000):
        w = build_schedule(n)
        assert w[0][0] == (75 if n >= 150 else int(0.15 * n))
        assert all(a[1] == b[0] for a, b in zip(w, w[1:]))  # contiguous
        assert w[-1][1] == n - (50 if n >= 150 else max(int(0.1 * n), 10))
        sizes = [b - a for a, b in w]
        assert all(b >= 2 * a for a, b in zip(sizes[:-2], sizes[1:-1]))  # doubling


def test_halton_sequence():
    assert [halton(i) for i in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    with pytest.raises(ValueError):
        halton(0)


def test_chees_rate_finds_the_gaussian_optimum():
    """On N(0, I) an exact trajectory gives ChEES(t) = d sin^2 t; the jittered ChEES rate
    E_u[sin^2(uT) / (uT)] peaks at T* = 1.79 (numerical maximisation, recorded here). The
    adaptation at a small fixed step size, from either side, must land within 25% of it; the
    plain ChEES criterion peaks later (its first local maximum under jitter is near 2.25)."""
    t_star = 1.79
    fn = lambda y: -0.5 * (y**2).sum(-1)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 10, generator=g, dtype=DT)
    metric = as_metric(None, x, 1)
    finals = {}
    for crit in ("chees_rate", "chees"):
        for t0 in (0.5, 4.0):
            st = hmc.init(x, fn)
            init, update, final = chees(criterion=crit)
            cs = init(torch.tensor(t0, dtype=DT))
            eps = 0.1
            for i in range(200):
                length = float(cs.log_length.exp())
                steps = max(1, math.ceil(halton(i + 1) * length / eps))
                st, info, (x0, x1, p1) = hmc.transition(g, st, fn, eps, steps, metric)
                u = halton(i + 1)
                acc, div = info.acceptance_prob, info.is_divergent
                cs = update(cs, x0, x1, p1, acc, div, u, eps, 1000, steps * eps)
            finals[(crit, t0)] = float(final(cs))
    for t0 in (0.5, 4.0):
        assert abs(finals[("chees_rate", t0)] / t_star - 1) < 0.25, finals
        assert finals[("chees", t0)] > finals[("chees_rate", t0)], finals


def test_harmonic_accept_statistic():
    a = torch.tensor([0.5, 1.0, 0.25])
    none = torch.zeros(3, dtype=torch.bool)
    assert float(pooled_accept_stat(a, none, "mean")) == pytest.approx(1.75 / 3)
    assert float(pooled_accept_stat(a, none, "harmonic")) == pytest.approx(3 / 7)
    # divergent chains are left out; a zero acceptance among the others gives 0
    div = torch.tensor([False, True, False])
    assert float(pooled_accept_stat(a, div, "harmonic")) == pytest.approx(2 / 6)
    zero = torch.tensor([0.5, 0.0, 1.0])
    assert float(pooled_accept_stat(zero, none, "harmonic")) == 0.0
    assert float(pooled_accept_stat(zero, torch.ones(3, dtype=torch.bool), "harmonic")) == 0.0


def test_hmc_warmup_recovers_dense_covariance_and_target_acceptance():
    cov = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=DT) * 4
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(3, dtype=DT), covariance=cov))
    s = gibbsebm.sample(
        d,
        "hmc",
        num_chains=64,
        num_samples=100,
        num_warmup=400,
        seed=0,
        progress=False,
        dense_mass=True,
        warn=False,
    )
    est = s.adaptation["inverse_mass"]
    assert est.shape == (3, 3)
    assert float((est - cov).abs().max()) < 0.15 * float(cov.abs().max())
    acc = s.stats["acceptance_prob"].double()
    # harmonic mean over chains of the per-chain mean acceptance is near the 0.651 target
    assert 0.5 < float(acc.mean()) < 0.95
    assert s.adaptation["trajectory_length"] >= s.adaptation["step_size"]
    assert not bool(s.stats["is_divergent"].any())


def test_mala_step_size_adapts_to_its_target():
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(10, dtype=DT), covariance=torch.logspace(-1, 1, 10)))
    s = gibbsebm.sample(
        d,
        "mala",
        num_chains=64,
        num_samples=100,
        num_warmup=300,
        seed=1,
        progress=False,
        warn=False,
    )
    assert abs(float(s.stats["acceptance_prob"].double().mean()) - 0.574) < 0.06
    ratio = s.adaptation["inverse_mass"].double() / torch.logspace(-1, 1, 10, dtype=DT)
    assert float(ratio.min()) > 0.7 and float(ratio.max()) < 1.3


def _single_chain_chees(center_on_running_mean: bool) -> tuple[float, float]:
    """ChEES with one chain on N(0, I_10) at a fixed small step size; (start, final) length."""
    fn = lambda y: -0.5 * (y**2).sum(-1)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 10, generator=g, dtype=DT)
    metric = as_metric(None, x, 1)
    st = hmc.init(x, fn)
    init, update, final = chees()
    eps = 0.1
    cs = init(torch.tensor(eps, dtype=DT))  # one leapfrog step, as the warmup starts
    run_sum, n = torch.zeros(10, dtype=DT), 0
    for i in range(300):
        u = halton(i + 1)
        steps = max(1, math.ceil(u * float(cs.log_length.exp()) / eps))
        st, info, (x0, x1, p1) = hmc.transition(g, st, fn, eps, steps, metric)
        run_sum, n = run_sum + x0[0], n + 1
        center = run_sum / n if center_on_running_mean else None
        acc, div = info.acceptance_prob, info.is_divergent
        cs = update(cs, x0, x1, p1, acc, div, u, eps, 1000, steps * eps, center=center)
    return eps, float(final(cs))


def test_chees_moves_with_one_chain():
    """One chain: the cross-chain mean is the chain itself, so the ChEES gradient is exactly
    zero (negative control: the length never leaves one step); centred on the running mean
    of its positions, the length leaves one step and reaches the neighbourhood of the
    jittered ChEES-rate optimum T* = 1.79 of N(0, I) (see the test above)."""
    start, stuck = _single_chain_chees(center_on_running_mean=False)
    assert stuck == pytest.approx(start)
    start, moved = _single_chain_chees(center_on_running_mean=True)
    assert 0.8 < moved < 3.6, moved


def test_hmc_warmup_trajectory_survives_the_transient():
    """Chains started far from the mode (30 sd of the widest coordinate) produce huge ChEES
    gradients on their way in; through Adam's second moment these used to freeze the
    trajectory length at one leapfrog step (adapted length == step size). The target's sds
    span 0.1 to 1, so the step size of the first, unadapted phase is far below the ChEES-rate
    optimum 1.79 of the whitened target; after warmup the length must exceed one step and
    lie near that optimum."""
    cov = torch.logspace(-2, 0, 10, dtype=DT)
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(10, dtype=DT), covariance=cov))
    init = torch.full((64, 10), 30.0, dtype=DT)
    s = gibbsebm.sample(
        d,
        "hmc",
        num_chains=64,
        num_samples=10,
        num_warmup=300,
        seed=0,
        init=init,
        progress=False,
        warn=False,
    )
    length, eps = s.adaptation["trajectory_length"], s.adaptation["step_size"]
    assert length > 1.25 * eps, (length, eps)
    assert 0.8 < length < 4.0, (length, eps)


# --- short warmups (issue 12: "Short warmup, valid input") --------------------------------


def _unit_gaussian_run(method, num_warmup, seed=0):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT)))
    return gibbsebm.sample(
        d,
        method,
        num_chains=4,
        num_samples=40,
        num_warmup=num_warmup,
        seed=seed,
        progress=False,
        warn=False,  # 160 draws: the ESS checks would fire; these tests check the warmup itself
    )


@pytest.mark.parametrize("method", ["hmc", "mala"])
@pytest.mark.parametrize("num_warmup", [0, 1, 5, 25, 75])
def test_short_warmup_never_freezes_the_chains(method, num_warmup):
    # was: hmc ended warmup at step size 5.4 (num_warmup=25) and 9.8 (num_warmup=1) on a unit
    # Gaussian, acceptance 0.002, no chain moved, no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "num_warmup=1 leaves", UserWarning)
        s = _unit_gaussian_run(method, num_warmup)
    acc = float(s.stats["acceptance_prob"].mean())
    assert 0.3 < acc <= 1.0, (num_warmup, acc, s.adaptation["step_size"])
    moved = (s.draws[:, 1:] != s.draws[:, :-1]).any(-1).sum(1)
    assert bool((moved > 0).all()), moved
    if method == "hmc" and num_warmup > 0:
        assert s.adaptation["step_size"] < 2.0  # leapfrog is unstable above 2 here


def test_too_short_warmup_warns_once_in_one_line():
    with pytest.warns(UserWarning, match=r"num_warmup=1 leaves 1 step-size") as rec:
        _unit_gaussian_run("hmc", 1)
    msgs = [str(w.message) for w in rec if "num_warmup" in str(w.message)]
    assert len(msgs) == 1 and "\n" not in msgs[0]


def test_negative_control_the_old_final_average_freezes_the_chains():
    # the averaged iterate after one dual-averaging update from the heuristic's step size is
    # about 10x that step size: what the fallback exists to prevent
    init, update, final = dual_averaging()
    s = update(init(torch.tensor(1.6, dtype=DT)), torch.tensor(0.8, dtype=DT), 0.8)
    assert float(final(s)) == pytest.approx(16.0)


def test_final_step_size_falls_back_to_the_restart_value():
    from gibbsebm.samplers.adaptation.warmup import (
        MIN_AVERAGING_ITERS,
        final_step_size,
    )

    init, update, final = dual_averaging()
    s = init(torch.tensor(1.6, dtype=DT))
    for _ in range(MIN_AVERAGING_ITERS - 1):
        s = update(s, torch.tensor(0.8, dtype=DT), 0.8)
    assert float(final(s)) > 5.0  # the average still sits near mu = log(16)
    assert final_step_size(s, final, 100) == pytest.approx(1.6)
    s = update(s, torch.tensor(0.8, dtype=DT), 0.8)
    assert final_step_size(s, final, 100) == pytest.approx(float(final(s)))


def test_windows_leave_a_final_buffer_for_dual_averaging():
    for n in range(20, 400):
        w = build_schedule(n)
        assert w and n - w[-1][1] >= 10, (n, w)
