"""``Samples.summary()``: arviz's summary table, computed with `gibbsebm.diagnostics` in torch.

The columns, their names, the row labels and the default rounding are those of
`arviz.summary` (``stat_focus="mean"``): ``mean``, ``sd``, ``hdi_3%``, ``hdi_97%``,
``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``; the numbers agree with it
(R-hat folds around the median of the split chains, as `arviz.rhat`, so with an odd
number of draws it can differ from arviz's summary in the last digits). Only the finished
table (one row per coordinate) leaves the draws' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .diagnostics import summary_stats

__all__ = ["summary"]

_ORDER = (
    "mean",
    "sd",
    "hdi_low",
    "hdi_high",
    "mcse_mean",
    "mcse_sd",
    "ess_bulk",
    "ess_tail",
    "r_hat",
)


def _labels(var_name: str, shape: tuple) -> list[str]:
    if not shape:
        return [var_name]
    return [f"{var_name}[{', '.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def summary(
    samples: Any,
    var_name: str = "y",
    *,
    hdi_prob: float | None = None,
    round_to: int | str | None = None,
    kind: str = "all",
):
    """Per-coordinate mean, sd, HDI, MCSE, bulk/tail ESS and R-hat as a `pandas.DataFrame`.

    Parameters
    ----------
    samples : Samples
        A sampling result; the coordinates are ``(*batch_shape, *event_shape)``.
    var_name : str
        Row label prefix (``y[0]``, ``y[0, 1]``, ... as arviz labels them).
    hdi_prob : float, optional
        HDI probability (default 0.94, arviz's ``stats.ci_prob``).
    round_to : int, "none" or None
        As `arviz.summary`: ``None`` rounds ``ess_*`` to 0, ``r_hat`` to 2 and the rest
        to 3 decimals; an int rounds everything to that many; ``"none"`` keeps full precision.
    kind : {"all", "stats", "diagnostics"}
        Which columns, as `arviz.summary`.

    Returns
    -------
    pandas.DataFrame
        One row per coordinate.
    """
    import pandas as pd

    if kind not in ("all", "stats", "diagnostics"):
        raise ValueError(f"kind must be 'all', 'stats' or 'diagnostics', got {kind!r}")
    prob = 0.94 if hdi_prob is None else float(hdi_prob)
    alpha = 1.0 - prob
    names = {
        "hdi_low": f"hdi_{100 * alpha / 2:g}%",
        "hdi_high": f"hdi_{100 * (1 - alpha / 2):g}%",
    }
    cols = summary_stats(samples.draws, hdi_prob=prob)
    keep = list(_ORDER)
    if kind == "stats":
        keep = keep[:4]
    elif kind == "diagnostics":
        keep = keep[4:]
    shape = tuple(samples.draws.shape[2:])
    data = {names.get(k, k): cols[k].detach().to("cpu").double().reshape(-1).numpy() for k in keep}
    df = pd.DataFrame(data, index=_labels(var_name, shape))
    if round_to is None:
        decimals = {
            c: 0 if c in ("ess_bulk", "ess_tail") else 2 if c == "r_hat" else 3 for c in df.columns
        }
        df = df.round(decimals)
    elif not (isinstance(round_to, str) and round_to.lower() == "none"):
        df = df.round(int(round_to))
    return df
