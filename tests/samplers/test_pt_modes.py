"""Parallel tempering from its default start (issue 13): the mode search, round trips, swap
rates, and the weights of findable modes.

The weights of the modes are compared with the exact mixture weights within 4 Monte Carlo
standard errors computed from the per-chain fractions (the chains are independent runs). The
negative control (every chain started in one mode, plain MALA) must fail the same check.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from _sampler_mc import mixture_4d

import gibbsebm
from gibbsebm import Gibbs
from gibbsebm.energies import Gaussian, GaussianMixture
from gibbsebm.samplers import tempering

pytestmark = pytest.mark.usefixtures("one_thread")


def weight_z_scores(samples, gm: GaussianMixture) -> torch.Tensor:
    """|fraction - weight| / MCSE per mode; draws assigned to the nearest mean."""
    c, n = samples.draws.shape[:2]
    y = samples.draws.reshape(c * n, -1).to(torch.float64)
    lab = torch.cdist(y, gm.means).argmin(-1).reshape(c, n)
    frac = torch.stack([(lab == k).double().mean(1) for k in range(gm.means.shape[0])], 1)
    se = frac.std(0) / math.sqrt(c)
    return (frac.mean(0) - gm.weights).abs() / se


def test_round_trips_counted_by_hand():
    # one chain, 3 temperatures; swaps (0,1), (1,2), (0,1), (1,2), (0,1) all accepted carry
    # replica 0 to the hottest temperature and back: one round trip, at the last step
    rec = tempering._fresh_record(1, 3, torch.zeros(1, dtype=torch.float64))
    pairs = {0: torch.tensor([1, 0, 2]), 1: torch.tensor([0, 2, 1])}
    labels, trips = [], []
    for k in range(5):
        partner = pairs[k % 2]
        moved = (partner != torch.arange(3))[None]
        active = torch.tensor([[k % 2 == 0, k % 2 == 1]])
        rec = tempering._update_record(rec, moved, partner, active, active.double())
        labels.append(rec.replica_index[0].tolist())
        trips.append(int(rec.round_trips[0]))
    assert labels == [[1, 0, 2], [1, 2, 0], [2, 1, 0], [2, 0, 1], [0, 2, 1]]
    assert trips == [0, 0, 0, 0, 1]
    assert rec.swap_proposals[0].tolist() == [3, 2]
    assert rec.swap_prob_sum[0].tolist() == [3.0, 2.0]


def test_pt_from_default_start_recovers_weights_of_findable_modes():
    gm = mixture_4d()
    dist = Gibbs(gm)
    s = gibbsebm.sample(
        dist, "pt", num_chains=16, num_samples=1000, num_warmup=500, seed=1, progress=False,
        warn=False,
    )  # fmt: skip
    modes = s.adaptation["modes"]
    assert modes["num_modes"] == 3 and s.options["init_from_modes"] is True
    assert s.adaptation["schedule"]["adapted"]  # the weights hold on the adapted ladder
    z = weight_z_scores(s, gm)
    assert bool((z < 4).all()), z
    # every chain made round trips, and no pair of temperatures is cut
    assert int(s.stats["round_trips"][:, -1].min()) >= 1
    assert not [p for p in s.diagnose() if p.check.startswith("pt_")]
    rate = s.stats["swap_rate"][:, -1].nanmean(0)
    assert rate.shape == (s.extra["replica_beta"].shape[2] - 1,) and bool((rate > 0.1).all())

    # negative control: every chain in the heaviest mode, no tempering
    init = gm.means[0].expand(16, 4).clone()
    m = gibbsebm.sample(
        dist, "mala", num_chains=16, num_samples=1000, num_warmup=500, seed=1, init=init,
        progress=False, warn=False,
    )  # fmt: skip
    assert not bool((weight_z_scores(m, gm) < 4).all())


def test_explicit_init_wins_and_no_search_without_it():
    dist = Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)))
    init = torch.full((4, 2), 0.5, dtype=torch.float64)
    s = gibbsebm.sample(
        dist, "pt", num_chains=4, num_samples=5, num_warmup=0, seed=0, init=init,
        progress=False, warn=False,
    )  # fmt: skip
    assert "modes" not in s.adaptation and "init_from_modes" not in s.options
    d = gibbsebm.sample(
        dist, "pt", num_chains=4, num_samples=5, num_warmup=0, seed=0, progress=False, warn=False
    )
    assert d.adaptation["modes"]["num_modes"] == 1
    off = gibbsebm.sample(
        dist, "pt", num_chains=4, num_samples=5, num_warmup=0, seed=0, init_from_modes=False,
        progress=False, warn=False,
    )  # fmt: skip
    assert "modes" not in off.adaptation


def test_warning_names_a_cut_ladder_and_missing_round_trips():
    # two temperatures 10^4 apart in 4-D: swaps are (almost) never accepted
    dist = Gibbs(Gaussian(torch.zeros(4, dtype=torch.float64)))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = gibbsebm.sample(
            dist, "pt", kernel="mala", betas=[1.0, 1e-4], num_chains=4, num_samples=200,
            num_warmup=100, seed=0, progress=False,
        )  # fmt: skip
    checks = {p.check for p in s.diagnose()}
    assert {"pt_round_trips", "pt_swap_rate"} <= checks
    msgs = [str(w.message) for w in rec if issubclass(w.category, gibbsebm.SamplingWarning)]
    assert len(msgs) == 1 and "no round trip" in msgs[0] and "ladder is cut" in msgs[0]
