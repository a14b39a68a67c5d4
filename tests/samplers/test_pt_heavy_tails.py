"""Parallel tempering on heavy tails: the hottest replica must stay normalisable.

For E ~ c log r at large r (a Student-t: c = nu + d), exp(-beta E) is integrable in d dimensions
only for beta c > d. The default ladder went down to beta / 20, far below d / c = 0.545 for the
3-D t(2.5), so the hot replicas drifted off and their swaps put |y| ~ 2e7 into the target chain
(found by the heavy-tails check of `sample`). The default ladder now stops above that bound.
"""

import math

import pytest
import torch

import gibbsebm
from gibbsebm.samplers.tempering import HOTTEST_RATIO, TAIL_MARGIN, integrable_beta_floor


def student_t(nu, d):
    return gibbsebm.Gibbs(
        lambda y: 0.5 * (nu + d) * torch.log1p((y * y).sum(-1) / nu), event_shape=(d,)
    )


@pytest.mark.parametrize("nu,d", [(2.5, 3), (1.5, 2), (5.0, 10)])
def test_floor_of_student_t_is_d_over_nu_plus_d(nu, d):
    floor = integrable_beta_floor(student_t(nu, d))
    assert floor == pytest.approx(d / (nu + d), rel=0.01)


@pytest.mark.parametrize(
    "energy",
    [
        lambda y: 0.5 * (y * y).sum(-1),  # Gaussian
        lambda y: (y**4).sum(-1) / 4,  # quartic
        lambda y: ((y * y - 1) ** 2).sum(-1),  # double wells
    ],
    ids=["gaussian", "quartic", "double-well"],
)
def test_no_floor_for_energies_growing_faster_than_a_log(energy):
    assert integrable_beta_floor(gibbsebm.Gibbs(energy, event_shape=(3,))) is None


def test_default_ladder_stays_normalisable_on_a_heavy_tail(one_thread):
    dist = student_t(2.5, 3)
    s = gibbsebm.sample(
        dist,
        "pt",
        num_chains=8,
        num_samples=300,
        num_warmup=300,
        seed=0,
        progress=False,
        warn=False,
    )
    betas = s.adaptation["betas"]
    hottest = float(betas.min())
    assert hottest >= min(TAIL_MARGIN * 3 / 5.5, 1 / 1.5) - 1e-6
    assert hottest > 3 / 5.5  # every replica's density is normalisable
    y = s.draws.double()
    assert bool(torch.isfinite(y).all())
    # before: the hot replicas' excursions reached |y| ~ 2e7 in the target chain; a t(2.5)
    # draw beyond 1e4 has probability ~ 1e-9 per draw
    assert float(y.abs().max()) < 1e4


def test_gaussian_ladder_unchanged(one_thread):
    d = gibbsebm.Gibbs(lambda y: 0.5 * (y * y).sum(-1), event_shape=(3,))
    s = gibbsebm.sample(
        d, "pt", num_chains=4, num_samples=20, num_warmup=20, seed=0, progress=False, warn=False
    )
    assert math.isclose(float(s.adaptation["betas"].min()), 1.0 / HOTTEST_RATIO, rel_tol=1e-6)
