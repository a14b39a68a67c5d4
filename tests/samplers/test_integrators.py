"""Tier 1: the leapfrog integrator and the metrics against closed forms."""

import math

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

from gibbsebm.samplers.integrators import IntegratorState, leapfrog
from gibbsebm.samplers.metrics import as_metric, dense_metric, diagonal_metric

DT = torch.float64


def quadratic(k: torch.Tensor):
    """log p = -sum k y^2 / 2 (independent harmonic oscillators with stiffness k)."""

    def fn(y):
        return -0.5 * (k * y * y).sum(-1)

    return fn


def start(fn, y, p):
    with torch.enable_grad():
        yy = y.clone().requires_grad_(True)
        ld = fn(yy)
        (g,) = torch.autograd.grad(ld.sum(), yy)
    return IntegratorState(y, p, ld.detach(), g)


def test_harmonic_oscillator_trajectory_matches_closed_form(device):
    # H = k y^2 / 2 + minv p^2 / 2: omega = sqrt(k minv),
    # y(t) = y0 cos(wt) + minv p0 / w sin(wt)
    k = torch.tensor([1.0, 4.0, 0.25], dtype=DT, device=device)
    minv = torch.tensor([1.0, 0.5, 3.0], dtype=DT, device=device)
    fn = quadratic(k)
    metric = diagonal_metric(minv)
    y0 = torch.tensor([[1.0, -0.5, 2.0]], dtype=DT, device=device)
    p0 = torch.tensor([[0.3, 1.0, -0.7]], dtype=DT, device=device)
    w = (k * minv).sqrt()
    t_end = 2.0
    errs = []
    for n in (200, 400):
        eps = t_end / n
        s = leapfrog(fn, metric, start(fn, y0, p0), eps, n)
        exact = y0 * torch.cos(w * t_end) + minv * p0 / w * torch.sin(w * t_end)
        errs.append(float((s.position - exact).abs().max()))
    # global error O(eps^2): within 1e-3 at eps = 0.01 and shrinking 4x when eps halves
    assert errs[0] < 1e-3
    assert 3.5 < errs[0] / errs[1] < 4.5


def test_energy_error_is_second_order(device):
    k = torch.logspace(-1, 1, 5, dtype=DT, device=device)
    fn = quadratic(k)
    metric = diagonal_metric(torch.ones(5, dtype=DT, device=device))
    g = torch.Generator(device=device).manual_seed(0)
    y0 = torch.randn(64, 5, generator=g, dtype=DT, device=device)
    p0 = torch.randn(64, 5, generator=g, dtype=DT, device=device)
    h0 = -fn(y0) + metric.kinetic_energy(p0)
    errs = []
    for eps in (0.1, 0.05, 0.025):
        s = leapfrog(fn, metric, start(fn, y0, p0), eps, round(1.0 / eps))
        h1 = -s.logdensity + metric.kinetic_energy(s.momentum)
        errs.append(float((h1 - h0).abs().max()))
    for a, b in zip(errs, errs[1:]):
        assert 3.0 < a / b < 5.0  # halving eps divides the energy error by ~4


def test_reversibility(device):
    # a non-quadratic potential: reversing the momentum retraces the path exactly
    def fn(y):
        return -(0.25 * y**4 - y**2 + 0.3 * y).sum(-1)

    metric = dense_metric(torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=DT, device=device))
    g = torch.Generator(device=device).manual_seed(1)
    y0 = torch.randn(16, 2, generator=g, dtype=DT, device=device)
    p0 = torch.randn(16, 2, generator=g, dtype=DT, device=device)
    fwd = leapfrog(fn, metric, start(fn, y0, p0), 0.05, 40)
    back = leapfrog(fn, metric, start(fn, fwd.position, -fwd.momentum), 0.05, 40)
    torch.testing.assert_close(back.position, y0, atol=1e-10, rtol=0)
    torch.testing.assert_close(-back.momentum, p0, atol=1e-10, rtol=0)


def test_dense_and_diagonal_metrics_agree_on_a_diagonal_matrix(device):
    minv = torch.tensor([0.5, 2.0, 1.5], dtype=DT, device=device)
    fn = quadratic(torch.tensor([1.0, 2.0, 3.0], dtype=DT, device=device))
    y0 = torch.ones(4, 3, dtype=DT, device=device)
    p0 = torch.linspace(-1, 1, 12, dtype=DT, device=device).reshape(4, 3)
    a = leapfrog(fn, diagonal_metric(minv), start(fn, y0, p0), 0.1, 7)
    b = leapfrog(fn, dense_metric(torch.diag(minv)), start(fn, y0, p0), 0.1, 7)
    torch.testing.assert_close(a.position, b.position)
    torch.testing.assert_close(a.momentum, b.momentum)


def test_per_chain_step_sizes_match_separate_runs(device):
    fn = quadratic(torch.tensor([1.0, 3.0], dtype=DT, device=device))
    metric = diagonal_metric(torch.ones(2, dtype=DT, device=device))
    y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=DT, device=device)
    p0 = torch.tensor([[0.0, 1.0], [1.0, 0.2]], dtype=DT, device=device)
    eps = torch.tensor([0.1, 0.03], dtype=DT, device=device)
    both = leapfrog(fn, metric, start(fn, y0, p0), eps, 5)
    for i in range(2):
        one = leapfrog(fn, metric, start(fn, y0[i : i + 1], p0[i : i + 1]), float(eps[i]), 5)
        torch.testing.assert_close(both.position[i : i + 1], one.position)


def test_dense_metric_momentum_covariance_and_kinetic_energy(device):
    minv = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]], dtype=DT)
    minv = minv.to(device)
    m = dense_metric(minv)
    mass = torch.linalg.inv(minv)
    torch.testing.assert_close(m.mass, mass)
    g = torch.Generator(device=device).manual_seed(2)
    n = 200_000
    p = m.sample_momentum(g, torch.zeros(n, 3, dtype=DT, device=device))
    cov = p.T @ p / n
    # sd of a sample covariance entry is sqrt((S_ii S_jj + S_ij^2) / n); allow 5 of them
    sd = ((mass.diag()[:, None] * mass.diag()[None, :] + mass**2) / n).sqrt()
    assert bool(((cov - mass).abs() < 5 * sd).all())
    q = torch.tensor([[1.0, -2.0, 0.5]], dtype=DT, device=device)
    torch.testing.assert_close(m.kinetic_energy(q), 0.5 * (q @ minv * q).sum(-1))
    torch.testing.assert_close(m.velocity(q), q @ minv)


def test_metric_validation(device):
    with pytest.raises(ValueError, match="positive"):
        diagonal_metric(torch.tensor([1.0, -1.0], device=device))
    with pytest.raises(ValueError, match="positive definite"):
        dense_metric(torch.tensor([[1.0, 2.0], [2.0, 1.0]], device=device))
    with pytest.raises(ValueError, match="event shape"):
        as_metric(torch.ones(3, device=device), torch.zeros(4, 2, device=device), 1)
    with pytest.raises(ValueError, match="num_steps"):
        fn = quadratic(torch.ones(1, device=device))
        y = torch.zeros(1, 1, device=device)
        leapfrog(fn, as_metric(None, y, 1), start(fn, y, y), 0.1, 0)


def test_identity_metric_is_unit():
    y = torch.zeros(3, 2, 2)
    m = as_metric(None, y, 2)
    assert m.inverse_mass.shape == (2, 2) and not m.dense
    assert math.isclose(float(m.kinetic_energy(torch.ones(1, 2, 2))[0]), 2.0)
