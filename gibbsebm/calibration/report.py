"""Calibration reports: one self-contained HTML file, ``report.json`` and ``report.md``.

:func:`report` takes evaluation energies of one or several systems, fits beta for each (on
separate fit data, or by k-fold cross-fitting on the evaluation data when none is given),
and writes:

* ``report.html``: every table and figure, plots embedded as base64 PNG (no external files);
* ``report.json``: every number shown, plus the settings and a description of the data
  (sizes, SHA-256 digests of the arrays, where beta was fitted);
* ``report.md`` with the PNG figures in ``figures/`` next to it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..runtime.files import atomic_write_bytes
from . import _page, _verdict
from ._inputs import as_labels
from .combine import CombinationResult, check_systems, combine, fold_indices
from .metrics import (
    DEFAULT_BOOTSTRAP,
    MetricResult,
    _check_binning_args,
    _check_common,
    _mean_metric,
    accuracy,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
)
from .scores import OODComparison, ScoreComparison, compare_confidence_scores, compare_ood_scores
from .temperature import BetaFit, fit_beta

__all__ = ["report", "CalibrationReport", "SystemReport", "METRIC_NAMES"]

#: Metrics in the before/after tables, in display order, with their labels.
METRIC_NAMES = {
    "nll": "NLL (nats)",
    "ece": "ECE",
    "mce": "MCE",
    "rmsce": "RMSCE",
    "classwise_ece": "classwise ECE",
    "brier": "Brier (sum form, [0, 2])",
    "accuracy": "accuracy",
}


@dataclass(frozen=True)
class SystemReport:
    """Everything the report says about one system.

    Attributes
    ----------
    name : str
    beta_fit : BetaFit
        Beta fitted on all fit data (the fit data, or the whole evaluation set when
        cross-fitting).
    fold_betas : list of float or None
        Betas of the cross-fitting folds (``None`` with separate fit data).
    before, after : dict of str to MetricResult
        Metrics at beta = 1 and at the fitted beta (out-of-fold when cross-fitted).
    scores : ScoreComparison
        Raw energy vs calibrated probability for error detection (at ``beta_fit.beta``).
    ood : OODComparison or None
    """

    name: str
    beta_fit: BetaFit
    fold_betas: list | None
    before: dict
    after: dict
    scores: ScoreComparison
    ood: OODComparison | None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "beta_fit": self.beta_fit.to_dict(),
            "fold_betas": self.fold_betas,
            "before": {k: v.to_dict() for k, v in self.before.items()},
            "after": {k: v.to_dict() for k, v in self.after.items()},
            "scores": self.scores.to_dict(),
            "ood": None if self.ood is None else self.ood.to_dict(),
        }


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`report` wrote, and the numbers behind it.

    Attributes
    ----------
    output_dir, html_path, json_path, markdown_path : Path
    figures : dict of str to Path
        PNG files written for ``report.md`` (the HTML embeds the same images).
    systems : dict of str to SystemReport
    combination : CombinationResult or None
        Present when two or more systems were given.
    data : dict
        The content of ``report.json``.
    """

    output_dir: Path
    html_path: Path
    json_path: Path
    markdown_path: Path
    figures: dict
    systems: dict
    combination: CombinationResult | None
    data: dict


def _digest(t: torch.Tensor) -> str:
    a = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()).hexdigest()


def _metrics(log_p: torch.Tensor, y: torch.Tensor, n_bins: int, n_bootstrap: int, seed: int):
    p = log_p.exp()
    p = p / p.sum(1, keepdim=True)
    kw = {"n_bootstrap": n_bootstrap, "seed": seed}
    nll = _mean_metric("nll", -log_p.gather(1, y[:, None]).squeeze(1), n_bootstrap, seed, 0.95)
    return {
        "nll": nll,
        "ece": expected_calibration_error(p, y, n_bins=n_bins, **kw),
        "mce": expected_calibration_error(p, y, n_bins=n_bins, norm="max", **kw),
        "rmsce": expected_calibration_error(p, y, n_bins=n_bins, norm="l2", **kw),
        "classwise_ece": classwise_calibration_error(p, y, n_bins=n_bins, **kw),
        "brier": brier_score(p, y, **kw),
        "accuracy": accuracy(p, y, **kw),
    }


def _fmt(v: float, spec: str = ".4f") -> str:
    return _page.num(v, spec)


def _fmt_metric(r: MetricResult) -> str:
    if r.n_bootstrap == 0 or math.isnan(r.ci_low):
        return _fmt(r.value)
    return f"{_fmt(r.value)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"


def _fmt_beta(b: BetaFit) -> str:
    return f"{_fmt(b.beta, '.4g')} ± {_fmt(b.stderr, '.2g')}"


def report(
    energies: Any,
    labels: Any,
    *,
    output_dir: str | Path,
    fit_energies: Any = None,
    fit_labels: Any = None,
    ood_energies: Any = None,
    n_bins: int = 15,
    n_folds: int = 5,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    title: str = "Calibration report",
    data_description: str | None = None,
    sources: Mapping[str, str] | None = None,
    force: bool = False,
) -> CalibrationReport:
    """Write a calibration report (HTML with embedded plots, JSON, Markdown) to ``output_dir``.

    For each system: metrics at beta = 1 and at the fitted beta with bootstrap CIs,
    reliability diagrams and confidence histograms before/after, raw energy vs calibrated
    probability (scatter, risk-coverage curves, error-detection AUROC), the free-energy OOD
    comparison when ``ood_energies`` is given, and -- with two or more systems -- the
    combination table of :func:`combine`.

    Parameters
    ----------
    energies : (N, K) array/Tensor, or mapping of str to (N, K)
        Evaluation energies :math:`E(x_i, k)` of one system or of several separately
        trained systems over the same inputs and labels.
    labels : (N,) integer labels
    output_dir : str or Path
        Folder to write into (created if needed).
    fit_energies, fit_labels : optional
        Separate held-out data to fit beta on (same system names). Without them beta is
        cross-fitted with ``n_folds`` folds (each evaluation sample is scored with a beta
        fitted on the other folds), and the report says so.
    ood_energies : (M, K) array/Tensor or mapping of str to (M, K), optional
        Energies of out-of-distribution inputs for the free-energy comparison.
    n_bins : int
        Bins of the binned calibration errors and diagrams.
    n_folds : int
        Cross-fitting folds.
    n_bootstrap : int
        Bootstrap resamples for every CI.
    seed : int
        Seed for the bootstrap, the consistency resampling and the fold split.
    title : str
    data_description : str, optional
        Free text on what the data are, copied into the report.
    sources : mapping of str to str, optional
        Where the arrays came from (e.g. file paths), copied into the report.
    force : bool
        Overwrite the report files of an earlier report in ``output_dir``. Without it a folder
        that already holds ``report.html``, ``report.json``, ``report.md`` or figures is
        refused (:class:`FileExistsError`), so a report is never lost silently.

    Returns
    -------
    CalibrationReport

    Notes
    -----
    System names, the title, the description and the sources are user text: they are escaped
    in the HTML (``html.escape``) and in the Markdown (HTML-special characters as entities,
    Markdown punctuation backslash-escaped, line breaks as spaces), and shown literally in the
    plots. Figure files are named ``<kind>_<slug>-<hash>.png`` where the hash is the first 8
    hex digits of the SHA-256 of the name, so names that map to the same slug (``a/b`` and
    ``a_b``) never share a file.

    Examples
    --------
    >>> import torch, tempfile
    >>> g = torch.Generator().manual_seed(0)
    >>> e = torch.randn(300, 3, generator=g, dtype=torch.float64)
    >>> y = torch.multinomial(torch.softmax(-2 * e, 1), 1, generator=g)[:, 0]
    >>> rep = report(e, y, output_dir=tempfile.mkdtemp(), n_bootstrap=50)  # doctest: +SKIP
    >>> rep.html_path.name  # doctest: +SKIP
    'report.html'
    """
    from . import plots

    _check_common(n_bootstrap, 0.95)
    _check_binning_args(n_bins, "uniform", "l1")
    if fit_energies is None and (
        not isinstance(n_folds, int) or isinstance(n_folds, bool) or n_folds < 2
    ):
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(force, bool):
        raise ValueError(f"force must be True or False, got {force!r}")
    systems = check_systems(energies)
    names = list(systems)
    first = systems[names[0]]
    n, k = first.shape
    y = as_labels(labels, n, k, device=first.device)
    if k < 2:
        raise ValueError("a calibration report needs at least two labels (K >= 2)")
    if (fit_energies is None) != (fit_labels is None):
        raise ValueError("give both fit_energies and fit_labels, or neither")
    if fit_energies is not None:
        fit_sys = check_systems(fit_energies, "fit_energies")
        if set(fit_sys) != set(names):
            if len(fit_sys) == 1 and len(names) == 1:
                fit_sys = {names[0]: next(iter(fit_sys.values()))}
            else:
                raise ValueError(
                    f"fit_energies has systems {sorted(fit_sys)} but energies has {sorted(names)}"
                )
        fit_sys = {s: fit_sys[s].to(first.device) for s in names}
        nf = next(iter(fit_sys.values())).shape[0]
        if next(iter(fit_sys.values())).shape[1] != k:
            raise ValueError("fit_energies and energies must have the same number of labels K")
        fy = as_labels(fit_labels, nf, k, device=first.device)
    ood_sys = None
    if ood_energies is not None:
        ood_sys = check_systems(ood_energies, "ood_energies")
        if set(ood_sys) != set(names):
            if len(ood_sys) == 1 and len(names) == 1:
                ood_sys = {names[0]: next(iter(ood_sys.values()))}
            else:
                raise ValueError(
                    f"ood_energies has systems {sorted(ood_sys)} but energies has {sorted(names)}"
                )
        if next(iter(ood_sys.values())).shape[1] != k:
            raise ValueError("ood_energies and energies must have the same number of labels K")
    out = Path(output_dir)
    _check_output_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)

    folds = None if fit_energies is not None else fold_indices(n, n_folds, seed)
    sys_reports: dict[str, SystemReport] = {}
    figures: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    captions_md: dict[str, str] = {}
    log_probs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for s in names:
        e = systems[s]
        lp_before = torch.log_softmax(-e, 1)
        before = _metrics(lp_before, y, n_bins, n_bootstrap, seed)
        if folds is None:
            bf = fit_beta(fit_sys[s], fy)
            lp_after = torch.log_softmax(-bf.beta * e, 1)
            fold_betas = None
        else:
            bf = fit_beta(e, y)
            lp_after = torch.empty_like(e)
            fold_betas = []
            for f in folds:
                f = f.to(e.device)
                train = torch.ones(n, dtype=torch.bool, device=e.device)
                train[f] = False
                fb = fit_beta(e[train], y[train]).beta
                fold_betas.append(fb)
                lp_after[f] = torch.log_softmax(-fb * e[f], 1)
        after = _metrics(lp_after, y, n_bins, n_bootstrap, seed)
        log_probs[s] = (lp_before, lp_after)
        scores = compare_confidence_scores(e, y, bf.beta, n_bootstrap=n_bootstrap, seed=seed)
        ood = None
        if ood_sys is not None:
            ood = compare_ood_scores(e, ood_sys[s].to(e.device), bf.beta)
        sys_reports[s] = SystemReport(s, bf, fold_betas, before, after, scores, ood)

        fig, ax = plots.new_figure(
            ncols=2, nrows=2, size=(4.0, 2.2), bottom=0.9, top=0.6, height_ratios=[3, 1],
            hspace=0.12,
        )  # fmt: skip
        plots.reliability_diagram(
            before["ece"], ax[0], title=f"{s}: beta = 1", counts_ax=ax[2], legend="none"
        )
        plots.reliability_diagram(
            after["ece"], ax[1], title=f"{s}: beta = {bf.beta:.3g}", counts_ax=ax[3],
            legend="none",
        )  # fmt: skip
        plots.reliability_legend(fig, [ax[0], ax[1]], [ax[2]])
        key = f"reliability_{_slug(s)}"
        figures[key] = plots.figure_png(fig)
        captions[key] = (
            f"{s}: reliability diagrams before (beta = 1) and after fitting beta, each with the "
            f"number of samples per bin under it; grey columns are empty bins ({n_bins} "
            "equal-width bins, right-closed)."
        )
        captions_md[key] = _md(s) + captions[key][len(s) :]  # the caption starts with s
        ncols = 3 if ood is not None else 2
        fig, ax = plots.new_figure(ncols=ncols, size=(4.4, 3.6))
        plots.energy_probability_scatter(e, y, bf.beta, ax[0], title=f"{s}: energy vs probability")
        plots.risk_coverage_plot(scores, ax[1], title="selective prediction")
        if ood is not None:
            plots.ood_histogram(e, ood_sys[s], bf.beta, ax[2], title="OOD: free energy")
        key = f"energy_vs_probability_{_slug(s)}"
        figures[key] = plots.figure_png(fig)
        captions[key] = (
            f"{s}: lowest energy vs calibrated max probability (same arg-min), and the "
            "risk-coverage curves of the raw energy, the calibrated probability and the negative "
            "free energy as confidence scores"
            + ("; free-energy histograms of in- vs out-of-distribution inputs." if ood else ".")
        )
        captions_md[key] = _md(s) + captions[key][len(s) :]

    comb = None
    if len(names) > 1:
        comb = combine(
            systems,
            y,
            fit_energies=fit_sys if fit_energies is not None else None,
            fit_labels=fy if fit_energies is not None else None,
            n_folds=n_folds,
            n_bins=n_bins,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        fig, ax = plots.new_figure(ncols=2, size=(5.2, 0.45 * len(comb.rows) + 1.2))
        fig.subplots_adjust(left=0.13, wspace=0.45)
        plots.metric_bars(comb.rows, "nll", ax[0], title="NLL (lower is better)")
        plots.metric_bars(comb.rows, "ece", ax[1], title="ECE (lower is better)")
        figures["combination"] = plots.figure_png(fig)
        captions["combination"] = (
            "Combination of the systems: each member raw and calibrated, the raw sum of energies, "
            "the product of calibrated experts and jointly fitted weights (95% bootstrap CIs)."
        )
        captions_md["combination"] = captions["combination"]

    fitted_on = (
        f"separate fit data ({int(fy.shape[0])} samples)"
        if fit_energies is not None
        else (
            f"no separate fit data was given: beta was cross-fitted with {n_folds} folds on the "
            "evaluation data (each sample scored with a beta fitted on the other folds); the beta "
            "shown is fitted on all evaluation data"
        )
    )
    data_info = {
        "n_eval": n,
        "num_classes": k,
        "systems": names,
        "eval_labels_sha256": _digest(y),
        "eval_energies_sha256": {s: _digest(systems[s]) for s in names},
        "label_counts": torch.bincount(y, minlength=k).cpu().tolist(),
        "beta_fitted_on": fitted_on,
        "cross_fitted": fit_energies is None,
        "n_folds": n_folds if fit_energies is None else None,
        "n_fit": int(fy.shape[0]) if fit_energies is not None else None,
        "fit_labels_sha256": _digest(fy) if fit_energies is not None else None,
        "fit_energies_sha256": (
            {s: _digest(fit_sys[s]) for s in names} if fit_energies is not None else None
        ),
        "n_ood": int(next(iter(ood_sys.values())).shape[0]) if ood_sys is not None else None,
        "description": data_description,
        "sources": dict(sources) if sources else None,
    }
    fig_paths = {}
    for key, png in figures.items():
        p = out / "figures" / f"{key}.png"
        atomic_write_bytes(png, p)
        fig_paths[key] = p
    from .. import __version__

    verdict = _verdict.verdict(
        sys_reports, log_probs, y, n_bins, n_bootstrap, seed, fit_energies is None
    )
    data = {
        "title": title,
        "verdict": verdict,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gibbsebm_version": __version__,
        "settings": {
            "n_bins": n_bins,
            "binning": "uniform, right-closed ((m-1)/M, m/M]",
            "n_bootstrap": n_bootstrap,
            "ci_level": 0.95,
            "seed": seed,
            "n_folds": n_folds,
        },
        "data": data_info,
        "systems": {s: r.to_dict() for s, r in sys_reports.items()},
        "combination": None if comb is None else comb.to_dict(),
        "figures": {k_: {"file": f"figures/{k_}.png", "caption": captions[k_]} for k_ in figures},
    }
    json_path = out / "report.json"
    atomic_write_bytes(json.dumps(data, indent=2, allow_nan=False).encode("utf-8"), json_path)
    md_path = out / "report.md"
    md_text = _markdown(data, sys_reports, comb, captions_md)
    atomic_write_bytes(md_text.encode("utf-8"), md_path)
    html_path = out / "report.html"
    atomic_write_bytes(_html(data, sys_reports, comb, figures, captions).encode("utf-8"), html_path)
    return CalibrationReport(
        output_dir=out,
        html_path=html_path,
        json_path=json_path,
        markdown_path=md_path,
        figures=fig_paths,
        systems=sys_reports,
        combination=comb,
        data=data,
    )


#: Files a report writes into its folder.
REPORT_FILES = ("report.html", "report.json", "report.md", "figures")


def _check_output_dir(out: Path, force: bool) -> None:
    """Refuse links and, without ``force``, a folder that holds an earlier report."""
    for p in [out] + [out / f for f in REPORT_FILES]:
        if p.is_symlink():
            raise ValueError(
                f"{p} is a symbolic link; a report is not written through links (remove it or "
                "choose another output folder)"
            )
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} exists and is not a folder")
    fig = out / "figures"
    earlier = [f for f in REPORT_FILES[:3] if (out / f).exists()]
    if fig.is_dir() and any(fig.iterdir()):
        earlier.append("figures/")
    if earlier and not force:
        raise FileExistsError(
            f"{str(out)!r} already holds a report ({', '.join(earlier)}); choose another output "
            "folder or pass force=True (--force on the command line) to overwrite it"
        )
    if fig.is_dir():
        links = [c.name for c in fig.iterdir() if c.is_symlink()]
        if links:
            raise ValueError(f"{fig} holds symbolic links ({', '.join(links[:3])}); remove them")


def _slug(s: str) -> str:
    """A file-name-safe, collision-free key for the name ``s``: ``<slug>-<8 hex digits>``."""
    keep = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in s)[:40]
    return f"{keep or 'system'}-{hashlib.sha256(s.encode('utf-8')).hexdigest()[:8]}"


_md = _page.md  # user text for Markdown (kept under this name for the report's callers)


def _plain(text: Any) -> str:
    return str(text)


# ----------------------------------------------------------------------------- rendering
def _tables(
    sys_reports: dict, comb: CombinationResult | None, u: Any = _plain
) -> list[tuple[str, list, list]]:
    """The report's tables as (title, header, rows) with formatted cells; user text (system
    names) goes through ``u`` (the Markdown escape, or nothing for HTML, escaped whole)."""
    tables = []
    hdr = ["system", "beta (± s.e.)", "T = 1/beta", "fold betas"]
    rows = []
    for s, r in sys_reports.items():
        rows.append(
            [
                u(s),
                _fmt_beta(r.beta_fit),
                _fmt(r.beta_fit.temperature, ".4g"),
                ", ".join(_fmt(b, ".4g") for b in r.fold_betas) if r.fold_betas else "-",
            ]
        )
    tables.append(("Fitted inverse temperature", hdr, rows))
    for s, r in sys_reports.items():
        rows = []
        for m, label in METRIC_NAMES.items():
            rows.append([label, _fmt_metric(r.before[m]), _fmt_metric(r.after[m])])
        cons = [
            "ECE of a perfectly calibrated model (consistency resampling, mean / 95%)",
            f"{_fmt(r.before['ece'].consistency.get('mean'))} / {_fmt(r.before['ece'].consistency.get('q95'))}",
            f"{_fmt(r.after['ece'].consistency.get('mean'))} / {_fmt(r.after['ece'].consistency.get('q95'))}",
        ]
        rows.append(cons)
        tables.append(
            (
                f"{u(s)}: metrics before and after fitting beta (95% bootstrap CI)",
                ["metric", "beta = 1", f"beta = {_fmt(r.beta_fit.beta, '.4g')}"],
                rows,
            )
        )
        sc = r.scores
        rows = []
        for name, a in sc.auroc.items():
            rc = sc.risk_coverage[name]
            rows.append(
                [
                    name,
                    f"{_fmt(a.value)} ± {_fmt(a.stderr)}",
                    f"{_fmt(rc.aurc)} [{_fmt(rc.aurc_ci_low)}, {_fmt(rc.aurc_ci_high)}]",
                ]
            )
        tables.append(
            (
                f"{u(s)}: confidence scores for error detection (accuracy {_fmt(sc.accuracy)})",
                ["score", "AUROC correct vs wrong (± DeLong s.e.)", "AURC [95% CI]"],
                rows,
            )
        )
        if r.ood is not None:
            rows = [
                [
                    name,
                    f"{_fmt(a.value)} ± {_fmt(a.stderr)}",
                    _fmt(r.ood.fpr_at_95_tpr[name]),
                ]
                for name, a in r.ood.auroc.items()
            ]
            tables.append(
                (
                    f"{u(s)}: out-of-distribution detection ({r.ood.n_in} in, {r.ood.n_out} out)",
                    ["score", "AUROC in vs out (± s.e.)", "FPR at 95% TPR"],
                    rows,
                )
            )
    if comb is not None:
        rows = []
        for r in comb.rows:
            coef = ", ".join(f"{u(t)}: {_fmt(c, '.4g')}" for t, c in r.coefficients.items())
            rows.append(
                [
                    u(r.name),
                    coef,
                    _fmt_metric(r.nll),
                    _fmt_metric(r.ece),
                    _fmt_metric(r.brier),
                    _fmt_metric(r.accuracy),
                ]
            )
        tables.append(
            (
                f"Combination of systems (fitted on: {comb.fitted_on})",
                ["energy", "coefficients", "NLL", "ECE", "Brier", "accuracy"],
                rows,
            )
        )
    return tables


def _data_lines(data: dict, u: Any = _plain) -> list[str]:
    d = data["data"]
    lines = [
        f"Evaluation data: {d['n_eval']} samples, {d['num_classes']} labels, systems: "
        + ", ".join(u(x) for x in d["systems"]),
        f"Label counts: {d['label_counts']}",
        f"Beta fitted on: {d['beta_fitted_on']}",
        f"SHA-256 of evaluation labels: {d['eval_labels_sha256']}",
    ]
    for s, h in d["eval_energies_sha256"].items():
        lines.append(f"SHA-256 of evaluation energies [{u(s)}]: {h}")
    if d["n_fit"] is not None:
        lines.append(f"SHA-256 of fit labels: {d['fit_labels_sha256']}")
    if d["n_ood"] is not None:
        lines.append(f"Out-of-distribution inputs: {d['n_ood']}")
    if d["description"]:
        lines.append(f"Description: {u(d['description'])}")
    if d["sources"]:
        for kk, v in d["sources"].items():
            lines.append(f"Source [{u(kk)}]: {u(v)}")
    st = data["settings"]
    lines.append(
        f"Settings: {st['n_bins']} bins ({st['binning']}), {st['n_bootstrap']} bootstrap "
        f"resamples, seed {st['seed']}; gibbsebm {data['gibbsebm_version']}, {data['created']}"
    )
    return lines


_NOTES = (
    "p_beta(k|x) = softmax(-beta E(x, .)); beta = 1 is the energy as trained. ECE/MCE/RMSCE are "
    "top-label with equal-width right-closed bins ((m-1)/M, m/M] (Guo et al. 2017); classwise "
    "ECE as in Kull et al. (2019); Brier is the multiclass sum (range [0, 2]); NLL is a mean in "
    "nats. Intervals are 95% percentile bootstrap intervals of the estimator; binned errors are "
    "biased upward, so compare them with the consistency-resampling reference of a perfectly "
    "calibrated model with the same confidences. The confidence-score and OOD comparisons use "
    "the beta shown in the first table (one beta for all samples)."
)


def _markdown(data: dict, sys_reports: dict, comb, captions: dict) -> str:
    """The Markdown report; ``captions`` are already Markdown (user text escaped)."""
    v = data["verdict"]
    out = [f"# {_md(data['title'])}", "", f"**Verdict.** {_md(v['text'])}", ""]
    out += ["## Data", ""]
    out += [f"- {line}" for line in _data_lines(data, _md)]
    out += ["", _NOTES, ""]
    for title, hdr, rows in _tables(sys_reports, comb, _md):
        out += [f"## {title}", ""] + _page.md_table(hdr, rows) + [""]
    out += ["## Figures", ""]
    for key, cap in captions.items():
        out += [f"![{key}](figures/{key}.png)", "", f"*{cap}*", ""]
    return "\n".join(out)


def _html(data: dict, sys_reports: dict, comb, figures: dict, captions: dict) -> str:
    v = data["verdict"]
    body = [_page.verdict(v["text"], v.get("tone", "")), "<h2>Data</h2>", '<ul class="data">']
    body += [f"<li>{_page.html.escape(line)}</li>" for line in _data_lines(data)]
    body += ["</ul>", f'<p class="note">{_page.html.escape(_NOTES)}</p>']
    for title, hdr, rows in _tables(sys_reports, comb):
        body.append(_page.table(title, hdr, rows))
    body.append("<h2>Figures</h2>")
    for key, png in figures.items():
        body.append(_page.figure(key, png, captions[key]))
    return _page.page(data["title"], body)
