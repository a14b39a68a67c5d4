"""Energies, logits and labels read from files, with one clear error per bad input.

Formats (chosen by the file's suffix):

* ``.npy``: one array;
* ``.npz``: the array named by ``key``, else the only array in the file;
* ``.pt``: a tensor saved with ``torch.save`` (read with ``weights_only=True``, so a file
  cannot run code), or a dict of tensors (then as ``.npz``);
* ``.csv`` (or ``.txt``): numbers separated by commas, an optional header row; a column named
  ``label`` (or ``labels``, ``y``) holds the labels, every other column is one class.

Logits are turned into energies by a sign flip, :math:`E(x, k) = -\\mathrm{logit}_k(x)`
(``logits=True``), so ``softmax(-beta E) = softmax(beta logits)``.

Every problem raises :class:`CalibrationInputError` (a :class:`ValueError`) whose message names
the file and the shapes involved: a wrong number of dimensions, a non-numeric dtype, NaN or
infinite values (counted, first row given), non-integer or out-of-range labels, labels whose
length differs from the number of rows of the energies.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CalibrationInputError",
    "read_array",
    "read_table",
    "load_energy_matrix",
    "load_label_vector",
    "check_energy_matrix",
    "check_label_vector",
    "SUFFIXES",
    "LABEL_COLUMNS",
]

#: File suffixes :func:`read_array` understands.
SUFFIXES = (".npy", ".npz", ".pt", ".csv", ".txt")
#: Header names of a label column in a CSV file (compared in lower case).
LABEL_COLUMNS = ("label", "labels", "y")


class CalibrationInputError(ValueError):
    """A calibration input file cannot be used; nothing from it was read into a report.

    Attributes
    ----------
    path : str or None
        The file.
    shape : tuple of int or None
        The shape of the offending array, where there is one.
    """

    def __init__(self, message: str, path: str | Path | None = None, shape: tuple | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.shape = None if shape is None else tuple(shape)


def _err(path: Path, text: str, shape: tuple | None = None) -> CalibrationInputError:
    return CalibrationInputError(f"{path}: {text}", path, shape)


def read_table(path: str | Path) -> tuple[list[str] | None, np.ndarray]:
    """A numeric CSV file as ``(header or None, float64 array (rows, columns))``.

    Blank lines are skipped; the first row is a header when any of its cells is not a number.
    """
    p = Path(path)
    with p.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise _err(p, "the CSV file is empty")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    if not rows:
        raise _err(p, "the CSV file has a header but no data rows")
    width = len(header) if header else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise _err(
                p,
                f"line {i + 1 + (header is not None)} has {len(r)} columns, expected {width} "
                "(blank lines are skipped in the count)",
            )
    try:
        arr = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise _err(p, f"non-numeric value in the CSV data ({exc})") from None
    return header, arr.reshape(len(rows), width)


def _pick(p: Path, arrays: dict[str, Any], key: str | None, what: str) -> Any:
    if key is not None:
        if key not in arrays:
            raise _err(p, f"no array named {key!r} (found: {', '.join(sorted(arrays)) or 'none'})")
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise _err(
        p,
        f"holds {len(arrays)} arrays ({', '.join(sorted(arrays)) or 'none'}); name the one "
        f"with the {what} (--key on the command line)",
    )


def read_pt(path: str | Path) -> Any:
    """A tensor or a dict of tensors saved with ``torch.save``, as NumPy arrays.

    Loaded with ``torch.load(..., weights_only=True)``: a file that holds anything other than
    tensors and plain containers is refused instead of being executed.
    """
    import pickle

    import torch

    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _err(
            p, f"cannot read as a torch file of tensors (loaded with weights_only=True): {first}"
        ) from None

    def conv(x: Any, where: str) -> np.ndarray:
        if not isinstance(x, torch.Tensor):
            raise _err(p, f"{where} is a {type(x).__name__}, not a tensor")
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.to(torch.float32)
        return x.numpy()

    if isinstance(obj, dict):
        return {str(k): conv(v, f"entry {k!r}") for k, v in obj.items()}
    return conv(obj, "the saved object")


def read_array(path: str | Path, key: str | None = None, what: str = "energies") -> np.ndarray:
    """One array from a ``.npy``, ``.npz``, ``.pt`` or ``.csv`` file (see the module notes).

    Parameters
    ----------
    path : str or Path
    key : str, optional
        The array's name in an ``.npz`` file or a dict saved in a ``.pt`` file (default: the
        only array in the file).
    what : str
        What the array holds, for the messages.

    Returns
    -------
    numpy.ndarray
        As stored (no dtype or shape checks; see :func:`load_energy_matrix`).
    """
    p = Path(path)
    if not p.exists():
        raise CalibrationInputError(f"{what} file {str(p)!r} does not exist", p)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise _err(p, f"cannot read as a NumPy array ({exc})") from None
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return _pick(p, {k: z[k] for k in z.files}, key, what)
        except (ValueError, OSError) as exc:
            if isinstance(exc, CalibrationInputError):
                raise
            raise _err(p, f"cannot read as a NumPy .npz archive ({exc})") from None
    if suffix == ".pt":
        obj = read_pt(p)
        return _pick(p, obj, key, what) if isinstance(obj, dict) else obj
    if suffix in (".csv", ".txt"):
        return read_table(p)[1]
    raise _err(
        p,
        f"unsupported file type {suffix!r}; use {', '.join(SUFFIXES[:4])} (see "
        "'gibbsebm calibrate --help')",
    )


def _numeric(p: Path, a: np.ndarray, what: str) -> None:
    a = np.asarray(a)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise _err(
            p,
            f"{what} must be real numbers, got dtype {a.dtype} (shape {a.shape})",
            a.shape,
        )


def check_energy_matrix(
    a: Any, path: str | Path, *, logits: bool = False, what: str | None = None
) -> np.ndarray:
    """Check an energy (or logit) matrix read from ``path``; return float64 energies ``(N, K)``.

    Parameters
    ----------
    a : array_like
    path : str or Path
        Where it came from (for the messages).
    logits : bool
        ``a`` holds logits: the energies are ``-a``.
    what : str, optional
        Name for the messages (default ``"logits"`` or ``"energies"``).

    Raises
    ------
    CalibrationInputError
        Not 2-D, no rows, fewer than 2 columns, not real numbers, NaN or infinite values.
    """
    p = Path(path)
    what = what or ("logits" if logits else "energies")
    a = np.asarray(a)
    _numeric(p, a, what)
    if a.ndim != 2:
        hint = (
            " (one value per input: a calibration needs one column per class)"
            if a.ndim == 1
            else ""
        )
        raise _err(
            p, f"{what} must be a 2-D array (N inputs, K classes), got shape {a.shape}{hint}",
            a.shape,
        )  # fmt: skip
    if a.shape[0] == 0:
        raise _err(p, f"{what} has no rows (shape {a.shape})", a.shape)
    if a.shape[1] < 2:
        raise _err(p, f"{what} needs at least 2 classes (columns), got shape {a.shape}", a.shape)
    e = a.astype(np.float64)
    for bad, name in ((np.isnan(e), "NaN"), (np.isinf(e), "infinite")):
        if bad.any():
            rows = np.flatnonzero(bad.any(1))
            raise _err(
                p,
                f"{what} (shape {a.shape}) has {int(bad.sum())} {name} values in "
                f"{rows.size} rows (first: row {int(rows[0])})",
                a.shape,
            )
    return -e if logits else e


def check_label_vector(
    a: Any,
    path: str | Path,
    *,
    n: int | None = None,
    num_classes: int | None = None,
    against: str | Path | None = None,
) -> np.ndarray:
    """Check labels read from ``path``; return them as int64 ``(N,)``.

    Parameters
    ----------
    a : array_like
        Shape ``(N,)``, or ``(N, 1)``/``(1, N)``.
    path : str or Path
    n, num_classes : int, optional
        The number of rows and classes of the energies they label.
    against : str or Path, optional
        The energies file, named in the length-mismatch message.

    Raises
    ------
    CalibrationInputError
        Not one-dimensional, not integers (NaN, fractions, strings, booleans), a length other
        than ``n`` or a label outside ``0..num_classes-1``.
    """
    p = Path(path)
    a = np.asarray(a)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise _err(
            p, f"labels must be integers 0..K-1, got dtype {a.dtype} (shape {a.shape})", a.shape
        )
    if a.ndim != 1:
        raise _err(p, f"labels must be one-dimensional (N,), got shape {a.shape}", a.shape)
    if np.issubdtype(a.dtype, np.floating):
        nan = np.isnan(a)
        if nan.any():
            raise _err(
                p,
                f"labels (shape {a.shape}) have {int(nan.sum())} NaN values "
                f"(first: entry {int(np.flatnonzero(nan)[0])})",
                a.shape,
            )
        frac = a != np.round(a)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise _err(
                p,
                f"labels must be integers 0..K-1; entry {i} is {float(a[i])!r} (shape {a.shape})",
                a.shape,
            )
    y = a.astype(np.int64)
    if n is not None and y.shape[0] != n:
        src = f" in {against}" if against is not None else ""
        raise _err(
            p,
            f"{y.shape[0]} labels (shape {y.shape}) but the energies{src} have {n} rows; "
            "labels and energies must describe the same inputs (mismatched lengths)",
            y.shape,
        )
    if num_classes is not None and y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise _err(
                p,
                f"label {bad} is out of range: the energies have {num_classes} classes, so "
                f"labels must be in 0..{num_classes - 1}",
                y.shape,
            )
    return y


def load_energy_matrix(path: str | Path, key: str | None = None, *, logits: bool = False):
    """Read and check one energy (or logit) matrix: :func:`read_array` then
    :func:`check_energy_matrix`.

    Returns
    -------
    numpy.ndarray
        float64 energies ``(N, K)`` (``-logits`` when ``logits=True``).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "logits.npy")
    >>> np.save(f, np.array([[2.0, 0.0], [0.0, 1.0]]))
    >>> load_energy_matrix(f, logits=True)
    array([[-2., -0.],
           [-0., -1.]])
    """
    what = "logits" if logits else "energies"
    return check_energy_matrix(read_array(path, key, what), path, logits=logits)


def load_label_vector(
    path: str | Path,
    key: str | None = None,
    *,
    n: int | None = None,
    num_classes: int | None = None,
    against: str | Path | None = None,
) -> np.ndarray:
    """Read and check labels; a CSV may hold them in a ``label`` column or one per line.

    Returns
    -------
    numpy.ndarray
        int64 labels ``(N,)``.
    """
    p = Path(path)
    if p.suffix.lower() in (".csv", ".txt") and p.exists():
        header, arr = read_table(p)
        if header is not None:
            lab = [i for i, h in enumerate(header) if h.lower() in LABEL_COLUMNS]
            if not lab and arr.shape[1] != 1:
                raise _err(p, f"no 'label' column in the header {header}")
            a = arr[:, lab[0] if lab else 0]
        else:
            if arr.shape[1] != 1:
                raise _err(p, f"expected one label per line, got {arr.shape[1]} columns")
            a = arr[:, 0]
    else:
        a = read_array(p, key if key is not None else _labels_key(p), "labels")
    return check_label_vector(a, p, n=n, num_classes=num_classes, against=against)


def _labels_key(p: Path) -> str | None:
    """``"labels"`` for an archive that holds such an array next to others."""
    if p.suffix.lower() == ".npz" and p.exists():
        try:
            with np.load(p, allow_pickle=False) as z:
                return "labels" if "labels" in z.files else None
        except (ValueError, OSError):
            return None
    if p.suffix.lower() == ".pt" and p.exists():
        obj = read_pt(p)
        return "labels" if isinstance(obj, dict) and "labels" in obj else None
    return None
