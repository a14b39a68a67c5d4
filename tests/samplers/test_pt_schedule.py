"""Schedule adaptation of parallel tempering (issue 13; Syed et al. 2022, Algorithm 4).

Closed form used throughout: for a 2-D standard Gaussian, :math:`E = |y|^2 / 2` is exponential
with rate :math:`\\beta` at inverse temperature :math:`\\beta`, and the swap rejection rate of
temperatures :math:`\\beta > \\beta'` with exact draws is
:math:`(\\beta - \\beta') / (\\beta + \\beta') = \\tanh(\\tfrac12 \\log(\\beta / \\beta'))`
(integrate :math:`1 - \\min(1, e^{(\\beta - \\beta')(E - E')})` over the two exponentials). So the
local barrier is :math:`\\lambda(\\beta) = 1 / (2\\beta)`, the global barrier from
:math:`\\beta_{\\min}` to 1 is :math:`\\tfrac12 \\log(1/\\beta_{\\min})`, and the equal-barrier
ladder is the geometric one. Statistical checks use the per-chain swap rates of independent
chains (4 standard errors).
"""

from __future__ import annotations

import math

import pytest
import torch

import gibbsebm
from gibbsebm import Gibbs
from gibbsebm.energies import Gaussian
from gibbsebm.samplers.adaptation.tempering import (
    MIN_ROUND_STEPS,
    communication_barrier,
    equal_barrier_ladder,
    schedule_rounds,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LINEAR = torch.linspace(1.0, 0.05, 8, dtype=torch.float64)  # far from equal rejections


def exact_rejection(betas: torch.Tensor) -> torch.Tensor:
    """Swap rejection rates of the neighbours of ``betas`` for the 2-D standard Gaussian."""
    return torch.tanh(0.5 * (betas[:-1] / betas[1:]).log())


def test_barrier_of_gaussian_matches_closed_form():
    fine = 0.05 ** torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    lam = communication_barrier(exact_rejection(fine))
    # tanh(x) = x - x^3/3 + ...: with x = log(20)/400 per pair the sum is off by < 1e-4
    assert abs(float(lam[-1]) - 0.5 * math.log(20.0)) < 1e-4
    assert lam[0] == 0 and bool((lam.diff() > 0).all())
    # a pair that rejected nothing still moves the barrier up (strictly increasing)
    assert bool((communication_barrier(torch.tensor([0.0, 0.5])).diff() > 0).all())


def test_equal_barrier_ladder_reaches_the_geometric_ladder():
    b = LINEAR.clone()
    for _ in range(8):  # the map is a contraction: the spread shrinks ~30-fold per iteration
        b = equal_barrier_ladder(b, exact_rejection(b))
    assert b[0] == LINEAR[0] and b[-1] == LINEAR[-1]
    geometric = 0.05 ** torch.linspace(0.0, 1.0, 8, dtype=torch.float64)
    torch.testing.assert_close(b, geometric, rtol=1e-9, atol=0.0)
    # equal rejections leave the ladder as it is
    torch.testing.assert_close(equal_barrier_ladder(geometric, torch.full((7,), 0.3)), geometric)


def test_schedule_rounds_double_and_cover_the_steps():
    assert schedule_rounds(250) == [36, 71, 143]
    assert schedule_rounds(3 * MIN_ROUND_STEPS - 1) == [3 * MIN_ROUND_STEPS - 1]
    for n in (60, 300, 1001, 10**5):
        r = schedule_rounds(n)
        assert sum(r) == n and len(r) >= 2 and min(r) >= MIN_ROUND_STEPS
        assert all(b >= a for a, b in zip(r, r[1:]))


def _run(adapt, seed=0):
    dist = Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)))
    return gibbsebm.sample(
        dist, "pt", betas=LINEAR, num_chains=16, num_samples=1000, num_warmup=600, seed=seed,
        adapt_schedule=adapt, progress=False, warn=False,
    )  # fmt: skip


def test_adaptation_equalises_rejections_and_keeps_the_barrier():
    s = _run(None)  # the default adapts: 8 temperatures, 300 tuning steps
    sched = s.adaptation["schedule"]
    assert sched["adapted"] and sched["round_lengths"] == schedule_rounds(300)
    b = s.extra["replica_beta"][0, 0]
    assert b[0] == 1.0 and b[-1] == LINEAR[-1] and bool((b.diff() < 0).all())
    torch.testing.assert_close(b, s.adaptation["betas"])
    torch.testing.assert_close(b, sched["betas_per_round"][-1])
    rej_c = 1.0 - s.stats["swap_rate"][:, -1]  # (chains, pairs) over the draws
    rej = rej_c.mean(0)
    se = rej_c.std(0) / math.sqrt(rej_c.shape[0])
    # the swap rates of the draws are those of exact draws at the final ladder...
    z = (rej - exact_rejection(b)) / se
    assert bool((z.abs() < 4).all()), z
    # ...and nearly equal (measured spread 0.02; the fixed linear ladder: 0.49 to 0.51)
    assert float(rej.max() - rej.min()) < 0.1, rej
    lam_c = rej_c.sum(1)
    z_lam = (lam_c.mean() - exact_rejection(b).sum()) / (lam_c.std() / 4.0)
    assert abs(float(z_lam)) < 4
    torch.testing.assert_close(
        sched["barrier"], communication_barrier(sched["rejection_per_round"][-1])[-1]
    )
    # negative control: the fixed linear ladder keeps its unequal rejections
    f = _run(False)
    assert f.adaptation["schedule"] == {"adapted": False, "reason": "adapt_schedule=False"}
    torch.testing.assert_close(f.extra["replica_beta"][0, 0], LINEAR)
    rej_f = 1.0 - f.stats["swap_rate"][:, -1].mean(0)
    assert float(rej_f.max() - rej_f.min()) > 0.3
    # equal rejections carry more configurations round the ladder (measured 2493 vs 2132)
    assert int(s.stats["round_trips"][:, -1].sum()) > int(f.stats["round_trips"][:, -1].sum())


def test_short_warmup_or_two_temperatures_keep_the_ladder():
    dist = Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)))
    kw = dict(num_chains=4, num_samples=5, seed=0, progress=False, warn=False)
    s = gibbsebm.sample(dist, "pt", betas=LINEAR, num_warmup=100, **kw)
    assert (
        not s.adaptation["schedule"]["adapted"]
        and "tuning steps" in (s.adaptation["schedule"]["reason"])
    )
    torch.testing.assert_close(s.extra["replica_beta"][0, 0], LINEAR)
    two = gibbsebm.sample(dist, "pt", betas=[1.0, 0.5], num_warmup=400, **kw)
    assert not two.adaptation["schedule"]["adapted"]
    cold = gibbsebm.sample(dist, "pt", betas=[2.0, 1.0, 0.5], num_warmup=400, **kw)
    assert "colder" in cold.adaptation["schedule"]["reason"]
