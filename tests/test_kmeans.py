"""k-means as a latent-variable EBM: the beta = inf (Lloyd) and finite-beta (soft) limits."""

import math

import pytest
import torch

from gibbsebm import Gibbs
from gibbsebm.energies.kmeans import KMeansEnergy, fit_kmeans

DT = torch.float64


def _blobs(device, n_per=40, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]], dtype=DT)
    pts = [c + 0.8 * torch.randn(n_per, 2, generator=g, dtype=DT) for c in centres]
    return torch.cat(pts).to(device)


def _plain_lloyd(data, init, iters):
    """Textbook Lloyd's algorithm, written independently with Python loops."""
    c = init.clone()
    for _ in range(iters):
        labels = []
        for p in data:
            labels.append(min(range(c.shape[0]), key=lambda k, p=p: float(((p - c[k]) ** 2).sum())))
        labels = torch.tensor(labels)
        for k in range(c.shape[0]):
            members = data[labels == k]
            if len(members):
                c[k] = members.mean(0)
    return c, labels


def test_beta_inf_is_distortion_and_assignment(device):
    data = _blobs(device)
    cents = data[[0, 45, 90]].clone()
    km = KMeansEnergy(cents)
    f = km.free_energy(data, math.inf)
    d2 = ((data[:, None, :] - cents[None]) ** 2).sum(-1)  # (N, K) by hand
    torch.testing.assert_close(f.value, d2.min(1).values)
    torch.testing.assert_close(f.argmin, torch.eye(3, dtype=DT, device=device)[d2.argmin(1)])
    torch.testing.assert_close(km.assign(data), d2.argmin(1))
    assert (f.stderr == 0).all() and f.method == "enumeration"


def test_finite_beta_soft_assignments_and_free_energy(device):
    data = _blobs(device)
    cents = data[[0, 45, 90]].clone()
    km = KMeansEnergy(cents)
    d2 = ((data[:, None, :] - cents[None]) ** 2).sum(-1)
    for beta in (0.1, 1.0, 5.0):
        torch.testing.assert_close(km.soft_assignments(data, beta), torch.softmax(-beta * d2, 1))
        f = km.free_energy(data, beta)
        torch.testing.assert_close(f.value, -torch.logsumexp(-beta * d2, 1) / beta)
        # bounds for a 3-valued latent
        assert (f.value <= d2.min(1).values + 1e-12).all()
        assert (f.value >= d2.min(1).values - math.log(3) / beta - 1e-12).all()
    # responsibilities harden into the assignments as beta grows
    hard = km.soft_assignments(data, math.inf)
    assert (km.soft_assignments(data, 1e3) - hard).abs().max() < 1e-6
    # the closed-form marginal energy Gibbs uses equals the enumerated free energy
    torch.testing.assert_close(km.tempered_energy(data, 2.0), km.free_energy(data, 2.0).value)


def test_lloyd_matches_plain_implementation_and_sklearn(device):
    data = _blobs(device)
    init = data[[0, 1, 2]].clone()  # a poor start inside one blob: Lloyd has work to do
    fit = fit_kmeans(data, 3, init=init, num_iters=50)
    ref, labels = _plain_lloyd(data.cpu(), init.cpu(), fit.num_iters)
    torch.testing.assert_close(fit.centroids.cpu(), ref)
    torch.testing.assert_close(fit.responsibilities.argmax(1).cpu(), labels)
    assert fit.converged
    # the distortion never increases
    assert (fit.objective[1:] <= fit.objective[:-1] + 1e-12).all()
    sklearn = pytest.importorskip("sklearn.cluster")
    sk = sklearn.KMeans(3, init=init.cpu().numpy(), n_init=1, algorithm="lloyd", tol=0).fit(
        data.cpu().numpy()
    )
    torch.testing.assert_close(fit.centroids.cpu(), torch.as_tensor(sk.cluster_centers_))
    torch.testing.assert_close(
        fit.objective[-1].cpu() * data.shape[0], torch.tensor(sk.inertia_, dtype=DT)
    )


def test_soft_em_minimises_free_energy_and_anneals_to_lloyd(device):
    data = _blobs(device)
    init = data[[0, 1, 2]].clone()
    fit = fit_kmeans(data, 3, beta=0.5, init=init, num_iters=300)
    assert (fit.objective[1:] <= fit.objective[:-1] + 1e-10).all()
    # at the fixed point the centroids are the responsibility-weighted means
    r = fit.responsibilities
    torch.testing.assert_close(fit.centroids, (r.T @ data) / r.sum(0)[:, None], atol=1e-6, rtol=0)
    # deterministic annealing: raise beta, warm-starting from the previous centroids
    c = init
    for beta in (0.05, 0.2, 1.0, 5.0, 50.0):
        c = fit_kmeans(data, 3, beta=beta, init=c, num_iters=200).centroids
    hard = fit_kmeans(data, 3, init=c, num_iters=50)
    torch.testing.assert_close(c, hard.centroids, atol=1e-6, rtol=0)
    # and reaches the three true blobs (Lloyd from this start would too, here)
    truth = torch.tensor([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]], dtype=DT, device=device)
    assert torch.cdist(truth, c).min(1).values.max() < 0.5


def test_kmeans_gibbs_is_the_exact_mixture(device, generator):
    cents = torch.tensor([[0.0, 0.0], [3.0, -1.0]], dtype=DT, device=device)
    km = KMeansEnergy(cents)
    beta = 0.7
    d = Gibbs(km, beta)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(2, dtype=DT, device=device)),
        torch.distributions.Independent(
            torch.distributions.Normal(cents, torch.full_like(cents, (2 * beta) ** -0.5)), 1
        ),
    )
    y = torch.randn(8, 2, dtype=DT, device=device, generator=generator) * 2
    torch.testing.assert_close(d.log_prob(y), mix.log_prob(y))
    s = d.sample((4000,), generator=generator)
    # exact sampler: mean of the mixture is the centroid mean, within 5 standard errors
    se = s.std(0) / math.sqrt(s.shape[0])
    assert ((s.mean(0) - cents.mean(0)).abs() < 5 * se).all()


def test_fit_kmeans_bad_input():
    data = torch.randn(10, 2)
    with pytest.raises(ValueError, match="K must be"):
        fit_kmeans(data, 11)
    with pytest.raises(ValueError, match="beta"):
        fit_kmeans(data, 2, beta=0.0)
    with pytest.raises(ValueError, match="init must have shape"):
        fit_kmeans(data, 2, init=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="centroids"):
        KMeansEnergy(torch.zeros(3))
