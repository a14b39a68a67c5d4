import math

import numpy as np
import pytest
import torch

from gibbsebm import Gibbs
from gibbsebm.energies import BETA_CRITICAL, Ising2D
from gibbsebm.energies.ising import kaufman_log_partition

BETAS = [0.1, 0.4407, BETA_CRITICAL, 1.0]


def loop_energy(s: torch.Tensor, J: float) -> torch.Tensor:
    """The definition, written with explicit loops over sites."""
    L = s.shape[-1]
    out = torch.zeros(s.shape[0], dtype=torch.float64)
    for i in range(L):
        for j in range(L):
            out -= J * s[:, i, j] * (s[:, (i + 1) % L, j] + s[:, i, (j + 1) % L])
    return out


def test_critical_beta_is_self_dual_point():
    assert math.sinh(2 * BETA_CRITICAL) == pytest.approx(1.0, rel=1e-15)
    assert Ising2D(4, J=2.0).beta_critical == pytest.approx(BETA_CRITICAL / 2)


@pytest.mark.parametrize("J", [1.0, 0.7, -1.3])
def test_energy_matches_definition(J):
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 2, (16, 5, 5), generator=g).to(torch.float64) * 2 - 1
    ising = Ising2D(5, J=J, dtype=torch.float64)
    torch.testing.assert_close(ising(s), loop_energy(s, J), rtol=0, atol=1e-12)
    assert ising(torch.ones(3, 5, 5, dtype=torch.float64)).tolist() == [-2 * 25 * J] * 3


@pytest.mark.parametrize("L", [2, 3, 6])
def test_energy_change_of_flip_matches_flipping(L):
    g = torch.Generator().manual_seed(1)
    ising = Ising2D(L, J=0.8)
    s = torch.randint(0, 2, (4, L, L), generator=g).float() * 2 - 1
    delta = ising.energy_change_of_flip(s)
    e0 = ising(s)
    for i in range(L):
        for j in range(L):
            flipped = s.clone()
            flipped[:, i, j] *= -1
            torch.testing.assert_close(delta[:, i, j], ising(flipped) - e0)
    # the energy is linear in each spin with slope -h
    h = ising.local_field(s)
    torch.testing.assert_close(2 * s * h, delta)


@pytest.mark.parametrize("L", [2, 3, 4])
def test_kaufman_matches_brute_force(L):
    ising = Ising2D(L)
    beta = torch.tensor(BETAS + [0.01, 3.0])
    exact = ising.exact_log_partition(beta)
    assert exact.dtype == torch.float64 and exact.shape == beta.shape
    torch.testing.assert_close(exact, ising.brute_force_log_partition(beta), rtol=1e-12, atol=0)


@pytest.mark.parametrize("L", range(2, 11))
def test_kaufman_matches_transfer_matrix(L):
    ising = Ising2D(L)
    beta = torch.tensor([0.1, 0.4407, 1.0], dtype=torch.float64)
    kaufman = ising.exact_log_partition(beta)
    tm = ising.transfer_matrix_log_partition(beta)
    rel = ((kaufman - tm) / tm).abs().max()
    assert rel < 1e-10


def test_negative_coupling():
    # even L: sublattice gauge maps J < 0 onto |J|; odd L is frustrated (no Kaufman formula)
    anti = Ising2D(4, J=-0.7)
    for b in (0.3, 1.0):
        ref = anti.brute_force_log_partition(b)
        torch.testing.assert_close(anti.exact_log_partition(b), ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(anti.transfer_matrix_log_partition(b), ref, rtol=1e-12, atol=0)
    odd = Ising2D(3, J=-0.7)
    torch.testing.assert_close(
        odd.transfer_matrix_log_partition(0.5),
        odd.brute_force_log_partition(0.5),
        rtol=1e-12,
        atol=0,
    )
    with pytest.raises(NotImplementedError, match="transfer_matrix_log_partition"):
        odd.exact_log_partition(0.5)
    free = Ising2D(3, J=0.0)
    torch.testing.assert_close(
        free.exact_log_partition(0.5), torch.tensor(9 * math.log(2), dtype=torch.float64)
    )


def test_mean_energy_and_heat_capacity():
    ising = Ising2D(4)
    beta = torch.tensor(BETAS, dtype=torch.float64)
    u = ising.exact_mean_energy(beta)
    c = ising.exact_heat_capacity(beta)
    torch.testing.assert_close(u, ising.brute_force_mean_energy(beta), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(c, ising.brute_force_heat_capacity(beta), rtol=1e-10, atol=1e-10)
    # five-point finite differences of log Z on a larger lattice (no enumeration possible);
    # truncation error O(h^4) ~ 1e-8 relative at h = 1e-3, round-off ~ 1e-10
    big = Ising2D(16)
    h = 1e-3
    for b in BETAS:
        f = [float(big.exact_log_partition(b + j * h)) for j in (-2, -1, 0, 1, 2)]
        fd1 = -(f[0] - 8 * f[1] + 8 * f[3] - f[4]) / (12 * h)
        fd2 = b * b * (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * h * h)
        assert float(big.exact_mean_energy(b)) == pytest.approx(fd1, rel=1e-6)
        assert float(big.exact_heat_capacity(b)) == pytest.approx(fd2, rel=1e-6)


def test_large_lattice_approaches_onsager():
    # Above T_c finite-size corrections are exponentially small in L: the L = 64 log Z per
    # site must match Onsager's integral (periodic trapezoid rule, spectrally accurate).
    beta = 0.3
    k = beta
    n = 1024
    th = 2 * np.pi * np.arange(n) / n
    t1, t2 = np.meshgrid(th, th)
    integrand = np.log(np.cosh(2 * k) ** 2 - np.sinh(2 * k) * (np.cos(t1) + np.cos(t2)))
    onsager = math.log(2) + 0.5 * integrand.mean()
    per_site = float(Ising2D(64).exact_log_partition(beta)) / 64**2
    assert per_site == pytest.approx(onsager, abs=1e-12)
    # finite at extreme temperatures
    far = Ising2D(50).exact_log_partition(torch.tensor([1e-8, 1000.0]))
    assert torch.isfinite(far).all()
    assert float(far[0]) == pytest.approx(2500 * math.log(2), rel=1e-6)
    assert float(far[1]) == pytest.approx(1000 * 2 * 2500 + math.log(2), rel=1e-12)


def test_kaufman_is_smooth_at_critical_point():
    k = torch.tensor([BETA_CRITICAL], dtype=torch.float64, requires_grad=True)
    lz = kaufman_log_partition(k, 6, 6)
    (d1,) = torch.autograd.grad(lz.sum(), k, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), k)
    assert torch.isfinite(d1).all() and torch.isfinite(d2).all()


def test_validation():
    with pytest.raises(ValueError, match="L must be"):
        Ising2D(1)
    with pytest.raises(ValueError, match="beta"):
        Ising2D(3).exact_log_partition(0.0)
    with pytest.raises(ValueError, match="brute-force"):
        Ising2D(5).brute_force_log_partition(1.0)
    with pytest.raises(ValueError, match="spins must be shaped"):
        Ising2D(3)(torch.ones(2, 4, 4))


def test_gibbs_normalized_and_exact_samples(generator, device):
    ising = Ising2D(3, device=device)
    dist = Gibbs(ising, 0.4)
    states = dist.enumerate_support()
    assert states.shape == (512, 3, 3)
    probs = dist.log_prob(states).double().exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    # Gibbs uses Kaufman's log Z; the enumeration must agree with it
    torch.testing.assert_close(
        dist._enumerated_log_partition().double(), ising.exact_log_partition(0.4), rtol=1e-6, atol=0
    )
    # exact draws (enumeration): sample mean energy within 4 standard errors of the exact one;
    # the same test against the mean energy at beta = 0.5 (negative control) must fail
    n = 20000
    e = ising(dist.sample((n,), generator=generator)).double()
    se = e.std() / math.sqrt(n)
    z = (e.mean() - ising.exact_mean_energy(0.4)) / se
    z_wrong = (e.mean() - ising.exact_mean_energy(0.5)) / se
    assert abs(float(z)) < 4
    assert abs(float(z_wrong)) > 4
