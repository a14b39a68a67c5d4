"""Mass matrices (metrics) of Hamiltonian and Langevin samplers.

The kinetic energy of momentum :math:`p` under a mass matrix :math:`M` is

.. math::

    K(p) = \\tfrac12 p^\\top M^{-1} p, \\qquad p \\sim \\mathcal N(0, M),

and positions move with velocity :math:`\\dot y = M^{-1} p`. A :class:`Metric` is stored by
its *inverse* mass matrix :math:`M^{-1}` (an estimate of the target's covariance, as in Stan
and Pyro) and a factor precomputed once so that drawing momenta costs one multiplication
(diagonal) or one matrix product (dense) per step:

* diagonal: ``inverse_mass`` has the event shape; momenta are ``z / sqrt(inverse_mass)``;
* dense: ``inverse_mass`` is ``(d, d)`` with ``d = prod(event_shape)``; with the Cholesky
  factor :math:`L L^\\top = M^{-1}`, momenta are :math:`p = L^{-\\top} z`, whose covariance is
  :math:`L^{-\\top} L^{-1} = M`.

All functions work on batches ``(C, *event)`` (chains on the leading dimension).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["Metric", "diagonal_metric", "dense_metric", "identity_metric", "as_metric"]


class Metric(NamedTuple):
    """A diagonal or dense mass matrix, stored by its inverse.

    Attributes
    ----------
    inverse_mass : Tensor
        Diagonal: shape ``event_shape``. Dense: shape ``(d, d)``.
    factor : Tensor
        Diagonal: ``1 / sqrt(inverse_mass)`` (event shape). Dense: ``L^{-1}`` (lower
        triangular, ``(d, d)``) where ``L L^T = inverse_mass``, so ``z @ factor`` has
        covariance ``M``.
    dense : bool
        Whether the matrix is dense.
    """

    inverse_mass: torch.Tensor
    factor: torch.Tensor
    dense: bool

    # -- the three operations every Hamiltonian kernel needs ------------------------------
    def sample_momentum(
        self, generator: torch.Generator | None, like: torch.Tensor
    ) -> torch.Tensor:
        """Draw ``p ~ N(0, M)`` with the shape, dtype and device of ``like`` ``(C, *event)``."""
        return self.sample_momentum_and_kinetic(generator, like)[0]

    def sample_momentum_and_kinetic(
        self, generator: torch.Generator | None, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``p ~ N(0, M)`` and return it with its kinetic energy ``(C,)``.

        With :math:`p = F z` (``F`` the factor, :math:`z \\sim \\mathcal N(0, I)`),
        :math:`K(p) = \\tfrac12 z^\\top F^\\top M^{-1} F z = \\tfrac12 \\|z\\|^2`: one
        reduction instead of a pass through :math:`M^{-1}`.
        """
        z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        c = like.shape[0]
        k = 0.5 * torch.linalg.vector_norm(z.reshape(c, -1), dim=1).square()
        if self.dense:
            return (z.reshape(c, -1) @ self.factor).reshape(like.shape), k
        return z * self.factor, k

    def velocity(self, momentum: torch.Tensor) -> torch.Tensor:
        """:math:`M^{-1} p`, shape of ``momentum``."""
        if self.dense:
            c = momentum.shape[0]
            return (momentum.reshape(c, -1) @ self.inverse_mass).reshape(momentum.shape)
        return momentum * self.inverse_mass

    def kinetic_energy(self, momentum: torch.Tensor) -> torch.Tensor:
        """:math:`\\tfrac12 p^\\top M^{-1} p` per chain, shape ``(C,)``."""
        c = momentum.shape[0]
        p = momentum.reshape(c, -1)
        if self.dense:
            return 0.5 * ((p @ self.inverse_mass) * p).sum(-1)
        # (p * p) @ diag: an elementwise square and a matrix-vector product (two passes)
        return 0.5 * ((p * p) @ self.inverse_mass.reshape(-1))

    def position_update(self, step_size: float | torch.Tensor):
        """Return ``f(y, p) = y + step_size * M^{-1} p`` with the scaled matrix precomputed.

        ``step_size`` is a float, a 0-dim tensor or a per-chain tensor ``(C,)``. For a
        scalar step the update is a single fused kernel (``addcmul`` / ``addmm``).
        """
        if isinstance(step_size, torch.Tensor) and step_size.dim() == 1:
            # per-chain step sizes: scale the velocity chain by chain
            def update(y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
                eps = step_size.reshape((-1,) + (1,) * (y.dim() - 1))
                return y + eps * self.velocity(p)

            return update
        scaled = self.inverse_mass * step_size
        if self.dense:

            def update(y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
                c = y.shape[0]
                return torch.addmm(y.reshape(c, -1), p.reshape(c, -1), scaled).reshape(y.shape)

            return update

        def update(y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return torch.addcmul(y, p, scaled)

        return update

    @property
    def mass(self) -> torch.Tensor:
        """The mass matrix :math:`M` itself (diagonal or dense), computed on demand."""
        if self.dense:
            return self.factor.T @ self.factor
        return 1.0 / self.inverse_mass


def _check_positive_finite(t: torch.Tensor, what: str) -> None:
    if not t.dtype.is_floating_point:
        raise ValueError(f"{what} must be a floating-point tensor, got dtype {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} has non-finite entries")


def diagonal_metric(inverse_mass: torch.Tensor) -> Metric:
    """Diagonal metric from the diagonal of :math:`M^{-1}` (shape ``event_shape``).

    Raises
    ------
    ValueError
        If an entry is not finite and positive.

    Examples
    --------
    >>> import torch
    >>> m = diagonal_metric(torch.tensor([1.0, 4.0]))
    >>> m.kinetic_energy(torch.tensor([[1.0, 1.0]]))
    tensor([2.5000])
    """
    inverse_mass = torch.as_tensor(inverse_mass)
    _check_positive_finite(inverse_mass, "inverse_mass")
    if not bool((inverse_mass > 0).all()):
        raise ValueError("inverse_mass (diagonal) must have positive entries")
    return Metric(inverse_mass, torch.rsqrt(inverse_mass), False)


def dense_metric(inverse_mass: torch.Tensor) -> Metric:
    """Dense metric from :math:`M^{-1}` ``(d, d)``; the Cholesky factor is computed once.

    The factorisation runs in float64 and the results are cast back to the input dtype.

    Raises
    ------
    ValueError
        If the matrix is not square, symmetric and positive definite.
    """
    inverse_mass = torch.as_tensor(inverse_mass)
    _check_positive_finite(inverse_mass, "inverse_mass")
    if inverse_mass.dim() != 2 or inverse_mass.shape[0] != inverse_mass.shape[1]:
        raise ValueError(
            f"a dense inverse_mass must be a square (d, d) matrix, got {tuple(inverse_mass.shape)}"
        )
    a = inverse_mass.to(torch.float64)
    a = 0.5 * (a + a.T)
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise ValueError("inverse_mass must be symmetric positive definite")
    eye = torch.eye(a.shape[0], dtype=torch.float64, device=a.device)
    linv = torch.linalg.solve_triangular(chol, eye, upper=False)
    return Metric(a.to(inverse_mass.dtype), linv.to(inverse_mass.dtype), True)


def identity_metric(like: torch.Tensor, event_dim: int) -> Metric:
    """Unit diagonal metric for positions shaped like ``like`` ``(C, *event)``."""
    shape = like.shape[like.dim() - event_dim :] if event_dim else torch.Size()
    ones = torch.ones(shape, dtype=like.dtype, device=like.device)
    return Metric(ones, ones, False)


def as_metric(
    inverse_mass: torch.Tensor | Metric | None,
    like: torch.Tensor,
    event_dim: int,
    *,
    dense: bool = False,
) -> Metric:
    """Build a :class:`Metric` from ``None`` (identity), a diagonal or a dense matrix.

    ``like`` gives dtype and device; ``dense=True`` with ``None`` gives a dense identity.
    """
    if isinstance(inverse_mass, Metric):
        return inverse_mass
    event_shape = like.shape[like.dim() - event_dim :] if event_dim else torch.Size()
    d = math.prod(event_shape)
    if inverse_mass is None:
        if dense:
            return dense_metric(torch.eye(d, dtype=like.dtype, device=like.device))
        return identity_metric(like, event_dim)
    inverse_mass = torch.as_tensor(inverse_mass, dtype=like.dtype, device=like.device)
    if (
        inverse_mass.dim() == 2
        and tuple(inverse_mass.shape) == (d, d)
        and (dense or tuple(event_shape) != (d, d))
    ):
        return dense_metric(inverse_mass)
    if tuple(inverse_mass.shape) == tuple(event_shape):
        m = diagonal_metric(inverse_mass)
        return dense_metric(torch.diag(inverse_mass.reshape(-1))) if dense else m
    raise ValueError(
        f"inverse_mass must have the event shape {tuple(event_shape)} (diagonal) or "
        f"({d}, {d}) (dense), got {tuple(inverse_mass.shape)}"
    )
