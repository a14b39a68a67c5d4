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
    "confidence_histogram",
    "energy_probability_scatter",
    "risk_coverage_plot",
    "ood_histogram",
    "pit_histogram",
    "metric_bars",
    "new_figure",
    "figure_png",
]


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.2, 3.6)):
    """A figure with a grid of axes (no pyplot); returns ``(fig, axes)`` with axes flattened."""
    from matplotlib.figure import Figure

    w, h = size[0] * ncols, size[1] * nrows
    fig = Figure(figsize=(w, h))
    # fixed margins in inches (a layout engine would re-measure every text box at each draw)
    fig.subplots_adjust(
        left=0.75 / w,
        right=1 - 0.15 / w,
        bottom=0.55 / h,
        top=1 - 0.35 / h,
        wspace=0.32,
        hspace=0.4,
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def figure_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, rendered with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
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


def reliability_diagram(result: MetricResult, ax: Any = None, title: str | None = None):
    """Reliability diagram of a top-label :func:`expected_calibration_error` result.

    One bar per **non-empty** bin, spanning the bin, with height = accuracy in the bin; the
    mean confidence of the bin is marked by a red tick and the gap shaded. Empty bins are
    left blank (no bar, labelled "empty bins" in the legend), never drawn as accuracy 0.

    Parameters
    ----------
    result : MetricResult
        From :func:`expected_calibration_error` (``result.bins`` shaped ``(M,)``).
    ax : matplotlib Axes, optional
    title : str, optional

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
    fig, ax = _ax(ax)
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
        ax.plot([], [], color="0.85", ls="none", marker="s", ms=8, label="empty bin (no data)")
    ax.plot([], [], color="#c44e52", lw=1.5, label="mean confidence")
    ax.add_patch(
        _rect(0, 0, 0, 0, facecolor="none", edgecolor="#c44e52", hatch="\\\\", label="gap")
    )
    ax.plot([0, 1], [0, 1], ls="--", color="0.3", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    txt = f"{result.name.upper()} = {result.value:.4f}"
    if result.n_bootstrap:
        txt += (
            f"\n{int(round(100 * result.ci_level))}% CI [{result.ci_low:.4f}, {result.ci_high:.4f}]"
        )
    if result.consistency:
        txt += f"\nif calibrated: {result.consistency['mean']:.4f} (mean)"
    ax.text(0.03, 0.97, txt, transform=ax.transAxes, va="top", fontsize=8)
    ax.legend(loc="lower right", fontsize=7)
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig


def _rect(x, y, w, h, **kw):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, **kw)


def confidence_histogram(result: MetricResult, ax: Any = None, title: str | None = None):
    """Number of samples per confidence bin, with mean confidence and accuracy marked.

    Parameters
    ----------
    result : MetricResult
        From :func:`expected_calibration_error`.
    ax : matplotlib Axes, optional
    title : str, optional

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
        edges[:-1], b.counts, width=np.diff(edges), align="edge", color="0.55", edgecolor="white"
    )
    full = b.counts > 0
    n = b.counts.sum()
    mean_conf = float((b.confidence[full] * b.counts[full]).sum() / n)
    acc = float((b.accuracy[full] * b.counts[full]).sum() / n)
    ax.axvline(mean_conf, color="#c44e52", lw=1.5, label=f"mean confidence {mean_conf:.3f}")
    ax.axvline(acc, color="#4c72b0", lw=1.5, ls="--", label=f"accuracy {acc:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("count")
    ax.legend(loc="upper left", fontsize=7)
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
    ax.legend(fontsize=7)
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
    ax.legend(fontsize=7)
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
    ax.legend(fontsize=7)
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
    ax.legend(fontsize=7)
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
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(ypos, [_text(n) for n in names], fontsize=8)
    ax.set_xlabel(metric.upper() if metric != "accuracy" else "accuracy")
    if title:
        ax.set_title(_text(title), fontsize=10)
    return fig
