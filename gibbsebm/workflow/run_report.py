"""The report of a sampling run: a verdict, trace and rank plots, the R-hat/ESS/MCSE table
and the warnings, as ``report.html`` (self-contained) and ``report.md`` (+ ``figures/``).

``gibbsebm sample`` writes it into its run folder; any script can call
:func:`write_run_report` on a :class:`gibbsebm.Samples`. The page, its style sheet and the
escaping are shared with the calibration report (:mod:`gibbsebm.calibration._page`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import _page
from ..runtime.files import atomic_write_bytes

__all__ = ["write_run_report", "worst_coordinates", "RUN_REPORT_FILES"]

#: What :func:`write_run_report` writes into the run folder.
RUN_REPORT_FILES = ("report.html", "report.md", "figures/trace.png", "figures/rank.png")

#: Rows of the summary table shown (the worst by R-hat); the JSON keeps every coordinate.
MAX_TABLE_ROWS = 30

_COLUMNS = ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat")


def worst_coordinates(records: Sequence[Mapping[str, Any]], k: int) -> list[int]:
    """Indices of the ``k`` coordinates with the largest R-hat (undefined R-hat first: a
    coordinate that never moved is the worst case)."""

    def key(i: int) -> float:
        r = records[i].get("r_hat")
        try:
            v = float(r)
        except (TypeError, ValueError):
            return math.inf
        return math.inf if math.isnan(v) else v

    return sorted(range(len(records)), key=key, reverse=True)[:k]


def _trace_and_rank(draws: np.ndarray, labels: list[str], coords: list[int], max_chains: int):
    """PNG bytes of the trace plots and of the rank plots of ``coords`` (draws ``(C, D, P)``)."""
    from scipy.stats import rankdata

    from ..calibration import plots

    c, d = draws.shape[:2]
    shown = min(c, max_chains)
    k = len(coords)
    fig, axes = plots.new_figure(ncols=1, nrows=k, size=(7.5, 1.7), bottom=0.9, top=0.4)
    for ax, j in zip(axes, coords):
        for ch in range(shown):
            ax.plot(draws[ch, :, j], lw=0.6, alpha=0.75, label=f"chain {ch}")
        ax.set_ylabel(_text(labels[j]), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_title(f"trace of the {k} coordinates with the largest R-hat ({shown} of {c} chains)",
                      fontsize=9)  # fmt: skip
    axes[-1].set_xlabel("draw")
    trace = plots.figure_png(fig)

    n_bins = int(max(5, min(20, d // 10)))
    fig, axes = plots.new_figure(ncols=k, nrows=1, size=(3.0, 2.6), bottom=0.6, top=0.55)
    for ax, j in zip(axes, coords):
        r = rankdata(draws[:, :, j].reshape(-1)).reshape(c, d)
        edges = np.linspace(0.5, c * d + 0.5, n_bins + 1)
        for ch in range(shown):
            h, _ = np.histogram(r[ch], bins=edges)
            ax.step(np.arange(n_bins), h, where="mid", lw=0.9, alpha=0.8)
        expect = d / n_bins
        band = 2 * math.sqrt(expect * (1 - 1 / n_bins))
        ax.axhspan(expect - band, expect + band, color="0.9", zorder=0)
        ax.axhline(expect, color="0.3", ls="--", lw=0.8)
        ax.set_title(_text(labels[j]), fontsize=9)
        ax.set_xlabel("rank bin (pooled draws)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("draws per bin", fontsize=8)
    fig.suptitle(
        "rank plots: one line per chain; flat within the grey band (about 95%) when the "
        "chains agree",
        fontsize=8,
    )
    rank = plots.figure_png(fig)
    return trace, rank


def _text(s: str) -> str:
    return str(s).replace("$", r"\$")


def _verdict(problems: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    rhat = [float(r["r_hat"]) for r in records if _finite(r.get("r_hat"))]
    bulk = [float(r["ess_bulk"]) for r in records if _finite(r.get("ess_bulk"))]
    tail = [float(r["ess_tail"]) for r in records if _finite(r.get("ess_tail"))]
    figs = (
        f"max R-hat {_page.num(max(rhat)) if rhat else 'n/a'}, min bulk ESS "
        f"{_page.num(min(bulk), '.0f') if bulk else 'n/a'}, min tail ESS "
        f"{_page.num(min(tail), '.0f') if tail else 'n/a'} over {len(records)} coordinates"
    )
    if not problems:
        return (
            f"The run passed every check (R-hat <= 1.01, bulk and tail ESS >= 100 per chain, "
            f"no divergences or other sampler problems): {figs}. Use the draws, with the "
            "MCSE column as the error of each mean.",
            "ok",
        )
    checks = ", ".join(sorted({p.check for p in problems}))
    return (
        f"Do not trust these draws yet: {len(problems)} check"
        f"{'s' if len(problems) != 1 else ''} failed ({checks}); {figs}. The warnings below "
        "say what failed and what to do.",
        "bad",
    )


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def write_run_report(
    run_dir: str | Path,
    samples: Any,
    *,
    records: Sequence[Mapping[str, Any]] | None = None,
    problems: Sequence[Any] | None = None,
    title: str = "Sampling run",
    settings: Mapping[str, Any] | None = None,
    plots: bool = True,
    num_coordinates: int = 4,
    max_chains: int = 8,
) -> dict[str, Path]:
    """Write ``report.html`` and ``report.md`` (and ``figures/``) for a sampling run.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (created if needed).
    samples : gibbsebm.Samples
    records : sequence of dict, optional
        One dict per coordinate with arviz's summary columns (``mean``, ``sd``,
        ``mcse_mean``, ``ess_bulk``, ``ess_tail``, ``r_hat``) and ``coordinate``; default
        from ``samples.summary(round_to="none")``.
    problems : sequence of gibbsebm.diagnostics.Problem, optional
        Default ``samples.diagnose()``.
    title : str
    settings : mapping, optional
        Shown as a list (method, chains, seed, ...): user text, escaped.
    plots : bool
        Draw the trace and rank plots (needs matplotlib).
    num_coordinates : int
        How many coordinates to plot: those with the largest R-hat.
    max_chains : int
        Chains drawn per plot.

    Returns
    -------
    dict of str to Path
        ``{"html": ..., "markdown": ..., "trace": ..., "rank": ...}`` (figures when drawn).

    Examples
    --------
    >>> import torch, tempfile, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> s = gibbsebm.sample(gibbsebm.Gibbs(Gaussian(torch.zeros(2))), "mala", num_chains=4,
    ...                     num_samples=200, seed=0, warn=False)  # doctest: +SKIP
    >>> write_run_report(tempfile.mkdtemp(), s)["html"].name  # doctest: +SKIP
    'report.html'
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if records is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            df = samples.summary(round_to="none")
        records = df.reset_index().rename(columns={"index": "coordinate"}).to_dict("records")
    if problems is None:
        problems = samples.diagnose()
    records = list(records)
    labels = [str(r.get("coordinate", i)) for i, r in enumerate(records)]
    text, tone = _verdict(problems, records)
    order = worst_coordinates(records, len(records))
    shown_rows = order[:MAX_TABLE_ROWS]
    header = ["coordinate", *_COLUMNS]
    rows = [[labels[i], *(_page.num(records[i].get(c)) for c in _COLUMNS)] for i in shown_rows]
    table_title = (
        f"Summary ({len(records)} coordinates, largest R-hat first"
        + (f"; the {len(shown_rows)} worst shown, all in summary.json)" if len(order) > len(
            shown_rows) else ")")
    )  # fmt: skip
    out: dict[str, Path] = {}
    figs: dict[str, tuple[bytes, str]] = {}
    if plots and records:
        draws = samples.draws.detach().cpu().double().numpy()
        draws = draws.reshape(draws.shape[0], draws.shape[1], -1)
        if draws.shape[-1] == len(records) and draws.shape[1] >= 2:
            coords = worst_coordinates(records, min(num_coordinates, len(records)))
            trace, rank = _trace_and_rank(draws, labels, coords, max_chains)
            names = ", ".join(labels[j] for j in coords)
            figs["trace"] = (trace, f"Trace plots of {names} (the largest R-hat).")
            figs["rank"] = (
                rank,
                f"Rank plots of {names}: ranks of each chain's draws among all draws; a chain "
                "whose line leaves the grey band explores another part of the distribution.",
            )
            (run / "figures").mkdir(exist_ok=True)
            for key, (png, _) in figs.items():
                p = run / "figures" / f"{key}.png"
                atomic_write_bytes(png, p)
                out[key] = p
    settings = dict(settings or {})
    e = html.escape

    body = [_page.verdict(text, tone)]
    body.append("<h2>Warnings</h2>")
    if problems:
        body.append('<ul class="problems">')
        body += [f"<li>{e(p.message)}</li>" for p in problems]
        body.append("</ul>")
    else:
        body.append("<p>None: every check passed.</p>")
    if settings:
        body.append('<h2>Run</h2><ul class="data">')
        body += [f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in settings.items()]
        body.append("</ul>")
    body.append(_page.table(table_title, header, rows))
    body.append(
        '<p class="note">mcse_mean is the Monte Carlo standard error of the mean; ESS and '
        "R-hat are rank-normalized (Vehtari et al. 2021), computed by "
        "gibbsebm.diagnostics.</p>"
    )
    if figs:
        body.append("<h2>Figures</h2>")
        body += [_page.figure(k, png, cap) for k, (png, cap) in figs.items()]
    page = _page.page(title, body)
    md = _page.md
    lines = [f"# {md(title)}", "", f"**Verdict.** {md(text)}", "", "## Warnings", ""]
    lines += [f"- {md(p.message)}" for p in problems] or ["None: every check passed."]
    lines.append("")
    if settings:
        lines += ["## Run", ""] + [f"- {md(k)}: {md(v)}" for k, v in settings.items()] + [""]
    lines += [f"## {md(table_title)}", ""]
    lines += _page.md_table(header, [[md(r[0]), *r[1:]] for r in rows]) + [""]
    if figs:
        lines += ["## Figures", ""]
        for k, (_, cap) in figs.items():
            lines += [f"![{k}](figures/{k}.png)", "", f"*{md(cap)}*", ""]
    html_path, md_path = run / "report.html", run / "report.md"
    atomic_write_bytes(page.encode("utf-8"), html_path)
    atomic_write_bytes("\n".join(lines).encode("utf-8"), md_path)
    out["html"], out["markdown"] = html_path, md_path
    return out
