"""k-means as a latent-variable energy-based model.

With centroids :math:`c_1, \\dots, c_K` (the columns of :math:`W`) and a one-hot latent
:math:`z`,

.. math::

    E(y, z) = \\lVert y - W z \\rVert^2, \\qquad
    F_\\beta(y) = -\\frac1\\beta \\log \\sum_{k=1}^K e^{-\\beta \\lVert y - c_k \\rVert^2}.

At :math:`\\beta = \\infty` the free energy is :math:`\\min_k \\lVert y - c_k\\rVert^2`, the
k-means distortion of :math:`y`, with the hard assignment as argmin; at finite
:math:`\\beta` it is the soft-assignment free energy, and
:math:`p_\\beta(z = k \\mid y) = \\operatorname{softmax}_k(-\\beta \\lVert y - c_k\\rVert^2)`
are the responsibilities. Minimising :math:`\\sum_n F_\\beta(y_n)` over the centroids is
EM for an isotropic Gaussian mixture with variance :math:`1 / (2\\beta)` and equal weights
(deterministic annealing when :math:`\\beta` is raised step by step); at
:math:`\\beta = \\infty` it is Lloyd's algorithm.

References
----------
.. [1] Y. LeCun, S. Chopra, R. Hadsell, M. Ranzato, F. J. Huang, "A Tutorial on
   Energy-Based Learning", 2006 (k-means as a latent-variable EBM).
.. [2] K. Rose, "Deterministic annealing for clustering, compression, classification,
   regression, and related optimization problems", Proc. IEEE 86(11), 1998.
.. [3] S. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch.distributions import constraints

from .._validation import as_beta_tensor, check_beta, check_finite
from ..latent import DiscreteLatent, FreeEnergy, free_energy
from .base import EnergyModel

__all__ = ["KMeansEnergy", "KMeansFit", "fit_kmeans"]


class KMeansEnergy(EnergyModel):
    """k-means energy :math:`E(y, z) = \\lVert y - W z\\rVert^2` with one-hot :math:`z`.

    As a :class:`gibbsebm.Gibbs` energy (``Gibbs(KMeansEnergy(C), beta)``) the latent is
    summed out through :meth:`tempered_energy`, so :math:`p_\\beta(y)` is the equal-weight
    mixture of :math:`\\mathcal N(c_k, I / (2\\beta))`, with exact
    :math:`\\log Z(\\beta) = \\log K + \\tfrac d2 \\log(\\pi / \\beta)` and exact sampling.

    Parameters
    ----------
    centroids : Tensor
        Centroids :math:`c_k`, shape ``(K, d)`` (the rows; :math:`W = C^\\top`).

    Examples
    --------
    >>> import math, torch
    >>> km = KMeansEnergy(torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
    >>> y = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    >>> f = km.free_energy(y, math.inf)
    >>> f.value, km.assign(y)
    (tensor([1., 2.]), tensor([0, 1]))
    >>> km.soft_assignments(y, 1.0).argmax(-1)
    tensor([0, 1])
    """

    support = constraints.real_vector

    def __init__(self, centroids: torch.Tensor) -> None:
        super().__init__()
        c = torch.as_tensor(centroids)
        if not c.dtype.is_floating_point:
            c = c.to(torch.get_default_dtype())
        if c.dim() != 2 or c.shape[0] < 1:
            raise ValueError(f"centroids must have shape (K, d) with K >= 1, got {tuple(c.shape)}")
        check_finite(c, "centroids")
        self.register_buffer("centroids", c)
        self.event_shape = torch.Size([c.shape[1]])

    @property
    def num_clusters(self) -> int:
        return self.centroids.shape[0]

    def _check_y(self, y: torch.Tensor) -> None:
        if y.dim() != 2 or y.shape[1] != self.centroids.shape[1]:
            raise ValueError(
                f"y must have shape (N, {self.centroids.shape[1]}), got {tuple(y.shape)}"
            )

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\lVert y - W z\\rVert^2` for ``y`` ``(N, d)`` and ``z`` ``(N, K)``."""
        r = y - z.to(self.centroids.dtype) @ self.centroids
        return (r * r).sum(-1)

    def latent_values(self) -> torch.Tensor:
        """The K one-hot latent values, shape ``(K, K)``."""
        c = self.centroids
        return torch.eye(c.shape[0], device=c.device, dtype=c.dtype)

    def squared_distances(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\lVert y_n - c_k\\rVert^2`, shape ``(N, K)``."""
        self._check_y(y)
        return torch.cdist(y, self.centroids).pow(2)

    def free_energy(self, y: torch.Tensor, beta: float | torch.Tensor) -> FreeEnergy:
        """:func:`gibbsebm.free_energy` of ``y`` with the one-hot latent enumerated.

        ``beta = math.inf`` gives the distortion :math:`\\min_k \\lVert y - c_k \\rVert^2`
        with the one-hot assignment as ``argmin``.
        """
        self._check_y(y)
        return free_energy(self, y, beta, latent=DiscreteLatent(self.latent_values()))

    def tempered_energy(self, y: torch.Tensor, beta: Any) -> torch.Tensor:
        """Marginal energy :math:`F_\\beta(y)` (closed form), used by :class:`gibbsebm.Gibbs`."""
        b = torch.as_tensor(beta, device=y.device, dtype=y.dtype)
        d2 = torch.cdist(y, self.centroids).pow(2)
        if b.dim() == 1:
            b = b[:, None]
        return -torch.logsumexp(-b * d2, dim=-1) / b.reshape(-1)

    def assign(self, y: torch.Tensor) -> torch.Tensor:
        """Hard assignments :math:`\\arg\\min_k \\lVert y - c_k\\rVert^2`, shape ``(N,)``."""
        return self.squared_distances(y).argmin(-1)

    def soft_assignments(self, y: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
        """Responsibilities :math:`p_\\beta(z = k \\mid y)`, shape ``(N, K)``.

        ``beta = math.inf`` gives the one-hot hard assignments.
        """
        check_beta(beta, allow_inf=True)
        d2 = self.squared_distances(y)
        if not isinstance(beta, torch.Tensor) and math.isinf(float(beta)):
            return torch.nn.functional.one_hot(d2.argmin(-1), d2.shape[-1]).to(d2.dtype)
        b = torch.as_tensor(beta, device=y.device, dtype=d2.dtype)
        return torch.softmax(-(b[:, None] if b.dim() == 1 else b) * d2, dim=-1)

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        """:math:`\\log Z(\\beta) = \\log K + \\tfrac d2 \\log(\\pi/\\beta)` (float64)."""
        b = as_beta_tensor(beta, dtype=torch.float64, device=self.centroids.device)
        k, d = self.centroids.shape
        return math.log(k) + 0.5 * d * torch.log(math.pi / b)

    def exact_sample(self, beta, sample_shape=(), generator=None) -> torch.Tensor:
        """Pick a centroid uniformly, add :math:`\\mathcal N(0, I / (2\\beta))` noise."""
        c = self.centroids
        b = as_beta_tensor(beta, dtype=c.dtype, device=c.device)
        shape = torch.Size(sample_shape) + b.shape
        k = torch.randint(
            c.shape[0], (max(1, shape.numel()),), generator=generator, device=c.device
        )
        noise = torch.randn(
            shape + self.event_shape, generator=generator, device=c.device, dtype=c.dtype
        )
        centres = c[k].reshape(shape + self.event_shape)
        return centres + noise / torch.sqrt(2.0 * b)[..., None]


class KMeansFit(NamedTuple):
    """Result of :func:`fit_kmeans`.

    Attributes
    ----------
    centroids : Tensor
        Fitted centroids, ``(K, d)``.
    responsibilities : Tensor
        :math:`p_\\beta(z = k \\mid y_n)` at the fitted centroids, ``(N, K)`` (one-hot for
        ``beta = inf``).
    objective : Tensor
        :math:`\\frac1N \\sum_n F_\\beta(y_n)` after each iteration, ``(num_iters_run,)``
        (the mean distortion for ``beta = inf``); non-increasing.
    num_iters : int
        Iterations run.
    converged : bool
        Whether the centroids stopped moving (relative change below ``tol``).
    """

    centroids: torch.Tensor
    responsibilities: torch.Tensor
    objective: torch.Tensor
    num_iters: int
    converged: bool


def _responsibilities(d2: torch.Tensor, beta: float) -> torch.Tensor:
    if math.isinf(float(beta)):
        return torch.nn.functional.one_hot(d2.argmin(-1), d2.shape[-1]).to(d2.dtype)
    return torch.softmax(-beta * d2, dim=-1)


def _mean_free_energy(d2: torch.Tensor, beta: float) -> torch.Tensor:
    """(1/N) sum_n F_beta(y_n) from the squared distances (the same as KMeansEnergy's)."""
    if math.isinf(float(beta)):
        return d2.min(-1).values.mean()
    return (-torch.logsumexp(-beta * d2, dim=-1) / beta).mean()


def _kmeans_pp(data: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007) with an explicit generator."""
    n = data.shape[0]
    idx = torch.randint(n, (1,), generator=generator, device=data.device)
    cents = data[idx]
    d2 = torch.cdist(data, cents).pow(2).min(-1).values
    for _ in range(1, k):
        total = d2.sum()
        probs = d2 / total if bool(total > 0) else torch.full_like(d2, 1.0 / n)
        nxt = torch.multinomial(probs, 1, generator=generator)
        cents = torch.cat([cents, data[nxt]], 0)
        d2 = torch.minimum(d2, torch.cdist(data, data[nxt]).pow(2)[:, 0])
    return cents


def fit_kmeans(
    data: torch.Tensor,
    K: int,
    *,
    beta: float = math.inf,
    num_iters: int = 100,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
    tol: float = 1e-7,
) -> KMeansFit:
    """Fit k-means centroids by minimising the (free) energy of the data.

    With :math:`\\beta = \\infty` this is Lloyd's algorithm: assign each point to its nearest
    centroid, move each centroid to the mean of its points (a centroid that loses all its
    points stays where it is). With finite :math:`\\beta` it is EM on the soft-assignment
    free energy: responsibilities :math:`r_{nk} = \\operatorname{softmax}_k(-\\beta
    \\lVert y_n - c_k\\rVert^2)`, then :math:`c_k = \\sum_n r_{nk} y_n / \\sum_n r_{nk}`.
    Both never increase :math:`\\frac1N\\sum_n F_\\beta(y_n)`. Deterministic annealing:
    call it with increasing ``beta``, passing the previous centroids as ``init``.

    Parameters
    ----------
    data : Tensor
        Points, shape ``(N, d)``.
    K : int
        Number of clusters, ``1 <= K <= N``.
    beta : float
        Inverse temperature, > 0 or ``math.inf``.
    num_iters : int
        Maximum number of iterations.
    generator : torch.Generator, optional
        Randomness of the k-means++ initialisation.
    init : Tensor, optional
        Initial centroids ``(K, d)`` instead of k-means++.
    tol : float
        Stop when the largest centroid move is below ``tol`` times the data's scale.

    Returns
    -------
    KMeansFit

    References
    ----------
    .. [1] S. Lloyd, "Least squares quantization in PCM", 1982.
    .. [2] K. Rose, "Deterministic annealing for clustering ...", Proc. IEEE, 1998.
    .. [3] D. Arthur, S. Vassilvitskii, "k-means++: the advantages of careful seeding", 2007.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> data = torch.cat([torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g) + 8])
    >>> fit = fit_kmeans(data, 2, generator=g)
    >>> sorted(round(c) for c in fit.centroids[:, 0].tolist()), fit.converged
    ([0, 8], True)
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or not data.dtype.is_floating_point:
        raise ValueError("data must be a floating-point tensor of shape (N, d)")
    check_finite(data, "data")
    n = data.shape[0]
    if not 1 <= K <= n:
        raise ValueError(f"K must be between 1 and the number of points {n}, got {K}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    check_beta(beta, allow_inf=True)
    if init is None:
        cents = _kmeans_pp(data, K, generator)
    else:
        cents = torch.as_tensor(init).to(device=data.device, dtype=data.dtype).clone()
        if tuple(cents.shape) != (K, data.shape[1]):
            raise ValueError(
                f"init must have shape ({K}, {data.shape[1]}), got {tuple(cents.shape)}"
            )
    scale = data.std(0).max().clamp_min(torch.finfo(data.dtype).tiny)
    history = []
    converged = False
    iters_run = 0
    tiny = torch.finfo(data.dtype).tiny
    for _ in range(num_iters):
        iters_run += 1
        d2 = torch.cdist(data, cents).pow(2)  # (N, K)
        r = _responsibilities(d2, beta)
        mass = r.sum(0)  # (K,)
        new = (r.T @ data) / mass.clamp_min(tiny)[:, None]
        new = torch.where(mass[:, None] > 0, new, cents)  # empty clusters stay put
        move = (new - cents).abs().max()
        cents = new
        history.append(_mean_free_energy(torch.cdist(data, cents).pow(2), beta))
        if bool(move <= tol * scale):
            converged = True
            break
    km = KMeansEnergy(cents)
    return KMeansFit(
        centroids=cents,
        responsibilities=km.soft_assignments(data, beta),
        objective=torch.stack(history),
        num_iters=iters_run,
        converged=converged,
    )
