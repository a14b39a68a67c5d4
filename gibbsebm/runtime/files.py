"""Files the library writes and reads back: one place, safe loading only.

Every result, checkpoint and shard file goes through :func:`save_tensors` /
:func:`load_tensors`: the payload is plain data (tensors, numbers, strings, lists, dicts), it
is written to a temporary file, flushed to disk and renamed into place (a crash leaves the old
file or the new one, never half of one), and it is read back with
``torch.load(weights_only=True)``, which refuses to run code.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

__all__ = ["atomic_write_bytes", "save_tensors", "load_tensors"]


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync the folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_tensors(obj: Any, path: str | os.PathLike) -> None:
    """Save plain data (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(buf.getvalue(), path)


def load_tensors(path: str | os.PathLike, *, what: str = "gibbsebm file") -> Any:
    """Load a file written by :func:`save_tensors` onto the CPU; no code runs.

    Raises
    ------
    ValueError
        If the file is not such a file (corrupt, truncated, or holding objects other than
        plain data).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"{os.fspath(path)} is not a {what} ({err})") from None
