"""``gibbsebm calibrate``: a calibration report from energies (or logits) stored in files.

The face of :mod:`gibbsebm.calibration` on the command line (the calibration package itself
never imports the command line). Input files (reading and checks in
:mod:`gibbsebm.calibration.files`):

* ``.npz``: arrays ``energies`` (N, K) and ``labels`` (N,); several systems as
  ``energies_<name>``; optionally ``fit_energies[_<name>]``/``fit_labels`` (data to fit beta
  on) and ``ood_energies[_<name>]`` (out-of-distribution inputs). An archive with one array
  (or one array besides ``labels``) needs no names; ``--key`` picks one array by name;
* ``.pt``: a tensor saved with ``torch.save`` (loaded with ``weights_only=True``), or a dict
  of tensors named as in an ``.npz``;
* ``.npy``: one (N, K) energy matrix (labels from ``--labels``);
* ``.csv``: an optional header row; a column named ``label`` holds the labels, every other
  column is the energy of one class, in order.

``--logits`` says the files hold logits: the energies are their negatives,
``E(x, k) = -logit_k(x)``. Every ``--energies`` file is one system, named after the file
(``--names`` overrides), or several systems for an archive with ``energies_<name>`` arrays.
Label files (``--labels``, ``--fit-labels``) are ``.npy``, ``.npz``/``.pt`` (array ``labels``
or the only array), ``.csv``/``.txt`` (one integer per line, or a ``label`` column).

A file that cannot be used (wrong shape, non-numeric dtype, NaN or infinite values, labels
that are not integers, out of range or of another length than the energies) stops the command
with one line naming the file and the shapes (a
:class:`gibbsebm.calibration.files.CalibrationInputError`), exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import UsageError

if TYPE_CHECKING:  # numpy is imported where it is used: ``--help`` does not need it
    import numpy as np

__all__ = ["add_parser", "run_calibrate", "load_energies", "load_labels"]

_REPORT_FILES = {"report.html", "report.json", "report.md", "figures"}
_PREFIXES = ("energies", "fit_energies", "ood_energies")


def _files():
    from ..calibration import files

    return files


def _arrays_of(p: Path) -> dict[str, Any] | None:
    """The named arrays of an ``.npz`` or of a dict saved in a ``.pt`` file (else ``None``)."""
    import numpy as np

    files = _files()
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError) as exc:
            raise files.CalibrationInputError(
                f"{p}: cannot read as a NumPy .npz archive ({exc})", p
            ) from None
    if suffix == ".pt":
        obj = files.read_pt(p)
        return obj if isinstance(obj, dict) else None
    return None


def load_energies(
    path: str | Path, name: str | None = None, *, key: str | None = None, logits: bool = False
) -> dict[str, Any]:
    """Read one energies (or logits) file (see the module notes), checked.

    Parameters
    ----------
    path : str or Path
    name : str, optional
        System name (default: the file's stem).
    key : str, optional
        The array to read from an ``.npz`` or a dict in a ``.pt`` file.
    logits : bool
        The file holds logits; energies are their negatives.

    Returns
    -------
    dict
        ``{"energies": {name: (N, K)}, "labels": (N,) or None, "fit_energies": {...} or None,
        "fit_labels": ..., "ood_energies": {...} or None}`` with float64 energies and int64
        labels (labels not yet checked against the energies).

    Raises
    ------
    gibbsebm.calibration.files.CalibrationInputError
        A missing or unreadable file, or arrays of the wrong shape, dtype or with NaN.
    """
    files = _files()
    p = Path(path)
    if not p.exists():
        raise files.CalibrationInputError(f"energies file {str(p)!r} does not exist", p)
    stem = name or p.stem
    out: dict[str, Any] = {
        "energies": {},
        "labels": None,
        "fit_energies": None,
        "fit_labels": None,
        "ood_energies": None,
    }
    suffix = p.suffix.lower()
    arrays = _arrays_of(p) if suffix in (".npz", ".pt") else None
    if arrays is not None:
        keys = set(arrays)
        if key is not None:
            if key not in keys:
                raise files.CalibrationInputError(
                    f"{p}: no array named {key!r} (found: {', '.join(sorted(keys)) or 'none'})",
                    p,
                )
            out["energies"] = {stem: arrays[key]}
        else:
            for prefix in _PREFIXES:
                found = {}
                if prefix in keys:
                    found[stem] = arrays[prefix]
                for k_ in sorted(keys):
                    if k_.startswith(prefix + "_"):
                        found[k_[len(prefix) + 1 :]] = arrays[k_]
                if found:
                    out[prefix] = found
            if not out["energies"]:
                rest = sorted(keys - {"labels", "fit_labels"})
                if len(rest) != 1:
                    raise files.CalibrationInputError(
                        f"{p}: no array named 'energies' or 'energies_<name>' and not a single "
                        f"array (found: {', '.join(sorted(keys)) or 'nothing'}); name the array "
                        "with --key",
                        p,
                    )
                out["energies"] = {stem: arrays[rest[0]]}
        for slot in ("labels", "fit_labels"):
            if slot in keys and key != slot:
                out[slot] = files.check_label_vector(arrays[slot], p)
    elif suffix in (".csv", ".txt"):
        header, arr = files.read_table(p)
        if header is None:
            out["energies"] = {stem: arr}
        else:
            lab = [i for i, h in enumerate(header) if h.lower() in files.LABEL_COLUMNS]
            if len(lab) > 1:
                raise files.CalibrationInputError(
                    f"{p}: more than one label column in the header {header}", p
                )
            keep = [i for i in range(arr.shape[1]) if i not in lab]
            out["energies"] = {stem: arr[:, keep]}
            if lab:
                out["labels"] = files.check_label_vector(arr[:, lab[0]], p)
    else:
        out["energies"] = {stem: files.read_array(p, key)}
    for slot in _PREFIXES:
        if out[slot]:
            out[slot] = {
                k_: files.check_energy_matrix(
                    v, p, logits=logits, what=_what(slot, k_, stem, logits)
                )
                for k_, v in out[slot].items()
            }
    return out


def _what(slot: str, name: str, stem: str, logits: bool) -> str:
    kind = "logits" if logits else "energies"
    head = {"energies": kind, "fit_energies": f"fit {kind}", "ood_energies": f"OOD {kind}"}[slot]
    return head if name == stem else f"{head} {name!r}"


def load_labels(path: str | Path) -> np.ndarray:
    """Read integer labels from ``.npy``, ``.npz``/``.pt`` (array ``labels`` or the only array),
    ``.csv`` or ``.txt``; int64 ``(N,)``."""
    return _files().load_label_vector(path)


def _merge(
    files_: list[str], names: list[str] | None, what: str, key: str | None, logits: bool
) -> dict[str, Any]:
    import numpy as np

    if names is not None and len(names) != len(files_):
        raise ValueError(
            f"--names has {len(names)} names for {len(files_)} {what} files; give one per file"
        )
    merged: dict[str, Any] = {
        "energies": {},
        "labels": None,
        "fit_energies": {},
        "fit_labels": None,
        "ood_energies": {},
        "origin": {},
        "label_origin": {},
    }
    for i, f in enumerate(files_):
        d = load_energies(f, names[i] if names else None, key=key, logits=logits)
        for slot in _PREFIXES:
            for k_, v in (d[slot] or {}).items():
                if k_ in merged[slot]:
                    raise ValueError(
                        f"two systems are named {k_!r} (from {f}); rename a file or use --names"
                    )
                merged[slot][k_] = v
                merged["origin"][(slot, k_)] = f
        for slot in ("labels", "fit_labels"):
            if d[slot] is not None:
                src = merged["label_origin"].get(slot)
                if merged[slot] is not None and not np.array_equal(merged[slot], d[slot]):
                    raise ValueError(f"the {slot} in {f} differ from those in {src}")
                merged[slot] = d[slot]
                merged["label_origin"][slot] = f
    return merged


def _check_against(
    arrays: dict[str, Any], origin: dict, slot: str, labels: Any, label_src: str | None
) -> Any:
    """Same (N, K) for every system, and labels that fit it; returns int64 labels."""
    files = _files()
    first = next(iter(arrays))
    shape = arrays[first].shape
    for k_, v in arrays.items():
        if v.shape[1] != shape[1] or (labels is not None and v.shape[0] != shape[0]):
            raise files.CalibrationInputError(
                f"{origin[(slot, k_)]}: system {k_!r} has shape {v.shape} but system {first!r} "
                f"(from {origin[(slot, first)]}) has shape {shape}; every system must score "
                "the same inputs and classes",
                origin[(slot, k_)],
                v.shape,
            )
    if labels is None:
        return None
    return files.check_label_vector(
        labels,
        label_src or origin[(slot, first)],
        n=shape[0],
        num_classes=shape[1],
        against=origin[(slot, first)],
    )


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
            "calibration report (report.html, report.md, report.json): a verdict first, then\n"
            "metrics before/after with bootstrap CIs, reliability diagrams with per-bin counts,\n"
            "raw energy vs calibrated probability, OOD scores and the combination of systems.\n\n"
            "inputs (energies, or logits with --logits: E = -logits):\n"
            "  .npz  arrays energies (or energies_<name>, one per system), labels, and\n"
            "        optionally fit_energies[_<name>], fit_labels, ood_energies[_<name>];\n"
            "        or a single array (--key NAME picks one array by name)\n"
            "  .pt   a tensor from torch.save (read with weights_only=True), or a dict of\n"
            "        tensors named as in an .npz\n"
            "  .npy  one (N, K) energy matrix E(x_i, k); labels from --labels\n"
            "  .csv  an optional header row, a 'label' column and one column per class\n\n"
            "A file with the wrong shape or dtype, NaN values, or labels that do not match the\n"
            "energies stops with one line naming the file and the shapes (exit status 2).\n"
            "Without fit data, beta is cross-fitted on the evaluation data (--folds) and the\n"
            "report says so."
        ),
        epilog=(
            "examples:\n"
            "  gibbsebm calibrate --energies val.npz --output-dir runs/calib\n"
            "  gibbsebm calibrate --energies logits.pt --labels y.npy --logits\n"
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
        help="evaluation energies, one file per system (.npz, .pt, .npy or .csv)",
    )
    p.add_argument(
        "--logits",
        action="store_true",
        help="the files hold logits, not energies (energies = -logits)",
    )
    p.add_argument(
        "--key",
        metavar="NAME",
        help="the array to read from each .npz (or dict in a .pt) energies file",
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
    key = getattr(args, "key", None)
    logits = bool(getattr(args, "logits", False))
    ev = _merge(list(args.energies), args.names, "--energies", key, logits)
    systems = ev["energies"]
    labels = load_labels(args.labels) if args.labels else ev["labels"]
    if labels is None:
        raise ValueError(
            "no labels: put an array 'labels' in the .npz, a 'label' column in the .csv, or "
            "pass --labels FILE"
        )
    label_src = args.labels or ev["label_origin"].get("labels")
    labels = _check_against(systems, ev["origin"], "energies", labels, label_src)
    k = next(iter(systems.values())).shape[1]
    fit_e = fit_y = None
    fit_origin: dict = {}
    fit_label_src = args.fit_labels
    if args.fit_energies:
        fd = _merge(list(args.fit_energies), args.names, "--fit-energies", key, logits)
        fit_e, fit_origin = fd["energies"], fd["origin"]
        fit_y = load_labels(args.fit_labels) if args.fit_labels else fd["labels"]
        fit_label_src = fit_label_src or fd["label_origin"].get("labels")
        if fit_y is None:
            raise ValueError("--fit-energies given without labels: pass --fit-labels FILE")
    elif ev["fit_energies"]:
        fit_e, fit_origin = ev["fit_energies"], ev["origin"]
        fit_y = load_labels(args.fit_labels) if args.fit_labels else ev["fit_labels"]
        fit_label_src = fit_label_src or ev["label_origin"].get("fit_labels")
        if fit_y is None:
            raise ValueError("the file has fit_energies but no fit_labels array")
    elif args.fit_labels:
        raise ValueError("--fit-labels given without --fit-energies")
    if fit_e is not None:
        slot = "energies" if args.fit_energies else "fit_energies"
        fit_y = _check_against(fit_e, fit_origin, slot, fit_y, fit_label_src)
        _check_classes(fit_e, fit_origin, slot, k, "fit")
    if fit_e is not None and set(fit_e) != set(systems):
        if len(fit_e) == len(systems) and len(args.fit_energies or ()) == len(systems):
            # one file per system on both sides: paired by position ("same order")
            fit_e = dict(zip(systems, fit_e.values()))
        else:
            raise ValueError(
                f"fit energies are for systems {sorted(fit_e)} but evaluation energies for "
                f"{sorted(systems)}; give the files in the same order (or use --names)"
            )
    ood = None
    if args.ood_energies:
        od = _merge(list(args.ood_energies), args.names, "--ood-energies", key, logits)
        ood = od["energies"]
        _check_against(ood, od["origin"], "energies", None, None)
        _check_classes(ood, od["origin"], "energies", k, "OOD")
    elif ev["ood_energies"]:
        ood = ev["ood_energies"]
        _check_against(ood, ev["origin"], "ood_energies", None, None)
        _check_classes(ood, ev["origin"], "ood_energies", k, "OOD")
    if ood is not None and set(ood) != set(systems):
        if len(ood) == len(systems) and len(args.ood_energies or ()) == len(systems):
            ood = dict(zip(systems, ood.values()))
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
    if logits:
        sources["sign"] = "the files hold logits; energies = -logits"
    if key is not None:
        sources["key"] = key
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


def _check_classes(arrays: dict, origin: dict, slot: str, k: int, what: str) -> None:
    files = _files()
    for name, v in arrays.items():
        if v.shape[1] != k:
            raise files.CalibrationInputError(
                f"{origin[(slot, name)]}: {what} energies {name!r} have shape {v.shape} but the "
                f"evaluation energies have {k} classes; they must have the same columns",
                origin[(slot, name)],
                v.shape,
            )


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
