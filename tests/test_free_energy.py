"""Free energy of latent-variable EBMs: exact bounds, limits, quadrature and IS error bars."""

import math

import pytest
import torch
from torch.distributions import constraints

from gibbsebm import Gibbs
from gibbsebm.latent import (
    BoxLatent,
    DiscreteLatent,
    FreeEnergy,
    GaussHermiteLatent,
    ImportanceLatent,
    free_energy,
)

DT = torch.float64


def _discrete_problem(device):
    """E(y, z) = -y'Wz - c'z + 0.5 |y - z|^2-like coupling over z in {0,1}^3 (8 values)."""
    g = torch.Generator(device="cpu").manual_seed(3)
    W = torch.randn(4, 3, generator=g, dtype=DT).to(device)
    c = torch.randn(3, generator=g, dtype=DT).to(device)
    z_vals = torch.tensor(
        [[(k >> i) & 1 for i in range(3)] for k in range(8)], dtype=DT, device=device
    )

    def energy(y, z):
        return -((y @ W) * z).sum(-1) - z @ c

    y = torch.randn(6, 4, generator=g, dtype=DT).to(device)
    return energy, y, z_vals


def _brute_force(energy, y, z_vals, beta):
    e = torch.stack([energy(y, z.expand(y.shape[0], -1)) for z in z_vals], 1)  # (N, K)
    return -torch.logsumexp(-beta * e, 1) / beta, e


def test_discrete_matches_brute_force_and_bounds(device):
    energy, y, z_vals = _discrete_problem(device)
    k = z_vals.shape[0]
    f_min = free_energy(energy, y, math.inf, latent=DiscreteLatent(z_vals))
    _, e_all = _brute_force(energy, y, z_vals, 1.0)
    torch.testing.assert_close(f_min.value, e_all.min(1).values)
    torch.testing.assert_close(f_min.argmin, z_vals[e_all.argmin(1)])
    assert f_min.method == "enumeration" and (f_min.stderr == 0).all()
    prev = None
    for beta in (0.05, 0.3, 1.0, 3.0, 10.0, 100.0, 1e4):
        f = free_energy(energy, y, beta, latent=DiscreteLatent(z_vals), max_batch=5)
        ref, _ = _brute_force(energy, y, z_vals, beta)
        torch.testing.assert_close(f.value, ref)  # chunked (max_batch=5) equals brute force
        assert f.argmin is None and (f.stderr == 0).all()
        # min_z E - log|Z| / beta <= F_beta <= min_z E
        assert (f.value <= f_min.value + 1e-12).all()
        assert (f.value >= f_min.value - math.log(k) / beta - 1e-12).all()
        if prev is not None:  # monotone non-decreasing in beta
            assert (f.value >= prev - 1e-12).all()
        prev = f.value
    # converges to the minimum: at beta = 1e4 within log(8)/1e4
    assert (f_min.value - prev).max() <= math.log(k) / 1e4


def test_per_row_beta_and_conditional_energy(device):
    energy, y, z_vals = _discrete_problem(device)
    x = torch.linspace(0.5, 2.0, y.shape[0], dtype=DT, device=device)[:, None]

    def cond_energy(x, y, z):
        return x[:, 0] * energy(y, z)

    betas = torch.linspace(0.2, 3.0, y.shape[0], dtype=DT, device=device)
    f = free_energy(cond_energy, y, betas, x=x, latent=z_vals)
    for i in range(y.shape[0]):
        xi = x[i, 0]
        ref, _ = _brute_force(
            lambda y_, z_, xi=xi: xi * energy(y_, z_), y[i : i + 1], z_vals, betas[i]
        )
        torch.testing.assert_close(f.value[i : i + 1], ref)


def _gauss_latent_energy(y, z):
    return 0.5 * ((y - z) ** 2).sum(-1) + 0.5 * (z**2).sum(-1)


def _gauss_latent_closed_form(y, beta):
    # 0.5|y - z|^2 + 0.5|z|^2 = |z - y/2|^2 + |y|^2 / 4, and int exp(-beta |u|^2) du = (pi/beta)^(D/2)
    d = y.shape[-1]
    return 0.25 * (y**2).sum(-1) - d / (2 * beta) * math.log(math.pi / beta)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_quadrature_matches_closed_form(dim, device):
    g = torch.Generator(device="cpu").manual_seed(dim)
    y = torch.randn(3, dim, generator=g, dtype=DT).to(device)
    for beta in (0.5, 2.0):
        exact = _gauss_latent_closed_form(y, beta)
        # the box holds e^{-beta E} out to ~8 of its standard deviations (truncation
        # ~1e-14); 48 nodes per axis resolve its width 1/sqrt(2 beta) >= 0.5
        ones = torch.ones(dim, dtype=DT, device=device)
        box = BoxLatent(-9 * ones, 9 * ones, order=48)
        f = free_energy(_gauss_latent_energy, y, beta, latent=box)
        assert f.method == "gauss-legendre"
        err = (f.value - exact).abs()
        # the two-order error estimate bounds the actual error, and the rule is accurate
        assert (err <= f.stderr + 1e-12).all() and err.max() < 1e-5
        # Gauss-Hermite centred on the conditional minimiser y/2 with width 1/sqrt(2) at
        # beta = 1 integrates this Gaussian integrand exactly (up to rounding)
        gh = GaussHermiteLatent(center=lambda y: y / 2, scale=2**-0.5, order=6)
        f = free_energy(_gauss_latent_energy, y, beta, latent=gh)
        torch.testing.assert_close(f.value, exact, rtol=1e-12, atol=1e-12)
        assert f.method == "gauss-hermite"


def test_quadrature_error_estimate_detects_a_coarse_rule(device):
    """Negative control: a too-coarse rule is inaccurate, and its error estimate says so."""
    y = torch.tensor([[0.3, -0.2]], dtype=DT, device=device)
    beta = 8.0
    box = BoxLatent(torch.tensor([-8.0, -8.0], dtype=DT), torch.tensor([8.0, 8.0], dtype=DT))
    box = BoxLatent(box.low.to(device), box.high.to(device), order=12)
    f = free_energy(_gauss_latent_energy, y, beta, latent=box)
    err = (f.value - _gauss_latent_closed_form(y, beta)).abs()
    assert err.item() > 1e-3
    # the grid spacing (~2) is far above the integrand's width (0.25): no error is claimed
    assert math.isinf(f.stderr.item())
    fine = free_energy(_gauss_latent_energy, y, beta, latent=box._replace(order=96))
    err = (fine.value - _gauss_latent_closed_form(y, beta)).abs()
    assert err.item() < 1e-6 and err.item() <= fine.stderr.item()


def test_continuous_minimum_and_argmin(device):
    y = torch.tensor([[1.0, -2.0], [0.5, 0.25]], dtype=DT, device=device)
    for spec in (
        BoxLatent(
            torch.tensor([-5.0, -5.0], dtype=DT).to(device), 5 * torch.ones(2, dtype=DT).to(device)
        ),
        GaussHermiteLatent(torch.zeros(2, dtype=DT).to(device), 1.0),
    ):
        f = free_energy(_gauss_latent_energy, y, math.inf, latent=spec)
        assert f.method.endswith("+descent")
        torch.testing.assert_close(f.argmin, y / 2, atol=1e-6, rtol=0)
        torch.testing.assert_close(f.value, 0.25 * (y**2).sum(-1), atol=1e-10, rtol=0)
        assert (f.stderr < 1e-8).all()
    # F_beta -> min_z E as beta -> inf: min_z E - F_beta = (D / 2beta) log(pi / beta) for this
    # Gaussian well (D = 2); negative for beta > pi (a continuous latent's entropy can be
    # negative, so F_beta is not bounded by min_z E as it is for discrete z). Gauss-Hermite nodes shrink like 1/sqrt(beta) and follow the
    # well; a fixed box grid of spacing 10/64 stops resolving it at beta = 100.
    e_min = 0.25 * (y**2).sum(-1)
    gh = GaussHermiteLatent(center=lambda y: y / 2, scale=2**-0.5, order=4)
    ones = torch.ones(2, dtype=DT, device=device)
    prev_gap = None
    for beta in (1.0, 10.0, 100.0, 1e4):
        gap = e_min - free_energy(_gauss_latent_energy, y, beta, latent=gh).value
        torch.testing.assert_close(
            gap, torch.full_like(gap, math.log(math.pi / beta) / beta), atol=1e-10, rtol=1e-10
        )
        if prev_gap is not None and beta > 10:
            assert (gap.abs() < prev_gap.abs()).all()
        prev_gap = gap
        box = free_energy(_gauss_latent_energy, y, beta, latent=BoxLatent(-5 * ones, 5 * ones, 64))
        box_err = (e_min - box.value - gap).abs()
        # honest error estimate, even at beta = 1e4 (plus the mass outside the box, which it
        # does not see: < 1e-7 here at beta = 1)
        assert (box_err <= box.stderr + 1e-7).all()
    assert box_err.min() > 1e-3  # ... where the fixed grid has failed, and says so
    assert torch.isinf(box.stderr).all()


def test_importance_sampling_stderr_covers_truth(device):
    """z-scores of independent IS estimates against the closed form are standard normal."""
    dim = 6
    g = torch.Generator(device=device).manual_seed(11)
    y = torch.randn(40, dim, generator=g, dtype=DT, device=device)
    beta = 1.0
    q = torch.distributions.Independent(
        torch.distributions.Normal(
            torch.zeros(dim, dtype=DT, device=device), torch.ones(dim, dtype=DT, device=device)
        ),
        1,
    )
    f = free_energy(_gauss_latent_energy, y, beta, latent=ImportanceLatent(q, 4000, g))
    assert f.method == "importance" and f.argmin is None
    z = (f.value - _gauss_latent_closed_form(y, beta)) / f.stderr
    # 40 z-scores: |z| < 4 for all (p(any |z| > 4) ~ 40 * 6e-5), and mean z^2 near 1
    # (log Zhat is biased down by ~var/2, small here next to the stderr)
    assert z.abs().max() < 4.0
    assert 0.5 < (z**2).mean() < 1.6
    # the same draws, but a stderr claimed 10x too small, must fail the same check
    assert (z * 10).abs().max() > 4.0

    # per-row proposals (batch shape (N,)) and the minimum over draws + descent
    q_rows = torch.distributions.Independent(
        torch.distributions.Normal(y / 2, torch.full_like(y, 0.8)), 1
    )
    f2 = free_energy(_gauss_latent_energy, y, beta, latent=ImportanceLatent(q_rows, 2000, g))
    z2 = (f2.value - _gauss_latent_closed_form(y, beta)) / f2.stderr
    assert z2.abs().max() < 4.0
    assert (f2.stderr < f.stderr).all()  # the centred proposal is better
    fm = free_energy(_gauss_latent_energy, y[:3], math.inf, latent=ImportanceLatent(q, 500, g))
    torch.testing.assert_close(fm.argmin, y[:3] / 2, atol=1e-6, rtol=0)


def test_result_fields_are_the_same_for_every_method(device):
    y = torch.zeros(2, 1, dtype=DT, device=device)
    specs = [
        torch.tensor([[0.0], [1.0]], dtype=DT, device=device),
        BoxLatent(
            torch.tensor([-4.0], dtype=DT, device=device),
            torch.tensor([4.0], dtype=DT, device=device),
        ),
        GaussHermiteLatent(torch.zeros(1, dtype=DT, device=device), 1.0),
        ImportanceLatent(
            torch.distributions.Independent(
                torch.distributions.Normal(torch.zeros(1, dtype=DT, device=device), 1.0), 1
            ),
            64,
            torch.Generator(device=device).manual_seed(0),
        ),
    ]
    for spec in specs:
        for beta in (1.0, math.inf):
            f = free_energy(_gauss_latent_energy, y, beta, latent=spec)
            assert isinstance(f, FreeEnergy) and f._fields == (
                "value",
                "stderr",
                "argmin",
                "method",
            )
            assert f.value.shape == (2,) and f.stderr.shape == (2,)
            assert (f.argmin is None) == (beta != math.inf)
            if f.argmin is not None:
                assert f.argmin.shape == (2, 1)


def test_free_energy_is_differentiable(device):
    energy, y, z_vals = _discrete_problem(device)
    y = y.clone().requires_grad_(True)
    f = free_energy(energy, y, 2.0, latent=z_vals)
    (g,) = torch.autograd.grad(f.value.sum(), y)
    # dF/dy = E_{p(z|y)}[dE/dy]: check against finite differences
    eps = 1e-6
    dy = torch.zeros_like(y)
    dy[0, 1] = eps
    fd = (
        free_energy(energy, y + dy, 2.0, latent=z_vals).value[0]
        - free_energy(energy, y - dy, 2.0, latent=z_vals).value[0]
    ) / (2 * eps)
    torch.testing.assert_close(g[0, 1], fd.detach(), rtol=1e-6, atol=1e-8)
    # dF/dbeta = H(p_beta(z | y)) / beta^2 >= 0 (the entropy of the latent posterior)
    beta = torch.full((y.shape[0],), 2.0, dtype=DT, device=device, requires_grad=True)
    f = free_energy(energy, y.detach(), beta, latent=z_vals)
    (gb,) = torch.autograd.grad(f.value.sum(), beta)
    _, e_all = _brute_force(energy, y.detach(), z_vals, 2.0)
    p = torch.softmax(-2.0 * e_all, 1)
    entropy = -(p * torch.log(p)).sum(1)
    torch.testing.assert_close(gb, entropy / 4.0)


@pytest.mark.parametrize(
    "beta, match",
    [
        (0.0, "beta"),
        (-1.0, "beta"),
        (math.nan, "NaN"),
        (torch.tensor([1.0, math.inf, 1.0]), "mixes"),
    ],
)
def test_bad_beta_raises(beta, match):
    y = torch.zeros(3, 1)
    with pytest.raises(ValueError, match=match):
        free_energy(_gauss_latent_energy, y, beta, latent=torch.zeros(2, 1))


def test_bad_inputs_raise():
    y = torch.zeros(3, 1)
    z = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        free_energy(_gauss_latent_energy, y, torch.ones(4), latent=z)
    with pytest.raises(ValueError, match="one value per input"):
        free_energy(lambda y, z: (y - z).sum(), y, 1.0, latent=z)
    with pytest.raises(ValueError, match="floating-point"):
        free_energy(lambda y, z: (y - z).sum(-1).long(), y, 1.0, latent=z)
    with pytest.raises(ValueError, match="NaN"):
        free_energy(lambda y, z: (y - z).sum(-1) * math.nan, y, 1.0, latent=z)
    with pytest.raises(ValueError, match="needs 2"):
        free_energy(lambda y: y.sum(-1), y, 1.0, latent=z)
    with pytest.raises(ValueError, match="x must be"):
        free_energy(lambda x, y, z: y.sum(-1), y, 1.0, x=torch.zeros(2, 1), latent=z)
    with pytest.raises(ValueError, match="dimensions 1 to 3"):
        free_energy(
            _gauss_latent_energy,
            torch.zeros(3, 4),
            1.0,
            latent=BoxLatent(torch.zeros(4), torch.ones(4)),
        )
    with pytest.raises(ValueError, match="latent must be"):
        free_energy(_gauss_latent_energy, y, 1.0, latent="z")
    with pytest.raises(ValueError, match="callable"):
        free_energy(3.0, y, 1.0, latent=z)
    bilinear = torch.nn.Bilinear(1, 1, 1)  # float32 parameters
    with pytest.raises(ValueError, match="y has dtype torch.float64"):
        free_energy(bilinear, y.double(), 1.0, latent=z.double())


def test_gibbs_with_discrete_latent_is_the_exact_mixture(device):
    """Gibbs(E(y, z), latent=...) is the marginal: a 2-component Gaussian mixture."""
    mus = torch.tensor([[-1.0, 0.5], [2.0, 0.0]], dtype=DT, device=device)
    costs = torch.tensor([0.0, 0.7], dtype=DT, device=device)
    z_vals = torch.tensor([0, 1], device=device)

    def energy(y, z):
        return 0.5 * ((y - mus[z]) ** 2).sum(-1) + costs[z]

    beta = 1.7
    d = Gibbs(energy, beta, event_shape=(2,), latent=DiscreteLatent(z_vals))
    # p_beta(y) = sum_z w_z N(y; mu_z, I/beta), w_z ∝ exp(-beta c_z);
    # log Z = log sum_z exp(-beta c_z) + (d/2) log(2 pi / beta)
    log_z = torch.logsumexp(-beta * costs, 0) + math.log(2 * math.pi / beta)
    d = d.attach_log_partition(log_z)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=-beta * costs),
        torch.distributions.Independent(
            torch.distributions.Normal(mus, torch.full_like(mus, beta**-0.5)), 1
        ),
    )
    y = torch.randn(
        9, 2, dtype=DT, generator=torch.Generator(device=device).manual_seed(1), device=device
    )
    torch.testing.assert_close(d.log_prob(y), mix.log_prob(y))
    # the ladder: free energies at per-row betas through Gibbs.at
    ladder = d.at(torch.tensor([0.5, 1.7], dtype=DT, device=device))
    e = ladder.energy_of(y[:, None, :])
    for j, b in enumerate((0.5, 1.7)):
        ref = free_energy(energy, y, b, latent=z_vals).value
        torch.testing.assert_close(e[:, j], ref)


def test_gibbs_discrete_y_discrete_latent_enumeration(device):
    """A tiny RBM-like model: Gibbs over y in {0,1}^3 with z in {0,1}^2 summed out."""
    g = torch.Generator(device="cpu").manual_seed(5)
    # a plain function carries no dtype: Gibbs enumerates y in the default dtype
    W = torch.randn(3, 2, generator=g).to(device)
    z_vals = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], device=device)

    def energy(y, z):
        return -((y @ W) * z).sum(-1)

    d = Gibbs(energy, 1.3, event_shape=(3,), support=constraints.boolean, latent=z_vals)
    ys = d.enumerate_support()
    joint = torch.stack([-1.3 * energy(ys, z.expand(ys.shape[0], -1)) for z in z_vals], 1)
    ref = torch.logsumexp(joint, 1)
    ref = ref - torch.logsumexp(ref, 0)
    torch.testing.assert_close(d.log_prob(ys), ref)


def test_top_level_name_is_the_function():
    """``gibbsebm.free_energy`` is the function; the latent types live in ``gibbsebm.latent``."""
    import gibbsebm
    import gibbsebm.latent as module

    z = torch.tensor([[0.0], [1.0]])
    f = gibbsebm.free_energy(lambda y, z: (y * z).sum(-1), torch.ones(1, 1), 1.0, latent=z)
    torch.testing.assert_close(f.value, -torch.log1p(torch.exp(torch.tensor([-1.0]))))
    assert gibbsebm.free_energy is module.free_energy
    assert module.BoxLatent is BoxLatent and gibbsebm.DiscreteLatent is DiscreteLatent


def test_gibbs_with_continuous_latent_on_a_ladder(device):
    """Gibbs over y with a Gaussian latent integrated by quadrature, at several betas.

    p_beta(y) ∝ exp(-beta |y|^2 / 4) is N(0, 2/beta I): with the closed-form log Z attached,
    log_prob must equal that density at every rung (per-row betas reach the quadrature).
    """
    betas = torch.tensor([0.5, 1.0, 3.0], dtype=DT, device=device)
    gh = GaussHermiteLatent(center=lambda y: y / 2, scale=2**-0.5, order=5)
    d = Gibbs(_gauss_latent_energy, betas, event_shape=(2,), latent=gh)
    # exp(-beta F_beta(y)) = (pi/beta)^(D/2) exp(-beta |y|^2 / 4), D = 2, so
    # log Z_beta = log(pi/beta) + log(4 pi/beta)
    log_z = torch.log(math.pi / betas) + torch.log(4 * math.pi / betas)
    d = d.attach_log_partition(log_z)
    y = torch.randn(
        6, 1, 2, dtype=DT, device=device, generator=torch.Generator(device=device).manual_seed(2)
    )
    ref = torch.distributions.Independent(
        torch.distributions.Normal(
            torch.zeros(3, 2, dtype=DT, device=device), (2 / betas)[:, None].sqrt().expand(3, 2)
        ),
        1,
    ).log_prob(y)
    torch.testing.assert_close(d.log_prob(y), ref)
