"""The opening paragraph of the calibration report: which system or temperature is best, by
how much on NLL and ECE, with paired bootstrap intervals (`gibbsebm.calibration.report`)."""

from __future__ import annotations

from typing import Any

import torch

from . import _page
from .metrics import _bootstrap, _ce_from_bins, _uniform_edges

__all__ = ["verdict", "paired_differences"]


def _fmt(v: float, spec: str = ".4f") -> str:
    return _page.num(v, spec)


def paired_differences(
    lp_a: torch.Tensor,
    lp_b: torch.Tensor,
    y: torch.Tensor,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """NLL and top-label ECE of ``b`` minus those of ``a`` on the same samples, with 95%
    paired percentile-bootstrap intervals (both scored on each resample of the samples).

    Returns ``{"nll": {"value", "ci_low", "ci_high"}, "ece": {...}}`` (``None`` for the
    interval when ``n_bootstrap < 2`` or a replicate is not finite).
    """
    n = y.shape[0]
    dev = y.device
    edges = _uniform_edges(n_bins, dev)

    def parts(lp: torch.Tensor):
        p = lp.exp()
        p = p / p.sum(1, keepdim=True)
        conf, pred = p.max(1)
        hit = (pred == y).to(torch.float64)
        bin_of = (torch.searchsorted(edges, conf.contiguous(), side="left") - 1).clamp_(
            0, n_bins - 1
        )
        onehot = torch.nn.functional.one_hot(bin_of, n_bins).to(torch.float64)
        design = torch.cat((onehot, onehot * conf[:, None], onehot * hit[:, None]), 1)
        return -lp.gather(1, y[:, None]).squeeze(1), design

    nll_a, des_a = parts(lp_a)
    nll_b, des_b = parts(lp_b)
    dnll = nll_b - nll_a

    def ece(w: torch.Tensor, design: torch.Tensor) -> torch.Tensor:
        sums = (w @ design).reshape(w.shape[0], 3, n_bins)
        return _ce_from_bins(sums[:, 0], sums[:, 1], sums[:, 2], "l1")

    def stat(idx: torch.Tensor) -> torch.Tensor:
        w = torch.zeros(idx.shape[0], n, dtype=torch.float64, device=dev)
        w.scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64, device=dev))
        return torch.stack(((w @ dnll) / n, ece(w, des_b) - ece(w, des_a)), 1)

    ones = torch.ones(1, n, dtype=torch.float64, device=dev)
    value = torch.stack(((ones @ dnll) / n, ece(ones, des_b) - ece(ones, des_a)), 1)[0]
    out = {}
    reps = _bootstrap(stat, n, n_bootstrap, seed, dev, row_cost=8) if n_bootstrap else None
    for j, name in enumerate(("nll", "ece")):
        lo = hi = None
        if reps is not None and reps.shape[0] > 1:
            r = reps[:, j].detach().cpu().double()
            if bool(torch.isfinite(r).all()):
                q = torch.quantile(r, torch.tensor([0.025, 0.975], dtype=torch.float64))
                lo, hi = float(q[0]), float(q[1])
        out[name] = {"value": float(value[j]), "ci_low": lo, "ci_high": hi}
    return out


def _judge(d: dict[str, float]) -> str:
    """``"lower"``/``"higher"`` when the interval of the difference excludes 0, else
    ``"not distinguishable"`` (or ``"no interval"`` without a bootstrap)."""
    if d["ci_low"] is None or d["ci_high"] is None:
        return "no interval"
    if d["ci_high"] < 0:
        return "lower"
    if d["ci_low"] > 0:
        return "higher"
    return "not distinguishable"


def _diff_text(label: str, a: float, b: float, d: dict[str, float], versus: bool = False) -> str:
    """'NLL from 0.812 to 0.701 (difference -0.111, 95% paired bootstrap CI [-0.130, -0.093])'
    (or 'NLL 0.701 vs 0.812 (...)' with ``versus``) and the judgement."""
    pair = f"{_fmt(b)} vs {_fmt(a)}" if versus else f"from {_fmt(a)} to {_fmt(b)}"
    txt = f"{label} {pair} (difference {d['value']:+.4f}"
    j = _judge(d)
    if j == "no interval":
        return txt + "; no bootstrap interval)"
    txt += f", 95% paired bootstrap CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}])"
    if j == "not distinguishable":
        txt += ": not distinguishable"
    return txt


def verdict(
    sys_reports: dict,
    log_probs: dict,
    y: torch.Tensor,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    cross_fitted: bool,
) -> dict[str, Any]:
    """The report's opening paragraph, and the paired comparisons behind it.

    For every system the fitted temperature is compared with beta = 1 (paired on the
    evaluation samples; out-of-fold probabilities when cross-fitted). With several systems the
    best one after fitting beta (lowest NLL) is compared with the runner-up.
    """
    where = "cross-fitted on the evaluation data" if cross_fitted else "fitted on separate data"
    comparisons: dict[str, Any] = {}
    for s, (lp_b, lp_a) in log_probs.items():
        comparisons[f"{s}: fitted beta vs beta = 1"] = paired_differences(
            lp_b, lp_a, y, n_bins, n_bootstrap, seed
        )
    names = list(sys_reports)
    ranked = sorted(names, key=lambda s: sys_reports[s].after["nll"].value)
    best = ranked[0]
    r = sys_reports[best]
    temp = comparisons[f"{best}: fitted beta vs beta = 1"]
    parts = []
    tone = ""
    if len(names) > 1:
        second = ranked[1]
        r2 = sys_reports[second]
        d = paired_differences(
            log_probs[second][1], log_probs[best][1], y, n_bins, n_bootstrap, seed
        )
        comparisons[f"{best} vs {second}, both at their fitted beta"] = d
        jn, je = _judge(d["nll"]), _judge(d["ece"])
        lead = (
            f"The best of the {len(names)} systems is {best!r} at its fitted beta"
            if jn == "lower"
            else f"{best!r} has the lowest NLL of the {len(names)} systems at their fitted "
            f"beta, but it is not clearly better than {second!r}"
        )
        parts.append(
            f"{lead}: against {second!r}, "
            + _diff_text("NLL", r2.after["nll"].value, r.after["nll"].value, d["nll"], True)
            + "; "
            + _diff_text("ECE", r2.after["ece"].value, r.after["ece"].value, d["ece"], True)
            + "."
        )
        tone = "ok" if jn == "lower" else "warn"
        if je == "higher":
            parts.append(f"Note that {best!r} has the higher ECE of the two.")
    jn, je = _judge(temp["nll"]), _judge(temp["ece"])
    b = r.beta_fit
    head = (
        f"For {best!r}, the fitted inverse temperature beta = {_fmt(b.beta, '.4g')} "
        f"± {_fmt(b.stderr, '.2g')} (T = {_fmt(b.temperature, '.3g')}, {where})"
    )
    if jn == "lower":
        judgement = "is better than the raw energies (beta = 1)"
        tone = tone or "ok"
    elif jn == "higher":
        judgement = "is worse than the raw energies (beta = 1): keep beta = 1"
        tone = "bad"
    elif jn == "not distinguishable":
        judgement = (
            f"cannot be told apart from the raw energies (beta = 1) with {int(y.shape[0])} samples"
        )
        tone = tone or "warn"
    else:
        judgement = "was compared with beta = 1 without bootstrap intervals (no certainty)"
        tone = tone or "warn"
    parts.append(
        f"{head} {judgement}: "
        + _diff_text("NLL", r.before["nll"].value, r.after["nll"].value, temp["nll"])
        + "; "
        + _diff_text("ECE", r.before["ece"].value, r.after["ece"].value, temp["ece"])
        + "."
    )
    parts.append(
        "Differences are paired on the same evaluation samples (bootstrap over samples); an "
        "interval that covers 0 means the data cannot tell the two apart."
    )
    return {
        "text": " ".join(parts),
        "tone": tone,
        "best": best,
        "ranking_by_nll": ranked,
        "comparisons": comparisons,
    }
