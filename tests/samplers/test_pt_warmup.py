"""Parallel tempering's warmup restarts replicas without stale log densities (issue 13).

The inner kernel's warmup restarts a chain that accepted nothing (or is far out) from another
chain; inside ``pt`` its chains are the ``C * R`` replicas at different temperatures, so the
copied log density belonged to another :math:`\\beta`. The cached energies must equal the
energy at the recorded replicas, and the mode weights must match the exact mixture weights
within 4 Monte Carlo standard errors (per-chain fractions; the chains are independent runs).
"""

from __future__ import annotations

import math

import pytest
import torch
from _sampler_mc import mixture_4d

import gibbsebm
from gibbsebm import Gibbs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_restarted_replicas_carry_their_own_energy():
    gm = mixture_4d()
    c = 16
    init = gm.means[0].expand(c, 4).clone()
    init[: c // 4] = 30.0  # far from every mode: these chains are restarted by the warmup
    s = gibbsebm.sample(
        Gibbs(gm), "pt", num_chains=c, num_samples=500, num_warmup=300, seed=2, init=init,
        progress=False, warn=False,
    )  # fmt: skip
    assert s.adaptation["inner"]["reinitialized_chains"] > 0  # the case this test is about
    reps, cached = s.extra["replicas"], s.extra["replica_energy"]
    exact = gm(reps.reshape(-1, 4)).reshape(cached.shape)
    # main kept the hot replica's log density on restarted cold ones: off by up to 97 nats
    torch.testing.assert_close(cached, exact, rtol=0.0, atol=1e-9)
    lab = torch.cdist(s.draws.reshape(-1, 4), gm.means).argmin(-1).reshape(c, -1)
    frac = torch.stack([(lab == k).double().mean(1) for k in range(3)], 1)
    z = (frac.mean(0) - gm.weights).abs() / (frac.std(0) / math.sqrt(c))
    assert bool((z < 4).all()), z
