r"""Per-coordinate summaries of draws (`summary_stats`, the table `Samples.summary` shows) and
the energy Bayesian fraction of missing information (`ebfmi`), in torch on the draws' device.

Public through `gibbsebm.diagnostics`; the shared arithmetic (ranks, ESS, R-hat on
``(B, C, N)`` blocks) is in `gibbsebm._convergence`.
"""

from __future__ import annotations

import math

import torch

from ._convergence import (
    _by_chunks,
    _ess_raw,
    _ess_tail_x,
    _finish,
    _flat_draws,
    _nonfinite,
    _rhat_x,
    _sort_rows,
    _sorted_values,
    _split,
    _too_short,
    _var,
    _z_scale,
)

__all__ = ["ebfmi", "summary_stats"]


def ebfmi(hamiltonian: torch.Tensor) -> torch.Tensor:
    r"""Energy Bayesian fraction of missing information, per chain.

    $$
    \mathrm{E\text{-}BFMI}_c = \frac{\frac{1}{N-1}\sum_{n=2}^{N} (H_{c,n} - H_{c,n-1})^2}
    {\frac{1}{N-1}\sum_{n=1}^{N} (H_{c,n} - \bar H_c)^2}
    $$

    where \(H\) is the *Hamiltonian* (potential plus kinetic energy) of each transition,
    as `arviz.bfmi`. The potential energy \(E(y)\) of the draws alone is not that
    quantity; a kernel that does not record its Hamiltonian cannot be checked.

    Parameters
    ----------
    hamiltonian : Tensor
        ``(chains, draws, *batch)``.

    Returns
    -------
    Tensor
        ``(chains, *batch)``; values below 0.3 signal poor exploration of the energy levels.

    References
    ----------
    Betancourt (2016).

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import ebfmi
    >>> g = torch.Generator().manual_seed(0)
    >>> bool((ebfmi(torch.randn(2, 1000, generator=g)) > 1.5).all())  # i.i.d.: about 2
    True
    """
    h = hamiltonian.detach().to(torch.float64)
    dtype = hamiltonian.dtype if hamiltonian.dtype.is_floating_point else torch.float64
    num = h.diff(dim=1).pow(2).mean(1)
    den = h.var(1, correction=1)
    return (num / den).to(dtype)


def summary_stats(draws: torch.Tensor, hdi_prob: float = 0.94) -> dict[str, torch.Tensor]:
    """The columns of `arviz.summary` (``stat_focus="mean"``), computed in torch.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *event)``.
    hdi_prob : float
        Probability of the highest-density interval (arviz's default 0.94).

    Returns
    -------
    dict of str to Tensor
        ``mean``, ``sd``, ``hdi_low``, ``hdi_high``, ``mcse_mean``, ``mcse_sd``, ``ess_bulk``,
        ``ess_tail``, ``r_hat``, each ``event``-shaped, as `arviz.summary` computes them
        (R-hat as `rhat`, whose folding uses the median of the split chains).

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import summary_stats
    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(summary_stats(torch.randn(4, 100, 2, generator=g)))[:3]
    ['ess_bulk', 'ess_tail', 'hdi_high']
    """
    if not 0.0 < hdi_prob <= 1.0:
        raise ValueError(f"hdi_prob must be in (0, 1], got {hdi_prob!r}")
    flat_draws, event, dtype = _flat_draws(draws, "summary_stats")
    cols = _by_chunks(flat_draws, lambda x: tuple(_summary_x(x, hdi_prob).values()))
    return {k: _finish(v, event, dtype) for k, v in zip(_SUMMARY_COLUMNS, cols)}


_SUMMARY_COLUMNS = ("mean", "sd", "hdi_low", "hdi_high", "mcse_mean", "mcse_sd", "ess_bulk",
                    "ess_tail", "r_hat")  # fmt: skip


def _summary_x(x: torch.Tensor, hdi_prob: float) -> dict[str, torch.Tensor]:
    """The columns of `summary_stats` for ``x`` ``(B, C, N)`` float64, in `_SUMMARY_COLUMNS` order."""
    b, c, n = x.shape
    flat = x.reshape(b, -1)
    s = flat.shape[-1]
    short = _too_short(n)
    if not short:
        # one sort of the split draws serves the HDI and tail quantiles too when N is even
        # (the split draws are then the same multiset, in the same memory)
        split = _split(x)
        sort_split = _sort_rows(split.reshape(b, -1).contiguous())
        sorted_full = sort_split[0] if n % 2 == 0 else _sorted_values(flat)
    else:
        sorted_full = _sorted_values(flat)
    out: dict[str, torch.Tensor] = {}
    out["mean"] = flat.mean(-1)
    out["sd"] = torch.sqrt(_var(flat))
    inc = int(math.floor(hdi_prob * s))
    if s - inc >= 1:
        width = sorted_full[:, inc:] - sorted_full[:, : s - inc]
        i = torch.argmin(width, dim=-1, keepdim=True)
        out["hdi_low"] = sorted_full.gather(1, i)[:, 0]
        out["hdi_high"] = sorted_full.gather(1, i + inc)[:, 0]
    else:
        out["hdi_low"] = out["hdi_high"] = torch.full(
            (b,), math.nan, dtype=torch.float64, device=x.device
        )
    names = ("mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
    if short:
        for k in names:
            out[k] = torch.full((b,), math.nan, dtype=torch.float64, device=x.device)
    else:
        ess_mean = _ess_raw(split)
        out["mcse_mean"] = torch.sqrt(out["sd"] ** 2 / ess_mean)
        c2 = (x - out["mean"][:, None, None]) ** 2
        evar = c2.reshape(b, -1).mean(-1)
        varvar = ((c2**2).reshape(b, -1).mean(-1) - evar**2) / _ess_raw(_split(c2))
        out["mcse_sd"] = torch.sqrt(varvar / evar / 4)
        z_bulk = _z_scale(split, sort_split)
        out["ess_bulk"] = _ess_raw(z_bulk)
        out["ess_tail"] = _ess_tail_x(x, sorted_full)
        out["r_hat"] = (
            _rhat_x(x, sort_split, z_bulk)
            if c >= 2
            else torch.full((b,), math.nan, dtype=torch.float64, device=x.device)
        )
    bad = _nonfinite(x)
    for k in names:
        out[k] = torch.where(bad, torch.full_like(out[k], math.nan), out[k])
    return {k: out[k] for k in _SUMMARY_COLUMNS}
