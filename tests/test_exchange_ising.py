"""The exchange algorithm on the coupling J of an Ising model too large to enumerate.

Data: ``m`` spin configurations of the L x L torus drawn (seeded, long heat-bath runs) at a
known coupling. With a uniform prior on J, the posterior is

.. math::

    \\pi(J \\mid x) \\propto \\pi(J) \\exp\\big(J S(x) - m \\log Z(J)\\big),
    \\qquad S(x) = \\sum_k \\sum_{ij} x^{(k)}_{ij}(x^{(k)}_{i+1,j} + x^{(k)}_{i,j+1}),

a one-dimensional density that depends on the data only through S and on Kaufman's exact
log Z(J): its mean and sd on a fine grid are exact (to the grid's quadrature error, far below
the Monte Carlo error). The exchange run never uses log Z; its auxiliary draws are
``aux_steps`` heat-bath sweeps started at the data (double MH, approximate), so the test
also bounds that bias. Tolerances: ``K_SE`` Monte Carlo standard errors of the run (bulk ESS
of all chains; the sd's standard error is ``sd / sqrt(2 ESS)``, Gaussian approximation).
Negative controls: dropping log Z (the unnormalised likelihood sampled with batched HMC) and
one-sweep auxiliary chains both fail the same check.
"""

from __future__ import annotations

import math

import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch

import gibbsebm
from gibbsebm import Gibbs
from gibbsebm.energies import Ising2D
from gibbsebm.energies.ising import checkerboard_sweep, kaufman_log_partition

DT = torch.float64
#: Monte Carlo standard errors allowed (a two-sided 5-sigma check: false alarm ~6e-7)
K_SE = 5.0
PRIOR = (0.0, 1.0)  # uniform prior on J

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: threads only contend


def _bonds(s: torch.Tensor) -> torch.Tensor:
    return (s * (s.roll(-1, -2) + s.roll(-1, -1))).sum((-2, -1))


def _data(L: int, J: float, m: int, seed: int = 0) -> torch.Tensor:
    """``m`` configurations at coupling J: 1000 heat-bath sweeps from random spins each."""
    g = torch.Generator().manual_seed(seed)
    s0 = torch.where(torch.rand(m, L, L, generator=g, dtype=DT) < 0.5, 1.0, -1.0).to(DT)
    return checkerboard_sweep(s0, torch.tensor(J, dtype=DT), g, sweeps=1000)


def _exact_posterior(x: torch.Tensor, n: int = 20001) -> tuple[float, float]:
    """Posterior mean and sd of J on a grid of ``n`` points (Kaufman's exact log Z)."""
    L, m = x.shape[-1], x.shape[0]
    j = torch.linspace(*PRIOR, n, dtype=DT)[1:-1]
    w = torch.softmax(j * float(_bonds(x).sum()) - m * kaufman_log_partition(j, L, L), 0)
    mean = float((w * j).sum())
    return mean, float((w * (j - mean) ** 2).sum().sqrt())


def _model(x: torch.Tensor) -> None:
    J = pyro.sample("J", dist.Uniform(torch.tensor(PRIOR[0], dtype=DT), PRIOR[1]))
    pyro.sample("s", Gibbs(Ising2D(x.shape[-1], J=J, dtype=DT)), obs=x)


def _z(draws: torch.Tensor, exact: tuple[float, float]) -> tuple[float, float]:
    """|mean - exact mean| and |sd - exact sd| in Monte Carlo standard errors."""
    a = draws.numpy()
    ess = float(az.ess(a))
    mean, sd = a.mean(), a.std()
    return abs(mean - exact[0]) / (sd / math.sqrt(ess)), abs(sd - exact[1]) / (
        exact[1] / math.sqrt(2 * ess)
    )


def _posterior_starts(x: torch.Tensor, num_chains: int, seed: int = 2) -> torch.Tensor:
    """Unconstrained starts (logit J) drawn from the exact grid posterior."""
    L, m = x.shape[-1], x.shape[0]
    j = torch.linspace(*PRIOR, 20001, dtype=DT)[1:-1]
    w = torch.softmax(j * float(_bonds(x).sum()) - m * kaufman_log_partition(j, L, L), 0)
    g = torch.Generator().manual_seed(seed)
    pick = j[torch.multinomial(w, num_chains, replacement=True, generator=g)]
    return torch.logit(pick)[:, None]


def _exchange(x, *, num_chains, num_samples, num_warmup, aux_steps, seed=1, init=None):
    # warn=False: a random walk with a noisy (exchange) acceptance has an integrated
    # autocorrelation time near 10, so Stan's split R-hat < 1.01 needs thousands of draws
    # per chain; the checks below use the run's own ESS-based standard errors instead, and
    # gross non-convergence is caught by the R-hat < 1.1 guard
    s = gibbsebm.sample(_model, "exchange", model_args=(x,), num_chains=num_chains,
                        num_samples=num_samples, num_warmup=num_warmup, seed=seed, init=init,
                        aux_steps=aux_steps, progress=False, warn=False)  # fmt: skip
    return s, float(az.rhat(s.sites["J"].numpy()))


def test_checkerboard_sweep_keeps_the_exact_ising_energy():
    # 4x4 (even: two sublattices) and 3x3 (odd: four colours) against enumeration; each lattice
    # has its own coupling (the exchange sampler's batch)
    g = torch.Generator().manual_seed(0)
    n = 4000
    for L in (3, 4):
        k = torch.tensor([0.2, 0.4], dtype=DT)
        s0 = torch.where(torch.rand(2, n, L, L, generator=g, dtype=DT) < 0.5, 1.0, -1.0)
        s = checkerboard_sweep(s0.to(DT), k[:, None], g, sweeps=60)
        for i in range(2):
            e = -_bonds(s[i])  # energy at J = 1
            exact = float(Ising2D(L).brute_force_mean_energy(float(k[i])))
            z = abs(float(e.mean()) - exact) / float(e.std() / math.sqrt(n))
            assert z < K_SE, (L, float(k[i]), float(e.mean()), exact)
    # negative control: too few sweeps from all-up spins at K = 0.2 keep the cold start's energy
    s = checkerboard_sweep(torch.ones(n, 4, 4, dtype=DT), torch.tensor(0.2, dtype=DT), g, sweeps=0)
    exact = float(Ising2D(4).brute_force_mean_energy(0.2))
    assert abs(float(-_bonds(s).mean()) - exact) > 10


def test_exchange_recovers_the_exact_ising_coupling_posterior_8x8():
    x = _data(8, 0.3, 5)
    exact = _exact_posterior(x)
    # chains started in the exact posterior: a stationarity check of the whole exchange step
    # (50 warmup iterations tune the random-walk scale only)
    s, rhat = _exchange(x, num_chains=16, num_samples=150, num_warmup=50, aux_steps=50,
                        init=_posterior_starts(x, 16))  # fmt: skip
    assert rhat < 1.1
    assert s.attrs["exact_auxiliary"] is False and s.attrs["auxiliary"] == "heat-bath sweeps"
    assert s.attrs["auxiliary_check"]["passed"], s.attrs["auxiliary_check"]
    assert s.sites["J"].shape == (16, 150)
    z_mean, z_sd = _z(s.sites["J"], exact)
    assert z_mean < K_SE and z_sd < K_SE, (z_mean, z_sd, float(s.sites["J"].mean()), exact)


def test_dropping_log_z_or_one_sweep_auxiliaries_fail_the_same_check():
    x = _data(8, 0.3, 5)
    exact = _exact_posterior(x)
    # 1) log Z(J) dropped: the unnormalised likelihood exp(J S), sampled with batched hmc
    S = float(_bonds(x).sum())

    def no_log_z():
        J = pyro.sample("J", dist.Uniform(torch.tensor(PRIOR[0], dtype=DT), PRIOR[1]))
        pyro.factor("lik", J * S)

    s = gibbsebm.sample(no_log_z, "hmc", num_chains=16, num_samples=100, num_warmup=100,
                        seed=1, progress=False, warn=False)  # fmt: skip
    assert max(_z(s.sites["J"], exact)) > K_SE
    # 2) one-sweep auxiliary chains: w stays next to the data and the Z's no longer cancel
    s, rhat = _exchange(x, num_chains=16, num_samples=150, num_warmup=50, aux_steps=1,
                        init=_posterior_starts(x, 16))  # fmt: skip
    assert max(_z(s.sites["J"], exact)) > K_SE or rhat > 1.1
    # ... and the run says so itself: its auxiliary draws stay closer to the data than
    # draws of 4 sweeps (the sign test of auxiliary_memory_check)
    assert not s.attrs["auxiliary_check"]["passed"], s.attrs["auxiliary_check"]


def test_one_sweep_auxiliaries_raise_the_sampling_warning():
    x = _data(8, 0.3, 5)
    with pytest.warns(gibbsebm.SamplingWarning, match="remember the data"):
        gibbsebm.sample(_model, "exchange", model_args=(x,), num_chains=32, num_samples=10,
                        num_warmup=10, seed=1, aux_steps=1, init=_posterior_starts(x, 32),
                        progress=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("J0", [0.3, 0.4, 0.5])
def test_exchange_ising_coupling_posterior_near_and_above_critical(J0):
    # 0.44 is the critical coupling: the auxiliary chains mix slowest around it, so the
    # double-MH bias is largest there; 200 sweeps (the default) must keep it within the errors
    x = _data(8, J0, 5)
    exact = _exact_posterior(x)
    s, rhat = _exchange(x, num_chains=32, num_samples=300, num_warmup=200, aux_steps=200)
    assert rhat < 1.1
    assert s.attrs["auxiliary_check"]["passed"], s.attrs["auxiliary_check"]
    z_mean, z_sd = _z(s.sites["J"], exact)
    assert z_mean < K_SE and z_sd < K_SE, (z_mean, z_sd, float(s.sites["J"].mean()), exact)


def test_exchange_refuses_the_options_it_does_not_support():
    x = torch.ones(1, 8, 8, dtype=DT)
    for bad in ({"thin": 2}, {"executor": "local"}, {"checkpoint": "ckpt"}):
        with pytest.raises(ValueError, match="exchange"):
            gibbsebm.sample(_model, "exchange", model_args=(x,), num_chains=2, num_samples=2,
                            num_warmup=0, progress=False, **bad)  # fmt: skip
