"""The two-dimensional Ising model on an L x L torus, with its exact log Z for any L.

.. math::

    E(s) = -J \\sum_{i,j} s_{ij}\\,(s_{i+1,j} + s_{i,j+1}), \\qquad s_{ij} \\in \\{-1, +1\\},

indices taken mod L (2N bond terms for N = L^2 sites). The exact partition function of the
finite periodic lattice is Kaufman's (1949) formula, evaluated here in log space; two
independent exact routes (the row transfer matrix and brute-force enumeration) are provided
to cross-check it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from .._validation import as_beta_tensor
from ..constraints import spin
from .base import EnergyModel

__all__ = ["Ising2D", "BETA_CRITICAL", "checkerboard_sweep", "sublattice_masks"]

#: Critical inverse temperature of the square-lattice Ising model with J = 1,
#: :math:`\beta_c = \tfrac12 \log(1 + \sqrt 2) \approx 0.4407` (Onsager 1944; Kramers-Wannier
#: self-duality :math:`\sinh 2\beta_c J = 1`).
BETA_CRITICAL: float = 0.5 * math.log1p(math.sqrt(2.0))

#: Largest L for the transfer matrix (a dense symmetric 2^L x 2^L eigenproblem).
MAX_TRANSFER_L = 12
#: Largest L for brute-force enumeration (2^(L^2) states).
MAX_BRUTE_FORCE_L = 4


def _log2cosh(h: torch.Tensor) -> torch.Tensor:
    """:math:`\\log(2\\cosh h)`, stable and smooth for any real h."""
    return torch.logaddexp(h, -h)


def _log2sinh_pos(h: torch.Tensor) -> torch.Tensor:
    """:math:`\\log(2\\sinh h)` for h > 0: :math:`h + \\log(1 - e^{-2h})`."""
    return h + torch.log(-torch.expm1(-2.0 * h))


def _signed_logsumexp(logs: torch.Tensor, signs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """:math:`\\log \\sum_i s_i e^{l_i}` for a positive total (signs in {-1, 0, +1})."""
    m = logs.max(dim=dim, keepdim=True).values
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    total = (signs * torch.exp(logs - m)).sum(dim)
    return torch.log(total) + m.squeeze(dim)


def kaufman_log_partition(coupling: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Kaufman's exact :math:`\\log Z` of the ferromagnetic m x n periodic Ising lattice.

    Differentiable (first and second derivatives are smooth, :math:`\\beta_c` included).

    .. math::

        Z = \\tfrac12 (2 \\sinh 2K)^{mn/2} \\sum_{i=1}^4 Z_i, \\quad
        Z_{1,2} = \\prod_{r=0}^{n-1} 2 \\{\\cosh, \\sinh\\}(\\tfrac m2 \\gamma_{2r+1}), \\quad
        Z_{3,4} = \\prod_{r=0}^{n-1} 2 \\{\\cosh, \\sinh\\}(\\tfrac m2 \\gamma_{2r}),

    with :math:`\\cosh\\gamma_r = \\cosh 2K \\coth 2K - \\cos(\\pi r / n)` (:math:`\\gamma_r > 0`)
    for :math:`r \\ne 0` and the *signed* :math:`\\gamma_0 = 2K + \\log\\tanh K`, which is
    negative above the critical temperature (:math:`K < K_c`), so that :math:`Z_4 < 0` there.
    In log space the k = 0 factor of :math:`Z_4` is written as
    :math:`2\\cosh(\\tfrac m2\\gamma_0) \\tanh(\\tfrac m2 \\gamma_0)`: the sign and the zero of
    :math:`Z_4` at :math:`K_c` then sit in a bounded smooth factor and the four terms are
    summed with their signs after subtracting the largest log.

    Parameters
    ----------
    coupling : Tensor
        :math:`K = \\beta J > 0`, float64, any shape.
    m, n : int
        Number of rows and columns (>= 2).

    Returns
    -------
    Tensor
        :math:`\\log Z`, same shape as ``coupling``.

    References
    ----------
    B. Kaufman, "Crystal statistics. II. Partition function evaluated by spinor analysis",
    Phys. Rev. 76, 1232 (1949). P. D. Beale, "Exact distribution of energies in the
    two-dimensional Ising model", Phys. Rev. Lett. 76, 78 (1996), eqs. (2)-(4).

    Examples
    --------
    >>> import torch
    >>> k = torch.tensor([0.1, 1.0], dtype=torch.float64)
    >>> kaufman_log_partition(k, 2, 2)  # 2 x 2 torus, bonds doubled: log(2 e^8K + 12 + 2 e^-8K)
    tensor([2.8536, 8.6952], dtype=torch.float64)
    """
    K = coupling.unsqueeze(-1)  # (..., 1)
    dtype, device = coupling.dtype, coupling.device
    two_k = 2.0 * K
    # log cosh(2K), coth(2K) and sech(2K) without overflow for large K.
    log_cosh_2k = two_k + torch.log1p(torch.exp(-2.0 * two_k)) - math.log(2.0)
    coth_2k = 1.0 / torch.tanh(two_k)
    sech_2k = 2.0 * torch.exp(-two_k) / (1.0 + torch.exp(-2.0 * two_k))

    def gamma(r: torch.Tensor) -> torch.Tensor:
        # acosh(x) = log x + log(1 + sqrt(1 - x^-2)), x = cosh2K coth2K - cos(pi r / n) > 1
        c = torch.cos(math.pi * r / n)
        log_x = log_cosh_2k + torch.log(coth_2k - c * sech_2k)
        return log_x + torch.log1p(torch.sqrt(-torch.expm1(-2.0 * log_x)))

    r_odd = torch.arange(1, 2 * n, 2, dtype=dtype, device=device)
    r_even = torch.arange(2, 2 * n, 2, dtype=dtype, device=device)
    h_odd = 0.5 * m * gamma(r_odd)
    h_even = 0.5 * m * gamma(r_even)
    y0 = 0.5 * m * (two_k + torch.log(torch.tanh(K)))  # signed gamma_0 term
    l1 = _log2cosh(h_odd).sum(-1)
    l2 = _log2sinh_pos(h_odd).sum(-1)
    l3 = (_log2cosh(y0) + _log2cosh(h_even).sum(-1, keepdim=True)).squeeze(-1)
    l4 = (_log2cosh(y0) + _log2sinh_pos(h_even).sum(-1, keepdim=True)).squeeze(-1)
    logs = torch.stack([l1, l2, l3, l4], -1)
    top = logs.detach().max(-1, keepdim=True).values
    weights = torch.exp(logs - top)
    total = (
        weights[..., 0]
        + weights[..., 1]
        + weights[..., 2]
        + torch.tanh(y0[..., 0]) * weights[..., 3]
    )
    log_2sinh_2k = two_k[..., 0] + torch.log(-torch.expm1(-2.0 * two_k[..., 0]))
    return -math.log(2.0) + 0.5 * m * n * log_2sinh_2k + top[..., 0] + torch.log(total)


@functools.lru_cache(maxsize=32)
def _colouring(L: int) -> tuple[int, ...]:
    """A proper colouring of the L x L torus graph, greedy in row-major order.

    Even L gives the two checkerboard sublattices; odd L (the torus is then not bipartite)
    gets extra colours along the seams (four with this order). Each colour class is an
    independent set of sites.
    """
    colour: dict[tuple[int, int], int] = {}
    for i in range(L):
        for j in range(L):
            used = {
                colour.get(((i + di) % L, (j + dj) % L))
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))
            }
            c = 0
            while c in used:
                c += 1
            colour[(i, j)] = c
    return tuple(colour[(i, j)] for i in range(L) for j in range(L))


def sublattice_masks(L: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean masks ``(K, L, L)`` of independent sets that cover the L x L torus.

    No two nearest neighbours (indices mod L) share a mask, so all the spins of one mask can
    be updated at once given the others: ``K = 2`` (the checkerboard) for even L, ``K = 4``
    for odd L >= 3, whose torus is not bipartite (a greedy colouring, see ``_colouring``).

    Examples
    --------
    >>> sublattice_masks(4).shape, sublattice_masks(5).shape
    (torch.Size([2, 4, 4]), torch.Size([4, 5, 5]))
    """
    flat = _colouring(L)
    k = max(flat) + 1
    c = torch.tensor(flat, device=device).reshape(L, L)
    return c[None] == torch.arange(k, device=device)[:, None, None]


def checkerboard_sweep(
    s: torch.Tensor,
    coupling: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    sweeps: int = 1,
) -> torch.Tensor:
    """Heat-bath (Gibbs) sweeps of many Ising lattices at once, one sublattice at a time.

    Each spin of a sublattice (:func:`sublattice_masks`) is redrawn from its exact conditional
    :math:`P(s_{ij} = +1 \\mid \\text{rest}) = \\sigma(2 K n_{ij})`, with :math:`n_{ij}` the sum
    of its four neighbours on the torus and :math:`K = \\beta J` the lattice's own coupling.
    The spins of one sublattice are conditionally independent, so each sublattice update is an
    exact Gibbs step and a sweep leaves every lattice's Boltzmann distribution
    :math:`\\propto e^{K \\sum s_{ij}(s_{i+1,j} + s_{i,j+1})}` invariant (and is irreducible
    and aperiodic for finite K).

    Parameters
    ----------
    s : Tensor
        Spins in {-1, +1} shaped ``(..., L, L)``, any leading (chain, replica) dimensions.
    coupling : Tensor
        :math:`K = \\beta J` per lattice, broadcastable to ``s.shape[:-2]`` (e.g. ``(C, 1)``
        for ``s`` shaped ``(C, n, L, L)``: one coupling per chain).
    generator : torch.Generator, optional
        Source of the uniforms.
    sweeps : int
        Number of full sweeps.

    Returns
    -------
    Tensor
        The new spins, shape and dtype of ``s`` (``s`` is not modified).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.ones(3, 4, 4)
    >>> out = checkerboard_sweep(s, torch.tensor([0.0, 0.3, 5.0]), g, sweeps=10)
    >>> out.shape, bool((out[2] == out[2, 0, 0]).all())  # K = 5: practically frozen
    (torch.Size([3, 4, 4]), True)
    """
    if s.dim() < 2 or s.shape[-1] != s.shape[-2]:
        raise ValueError(f"spins must be shaped (..., L, L), got {tuple(s.shape)}")
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 0:
        raise ValueError(f"sweeps must be an int >= 0, got {sweeps!r}")
    L = s.shape[-1]
    sites, nbrs = _sweep_indices(L, s.device)
    k2 = 2.0 * torch.as_tensor(coupling, dtype=s.dtype, device=s.device).expand(s.shape[:-2])
    k2 = k2[..., None]
    flat = s.reshape(tuple(s.shape[:-2]) + (L * L,)).clone()
    for _ in range(sweeps):
        for site, nbr in zip(sites, nbrs):
            field = flat[..., nbr].sum(-1)  # (..., sites of this sublattice)
            u = torch.rand(field.shape, generator=generator, dtype=s.dtype, device=s.device)
            flat[..., site] = (u < torch.sigmoid(k2 * field)).to(s.dtype) * 2 - 1
    return flat.reshape(s.shape)


def _sweep_indices(L: int, device: torch.device) -> tuple[list, list]:
    """Flat site indices of each sublattice and of their four torus neighbours."""
    idx = torch.arange(L * L, device=device).reshape(L, L)
    nbr = torch.stack(
        [idx.roll(1, 0), idx.roll(-1, 0), idx.roll(1, 1), idx.roll(-1, 1)], -1
    ).reshape(L * L, 4)
    sites = [m.reshape(-1).nonzero()[:, 0] for m in sublattice_masks(L, device=device)]
    return sites, [nbr[i] for i in sites]


class Ising2D(EnergyModel):
    """Ising model on an L x L torus: spins in {-1, +1}, exact log Z for any L.

    .. math::

        E(s) = -J \\sum_{i,j=0}^{L-1} s_{ij}\\,(s_{i+1,j} + s_{i,j+1}), \\qquad
        \\text{indices mod } L,

    i.e. 2N bond terms for N = L^2 sites (for L = 2 each pair of neighbours is joined by two
    bonds, as the formula says). Flipping spin (i, j) changes the energy by
    :math:`2 s_{ij} h_{ij}` with the local field :math:`h_{ij} = J (s_{i\\pm1,j} + s_{i,j\\pm1})`.

    The exact log Z is Kaufman's finite-lattice formula (:func:`kaufman_log_partition`),
    computed in log space. It holds for the ferromagnet J > 0; for J < 0 and even L the gauge
    :math:`s_{ij} \\to (-1)^{i+j} s_{ij}` maps the antiferromagnet onto the ferromagnet with
    :math:`|J|`, so the same formula applies; for J < 0 and odd L (a frustrated lattice) use
    :meth:`transfer_matrix_log_partition`. J = 0 gives :math:`N \\log 2`.

    Parameters
    ----------
    L : int
        Linear size, >= 2.
    J : float or Tensor
        Coupling; J > 0 is ferromagnetic. A scalar tensor that requires grad (a Pyro latent
        site) is kept as is: the energy and :meth:`exact_log_partition` are differentiable
        in it, so ``pyro.sample("s", Gibbs(Ising2D(L, J=J)), obs=spins)`` is an exact
        likelihood under NUTS.
    dtype : torch.dtype, optional
        Floating dtype of the energy (default: torch's default dtype).
    device : torch.device, optional
        Device of the energy.

    References
    ----------
    B. Kaufman, Phys. Rev. 76, 1232 (1949). L. Onsager, Phys. Rev. 65, 117 (1944).

    Examples
    --------
    >>> import torch
    >>> ising = Ising2D(3)
    >>> ising(torch.ones(2, 3, 3))  # all aligned: -J * 2N
    tensor([-18., -18.])
    >>> bool(torch.isclose(ising.exact_log_partition(0.4),
    ...                    ising.brute_force_log_partition(0.4)))
    True
    """

    support = spin

    def __init__(
        self,
        L: int,
        J: float | torch.Tensor = 1.0,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or L < 2:
            raise ValueError(f"L must be an integer >= 2, got {L!r}")
        # J may be a tensor that requires grad (a Pyro latent): it is kept as is, so the
        # energy and the exact log Z stay differentiable in J
        J_tensor = J if isinstance(J, torch.Tensor) else None
        J = float(J.detach()) if J_tensor is not None else float(J)
        if not math.isfinite(J):
            raise ValueError(f"J must be a finite number, got {J}")
        dtype = dtype or torch.get_default_dtype()
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        self.L = L
        if J_tensor is not None and J_tensor.requires_grad:
            if J_tensor.numel() != 1:
                raise ValueError(f"J must be a scalar, got shape {tuple(J_tensor.shape)}")
            self.register_buffer("J", J_tensor.reshape(()).to(dtype=dtype, device=device))
        else:
            self.register_buffer("J", torch.tensor(J, dtype=dtype, device=device))
        self._J = J
        self.event_shape = torch.Size([L, L])

    @property
    def num_sites(self) -> int:
        """Number of spins N = L^2."""
        return self.L * self.L

    @property
    def beta_critical(self) -> float:
        """Critical inverse temperature of the infinite lattice, :math:`\\beta_c / |J|`."""
        if self._J == 0.0:
            raise ValueError("J = 0: the model has no phase transition")
        return BETA_CRITICAL / abs(self._J)

    def extra_repr(self) -> str:
        return f"L={self.L}, J={self._J}"

    # ------------------------------------------------------------------ energy
    def _spins(self, s: torch.Tensor) -> torch.Tensor:
        if tuple(s.shape[-2:]) != (self.L, self.L):
            raise ValueError(f"spins must be shaped (N, {self.L}, {self.L}), got {tuple(s.shape)}")
        return s.to(self.J.dtype)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Energy of spins ``s`` shaped ``(N, L, L)``; returns ``(N,)``."""
        s = self._spins(s)
        bonds = s * (torch.roll(s, -1, dims=-2) + torch.roll(s, -1, dims=-1))
        return -self.J * bonds.sum((-2, -1))

    def local_field(self, s: torch.Tensor) -> torch.Tensor:
        """Local field :math:`h_{ij} = J (s_{i+1,j} + s_{i-1,j} + s_{i,j+1} + s_{i,j-1})`.

        Parameters
        ----------
        s : Tensor
            Spins shaped ``(N, L, L)``.

        Returns
        -------
        Tensor
            ``(N, L, L)``; the energy is linear in each spin,
            :math:`E(s) = -s_{ij} h_{ij} + \\text{terms without } s_{ij}`.

        Examples
        --------
        >>> Ising2D(3).local_field(torch.ones(1, 3, 3))[0, 0, 0]
        tensor(4.)
        """
        s = self._spins(s)
        nbr = (
            torch.roll(s, 1, dims=-2)
            + torch.roll(s, -1, dims=-2)
            + torch.roll(s, 1, dims=-1)
            + torch.roll(s, -1, dims=-1)
        )
        return self.J * nbr

    def energy_change_of_flip(self, s: torch.Tensor) -> torch.Tensor:
        """:math:`\\Delta E_{ij} = E(s^{(ij)}) - E(s) = 2 s_{ij} h_{ij}` for every single flip.

        Parameters
        ----------
        s : Tensor
            Spins shaped ``(N, L, L)``.

        Returns
        -------
        Tensor
            ``(N, L, L)``: the energy change of flipping spin (i, j), all at once.

        Examples
        --------
        >>> Ising2D(3).energy_change_of_flip(torch.ones(1, 3, 3))[0, 1, 2]
        tensor(8.)
        """
        s = self._spins(s)
        return 2.0 * s * self.local_field(s)

    # ------------------------------------------------------------------ exact log Z
    def _beta64(self, beta: Any) -> torch.Tensor:
        return as_beta_tensor(beta, dtype=torch.float64, device=self.J.device)

    def _log_z_differentiable(self, b: torch.Tensor) -> torch.Tensor:
        """Exact log Z as a differentiable function of float64 beta."""
        n_sites = self.num_sites
        if self._J == 0.0:
            return n_sites * math.log(2.0) + 0.0 * b
        if self._J < 0 and self.L % 2 == 1:
            raise NotImplementedError(
                "Kaufman's formula covers J > 0 and, by the sublattice gauge, J < 0 on even L; "
                f"for J < 0 on the odd lattice L={self.L} use transfer_matrix_log_partition "
                "(L <= 12)"
            )
        j = self.J.to(torch.float64).abs() if self.J.requires_grad else abs(self._J)
        return kaufman_log_partition(b * j, self.L, self.L)

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        """Exact :math:`\\log Z(\\beta)` by Kaufman's formula, float64, shape of ``beta``.

        Parameters
        ----------
        beta : float or Tensor
            Inverse temperature(s), > 0.

        Returns
        -------
        Tensor
            float64 log partition function, relative accuracy ~1e-14.

        Examples
        --------
        >>> round(float(Ising2D(2).exact_log_partition(1.0)), 6)  # log(2 e^8 + 12 + 2 e^-8) with doubled L=2 bonds
        8.695158
        """
        if self.J.requires_grad:  # differentiable in a latent J (a Pyro site)
            return self._log_z_differentiable(self._beta64(beta))
        with torch.no_grad():
            return self._log_z_differentiable(self._beta64(beta))

    def _derivatives(self, beta: Any, order: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = self._beta64(beta).clone().requires_grad_(True)
        with torch.enable_grad():
            lz = self._log_z_differentiable(b)
            (d1,) = torch.autograd.grad(lz.sum(), b, create_graph=order > 1)
            if order == 1:
                return b.detach(), d1.detach()
            (d2,) = torch.autograd.grad(d1.sum(), b)
        return b.detach(), d2.detach()

    def exact_mean_energy(self, beta: Any) -> torch.Tensor:
        """Exact :math:`\\langle E \\rangle_\\beta = -\\partial_\\beta \\log Z` (float64).

        Differentiates :func:`kaufman_log_partition` with autograd.

        Examples
        --------
        >>> ising = Ising2D(4)
        >>> bool(torch.isclose(ising.exact_mean_energy(0.3), ising.brute_force_mean_energy(0.3)))
        True
        """
        _, d1 = self._derivatives(beta, 1)
        return -d1

    def exact_heat_capacity(self, beta: Any) -> torch.Tensor:
        """Exact heat capacity of the whole lattice (k_B = 1), float64.

        :math:`C = \\beta^2 \\partial^2_\\beta \\log Z = \\beta^2 \\operatorname{Var}_\\beta(E)`,
        by second-order autograd through :func:`kaufman_log_partition`.

        Examples
        --------
        >>> float(Ising2D(8).exact_heat_capacity(BETA_CRITICAL)) > 0
        True
        """
        b, d2 = self._derivatives(beta, 2)
        return b * b * d2

    # ------------------------------------------------------------------ cross-checks
    def transfer_matrix_log_partition(self, beta: Any) -> torch.Tensor:
        """:math:`\\log Z = \\log \\operatorname{Tr} T^L = \\log \\sum_k \\lambda_k^L` (L <= 12).

        :math:`T_{\\sigma\\sigma'} = \\exp(\\tfrac K2 (R(\\sigma) + R(\\sigma'))
        + K \\sigma\\cdot\\sigma')` is the symmetric row-to-row transfer matrix over the
        :math:`2^L` row configurations, with :math:`R(\\sigma) = \\sum_j \\sigma_j\\sigma_{j+1}`
        and :math:`K = \\beta J`. Its log entries are shifted by their maximum before the
        float64 eigendecomposition; :math:`\\lambda_k^L` (possibly negative for J < 0) are
        summed with their signs in log space. T commutes with the global spin flip, so it is
        diagonalised as two :math:`2^{L-1}` blocks (even and odd under the flip). Works for
        any sign of J.

        Examples
        --------
        >>> ising = Ising2D(3)
        >>> bool(torch.isclose(ising.transfer_matrix_log_partition(0.4),
        ...                    ising.brute_force_log_partition(0.4)))
        True
        """
        L = self.L
        if L > MAX_TRANSFER_L:
            raise ValueError(f"transfer matrix is limited to L <= {MAX_TRANSFER_L}, got L={L}")
        b = self._beta64(beta)
        device = b.device
        idx = torch.arange(2**L, device=device)
        rows = ((idx[:, None] >> torch.arange(L, device=device)) & 1).to(torch.float64) * 2 - 1
        intra = (rows * torch.roll(rows, -1, dims=1)).sum(1)  # R(sigma)
        # T commutes with the global flip sigma -> -sigma (index i -> i XOR (2^L - 1)), so it
        # splits into even and odd blocks T[a, a'] +- T[a, -a'] over representatives a with
        # the top bit clear: two eigenproblems of half the size (4x less work).
        half = 2 ** (L - 1)
        rep = rows[:half]
        base = 0.5 * (intra[:half, None] + intra[None, :half]) + rep @ rep.T  # log T / K
        base_flip = 0.5 * (intra[:half, None] + intra[None, :half]) - rep @ rep.T
        out = torch.empty(b.numel(), dtype=torch.float64, device=device)
        for i, beta_i in enumerate(b.reshape(-1)):
            k = beta_i * self._J
            log_t, log_t_flip = k * base, k * base_flip
            shift = torch.maximum(log_t.max(), log_t_flip.max())
            t, t_flip = torch.exp(log_t - shift), torch.exp(log_t_flip - shift)
            lam = torch.cat([torch.linalg.eigvalsh(t + t_flip), torch.linalg.eigvalsh(t - t_flip)])
            logs = L * torch.log(lam.abs())
            signs = torch.sign(lam) ** L
            out[i] = _signed_logsumexp(logs, signs) + L * shift
        return out.reshape(b.shape)

    def _all_energies(self) -> torch.Tensor:
        L = self.L
        if L > MAX_BRUTE_FORCE_L:
            raise ValueError(
                f"brute-force enumeration is limited to L <= {MAX_BRUTE_FORCE_L} "
                f"(2^(L^2) states), got L={L}"
            )
        device = self.J.device
        n = L * L
        idx = torch.arange(2**n, device=device)
        s = ((idx[:, None] >> torch.arange(n, device=device)) & 1).to(torch.float64) * 2 - 1
        s = s.reshape(-1, L, L)
        bonds = s * (torch.roll(s, -1, dims=-2) + torch.roll(s, -1, dims=-1))
        return -self._J * bonds.sum((-2, -1))

    def brute_force_log_partition(self, beta: Any) -> torch.Tensor:
        """:math:`\\log \\sum_s e^{-\\beta E(s)}` by enumerating all :math:`2^{L^2}` states (L <= 4).

        Examples
        --------
        >>> round(float(Ising2D(2).brute_force_log_partition(1.0)), 6)
        8.695158
        """
        b = self._beta64(beta)
        e = self._all_energies()
        return torch.logsumexp(-b.reshape(-1, 1) * e, dim=-1).reshape(b.shape)

    def brute_force_mean_energy(self, beta: Any) -> torch.Tensor:
        """:math:`\\langle E \\rangle_\\beta` by enumeration (L <= 4), float64."""
        b = self._beta64(beta)
        e = self._all_energies()
        w = torch.softmax(-b.reshape(-1, 1) * e, dim=-1)
        return (w * e).sum(-1).reshape(b.shape)

    def brute_force_heat_capacity(self, beta: Any) -> torch.Tensor:
        """:math:`\\beta^2 \\operatorname{Var}_\\beta(E)` by enumeration (L <= 4), float64."""
        b = self._beta64(beta)
        e = self._all_energies()
        w = torch.softmax(-b.reshape(-1, 1) * e, dim=-1)
        mean = (w * e).sum(-1, keepdim=True)
        var = (w * (e - mean) ** 2).sum(-1)
        return (b.reshape(-1) ** 2 * var).reshape(b.shape)
