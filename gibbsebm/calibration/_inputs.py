"""Input checks and conversions shared by the calibration modules.

Everything here runs once at the boundary where a user hands arrays to the library. Arrays
may be NumPy arrays, torch tensors or nested lists; they become float64 (probabilities,
energies) or int64 (labels) torch tensors on the device they came from (CPU for NumPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_beta

__all__ = [
    "as_float_tensor",
    "as_labels",
    "check_probabilities",
    "check_energies",
    "check_labels",
    "check_beta_value",
    "make_generator",
]


def _device_of(x: Any) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


def as_float_tensor(x: Any, name: str, *, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a float64 tensor (on ``x``'s own device unless ``device`` is given)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be real numbers, got dtype {t.dtype}")
        t = t.to(dtype=torch.float64)
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:  # pragma: no cover - numpy raises many kinds here
            raise ValueError(f"{name} could not be read as an array: {exc}") from None
        if a.dtype == object or not (
            np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
        ):
            raise ValueError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    if device is not None:
        t = t.to(device)
    return t


def as_labels(labels: Any, n: int | None, num_classes: int | None, *, device=None) -> torch.Tensor:
    """Integer class labels as an int64 tensor, checked against ``n`` and ``num_classes``."""
    if isinstance(labels, torch.Tensor):
        t = labels.detach()
        if t.dtype.is_floating_point:
            if torch.isnan(t).any():
                raise ValueError("labels contain NaN; labels must be integers 0..K-1")
            if (t != torch.round(t)).any():
                raise ValueError("labels must be integers 0..K-1, got non-integer values")
        elif t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"labels must be integers 0..K-1, got dtype {t.dtype}")
        t = t.to(torch.int64)
    else:
        a = np.asarray(labels)
        if np.issubdtype(a.dtype, np.floating):
            if np.isnan(a).any():
                raise ValueError("labels contain NaN; labels must be integers 0..K-1")
            if (a != np.round(a)).any():
                raise ValueError("labels must be integers 0..K-1, got non-integer values")
        elif not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
            raise ValueError(f"labels must be integers 0..K-1, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a).astype(np.int64))
    if device is not None:
        t = t.to(device)
    return check_labels(t, n, num_classes)


def check_labels(t: torch.Tensor, n: int | None, num_classes: int | None) -> torch.Tensor:
    if t.dim() != 1:
        raise ValueError(f"labels must be one-dimensional, shape (N,), got shape {tuple(t.shape)}")
    if n is not None and t.shape[0] != n:
        raise ValueError(
            f"labels has length {t.shape[0]} but there are {n} rows of probabilities/energies "
            "(mismatched lengths)"
        )
    if t.numel() and num_classes is not None:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"labels out of range: found label {bad}, but there are {num_classes} classes "
                f"(labels must be in 0..{num_classes - 1})"
            )
    return t


def _check_matrix(t: torch.Tensor, name: str) -> None:
    if t.dim() != 2:
        raise ValueError(f"{name} must be shaped (N, K), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0)")
    if t.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class column, got shape {tuple(t.shape)}")
    n_nan = int(torch.isnan(t).sum())
    if n_nan:
        raise ValueError(f"{name} has {n_nan} NaN values")
    n_inf = int(torch.isinf(t).sum())
    if n_inf:
        raise ValueError(f"{name} has {n_inf} infinite values")


def check_probabilities(probs: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate probabilities ``(N, K)`` and labels ``(N,)``; return float64/int64 tensors.

    Rows must be non-negative and sum to one within a tolerance that allows float32 rounding
    (``max(1e-6, 16 K eps)`` of the input dtype).
    """
    in_dtype = probs.dtype if isinstance(probs, torch.Tensor) else np.asarray(probs).dtype
    p = as_float_tensor(probs, "probs")
    _check_matrix(p, "probs")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(
            f"probs must lie in [0, 1]; got values in [{float(p.min()):.6g}, {float(p.max()):.6g}] "
            "(pass probabilities, e.g. gibbsebm.calibration.probabilities(energies, beta), "
            "not energies or logits)"
        )
    try:
        eps = (
            torch.finfo(in_dtype).eps
            if isinstance(in_dtype, torch.dtype)
            else float(np.finfo(in_dtype).eps)
        )
    except (TypeError, ValueError):
        eps = float(np.finfo(np.float64).eps)
    tol = max(1e-6, 16 * p.shape[1] * eps)
    dev = (p.sum(1) - 1).abs()
    if (dev > tol).any():
        i = int(dev.argmax())
        raise ValueError(
            f"probs rows must sum to 1: row {i} sums to {float(p[i].sum()):.8g} "
            f"({int((dev > tol).sum())} rows off by more than {tol:.1e})"
        )
    y = as_labels(labels, p.shape[0], p.shape[1], device=p.device)
    return p, y


def check_energies(energies: Any, name: str = "energies") -> torch.Tensor:
    """Validate an energy matrix ``(N, K)`` of :math:`E(x_i, k)`; return a float64 tensor."""
    e = as_float_tensor(energies, name)
    if e.dim() == 1:
        raise ValueError(
            f"{name} must be shaped (N, K) (one energy per input and label), got a vector of "
            f"length {e.shape[0]}"
        )
    _check_matrix(e, name)
    return e


def check_beta_value(beta: Any, name: str = "beta") -> None:
    """Raise ``ValueError`` unless ``beta`` is a finite positive scalar or tensor."""
    check_beta(beta, name=name)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (0 when ``None``)."""
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g
