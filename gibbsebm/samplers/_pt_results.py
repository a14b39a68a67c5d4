r"""Reading a parallel-tempering run: every replica's draws (`replica_draws`), which found
mode's basin each target draw lies in and the found modes no draw visited (the
``pt_unexplored_mode`` check). Public through `gibbsebm.samplers.tempering`."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["BASIN_Z", "MIN_EXPECTED_VISITS", "basin_labels", "replica_draws", "unexplored_modes"]

#: A draw belongs to the basin of a found mode when its squared Mahalanobis distance under the
#: mode's Laplace precision is below the Wilson-Hilferty (1931) approximation of the
#: :math:`\\chi^2_d` quantile at this normal deviate: 5 sigma, a tail of 3e-7, so that draws
#: of a Gaussian mode are inside it and a non-Gaussian mode's tails have a wide margin.
BASIN_Z = 5.0
#: A found mode whose local (Laplace) weight times the number of target draws is at least
#: this and that no target draw visited is reported: were the weight right, no visit has
#: probability :math:`e^{-10} \\approx 5 \\cdot 10^{-5}` for independent draws.
MIN_EXPECTED_VISITS = 10.0


def basin_labels(
    draws: torch.Tensor, locations: torch.Tensor, precisions: torch.Tensor
) -> torch.Tensor:
    """The found mode whose basin holds each draw, ``-1`` for a draw outside every basin.

    Parameters
    ----------
    draws : Tensor
        ``(C, D, *event)``.
    locations, precisions : Tensor
        ``(M, d)`` the modes and ``(M, d, d)`` their Laplace precisions
        (:class:`gibbsebm.modes.ModeSearch`).

    Returns
    -------
    Tensor
        ``(C, D)`` long: the mode nearest in Mahalanobis distance when that squared distance is
        below the :math:`\\chi^2_d` quantile of :data:`BASIN_Z`, else ``-1``.

    Example
    -------
    >>> y = torch.tensor([[[0.5, 0.0], [9.0, 9.0]]])
    >>> basin_labels(y, torch.zeros(1, 2), torch.eye(2)[None])
    tensor([[ 0, -1]])
    """
    c, n = draws.shape[:2]
    m, d = locations.shape[0], locations[0].numel()
    y = draws.reshape(c * n, 1, d).to(torch.float64)
    diff = y - locations.reshape(1, m, d).to(y)
    d2 = torch.einsum("nmi,mij,nmj->nm", diff, precisions.to(y), diff)
    best, label = d2.min(-1)
    k = 2.0 / (9.0 * d)
    limit = d * (1.0 - k + BASIN_Z * math.sqrt(k)) ** 3  # Wilson & Hilferty (1931)
    return torch.where(best <= limit, label, torch.full_like(label, -1)).reshape(c, n)


def unexplored_modes(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """How many found modes the target draws never visited although their local weights
    (``(M,)``) predict at least :data:`MIN_EXPECTED_VISITS` visits (``labels`` from
    :func:`basin_labels`); a 0-dim long tensor."""
    m = weights.shape[0]
    visits = torch.bincount(labels.reshape(-1).clamp_min(-1) + 1, minlength=m + 1)[1:]
    due = weights.to(torch.float64) * labels.numel() >= MIN_EXPECTED_VISITS
    return ((visits.to(due.device) == 0) & due).sum()


def replica_draws(samples: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every replica's draws from a ``method="pt"`` run of :func:`gibbsebm.sample`.

    Parameters
    ----------
    samples : Samples
        Result of ``gibbsebm.sample(dist, "pt", ...)``.

    Returns
    -------
    betas : Tensor
        ``(R,)`` ladder, decreasing.
    draws : Tensor
        ``(C, D, R, *event)``: draws at each temperature (replica ``r`` at ``betas[r]``).
    energies : Tensor
        ``(C, D, R)``: their energies :math:`E` (the tempered free energy for latent models).

    Raises
    ------
    ValueError
        If the samples do not come from parallel tempering.
    """
    extra = getattr(samples, "extra", {}) or {}
    if not {"replicas", "replica_energy", "replica_beta"} <= set(extra):
        raise ValueError("these samples have no replicas: run gibbsebm.sample(dist, 'pt', ...)")
    return extra["replica_beta"][0, 0], extra["replicas"], extra["replica_energy"]
