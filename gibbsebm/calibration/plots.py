"""Calibration plots (matplotlib, drawn on ``matplotlib.figure.Figure`` without pyplot).

Figures are created with the object-oriented API, so nothing here touches the global
pyplot state or backend; :func:`figure_png` renders with the Agg canvas. Every function
takes an optional ``ax`` to draw into and returns the figure it drew on.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .metrics import MetricResult

__all__ = [
    "reliability_diagram",
    "reliability_legend",
    "confidence_histogram",
    "energy_probability_scatter",
    "risk_coverage_plot",
    "ood_histogram",
    "pit_histogram",
    "metric_bars",
    "new_figure",
    "legend_below",
    "figure_png",
]


def new_figure(
    ncols: int = 1,
    nrows: int = 1,
    size: tuple[float, float] = (4.2, 3.6),
    *,
    bottom: float = 0.55,
    top: float = 0.35,
    height_ratios: list | None = None,
    hspace: float = 0.4,
):
    """A figure with a grid of axes (no pyplot); returns ``(fig, axes)`` with axes flattened.

    ``bottom`` and ``top`` are the margins in inches (room for legends placed outside the
    axes, and for two-line titles); ``height_ratios`` sizes the rows.
    """
    from matplotlib.figure import Figure

    w, h = size[0] * ncols, size[1] * nrows
    fig = Figure(figsize=(w, h))
    # fixed margins in inches (a layout engine would re-measure every text box at each draw)
    fig.subplots_adjust(
        left=0.75 / w,
        right=1 - 0.15 / w,
        bottom=bottom / h,
        top=1 - top / h,
        wspace=0.32,
        hspace=hspace,
    )
    kw = {"gridspec_kw": {"height_ratios": height_ratios}} if height_ratios else {}
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    return fig, axes


def legend_below(ax, ncol: int = 2, **kw):
    """A legend under the axes (below the x label): it never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=ncol,
        fontsize=7,
        frameon=False,
        **kw,
    )


def figure_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, rendered with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # "tight": legends placed outside the axes are inside the image, never cut off
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    return buf.getvalue()


def _text(text: str) -> str:
    """User text shown literally: a ``$`` would start matplotlib's math mode (and a bad
    formula would fail the whole figure)."""
    return str(text).replace("$", r"\$")


def _ax(ax):
    if ax is None:
        fig, axes = new_figure()
        return fig, axes[0]
    return ax.figure, ax


def reliability_diagram(
    result: MetricResult,
    ax: Any = None,
    title: str | None = None,
    counts_ax: Any = None,
    legend: str = "below",
):
    """Reliability diagram of a top-label :func:`expected_calibration_error` result.

    One bar per **non-empty** bin, spanning the bin, with height = accuracy in the bin; the
    mean confidence of the bin is marked by a red tick and the gap hatched. Empty bins are
    shaded grey (no bar), never drawn as accuracy 0. The number of samples in each bin is
    drawn as a count histogram in ``counts_ax`` under the diagram (created when ``ax`` is
    ``None``), so a bin's weight in the ECE is visible next to its bar. The metric and its
    interval go in the title and the legend outside the axes: nothing covers a bar.

    Parameters
    ----------
    result : MetricResult
        From :func:`expected_calibration_error` (``result.bins`` shaped ``(M,)``).
    ax : matplotlib Axes, optional
    title : str, optional
    counts_ax : matplotlib Axes, optional
        Where to draw the per-bin counts (see :func:`confidence_histogram`).
    legend : {"below", "none"}
        ``"below"``: a legend under the axes (under ``counts_ax`` when given); ``"none"``:
        none (the caller draws one for the figure, e.g. with :func:`reliability_legend`).

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    DeGroot & Fienberg (1983), "The comparison and evaluation of forecasters", The
    Statistician 32; Niculescu-Mizil & Caruana (2005), ICML.
    """
    b = result.bins
    if b is None or b.counts.ndim != 1:
        raise ValueError("reliability_diagram needs a top-label binned result (bins shaped (M,))")
    if legend not in ("below", "none"):
        raise ValueError(f"legend must be 'below' or 'none', got {legend!r}")
    if ax is None:
        fig, axes = new_figure(
            nrows=2, size=(4.2, 2.6), bottom=1.0, top=0.6, height_ratios=[3, 1], hspace=0.35
        )
        ax, counts_ax = axes
    fig = ax.figure
    edges = b.edges
    left, width = edges[:-1], np.diff(edges)
    full = b.counts > 0
    ax.bar(
        left[full],
        b.accuracy[full],
        width=width[full],
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        label="accuracy in bin",
    )
    for x0, w, acc, conf in zip(left[full], width[full], b.accuracy[full], b.confidence[full]):
        lo, hi = sorted((acc, conf))
        # the gap between accuracy and mean confidence: red hatching, no fill
        ax.add_patch(
            _rect(x0, lo, w, hi - lo, facecolor="none", edgecolor="#c44e52", hatch="\\\\", lw=0.6)
        )
        ax.plot([x0, x0 + w], [conf, conf], color="#c44e52", lw=1.5)
    empty = ~full
    if empty.any():
        # an empty bin has no accuracy: shade its column light grey, draw no bar
        for x0, w in zip(left[empty], width[empty]):
            ax.axvspan(x0, x0 + w, facecolor="0.93", edgecolor="none", zorder=0, gid="empty-bin")
    _reliability_handles(ax, bool(empty.any()))
    ax.plot([0, 1], [0, 1], ls="--", color="0.3", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    txt = f"{result.name.upper()} {result.value:.4f}"
    if result.n_bootstrap and np.isfinite(result.ci_low):
        txt += f" [{result.ci_low:.4f}, {result.ci_high:.4f}]"
    if result.consistency:
        txt += f"; calibrated: {result.consistency['mean']:.4f}"
    head = _text(title) + "\n" if title else ""
    ax.set_title(head + txt, fontsize=9)
    if counts_ax is not None:
        ax.tick_params(labelbottom=False)
        confidence_histogram(result, counts_ax, legend="none")
        counts_ax.set_ylabel("count", fontsize=8)
        low = counts_ax
    else:
        ax.set_xlabel("confidence (max probability)")
        low = ax
    if legend == "below":
        handles, labels = ax.get_legend_handles_labels()
        if counts_ax is not None:
            h2, l2 = counts_ax.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        low.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.45 if counts_ax is not None else -0.16),
            ncol=2,
            fontsize=7,
            frameon=False,
        )
    return fig


def _reliability_handles(ax, with_empty: bool) -> None:
    """Legend entries of a reliability diagram (drawn as empty artists: no data covered)."""
    if with_empty:
        ax.plot([], [], color="0.85", ls="none", marker="s", ms=8, label="empty bin (no data)")
    ax.plot([], [], color="#c44e52", lw=1.5, label="mean confidence in bin")
    ax.add_patch(
        _rect(0, 0, 0, 0, facecolor="none", edgecolor="#c44e52", hatch="\\\\", label="gap")
    )
    ax.plot([], [], ls="--", color="0.3", lw=1, label="perfect calibration")


def reliability_legend(fig, axes: list, counts_axes: list | None = None, ncol: int = 4):
    """One legend for a figure of reliability diagrams, under all the axes.

    Entries are gathered from ``axes`` (and ``counts_axes``), without duplicates.
    """
    seen: dict = {}
    for a in list(axes) + list(counts_axes or []):
        for h, lab in zip(*a.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="lower center",
            ncol=ncol,
            fontsize=8,
            frameon=False,
        )


def _rect(x, y, w, h, **kw):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, **kw)


def confidence_histogram(
    result: MetricResult, ax: Any = None, title: str | None = None, legend: str = "below"
):
    """Number of samples per confidence bin, with mean confidence and accuracy marked.

    Parameters
    ----------
    result : MetricResult
        From :func:`expected_calibration_error`.
    ax : matplotlib Axes, optional
    title : str, optional
    legend : {"below", "none"}
        Where the legend goes: under the axes, or nowhere (a figure legend).

    Returns
    -------
    matplotlib.figure.Figure
    """
    b = result.bins
    if b is None or b.counts.ndim != 1:
        raise ValueError("confidence_histogram needs a top-label binned result (bins shaped (M,))")
    fig, ax = _ax(ax)
    edges = b.edges
    ax.bar(
        edges[:-1],
        b.counts,
        width=np.diff(edges),
        align="edge",
        color="0.55",
        edgecolor="white",
        label="samples in bin",
    )
    full = b.counts > 0
    n = b.counts.sum()
    mean_conf = float((b.confidence[full] * b.counts[full]).sum() / n)
    acc = float((b.accuracy[full] * b.counts[full]).sum() / n)
    ax.axvline(mean_conf, color="#c44e52", lw=1.5, label="mean confidence (all)")
    ax.axvline(acc, color="#4c72b0", lw=1.5, ls="--", label="accuracy (all)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("count")
    note = f"mean confidence {mean_conf:.3f}, accuracy {acc:.3f}"
    ax.text(0.02, 0.95, note, transform=ax.transAxes, fontsize=7, va="top", color="0.2")
    ax.set_ylim(0, max(1, int(b.counts.max())) * 1.35)  # room for the note above the bars
    if legend == "below":
        legend_below(ax)
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig


def energy_probability_scatter(
    energies: Any, labels: Any, beta: float, ax: Any = None, title: str | None = None
):
    """Raw energy of the predicted label vs its calibrated probability, coloured by correctness.

    Same arg-min, different meaning: the x axis is :math:`\\min_k E(x, k)`, the y axis
    :math:`\\max_k p_\\beta(k \\mid x)`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ._inputs import as_labels, check_energies
    from .scores import confidence_scores

    e = check_energies(energies)
    y = as_labels(labels, e.shape[0], e.shape[1], device=e.device)
    sc = confidence_scores(e, beta)
    correct = (e.argmin(1) == y).cpu().numpy()
    x = (-sc["energy"]).cpu().numpy()
    p = sc["probability"].cpu().numpy()
    fig, ax = _ax(ax)
    ax.scatter(x[correct], p[correct], s=6, alpha=0.5, color="#4c72b0", label="correct")
    ax.scatter(
        x[~correct], p[~correct], s=10, alpha=0.8, color="#c44e52", marker="x", label="wrong"
    )
    ax.set_xlabel("lowest energy  min_k E(x, k)")
    ax.set_ylabel(f"max probability at beta = {beta:.3g}")
    ax.set_ylim(0, 1.02)
    legend_below(ax)
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig


_SCORE_LABEL = {
    "energy": "raw energy  -min E",
    "probability": "calibrated max probability",
    "neg_free_energy": "negative free energy",
}


def risk_coverage_plot(comparison: Any, ax: Any = None, title: str | None = None):
    """Risk-coverage curves of the scores in a :class:`ScoreComparison`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _ax(ax)
    for name, rc in comparison.risk_coverage.items():
        auc = comparison.auroc[name]
        ax.plot(
            rc.coverage,
            rc.risk,
            lw=1.5,
            label=f"{_SCORE_LABEL.get(name, name)} (AURC {rc.aurc:.3f}, AUROC {auc.value:.3f})",
        )
    ax.axhline(1 - comparison.accuracy, color="0.5", ls=":", lw=1, label="error rate, no rejection")
    ax.set_xlabel("coverage (fraction kept, most confident first)")
    ax.set_ylabel("risk (error rate among kept)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    legend_below(ax, ncol=1)
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig


def ood_histogram(
    energies_in: Any, energies_out: Any, beta: float, ax: Any = None, title: str | None = None
):
    """Histograms of the negative free energy for in- and out-of-distribution inputs.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .scores import confidence_scores

    si = confidence_scores(energies_in, beta)["neg_free_energy"].cpu().numpy()
    so = confidence_scores(energies_out, beta)["neg_free_energy"].cpu().numpy()
    fig, ax = _ax(ax)
    bins = np.histogram_bin_edges(np.concatenate([si, so]), bins=40)
    ax.hist(si, bins=bins, alpha=0.6, density=True, label="in-distribution", color="#4c72b0")
    ax.hist(so, bins=bins, alpha=0.6, density=True, label="out-of-distribution", color="#c44e52")
    ax.set_xlabel(f"negative free energy  -F(x) at beta = {beta:.3g}")
    ax.set_ylabel("density")
    legend_below(ax)
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig


def pit_histogram(pit: Any, ax: Any = None, title: str | None = None):
    """Histogram of PIT values (flat for a calibrated predictive).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _ax(ax)
    h = pit.histogram
    m = len(h)
    ax.bar(np.arange(m) / m, h, width=1 / m, align="edge", color="0.55", edgecolor="white")
    ax.axhline(h.sum() / m, color="#c44e52", ls="--", lw=1, label="uniform")
    ax.set_xlabel("PIT")
    ax.set_ylabel("count")
    ax.set_title(_text(title) if title else f"PIT (KS p = {pit.ks_pvalue:.3g})", fontsize=10)
    legend_below(ax)
    return fig


def metric_bars(rows: list, metric: str, ax: Any = None, title: str | None = None):
    """Horizontal bars of one metric (with its CI) for each row of a combination table.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _ax(ax)
    names = [r.name for r in rows]
    res = [getattr(r, metric) for r in rows]
    vals = np.array([r.value for r in res])
    lo = np.array([r.ci_low for r in res])
    hi = np.array([r.ci_high for r in res])
    ypos = np.arange(len(rows))[::-1]
    ax.barh(ypos, vals, color="#4c72b0", alpha=0.8)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        # the interval as a segment (a binned error's interval need not contain its value)
        ax.hlines(ypos[ok], lo[ok], hi[ok], color="0.15", lw=1.5, label="95% bootstrap CI")
        ax.plot(lo[ok], ypos[ok], "|", color="0.15", ms=8)
        ax.plot(hi[ok], ypos[ok], "|", color="0.15", ms=8)
        legend_below(ax, ncol=1)
    ax.set_yticks(ypos, [_text(n) for n in names], fontsize=8)
    ax.set_xlabel(metric.upper() if metric != "accuracy" else "accuracy")
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig
