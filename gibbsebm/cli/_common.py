"""Shared pieces of the command line: one-line errors, option parsing, run folders, JSON.

Every command module of :mod:`gibbsebm.cli` builds on this one; it imports nothing heavy at
module level (torch only inside the functions that need it), so that ``gibbsebm --help``
answers without loading torch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._json import to_jsonable

__all__ = ["EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError", "to_jsonable", "write_json"]

#: Exit status for user errors (argparse's convention).
EXIT_USAGE = 2
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in what the user asked for: reported as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# argparse with one-line errors
# ---------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"gibbsebm: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


# ---------------------------------------------------------------------------------------------
# --param / --option values
# ---------------------------------------------------------------------------------------------
def _parse_value(text: str, typ: type | None, where: str) -> Any:
    """Convert a ``--param`` value to ``typ`` (or guess int/float/bool/str when ``None``)."""
    if typ is bool or typ is None:
        low = text.strip().lower()
        if low in ("true", "yes", "on"):
            return True
        if low in ("false", "no", "off"):
            return False
        if typ is bool:
            raise UsageError(f"{where} must be true or false, got {text!r}")
    if typ is int or typ is None:
        try:
            return int(text)
        except ValueError:
            if typ is int:
                try:
                    f = float(text)
                except ValueError:
                    f = math.nan
                if f.is_integer():
                    return int(f)
                raise UsageError(f"{where} must be an integer, got {text!r}") from None
    if typ is float or typ is None:
        try:
            return float(text)
        except ValueError:
            if typ is float:
                raise UsageError(f"{where} must be a number, got {text!r}") from None
    return text


def _split_kv(items: Sequence[str] | dict | None, what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}`` (a dict from TOML passes through)."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} must look like NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise UsageError(f"{what} must look like NAME=VALUE, got {item!r}")
        out[k] = v.strip()
    return out


def _typed(value: Any, typ: type | None, where: str) -> Any:
    if isinstance(value, str):
        return _parse_value(value, typ, where)
    if typ is None:
        return value
    if typ is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    raise UsageError(f"{where} must be of type {typ.__name__}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# options: defaults <- TOML <- command line
# ---------------------------------------------------------------------------------------------
_COMMON_DEFAULTS: dict[str, Any] = {
    "energy": None,
    "params": {},
    "event_shape": None,
    "beta": None,
    "seed": 0,
    "device": "cpu",
    "dtype": "float32",
    "output_dir": None,
    "options": {},
    "progress": None,
    "plots": True,
}


def _load_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read config file {path!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path!r} is not valid TOML: {exc}") from None
    return data


def _resolve(command: str, args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge ``defaults``, the TOML file (``--config``) and explicit command-line options."""
    cfg: dict[str, Any] = dict(defaults)
    if getattr(args, "config", None):
        data = _load_toml(args.config)
        for key, value in data.items():
            k = key.replace("-", "_")
            if k not in defaults:
                raise UsageError(
                    f"config file {args.config!r}: unknown option {key!r} for '{command}'"
                )
            if k in ("params", "options") and not isinstance(value, dict):
                raise UsageError(f"config file {args.config!r}: [{key}] must be a table")
            cfg[k] = value
    given = vars(args)
    for k in defaults:
        if k in given and given[k] is not None:
            if k in ("params", "options"):
                merged = dict(cfg[k])
                merged.update(_split_kv(given[k], "--param" if k == "params" else "--option"))
                cfg[k] = merged
            else:
                cfg[k] = given[k]
    return cfg


def _check_positive(cfg: dict[str, Any], *keys: str) -> None:
    for k in keys:
        v = cfg.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise UsageError(f"--{k.replace('_', '-')} must be a positive number, got {v!r}")


def _check_beta(value: Any, what: str = "--beta") -> float:
    try:
        b = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number > 0, got {value!r}") from None
    if not (b > 0) or math.isinf(b):
        raise UsageError(f"{what} must be a finite number > 0 (an inverse temperature), got {b}")
    return b


def _torch_setup(cfg: dict[str, Any]) -> tuple[Any, Any]:
    import torch

    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if cfg["dtype"] not in dtypes:
        raise UsageError(f"--dtype must be one of {', '.join(dtypes)}, got {cfg['dtype']!r}")
    try:
        device = torch.device(cfg["device"])
    except RuntimeError:
        raise UsageError(f"--device {cfg['device']!r} is not a device (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {cfg['device']} requested but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {cfg['device']} requested but MPS is not available here")
    return device, dtypes[cfg["dtype"]]


def _parse_shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, int | list | tuple):
        items = [value] if isinstance(value, int) else list(value)
    else:
        items = [s for s in str(value).replace("x", ",").split(",") if s.strip()]
    try:
        shape = tuple(int(s) for s in items)
    except ValueError:
        raise UsageError(f"--event-shape must be integers like 2 or 8,8, got {value!r}") from None
    if any(s < 1 for s in shape):
        raise UsageError(f"--event-shape entries must be >= 1, got {value!r}")
    return shape


def _kernel_options(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _typed(v, None, f"option {k}") for k, v in _split_kv(cfg["options"], "--option").items()
    }


# ---------------------------------------------------------------------------------------------
# run folders and JSON
# ---------------------------------------------------------------------------------------------
def _run_dir(cfg: dict[str, Any], command: str, *, resume: bool = False) -> Path:
    if cfg.get("output_dir"):
        path = Path(cfg["output_dir"])
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{command}-{stamp}"
    if resume:
        return path
    if path.is_symlink():
        raise UsageError(f"run folder {str(path)!r} is a symbolic link; not followed")
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"run folder {str(path)!r} exists and is not a folder")
        if any(path.iterdir()):
            raise UsageError(
                f"run folder {str(path)!r} is not empty; choose another --output-dir"
                + (" or continue it with --resume" if command == "sample" else "")
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run folder {str(path)!r}: {exc.strerror}") from None
    return path


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (atomically: temp file, fsync, rename).

    Values are rendered by :func:`gibbsebm._json.to_jsonable` with its defaults: tensors and
    arrays in full, non-finite floats as ``null``, paths as strings, anything else as ``repr``.
    """
    from ..runtime.files import atomic_write_bytes

    # temporary file, fsync, rename, fsync of the folder; a link at ``path`` is refused
    atomic_write_bytes((json.dumps(to_jsonable(data), indent=2) + "\n").encode("utf-8"), path)


def _fmt(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


# ---------------------------------------------------------------------------------------------
# option groups shared by sample and logz
# ---------------------------------------------------------------------------------------------
def _add_energy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("energy")
    g.add_argument(
        "--energy",
        metavar="NAME",
        help="built-in energy (see --list-energies) or package.module:attribute",
    )
    g.add_argument(
        "--param",
        dest="params",
        action="append",
        metavar="KEY=VALUE",
        help="energy parameter, repeatable (e.g. --param L=8 --param J=1.0)",
    )
    g.add_argument(
        "--event-shape",
        metavar="SHAPE",
        help="event shape of a plain function energy, e.g. 2 or 8,8",
    )
    g.add_argument("--beta", type=str, help="inverse temperature, > 0 (default 1.0)")
    g.add_argument(
        "--list-energies", action="store_true", help="list the built-in energies and exit"
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")
    g.add_argument("--output-dir", metavar="DIR", help="run folder (default runs/<cmd>-<time>)")
    g.add_argument("--seed", type=int, help="random seed (default 0)")
    g.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    g.add_argument(
        "--dtype", choices=["float32", "float64"], help="floating dtype (default float32)"
    )
    g.add_argument(
        "--option",
        dest="options",
        action="append",
        metavar="KEY=VALUE",
        help="keyword option of the sampler/estimator, repeatable (e.g. --option step_size=0.1)",
    )
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: only on a terminal)",
    )
    g.add_argument(
        "--plots",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write PNG plots (default on)",
    )
