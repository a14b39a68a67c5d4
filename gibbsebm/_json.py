"""One JSON rendering for everything the library writes or records (core layer).

Run records, estimator diagnostics, checkpoints' metadata and the command line's files all
go through :func:`to_jsonable`, so a tensor, a NumPy scalar or a non-finite float is rendered
the same way everywhere. The few places that need a different rendering say so with its
arguments (for example the checkpoint metadata keeps large tensors out of the JSON).
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = ["to_jsonable"]


def to_jsonable(
    obj: Any,
    *,
    nonfinite: str = "null",
    max_tensor_numel: int | None = None,
) -> Any:
    """A plain-Python, JSON-serialisable rendering of ``obj``.

    Parameters
    ----------
    obj : object
        Dicts (keys become strings), lists and tuples (become lists), tensors and NumPy arrays
        (become nested lists), NumPy scalars, paths (become strings), ``None``, bools, ints,
        floats and strings (``str`` subclasses such as ``torch.__version__`` become plain
        ``str``); anything else becomes its ``repr``.
    nonfinite : {"null", "str", "keep"}
        How NaN and infinite floats are written: ``None`` (valid JSON), their string
        (``"nan"``, ``"inf"``, ``"-inf"``), or kept as floats (``json.dumps`` then writes the
        non-standard ``NaN``/``Infinity``).
    max_tensor_numel : int, optional
        Tensors and arrays with more elements become a short description
        ``"Tensor(shape=..., dtype=...)"`` instead of their values.

    Returns
    -------
    object
        Built from dict, list, str, int, float, bool and None only.

    Examples
    --------
    >>> import torch
    >>> to_jsonable({"a": torch.tensor([1.0, float("nan")]), 2: (3, "x")})
    {'a': [1.0, None], '2': [3, 'x']}
    >>> to_jsonable(torch.zeros(20), max_tensor_numel=16)
    'Tensor(shape=(20,), dtype=torch.float32)'
    """
    if nonfinite not in ("null", "str", "keep"):
        raise ValueError(f"nonfinite must be 'null', 'str' or 'keep', got {nonfinite!r}")
    return _render(obj, nonfinite, max_tensor_numel)


def _render(obj: Any, nonfinite: str, limit: int | None) -> Any:
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj) or nonfinite == "keep":
            return float(obj)
        return None if nonfinite == "null" else str(obj)
    if isinstance(obj, dict):
        return {str(k): _render(v, nonfinite, limit) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_render(v, nonfinite, limit) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    kind = type(obj).__module__.split(".")[0]
    if kind == "torch" and hasattr(obj, "detach"):
        if limit is not None and obj.numel() > limit:
            return f"Tensor(shape={tuple(obj.shape)}, dtype={obj.dtype})"
        return _render(obj.detach().cpu().tolist(), nonfinite, limit)
    if kind == "numpy" and hasattr(obj, "tolist"):
        if limit is not None and getattr(obj, "size", 1) > limit:
            return f"Tensor(shape={tuple(obj.shape)}, dtype={obj.dtype})"
        return _render(obj.tolist(), nonfinite, limit)
    return repr(obj)
