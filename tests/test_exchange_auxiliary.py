"""The exchange sampler's batched auxiliary draws (gibbsebm.samplers.exchange.auxiliary_draws)."""

from __future__ import annotations

import math

import pytest
import torch

from gibbsebm import Gibbs
from gibbsebm.energies import Gaussian, Ising2D
from gibbsebm.samplers.exchange import auxiliary_draws

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def test_batched_gaussian_draws_are_exact_per_chain():
    # two chains with precisions 0.5 and 8 (and beta 2 on the second), x of 4000 scalars in a
    # plate-like batch: the per-chain variance 1 / (beta * lambda) within 5 standard errors
    # (the sample variance of n Gaussians has relative sd sqrt(2 / n))
    n = 4000
    fns = [
        Gibbs(Gaussian(torch.tensor([1.0], dtype=DT), precision=torch.tensor([0.5], dtype=DT))),
        Gibbs(Gaussian(torch.zeros(1, dtype=DT), precision=torch.tensor([8.0], dtype=DT)), 2.0),
    ]
    x = torch.zeros(n, 1, dtype=DT)
    w, how = auxiliary_draws(fns, x, 0, torch.Generator().manual_seed(0))
    assert how == "exact" and w.shape == (2, n, 1)
    for i, (mean, var) in enumerate([(1.0, 2.0), (0.0, 1.0 / 16.0)]):
        assert abs(float(w[i].mean()) - mean) < 5 * math.sqrt(var / n)
        assert abs(float(w[i].var()) / var - 1.0) < 5 * math.sqrt(2.0 / n)
    # negative control: chain 0's draws do not have chain 1's variance
    assert abs(float(w[0].var()) / (1.0 / 16.0) - 1.0) > 5 * math.sqrt(2.0 / n)


def test_auxiliary_draws_have_the_shape_of_the_data_and_say_how_they_were_made():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(3, 8, 8, dtype=DT)  # three observed 8x8 lattices (2^64 states: no enumeration)
    fns = [Gibbs(Ising2D(8, J=j, dtype=DT)) for j in (0.1, 0.2)]
    w, how = auxiliary_draws(fns, x, 3, g)
    assert how == "heat-bath sweeps" and w.shape == (2, 3, 8, 8)
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    # a user energy without an exact sampler: one auxiliary chain per chain (Gibbs.mcmc_from)
    fns = [Gibbs(lambda y, j=j: 0.5 * j * (y**2).sum(-1), event_shape=(2,)) for j in (1.0, 4.0)]
    x = torch.zeros(5, 2, dtype=DT)
    w, how = auxiliary_draws(fns, x, 2, g)
    assert how == "mcmc" and w.shape == (2, 5, 2)
    # spins of an enumerable lattice (3x3: 512 states) are drawn exactly
    fns = [Gibbs(Ising2D(3, J=j, dtype=DT)) for j in (0.1, 0.2)]
    w, how = auxiliary_draws(fns, torch.ones(2, 3, 3, dtype=DT), 2, g)
    assert how == "exact" and w.shape == (2, 2, 3, 3)
