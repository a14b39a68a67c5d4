r"""The default temperature ladder of parallel tempering and the integrability floor of its
hottest temperature. Public through `gibbsebm.samplers.tempering`."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "HOTTEST_RATIO",
    "TAIL_MARGIN",
    "TAIL_PROBE_RADII",
    "beta_ladder",
    "integrable_beta_floor",
]

#: Default ratio between the target beta and the hottest replica's beta (see the module notes).
HOTTEST_RATIO = 20.0


def beta_ladder(
    beta: float | torch.Tensor,
    num_dims: int,
    *,
    num_betas: int | None = None,
    beta_min: float | None = None,
) -> torch.Tensor:
    """The default geometric ladder, decreasing from ``beta`` (see the module notes).

    Parameters
    ----------
    beta : float or Tensor
        Target inverse temperature (0-dim); the ladder's first entry.
    num_dims : int
        Number of coordinates ``d`` of y.
    num_betas : int, optional
        Number of temperatures; default: enough that neighbours differ by at most
        :math:`1 + 2\\sqrt{\\ln 4 / d}`.
    beta_min : float, optional
        Smallest beta; default ``beta / HOTTEST_RATIO``.

    Returns
    -------
    Tensor
        ``(R,)``, in the dtype and device of ``beta`` (float64 for a Python float).

    Raises
    ------
    ValueError
        If ``beta_min`` is not in ``(0, beta)`` or ``num_betas < 2``.

    Example
    -------
    >>> beta_ladder(1.0, 2)
    tensor([1.0000, 0.4729, 0.2236, 0.1057, 0.0500], dtype=torch.float64)
    """
    b = torch.as_tensor(beta, dtype=torch.float64 if not torch.is_tensor(beta) else None)
    b0 = float(b)
    if beta_min is None:
        beta_min = b0 / HOTTEST_RATIO
    if not (0.0 < beta_min < b0):
        raise ValueError(f"beta_min must be in (0, beta) = (0, {b0}), got {beta_min!r}")
    if num_betas is None:
        tstep = 1.0 + 2.0 * math.sqrt(math.log(4.0)) / math.sqrt(max(num_dims, 1))
        num_betas = 1 + math.ceil(math.log(b0 / beta_min) / math.log(tstep) - 1e-9)
    if isinstance(num_betas, bool) or not isinstance(num_betas, int) or num_betas < 2:
        raise ValueError(f"num_betas must be an integer >= 2, got {num_betas!r}")
    frac = torch.linspace(0.0, 1.0, num_betas, dtype=torch.float64)
    ladder = b0 * (beta_min / b0) ** frac
    return ladder.to(dtype=b.dtype, device=b.device)


#: Radii (in units of 1 + the largest |coordinate| of the origin probe) of the tail probe of
#: :func:`integrable_beta_floor`, and the margin over the integrability bound it keeps.
TAIL_PROBE_RADII = (1e3, 1e6)
TAIL_MARGIN = 1.25


def integrable_beta_floor(dist: Any, num_directions: int = 64) -> float | None:
    r"""Smallest beta at which ``exp(-beta E)`` is integrable, if the energy grows only like a log.

    A heavy-tailed energy such as the Student-t's, :math:`E \approx c \log r` at large
    :math:`r`, gives a normalisable tempered density :math:`e^{-\beta E}` in :math:`d`
    dimensions only for :math:`\beta c > d`. Below that the hot replicas of parallel tempering
    drift off to infinity and their swaps carry huge values into the target chain (measured: a
    3-D Student-t with :math:`\nu = 2.5`, :math:`c = \nu + d = 5.5`, so :math:`\beta > 0.545`,
    with the default hottest beta 0.05: target draws reached :math:`|y| \approx 2 \cdot 10^7`).
    The probe evaluates E on ``num_directions`` fixed random rays at two large radii and
    estimates :math:`c` as the smallest growth :math:`\Delta E / \Delta \log r`.

    Parameters
    ----------
    dist : Gibbs
        The target (continuous real support, no base, no batch shape).
    num_directions : int
        Rays probed.

    Returns
    -------
    float or None
        ``d / c`` when the probe finds logarithmic growth (``c > 0``, and ``d / c`` above 1e-3
        times the target beta); ``None`` when the energy grows faster than a log on every ray,
        the probe is not finite, or the distribution is not of that kind.

    Example
    -------
    >>> import torch, gibbsebm
    >>> t = lambda y: 0.5 * (2.5 + 3) * torch.log1p((y * y).sum(-1) / 2.5)
    >>> round(integrable_beta_floor(gibbsebm.Gibbs(t, event_shape=(3,))), 3)
    0.545
    >>> gauss = lambda y: 0.5 * (y * y).sum(-1)
    >>> integrable_beta_floor(gibbsebm.Gibbs(gauss, event_shape=(3,))) is None
    True
    """
    if dist.is_discrete or dist.base is not None or tuple(dist.batch_shape) != ():
        return None
    if not _real_support(dist.support):
        return None
    d = int(dist.event_shape.numel())
    beta = dist.beta.detach()
    g = torch.Generator(device=beta.device).manual_seed(0)
    u = torch.randn(num_directions, d, generator=g, dtype=beta.dtype, device=beta.device)
    u = u / u.norm(dim=-1, keepdim=True)
    r1, r2 = TAIL_PROBE_RADII
    y = torch.cat([r1 * u, r2 * u]).reshape((2 * num_directions,) + tuple(dist.event_shape))
    try:
        with torch.no_grad():
            e = dist.energy_of(y).to(torch.float64)
    except Exception:  # an energy undefined that far out says nothing about its tails
        return None
    e1, e2 = e[:num_directions], e[num_directions:]
    growth = (e2 - e1) / math.log(r2 / r1)
    if bool(torch.isnan(growth).any()):
        return None
    c = float(growth.min())
    if not math.isfinite(c) or c <= 0.0:
        return None
    floor = d / c
    if floor < 1e-3 * float(beta):
        return None
    return floor


def _real_support(support: Any) -> bool:
    from torch.distributions import constraints

    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return type(support) is type(constraints.real)
