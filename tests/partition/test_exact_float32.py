"""method="exact" quadrature on float32 distributions (a plain Python beta gives float32).

An outside audit (benchmarks/audit_cases.py) found the trapezoid rule trusted and wrong in
float32: the grid nodes were rounded to float32 while the weights assumed the exact float64
spacing (5.5e-6 nat off with a stated 5.3e-7 on a mode of sd 0.1 at |y| = 4), and the
comparison of two grids, the error estimate, was rounding noise (a ring at beta 4: 4.7e-8
off, stated 7.8e-9). The rule now weights the rounded nodes and the error has a round-off
floor. Truth: the same estimate in float64, where both effects are below 1e-12.
"""

import math

import pytest
import torch

import gibbsebm

CENTRES = torch.tensor([[-4.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
SDS = torch.tensor([0.1, 2.0], dtype=torch.float64)


def width_mixture(y):
    # equal weights, a narrow mode (sd 0.1) at (-4, 0) and a wide one (sd 2) at (4, 0)
    d2 = ((y.unsqueeze(-2) - CENTRES.to(y.dtype)) ** 2).sum(-1)
    sd = SDS.to(y.dtype)
    return -torch.logsumexp(math.log(0.5) - torch.log(2 * math.pi * sd**2) - 0.5 * d2 / sd**2, -1)


def ring(y):
    r = y.pow(2).sum(-1).sqrt()
    return 0.5 * (r - 5.0) ** 2 / 0.3**2


def ring_log_z(beta):
    # int 2 pi r exp(-beta (r - 5)^2 / (2 0.09)) dr over r > 0 (the r < 0 tail is e^-138)
    s = 0.3 / math.sqrt(beta)
    return math.log(2 * math.pi * 5.0 * s * math.sqrt(2 * math.pi))


@pytest.mark.parametrize(
    "energy,beta",
    [(width_mixture, 3.0), (ring, 4.0), (ring, 1.0)],
    ids=["mix-b3", "ring-b4", "ring-b1"],
)
def test_float32_quadrature_covers_the_truth(energy, beta):
    if energy is ring:
        truth = ring_log_z(beta)
    else:  # float64 quadrature: stated error 2e-10
        d64 = gibbsebm.Gibbs(energy, beta=torch.tensor(beta, dtype=torch.float64), event_shape=(2,))
        ref = gibbsebm.log_partition(d64, method="exact", progress=False)
        assert ref.stderr < 1e-8
        truth = ref.log_z
    d32 = gibbsebm.Gibbs(energy, beta=beta, event_shape=(2,))
    assert d32.beta.dtype == torch.float32
    for seed in range(4):
        est = gibbsebm.log_partition(d32, method="exact", seed=seed, progress=False)
        assert est.trusted
        assert abs(est.log_z - truth) <= 3 * est.stderr, (seed, est.log_z - truth)
        assert est.stderr < 2e-6  # float32 resolution, not a vacuous bar
        assert est.diagnostics["roundoff_stderr"] > 0


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_ring_float64_quadrature_covers_the_closed_form(beta):
    d = gibbsebm.Gibbs(ring, beta=torch.tensor(beta, dtype=torch.float64), event_shape=(2,))
    est = gibbsebm.log_partition(d, method="exact", progress=False)
    assert abs(est.log_z - ring_log_z(beta)) <= 3 * est.stderr and est.stderr < 1e-7


def spin_glass(s):
    # 12 +-1 spins, seeded couplings and fields; no closed form, so "exact" enumerates
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 12, generator=g, dtype=torch.float64).triu(1)
    h = 0.1 * torch.randn(12, generator=g, dtype=torch.float64)
    x = 2 * s.to(torch.float64) - 1
    return (-(x @ w * x).sum(-1) - x @ h).to(s.dtype)


def test_float32_enumeration_states_its_round_off():
    from torch.distributions import constraints

    support = constraints.independent(constraints.boolean, 1)
    d64 = gibbsebm.Gibbs(
        spin_glass, beta=torch.tensor(0.44, dtype=torch.float64), event_shape=(12,), support=support
    )
    ref = gibbsebm.log_partition(d64, method="exact", progress=False)
    assert ref.stderr == 0 and ref.diagnostics["source"] == "enumeration"
    # the float32 distribution holds beta = float32(0.44); its exact value is computed in
    # float64 from that beta, and the float32 enumeration must cover it
    beta32 = torch.tensor(0.44, dtype=torch.float32)
    d64_at_32 = gibbsebm.Gibbs(
        spin_glass, beta=beta32.to(torch.float64), event_shape=(12,), support=support
    )
    truth = gibbsebm.log_partition(d64_at_32, method="exact", progress=False).log_z
    d32 = gibbsebm.Gibbs(spin_glass, beta=0.44, event_shape=(12,), support=support)
    est = gibbsebm.log_partition(d32, method="exact", progress=False)
    assert est.trusted and 0 < est.stderr < 1e-4
    assert abs(est.log_z - truth) <= 3 * est.stderr
