"""Small energies with known optima, shared by the learning tests."""

from __future__ import annotations

import math

import torch


class QuadraticEnergy(torch.nn.Module):
    """:math:`E(y) = \\frac12 (y-\\mu)^\\top L L^\\top (y-\\mu)` with learnable mean and Cholesky
    factor of the precision (positive diagonal through exp)."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(dim))
        self.raw = torch.nn.Parameter(torch.zeros(dim, dim))

    def chol(self) -> torch.Tensor:
        return torch.tril(self.raw, -1) + torch.diag(torch.exp(torch.diagonal(self.raw)))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        z = (y - self.mu) @ self.chol()
        return 0.5 * (z * z).sum(-1)

    def covariance(self) -> torch.Tensor:
        L = self.chol().detach()
        return torch.linalg.inv(L @ L.T)

    def log_partition(self) -> float:
        return len(self.mu) / 2 * math.log(2 * math.pi) - float(
            torch.diagonal(self.raw.detach()).sum()
        )


def gaussian_data(n: int, seed: int, device="cpu"):
    """n draws of N(mu, S) (float64) with the truth and the standard errors of the sample
    mean and covariance (Var(S_ij_hat) = (S_ii S_jj + S_ij^2) / n for Gaussian data)."""
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64, device=device)
    S = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    x = mu + torch.randn(n, 2, generator=g, dtype=torch.float64, device=device) @ (
        torch.linalg.cholesky(S).T
    )
    d = torch.diagonal(S)
    se_mu = (d / n).sqrt()
    se_cov = ((d[:, None] * d[None, :] + S**2) / n).sqrt()
    return x, mu, S, se_mu, se_cov
