"""``gibbsebm calibrate``: a calibration report from energies stored in files.

The face of :mod:`gibbsebm.calibration` on the command line (the calibration package itself
never imports the command line). Input files:

* ``.npz``: arrays ``energies`` (N, K) and ``labels`` (N,); several systems as
  ``energies_<name>``; optionally ``fit_energies[_<name>]``/``fit_labels`` (data to fit beta
  on) and ``ood_energies[_<name>]`` (out-of-distribution inputs);
* ``.npy``: one (N, K) energy matrix (labels from ``--labels``);
* ``.csv``: a header row; a column named ``label`` holds the labels, every other column is
  the energy of one class, in order.

Every ``--energies`` file is one system, named after the file (``--names`` overrides), or
several systems for an ``.npz`` with ``energies_<name>`` arrays. Label files (``--labels``,
``--fit-labels``) are ``.npy``, ``.csv``/``.txt`` (one integer per line, or a ``label``
column) or ``.npz`` (array ``labels``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import UsageError

if TYPE_CHECKING:  # numpy is imported where it is used: ``--help`` does not need it
    import numpy as np

__all__ = ["add_parser", "run_calibrate", "load_energies", "load_labels"]

_REPORT_FILES = {"report.html", "report.json", "report.md", "figures"}


def _read_csv(path: Path) -> tuple[list[str] | None, np.ndarray]:
    import numpy as np

    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: the CSV file is empty")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    width = len(header) if header else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(
                f"{path}: line {i + 1 + (header is not None)} has {len(r)} columns, expected "
                f"{width} (blank lines are skipped in the count)"
            )
    try:
        arr = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric value in the CSV data ({exc})") from None
    return header, arr.reshape(len(rows), width)


def _load_array(path: Path) -> np.ndarray:
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read as a NumPy array ({exc})") from None


def load_energies(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """Read one energies file (see the module notes).

    Returns
    -------
    dict
        ``{"energies": {name: (N, K)}, "labels": (N,) or None, "fit_energies": {...} or None,
        "fit_labels": ..., "ood_energies": {...} or None}``.
    """
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise ValueError(f"energies file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    stem = name or p.stem
    out: dict[str, Any] = {
        "energies": {},
        "labels": None,
        "fit_energies": None,
        "fit_labels": None,
        "ood_energies": None,
    }
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            for prefix, slot in (
                ("energies", "energies"),
                ("fit_energies", "fit_energies"),
                ("ood_energies", "ood_energies"),
            ):
                found = {}
                if prefix in keys:
                    found[stem] = z[prefix]
                for k_ in sorted(keys):
                    if k_.startswith(prefix + "_"):
                        found[k_[len(prefix) + 1 :]] = z[k_]
                if found:
                    out[slot] = found
            if not out["energies"]:
                raise ValueError(
                    f"{p}: no array named 'energies' or 'energies_<name>' (found: "
                    f"{', '.join(sorted(keys)) or 'nothing'})"
                )
            if "labels" in keys:
                out["labels"] = z["labels"]
            if "fit_labels" in keys:
                out["fit_labels"] = z["fit_labels"]
    elif suffix == ".npy":
        out["energies"] = {stem: _load_array(p)}
    elif suffix in (".csv", ".txt"):
        header, arr = _read_csv(p)
        if header is None:
            out["energies"] = {stem: arr}
        else:
            lab = [i for i, h in enumerate(header) if h.lower() in ("label", "labels", "y")]
            if len(lab) > 1:
                raise ValueError(f"{p}: more than one label column in the header {header}")
            keep = [i for i in range(arr.shape[1]) if i not in lab]
            out["energies"] = {stem: arr[:, keep]}
            if lab:
                out["labels"] = arr[:, lab[0]]
    else:
        raise ValueError(
            f"{p}: unsupported file type {suffix!r}; use .npz, .npy or .csv (see "
            "'gibbsebm calibrate --help')"
        )
    for k_, v in out["energies"].items():
        if np.ndim(v) != 2:
            raise ValueError(
                f"{p}: energies {k_!r} must be a 2-D array (N inputs, K labels), got shape "
                f"{np.shape(v)}"
            )
    return out


def load_labels(path: str | Path) -> np.ndarray:
    """Read integer labels from ``.npy``, ``.npz`` (array ``labels``), ``.csv`` or ``.txt``."""
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise ValueError(f"labels file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        a = _load_array(p)
    elif suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "labels" not in z.files:
                raise ValueError(f"{p}: no array named 'labels'")
            a = z["labels"]
    elif suffix in (".csv", ".txt"):
        header, arr = _read_csv(p)
        if header is not None:
            lab = [i for i, h in enumerate(header) if h.lower() in ("label", "labels", "y")]
            if not lab and arr.shape[1] != 1:
                raise ValueError(f"{p}: no 'label' column in the header {header}")
            a = arr[:, lab[0] if lab else 0]
        else:
            if arr.shape[1] != 1:
                raise ValueError(f"{p}: expected one label per line, got {arr.shape[1]} columns")
            a = arr[:, 0]
    else:
        raise ValueError(f"{p}: unsupported labels file type {suffix!r}; use .npy, .npz or .csv")
    a = np.asarray(a).reshape(-1) if np.ndim(a) == 2 and 1 in np.shape(a) else np.asarray(a)
    return a


def _merge(files: list[str], names: list[str] | None, what: str) -> dict[str, Any]:
    import numpy as np

    if names is not None and len(names) != len(files):
        raise ValueError(
            f"--names has {len(names)} names for {len(files)} {what} files; give one per file"
        )
    merged: dict[str, Any] = {
        "energies": {},
        "labels": None,
        "fit_energies": {},
        "fit_labels": None,
        "ood_energies": {},
    }
    label_src = None
    for i, f in enumerate(files):
        d = load_energies(f, names[i] if names else None)
        for slot in ("energies", "fit_energies", "ood_energies"):
            for k_, v in (d[slot] or {}).items():
                if k_ in merged[slot]:
                    raise ValueError(
                        f"two systems are named {k_!r} (from {f}); rename a file or use --names"
                    )
                merged[slot][k_] = v
        for slot in ("labels", "fit_labels"):
            if d[slot] is not None:
                if merged[slot] is not None and not np.array_equal(merged[slot], d[slot]):
                    raise ValueError(f"the {slot} in {f} differ from those in {label_src}")
                merged[slot] = d[slot]
                label_src = f
    return merged


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``calibrate`` command to an ``argparse`` subparsers object.

    Parameters
    ----------
    subparsers
        The object returned by ``ArgumentParser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The new ``calibrate`` parser (its default ``_run`` is :func:`run_calibrate`).
    """
    p = subparsers.add_parser(
        "calibrate",
        help="calibration report (HTML, JSON, Markdown) from energies in files",
        description=(
            "Fit the inverse temperature beta of p(k|x) = softmax(-beta E(x, .)) and write a\n"
            "calibration report (report.html, report.json, report.md): metrics before/after\n"
            "with bootstrap CIs, reliability diagrams, raw energy vs calibrated probability,\n"
            "OOD scores and the combination of several systems.\n\n"
            "inputs:\n"
            "  .npz  arrays energies (or energies_<name>, one per system), labels, and\n"
            "        optionally fit_energies[_<name>], fit_labels, ood_energies[_<name>]\n"
            "  .npy  one (N, K) energy matrix E(x_i, k); labels from --labels\n"
            "  .csv  a header row, a 'label' column and one energy column per class\n\n"
            "Without fit data, beta is cross-fitted on the evaluation data (--folds) and the\n"
            "report says so."
        ),
        epilog=(
            "examples:\n"
            "  gibbsebm calibrate --energies val.npz --output-dir runs/calib\n"
            "  gibbsebm calibrate --energies lin.npy mlp.npy --labels y.npy \\\n"
            "      --fit-energies lin_fit.npy mlp_fit.npy --fit-labels y_fit.npy"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--energies",
        nargs="+",
        required=True,
        metavar="FILE",
        help="evaluation energies, one file per system (.npz, .npy or .csv)",
    )
    p.add_argument("--labels", metavar="FILE", help="evaluation labels (if not in the files)")
    p.add_argument("--names", nargs="+", metavar="NAME", help="system names, one per file")
    p.add_argument(
        "--fit-energies",
        nargs="+",
        metavar="FILE",
        help="held-out energies to fit beta on, one file per system (same order)",
    )
    p.add_argument("--fit-labels", metavar="FILE", help="labels of the fit data")
    p.add_argument(
        "--ood-energies",
        nargs="+",
        metavar="FILE",
        help="energies of out-of-distribution inputs, one file per system",
    )
    p.add_argument(
        "--output-dir", metavar="DIR", help="report folder (default runs/calibrate-<time>)"
    )
    p.add_argument("--n-bins", type=int, default=15, help="calibration bins (default 15)")
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples per CI (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--title", default="Calibration report", help="report title")
    p.add_argument("--description", help="free text describing the data, copied into the report")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an earlier report in --output-dir (default: refuse)",
    )
    p.set_defaults(_run=run_calibrate)
    return p


def _output_dir(arg: str | None, force: bool = False) -> Path:
    if arg:
        path = Path(arg)
    else:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"calibrate-{stamp}"
    if path.is_symlink():
        raise ValueError(f"output folder {str(path)!r} is a symbolic link; not followed")
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"output folder {str(path)!r} exists and is not a folder")
        links = [c.name for c in path.iterdir() if c.is_symlink()]
        if links:
            raise ValueError(
                f"output folder {str(path)!r} holds symbolic links ({', '.join(sorted(links)[:3])})"
                "; a report is not written through links"
            )
        earlier = sorted(c.name for c in path.iterdir() if c.name in _REPORT_FILES)
        if earlier and not force:
            raise ValueError(
                f"output folder {str(path)!r} already holds a report ({', '.join(earlier)}); "
                "choose another --output-dir or pass --force to overwrite it"
            )
        other = [c.name for c in path.iterdir() if c.name not in _REPORT_FILES]
        if other:
            raise ValueError(
                f"output folder {str(path)!r} holds other files ({', '.join(sorted(other)[:3])}"
                f"{', ...' if len(other) > 3 else ''}); choose an empty or new --output-dir"
            )
    return path


def run_calibrate(args: argparse.Namespace) -> int:
    """Run ``gibbsebm calibrate``: read the files, write the report, print the folder.

    User errors raise ``ValueError`` with one clear message.

    Returns
    -------
    int
        0 on success.
    """
    ev = _merge(list(args.energies), args.names, "--energies")
    systems = ev["energies"]
    labels = load_labels(args.labels) if args.labels else ev["labels"]
    if labels is None:
        raise ValueError(
            "no labels: put an array 'labels' in the .npz, a 'label' column in the .csv, or "
            "pass --labels FILE"
        )
    fit_e = fit_y = None
    if args.fit_energies:
        fd = _merge(list(args.fit_energies), args.names, "--fit-energies")
        fit_e = fd["energies"]
        fit_y = load_labels(args.fit_labels) if args.fit_labels else fd["labels"]
        if fit_y is None:
            raise ValueError("--fit-energies given without labels: pass --fit-labels FILE")
    elif ev["fit_energies"]:
        fit_e = ev["fit_energies"]
        fit_y = load_labels(args.fit_labels) if args.fit_labels else ev["fit_labels"]
        if fit_y is None:
            raise ValueError("the file has fit_energies but no fit_labels array")
    elif args.fit_labels:
        raise ValueError("--fit-labels given without --fit-energies")
    if fit_e is not None and set(fit_e) != set(systems):
        if len(fit_e) == len(systems) == 1:
            fit_e = {next(iter(systems)): next(iter(fit_e.values()))}
        else:
            raise ValueError(
                f"fit energies are for systems {sorted(fit_e)} but evaluation energies for "
                f"{sorted(systems)}; give the files in the same order (or use --names)"
            )
    ood = None
    if args.ood_energies:
        ood = _merge(list(args.ood_energies), args.names, "--ood-energies")["energies"]
    elif ev["ood_energies"]:
        ood = ev["ood_energies"]
    if ood is not None and set(ood) != set(systems):
        if len(ood) == len(systems) == 1:
            ood = {next(iter(systems)): next(iter(ood.values()))}
        else:
            raise ValueError(
                f"OOD energies are for systems {sorted(ood)} but evaluation energies for "
                f"{sorted(systems)}"
            )
    force = bool(getattr(args, "force", False))
    out = _output_dir(args.output_dir, force)
    sources = {"energies": ", ".join(args.energies)}
    if args.labels:
        sources["labels"] = args.labels
    if args.fit_energies:
        sources["fit_energies"] = ", ".join(args.fit_energies)
    if args.fit_labels:
        sources["fit_labels"] = args.fit_labels
    if args.ood_energies:
        sources["ood_energies"] = ", ".join(args.ood_energies)
    try:
        import torch

        from ..calibration.report import report
    except ImportError as exc:
        raise UsageError(f"calibrate is unavailable: {exc}") from None

    # every tensor here is small (N x K): intra-op threads only add synchronisation, which on
    # a busy machine costs more than the work (measured 0.2 ms -> 30 ms per log-softmax)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rep = _report(report, systems, labels, out, fit_e, fit_y, ood, args, sources)
    finally:
        torch.set_num_threads(threads)
    print(rep.output_dir)
    return 0


def _report(report, systems, labels, out, fit_e, fit_y, ood, args, sources):
    return report(
        systems,
        labels,
        output_dir=out,
        fit_energies=fit_e,
        fit_labels=fit_y,
        ood_energies=ood,
        n_bins=args.n_bins,
        n_folds=args.folds,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        title=args.title,
        data_description=args.description,
        sources=sources,
        force=bool(getattr(args, "force", False)),
    )
