"""Stuck chains during warmup (issue 12, "Stuck and straggling chains on real posteriors").

A chain whose every proposal is rejected (here: started where the gradient is 1e9, so every
leapfrog step with the step size the other chains tune overshoots to a non-finite or hopeless
energy) is restarted from a randomly chosen chain that moved, at the end of the initial buffer
and of every slow window; the counts land in the adaptation info. Without slow windows nothing
is restarted and the stuck chains are reported (``zero_acceptance_chains``).
"""

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

import gibbsebm
from gibbsebm.samplers.adaptation.warmup import reinitialize_stuck
from gibbsebm.samplers.hmc import HMCState

# runs here are deliberately short: these tests are about files, resume and checks,
# not about the quality of the draws (tests/test_sampling_warnings.py covers that)
pytestmark = [
    pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning"),
    pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning"),
]

DT = torch.float64
C, FAR = 32, torch.arange(0, 32, 4)  # 8 chains start far out


def _quartic():
    return gibbsebm.Gibbs(
        lambda y: 0.25 * (y**4).sum(-1), event_shape=(2,), beta=torch.tensor(1.0, dtype=DT)
    )


def _init():
    g = torch.Generator().manual_seed(5)
    y = torch.rand(C, 2, generator=g, dtype=DT) * 2 - 1
    y[FAR] = 1e3
    return y


def _moved(draws):
    return (draws[:, 1:] != draws[:, :-1]).any(-1).sum(1) > 0


@pytest.mark.parametrize("method", ["hmc", "mala"])
def test_stuck_chains_are_restarted_from_moving_ones(method):
    s = gibbsebm.sample(
        _quartic(),
        method,
        num_chains=C,
        num_samples=30,
        num_warmup=60,
        init=_init(),
        seed=1,
        progress=False,
    )
    a = s.adaptation
    assert a["reinitialized_chains"] == len(FAR)  # each far chain once, at the first check
    assert torch.equal(torch.nonzero(a["reinitialized_per_chain"]).flatten(), FAR)
    assert not bool(a["zero_acceptance_chains"].any())
    assert bool(_moved(s.draws).all())
    assert float(s.draws.abs().max()) < 10.0


def test_negative_control_without_windows_the_stuck_chains_stay_and_are_reported():
    s = gibbsebm.sample(
        _quartic(),
        "hmc",
        num_chains=C,
        num_samples=10,
        num_warmup=15,
        init=_init(),
        seed=1,
        progress=False,
    )
    a = s.adaptation
    assert a["reinitialized_chains"] == 0
    assert torch.equal(torch.nonzero(a["zero_acceptance_chains"]).flatten(), FAR)
    assert not bool(_moved(s.draws)[FAR].any())


def test_reinitialize_stuck_copies_whole_states_from_moving_chains():
    pos = torch.arange(6, dtype=DT).reshape(3, 2)
    st = HMCState(pos, -pos.sum(-1), -pos, 7)
    g = torch.Generator().manual_seed(0)
    out, stuck = reinitialize_stuck(g, st, torch.tensor([0, 3, 0]))
    assert stuck.tolist() == [True, False, True]
    assert torch.equal(out.position, pos[[1, 1, 1]]) and out.iteration == 7
    assert torch.equal(out.logdensity_grad, -pos[[1, 1, 1]])
    # nothing stuck, or nothing moved: unchanged and no random number drawn
    before = g.get_state()
    for acc in (torch.tensor([1, 1, 2]), torch.tensor([0, 0, 0])):
        same, _ = reinitialize_stuck(g, st, acc)
        assert same is st
    assert torch.equal(g.get_state(), before)


# --- the real posteriors (slow: 256 chains, 500 warmup) -----------------------------


def _unscaled_regression(dtype):
    # 5-D linear regression, predictor scales 1 .. 1000, posterior via a Gibbs energy
    g = torch.Generator().manual_seed(0)
    n, d = 100, 5
    scales = torch.logspace(0, 3, d, dtype=dtype)
    x = torch.randn(n, d, generator=g, dtype=dtype) * scales
    y = x @ (torch.randn(d, generator=g, dtype=dtype) / scales)
    y = y + 0.5 * torch.randn(n, generator=g, dtype=dtype)

    def energy(b):
        r = y - b @ x.T
        return 2.0 * (r * r).sum(-1) + 0.005 * (b * b).sum(-1)

    prec = 4.0 * x.T @ x + 0.01 * torch.eye(d, dtype=dtype)
    cov = torch.linalg.inv(prec.double())
    return energy, cov @ (4.0 * x.T.double() @ y.double()), cov


def _correlated_regression():
    # 3-D regression whose first two coefficients have posterior correlation about -0.998
    g = torch.Generator().manual_seed(0)
    n = 50
    z = torch.randn(n, generator=g, dtype=DT)
    x = torch.stack(
        [
            z,
            z + 0.063 * torch.randn(n, generator=g, dtype=DT),
            torch.randn(n, generator=g, dtype=DT),
        ],
        1,
    )
    y = x @ torch.tensor([1.0, -0.5, 0.3], dtype=DT) + 0.3 * torch.randn(n, generator=g, dtype=DT)

    def energy(b):
        r = y - b @ x.T
        return 0.5 * (r * r).sum(-1) / 0.09

    cov = torch.linalg.inv(x.T @ x / 0.09)
    return energy, cov @ (x.T @ y / 0.09), cov


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unscaled_float32", "correlated"])
def test_real_posteriors_every_chain_moves_and_is_on_target(case):
    if case == "correlated":
        energy, mean, cov = _correlated_regression()
        dtype, d = DT, 3
    else:
        energy, mean, cov = _unscaled_regression(torch.float32)
        dtype, d = torch.float32, 5
    dist = gibbsebm.Gibbs(energy, event_shape=(d,), beta=torch.tensor(1.0, dtype=dtype))
    s = gibbsebm.sample(
        dist, "hmc", num_chains=256, num_samples=200, num_warmup=500, seed=0, progress=False
    )
    assert bool(_moved(s.draws).all())
    assert not bool(s.adaptation["zero_acceptance_chains"].any())
    sd = cov.diagonal().sqrt()
    per_chain = ((s.draws.double().mean(1) - mean) / sd).abs().max(-1).values
    assert float(per_chain.median()) < 1.0  # the issue: the median chain 4 sd off
    pooled = (s.draws.double().reshape(-1, d).mean(0) - mean) / sd
    # 256 x 200 draws: the pooled mean's MCSE is well below 0.05 sd even with ESS/draw 0.05
    assert float(pooled.abs().max()) < 0.05
