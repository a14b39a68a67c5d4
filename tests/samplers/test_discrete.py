"""Discrete samplers (gwg, dmala, metropolis, block_gibbs) against exact enumeration.

Statistical tests compare the empirical distribution of the draws with the exact one by total
variation (TV). The tolerance comes from the Monte Carlo error of every state's frequency,
estimated from many independent chains (equivalently, each state's effective sample size):
the mean plus 5 standard deviations of the TV that these errors alone produce (see
:func:`tv_test`). Each test also checks that the tolerance is small enough to detect a TV of
:data:`TV_POWER`, and a sampler with the wrong stationary distribution (GWG without the
Metropolis-Hastings correction) must fail the same test.

Statistical runs pass ``warn=False``: they use many short chains, whose split R-hat exceeds
1.01 even when every chain is stationary (about :math:`1 + (\tau - 1)/(2N)` for N draws with
integrated autocorrelation time tau), and estimate their errors across chains instead.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import constraints

import gibbsebm
from gibbsebm import Gibbs
from gibbsebm.constraints import spin
from gibbsebm.energies import RBM, Ising2D
from gibbsebm.samplers import dmala, gwg, metropolis
from gibbsebm.samplers.registry import get_spec

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _one_thread():
    """Small batched kernels run fastest on one thread; on shared CPUs two threads per process
    oversubscribe the cores (measured here: 5x slower). Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ising_energy(s: torch.Tensor) -> torch.Tensor:
    """3x3 periodic Ising energy (J = 1) as a plain function (no ``energy_change_of_flip``):
    E = -sum s_ij (s_{i+1,j} + s_{i,j+1})."""
    return -(s * (s.roll(-1, -2) + s.roll(-1, -1))).sum((-2, -1))


def ising_dist(beta: float, device: torch.device) -> Gibbs:
    return Gibbs(Ising2D(3, device=device), beta=beta)


def state_index(dist: Gibbs, y: torch.Tensor) -> torch.Tensor:
    """Index of each state in ``dist.enumerate_support()`` order (lexicographic)."""
    space = metropolis.DiscreteSpace.of(dist)
    digits = space.current_index(y.reshape((-1,) + tuple(dist.event_shape)))  # (N, S)
    k = space.num_values
    weights = k ** torch.arange(space.num_sites - 1, -1, -1, device=y.device)
    return (digits * weights).sum(-1)


def exact_probs(dist: Gibbs) -> torch.Tensor:
    states = dist.enumerate_support()
    return dist.log_prob(states).double().exp()


def tv_distance(dist: Gibbs, draws: torch.Tensor, p: torch.Tensor) -> float:
    idx = state_index(dist, draws)
    counts = torch.bincount(idx, minlength=p.numel()).double()
    return 0.5 * float((counts / counts.sum() - p).abs().sum())


def tv_test(
    dist: Gibbs, draws: torch.Tensor, k: float = 5.0, p: torch.Tensor | None = None
) -> tuple[float, float, float]:
    """TV distance of the draws ``(C, D, *event)`` to the exact distribution, its tolerance, and
    the median effective sample size of the state frequencies.

    The chains are independent, so the Monte Carlo standard error of each state's frequency,
    :math:`se_s`, is the standard deviation of the per-chain frequencies over
    :math:`\\sqrt C`; it equals :math:`\\sqrt{p_s (1 - p_s) / n_{\text{eff},s}}` with the
    state's effective sample size, whatever the autocorrelation. With independent normal errors
    :math:`e_s \\sim N(0, se_s^2)`, :math:`TV = \tfrac12 \\sum_s |e_s|` has mean
    :math:`\tfrac12 \\sqrt{2/\\pi} \\sum_s se_s` and variance
    :math:`\tfrac14 (1 - 2/\\pi) \\sum_s se_s^2`; the tolerance is the mean plus ``k`` standard
    deviations. ``p``: exact probabilities in :func:`state_index` order (default: by
    ``dist.enumerate_support``).
    """
    p = exact_probs(dist) if p is None else p
    c, d = draws.shape[:2]
    n_states = p.numel()
    idx = state_index(dist, draws).reshape(c, d)
    offset = torch.arange(c, device=idx.device)[:, None] * n_states
    freq = torch.bincount((idx + offset).reshape(-1), minlength=c * n_states)
    freq = freq.reshape(c, n_states).double() / d
    p_hat = freq.mean(0)
    se = freq.std(0) / math.sqrt(c)
    tv = 0.5 * float((p_hat - p).abs().sum())
    mean = 0.5 * math.sqrt(2 / math.pi) * float(se.sum())
    sd = 0.5 * math.sqrt((1 - 2 / math.pi) * float((se**2).sum()))
    seen = se > 0
    n_eff = (p * (1 - p))[seen] / se[seen] ** 2
    return tv, mean + k * sd, float(n_eff.median())


def run_chain(spec, dist, y0, generator, num_warmup, num_samples):
    """The kernel layer by hand: warmup (the spec's adapt, if any) and sampling; draws
    ``(C, D, *event)``."""
    ld = dist.logdensity
    state = spec.init(y0, ld)
    params = dict(spec.default_params)
    if spec.adapt is not None:
        state, params, _ = spec.adapt(generator, state, ld, num_warmup, params, None)
    else:
        for _ in range(num_warmup):
            state, _ = spec.step(generator, state, ld, **params)
    draws = []
    for _ in range(num_samples):
        state, info = spec.step(generator, state, ld, **params)
        draws.append(state.position)
    return torch.stack(draws, 1)


def sample(dist, method, num_chains, num_warmup, num_samples, seed=0, **options):
    """Draws ``(C, D, *event)`` from the driver :func:`gibbsebm.sample`."""
    s = gibbsebm.sample(
        dist,
        method,
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        seed=seed,
        progress=False,
        **options,
    )
    return s.draws


def magnetization(draws: torch.Tensor) -> torch.Tensor:
    return draws.flatten(2).sum(-1)


#: The tests must be able to detect a bias of this TV; the negative control's bias is about
#: 0.17 at beta = 0.3.
TV_POWER = 0.05

# (method, options, num_chains, num_warmup, num_samples): single-site moves (gwg) need about
# 2 S / acceptance steps per independent draw, S = 9 sites; metropolis does a sweep per step.
ISING_CASES = [
    ("gwg", {}, 1500, 100, 80),
    ("dmala", {}, 2000, 60, 60),
    ("metropolis", {}, 1000, 30, 50),
    pytest.param(
        "metropolis",
        {"rule": "gibbs", "scan": "systematic", "local": True},
        1000,
        30,
        50,
        marks=pytest.mark.slow,
    ),
]


# ----------------------------------------------------------------------------- statistical


@pytest.mark.parametrize("method,options,num_chains,num_warmup,num_samples", ISING_CASES)
def test_ising_3x3_total_variation(
    method, options, num_chains, num_warmup, num_samples, device, generator
):
    dist = ising_dist(0.3, device)
    draws = sample(dist, method, num_chains, num_warmup, num_samples, **options, warn=False)
    tv, tol, n_eff = tv_test(dist, draws)
    print(method, options, f"TV {tv:.4f} tol {tol:.4f} n_eff {n_eff:.0f}")
    assert tol < TV_POWER, (tol, n_eff)  # enough effective draws to see a TV of TV_POWER
    assert tv < tol, (method, options, tv, tol, n_eff)
    assert tv < tol, (method, options, tv, tol, n_eff)


def small_rbm(device: torch.device) -> Gibbs:
    """8 visible x 4 hidden units (256 visible states), N(0, 1) weights and biases."""
    rbm = RBM.random(8, 4, scale=1.0, generator=torch.Generator().manual_seed(3)).to(device)
    return Gibbs(rbm, beta=1.0)


# (method, options, num_chains, num_warmup, num_samples)
RBM_CASES = [
    ("block_gibbs", {}, 1000, 20, 40),
    ("gwg", {}, 1000, 60, 60),
    ("dmala", {}, 1000, 60, 40),
    ("metropolis", {}, 600, 10, 30),
]


@pytest.mark.parametrize("method,options,num_chains,num_warmup,num_samples", RBM_CASES)
def test_rbm_total_variation(
    method, options, num_chains, num_warmup, num_samples, device, generator
):
    dist = small_rbm(device)
    draws = sample(dist, method, num_chains, num_warmup, num_samples, **options, warn=False)
    tv, tol, n_eff = tv_test(dist, draws)
    print("rbm", method, options, f"TV {tv:.4f} tol {tol:.4f} n_eff {n_eff:.0f}")
    assert tol < TV_POWER, (tol, n_eff)
    assert tv < tol, (method, options, tv, tol, n_eff)


def test_block_gibbs_at_other_beta_and_ladder(device, generator):
    """At beta = 0.5 the chains target p_0.5 (the RBM's tempered marginal); with a ladder
    (batch shape (2,)) chain n runs at beta[n % 2]."""
    dist = small_rbm(device)
    betas = torch.tensor([1.0, 0.5], device=device)
    spec = get_spec("block_gibbs", dist.at(betas))
    ladder = dist.at(betas)

    def ld_flat(v):
        return ladder.logdensity(v.reshape(-1, 2, 8)).reshape(-1)

    y0 = metropolis.uniform_init(dist, 2000, generator)
    state = spec.init(y0, ld_flat)
    draws = []
    for i in range(60):
        state, _ = spec.step(generator, state, ld_flat, **spec.default_params)
        if i >= 20:
            draws.append(state.position.reshape(1000, 2, 8))
    draws = torch.stack(draws, 1)  # (C, D, R, 8)
    for r, b in enumerate(betas.tolist()):
        tv, tol, _ = tv_test(dist.at(b), draws[:, :, r])
        assert tol < TV_POWER
        assert tv < tol, (b, tv, tol)


def test_block_gibbs_needs_an_rbm():
    d = Gibbs(ising_energy, beta=0.3, event_shape=(3, 3), support=spin)
    with pytest.raises(ValueError, match="RBM"):
        get_spec("block_gibbs", d)


def chain_energy(y: torch.Tensor) -> torch.Tensor:
    """3 sites with values 0..3: E = 0.5 sum (y_i - 1.2)^2 - 0.4 sum_i y_i y_{i+1} / 3."""
    return 0.5 * ((y - 1.2) ** 2).sum(-1) - 0.4 * (y[:, :-1] * y[:, 1:]).sum(-1) / 3


@pytest.mark.parametrize(
    "method,options",
    [("gwg", {}), ("dmala", {}), ("metropolis", {}), ("metropolis", {"rule": "gibbs"})],
)
def test_integer_interval_total_variation(method, options, device):
    """Sites with K = 4 ordered values (64 states): proposals among several other values."""
    dist = Gibbs(
        chain_energy, beta=1.0, event_shape=(3,), support=constraints.integer_interval(0, 3)
    ).at(torch.tensor(1.0, device=device))
    draws = sample(dist, method, 800, 30, 40, seed=5, **options, warn=False)
    tv, tol, n_eff = tv_test(dist, draws)
    print("integer", method, options, f"TV {tv:.4f} tol {tol:.4f} n_eff {n_eff:.0f}")
    assert tol < TV_POWER
    assert tv < tol


def potts_energy(y: torch.Tensor) -> torch.Tensor:
    """3 one-hot sites with 3 categories on a ring: E = -sum_i <y_i, y_{i+1}> - sum_i h_i . y_i."""
    h = torch.tensor([[0.5, 0.0, -0.5], [0.0, 0.3, 0.0], [-0.2, 0.0, 0.4]], device=y.device)
    agree = (y * y.roll(-1, 1)).sum((1, 2))
    return -agree - (h * y).sum((1, 2))


@pytest.mark.parametrize("method", ["gwg", "dmala", "metropolis"])
def test_one_hot_categorical_total_variation(method, device, generator):
    dist = Gibbs(potts_energy, beta=1.0, event_shape=(3, 3), support=constraints.one_hot).at(
        torch.tensor(1.0, device=device)
    )
    space = metropolis.DiscreteSpace.of(dist)
    assert (space.kind, space.num_sites, space.num_values) == ("onehot", 3, 3)
    idx = torch.arange(27, device=device)
    digits = torch.stack([idx // 9, (idx // 3) % 3, idx % 3], -1)
    states = torch.nn.functional.one_hot(digits, 3).float()
    p = torch.softmax(-potts_energy(states).double(), 0)
    init = space.uniform(800, generator)
    draws = sample(dist, method, 800, 30, 40, seed=6, init=init, warn=False)
    assert bool((draws.sum(-1) == 1).all())  # still one-hot
    tv, tol, n_eff = tv_test(dist, draws, p=p)
    print("one-hot", method, f"TV {tv:.4f} tol {tol:.4f} n_eff {n_eff:.0f}")
    assert tol < TV_POWER
    assert tv < tol


def test_negative_control_gwg_without_mh_fails(device, generator):
    """GWG's proposal without the MH correction samples the wrong distribution: the same TV
    test must reject it (proves the test has power)."""
    dist = ising_dist(0.3, device)
    space = metropolis.DiscreteSpace.of(dist)
    y = metropolis.uniform_init(dist, 1500, generator)
    draws = []
    for i in range(140):
        state = gwg.init(y, dist.logdensity)
        logq = gwg.proposal_logits(space, y, state.grad)
        move = torch.multinomial(logq.exp(), 1, generator=generator).squeeze(1)
        y = space.set_sites(y, move // space.num_values, move % space.num_values)
        if i >= 60:
            draws.append(y)
    tv, tol, n_eff = tv_test(dist, torch.stack(draws, 1))
    print("gwg without MH", f"TV {tv:.4f} tol {tol:.4f} n_eff {n_eff:.0f}")
    assert tol < TV_POWER
    assert tv > tol, (tv, tol)


@pytest.mark.slow
def test_negative_control_gwg_without_reverse_proposal_fails(device, generator):
    """GWG's proposal with an MH ratio that omits q(y | y') / q(y' | y) (a wrong reverse
    probability) is also biased, and the TV test rejects it."""
    from gibbsebm.samplers.base import mh_accept

    dist = ising_dist(0.3, device)
    space = metropolis.DiscreteSpace.of(dist)
    y = metropolis.uniform_init(dist, 1500, generator)
    state = gwg.init(y, dist.logdensity)
    draws = []
    for i in range(140):
        logq = gwg.proposal_logits(space, state.position, state.grad)
        move = torch.multinomial(logq.exp(), 1, generator=generator).squeeze(1)
        prop = gwg.init(space.set_sites(state.position, move // 2, move % 2), dist.logdensity)
        ok, _ = mh_accept(generator, prop.logdensity - state.logdensity)
        state = gwg.GWGState(
            *(
                torch.where(ok.reshape((-1,) + (1,) * (a.dim() - 1)), a, b)
                for a, b in zip(prop, state)
            )
        )
        if i >= 60:
            draws.append(state.position)
    tv, tol, _ = tv_test(dist, torch.stack(draws, 1))
    print("gwg without reverse proposal", f"TV {tv:.4f} tol {tol:.4f}")
    assert tol < TV_POWER
    assert tv > tol, (tv, tol)


# ----------------------------------------------------------------------------- by hand


def test_gwg_mh_ratio_by_hand(device, generator):
    a, b, w = 0.3, -0.7, 1.2
    dist = Gibbs(
        lambda y: -(a * y[:, 0] + b * y[:, 1] + w * y[:, 0] * y[:, 1]),
        beta=torch.tensor(1.0, device=device),
        event_shape=(2,),
        support=constraints.boolean,
    )
    # from y = (0, 0): log p = a y1 + b y2 + w y1 y2, grad = (a, b), flip gains d = (a, b)
    q_fwd = [math.exp(a / 2) / (math.exp(a / 2) + math.exp(b / 2))]
    q_fwd.append(1 - q_fwd[0])
    # site 1 -> y' = (1, 0): grad' = (a, b + w), d' = (-a, b + w), log p' = a
    q_rev1 = math.exp(-a / 2) / (math.exp(-a / 2) + math.exp((b + w) / 2))
    # site 2 -> y' = (0, 1): grad' = (a + w, b), d' = (a + w, -b), log p' = b
    q_rev2 = math.exp(-b / 2) / (math.exp((a + w) / 2) + math.exp(-b / 2))
    acc = [min(1.0, math.exp(a) * q_rev1 / q_fwd[0]), min(1.0, math.exp(b) * q_rev2 / q_fwd[1])]

    spec = gwg.make_spec(dist)
    y0 = torch.zeros(4000, 2, device=device)
    space = metropolis.DiscreteSpace.of(dist)
    logq = gwg.proposal_logits(space, y0[:1], torch.tensor([[a, b]], device=device))
    # moves are (site, value) pairs; value 0 of both sites is the current one (probability 0)
    expect = torch.tensor([0.0, q_fwd[0], 0.0, q_fwd[1]], device=device)
    assert torch.allclose(logq.exp()[0], expect, atol=1e-6)
    state = spec.init(y0, dist.logdensity)
    new, info = spec.step(generator, state, dist.logdensity, **spec.default_params)
    moved1 = info.is_accepted & (new.position[:, 0] == 1)
    moved2 = info.is_accepted & (new.position[:, 1] == 1)
    assert moved1.any() and moved2.any()
    assert torch.allclose(info.acceptance_prob[moved1].cpu(), torch.tensor(acc[0]), atol=1e-5)
    assert torch.allclose(info.acceptance_prob[moved2].cpu(), torch.tensor(acc[1]), atol=1e-5)
    near = torch.minimum(
        (info.acceptance_prob - acc[0]).abs(), (info.acceptance_prob - acc[1]).abs()
    )
    assert bool((near < 1e-5).all())
    # the accepted moves' frequencies match q_fwd * acc within 5 binomial standard errors
    for moved, qa in ((moved1, q_fwd[0] * acc[0]), (moved2, q_fwd[1] * acc[1])):
        se = math.sqrt(qa * (1 - qa) / y0.shape[0])
        assert abs(moved.double().mean().item() - qa) < 5 * se


def test_dmala_proposal_by_hand(device):
    """Binary site: q(flip) = sigmoid(d/2 - 1/(2 alpha)) with d = (1 - 2y) * grad."""
    beta = torch.tensor(1.0, device=device)
    dist = Gibbs(lambda y: -y.sum(-1), beta=beta, event_shape=(3,), support=constraints.boolean)
    space = metropolis.DiscreteSpace.of(dist)
    y = torch.tensor([[0.0, 1.0, 0.0]], device=device)
    grad = torch.tensor([[0.4, -1.0, 2.0]], device=device)
    alpha = 0.7
    logq = dmala.proposal_log_probs(space, y, grad, alpha)  # (1, 3, 2): values (0, 1)
    d = (1 - 2 * y) * grad
    p_flip = torch.sigmoid(d / 2 - 1 / (2 * alpha))
    p_one = torch.where(y == 1, 1 - p_flip, p_flip)
    assert torch.allclose(logq.exp()[..., 1], p_one, atol=1e-6)


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("method", ["gwg", "dmala", "metropolis"])
def test_nan_energy_is_a_rejected_move(method, device, generator):
    """States where the energy is NaN are never entered; the attempts are counted."""

    def energy(s):
        e = ising_energy(s)
        return torch.where(s.flatten(1).sum(-1) >= 7, torch.full_like(e, float("nan")), e)

    beta = torch.tensor(0.3, device=device)
    dist = Gibbs(energy, beta=beta, event_shape=(3, 3), support=spin)
    spec = get_spec(method, dist)
    y0 = -torch.ones(200, 3, 3, device=device)
    y0[:, 0, :] = 1.0  # 3 up, 6 down
    state = spec.init(y0, dist.logdensity)
    n_bad = torch.zeros(200, dtype=torch.long, device=device)
    for _ in range(60):
        state, info = spec.step(generator, state, dist.logdensity, **spec.default_params)
        n_bad += info.is_nonfinite.long()
        assert bool((state.position.flatten(1).sum(-1) < 7).all())
        assert bool(torch.isfinite(state.logdensity).all())
    assert int(n_bad.sum()) > 0


def test_bad_input_raises():
    cont = Gibbs(lambda y: (y**2).sum(-1), event_shape=(2,))
    for m in ("gwg", "dmala", "metropolis"):
        with pytest.raises(ValueError, match="finite discrete support"):
            get_spec(m, cont)
    d = Gibbs(ising_energy, beta=0.3, event_shape=(3, 3), support=spin)
    with pytest.raises(ValueError, match="scan"):
        get_spec("metropolis", d, scan="diagonal")
    with pytest.raises(ValueError, match="step_size"):
        get_spec("dmala", d, step_size=-1.0)
    with pytest.raises(ValueError, match="local=True"):
        get_spec("metropolis", d, local=True)
    for m in ("gwg", "dmala", "metropolis"):
        with pytest.raises(ValueError, match="unknown option"):
            get_spec(m, d, step_sise=0.1)
    with pytest.raises(ValueError, match="unknown option"):
        get_spec("block_gibbs", small_rbm(torch.device("cpu")), sweeps=2)


def test_metropolis_local_field_path_gives_the_same_draws(device):
    """local=True (Ising2D's exact flip energy changes) and the plain log-density path make
    the same decisions from the same random numbers."""
    dist = ising_dist(0.3, device)
    a = sample(dist, "metropolis", 64, 5, 10, seed=9, local=True, warn=False)
    b = sample(dist, "metropolis", 64, 5, 10, seed=9, warn=False)
    assert torch.equal(a, b)


def test_same_seed_same_draws(device):
    dist = ising_dist(0.4, device)
    out = []
    for _ in range(2):
        g = torch.Generator(device=device).manual_seed(7)
        spec = get_spec("gwg", dist)
        y0 = metropolis.uniform_init(dist, 16, g)
        out.append(run_chain(spec, dist, y0, g, num_warmup=5, num_samples=5))
    assert torch.equal(out[0], out[1])
