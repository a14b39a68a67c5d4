"""The ``gibbsebm`` command line: ``demo``, ``sample``, ``logz`` and ``calibrate``.

Every command writes into a *run folder* (``--output-dir``, default ``runs/<command>-<time>``)
and prints its path. An energy is named in one way everywhere:

* a built-in name with parameters, ``--energy ising --param L=8 --param J=1.0``
  (``gibbsebm sample --list-energies`` lists them with their parameters), or
* ``package.module:attribute`` (or ``path/to/file.py:attribute``) for your own: an energy
  callable or module, a class or factory (called with the ``--param`` values), or a ready
  :class:`gibbsebm.Gibbs` distribution.

Options can also come from a TOML file (``--config run.toml``); options given on the command
line win. Keys are the long option names with ``_`` for ``-``, plus tables ``[params]`` and
``[options]`` (sampler or estimator keyword arguments)::

    energy = "ising"
    beta = 0.4407
    method = "gwg"
    num_chains = 32
    [params]
    L = 8

User errors (unknown energy, bad parameter, unreadable file, beta <= 0, a run folder that is
not empty, ...) print one line starting with ``gibbsebm: error:`` on stderr and exit with
status 2; set ``GIBBSEBM_TRACEBACK=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "UsageError", "BUILTIN_ENERGIES", "make_energy"]

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
# built-in energies
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One parameter of a built-in energy: its type, default and meaning."""

    type: type
    default: Any
    help: str


@dataclass(frozen=True)
class BuiltinEnergy:
    """A built-in energy that the command line can construct from ``--param`` values."""

    factory: Callable[..., Any]
    params: dict[str, Param]
    help: str
    default_method: str


def _gaussian(dim: int, sd: float, rho: float, device: Any, dtype: Any) -> Any:
    import torch

    from .energies import Gaussian

    if dim < 1:
        raise ValueError(f"gaussian: dim must be >= 1, got {dim}")
    if sd <= 0:
        raise ValueError(f"gaussian: sd must be > 0, got {sd}")
    if not (-1.0 / max(dim - 1, 1) < rho < 1.0):
        raise ValueError(
            f"gaussian: rho must lie in (-1/(dim-1), 1) for a positive definite covariance, got {rho}"
        )
    eye = torch.eye(dim, dtype=torch.float64)
    cov = sd**2 * ((1.0 - rho) * eye + rho * torch.ones(dim, dim, dtype=torch.float64))
    return Gaussian(torch.zeros(dim, dtype=dtype, device=device), covariance=cov.to(device))


def _ring(k: int, radius: float, sd: float, device: Any, dtype: Any) -> Any:
    from .energies import GaussianMixture

    if k < 1:
        raise ValueError(f"mixture: k must be >= 1, got {k}")
    return GaussianMixture.ring(k, radius, sd, dtype=dtype, device=device)


def _double_well(dim: int, a: float, c: float, device: Any, dtype: Any) -> Any:
    from .energies import DoubleWell

    return DoubleWell(dim=dim, a=a, c=c, dtype=dtype, device=device)


def _banana(dim: int, b: float, sigma1: float, device: Any, dtype: Any) -> Any:
    from .energies import Banana

    return Banana(dim=dim, b=b, sigma1=sigma1, dtype=dtype, device=device)


def _ising(L: int, J: float, device: Any, dtype: Any) -> Any:  # noqa: N803 (physics name)
    from .energies import Ising2D

    return Ising2D(L, J, dtype=dtype, device=device)


def _rbm(num_visible: int, num_hidden: int, scale: float, seed: int, device: Any, dtype: Any):
    import torch

    from .energies import RBM

    g = torch.Generator().manual_seed(seed)
    return RBM.random(num_visible, num_hidden, scale, g, dtype=dtype, device=device)


BUILTIN_ENERGIES: dict[str, BuiltinEnergy] = {
    "gaussian": BuiltinEnergy(
        _gaussian,
        {
            "dim": Param(int, 2, "dimension"),
            "sd": Param(float, 1.0, "standard deviation of every coordinate at beta = 1"),
            "rho": Param(float, 0.0, "correlation between every pair of coordinates"),
        },
        "Gaussian E(y) = y' S^-1 y / 2, S = sd^2 ((1 - rho) I + rho 11') (exact log Z)",
        "hmc",
    ),
    "mixture": BuiltinEnergy(
        _ring,
        {
            "k": Param(int, 8, "number of components on a ring"),
            "radius": Param(float, 4.0, "radius of the ring"),
            "sd": Param(float, 0.5, "standard deviation of each component"),
        },
        "ring of k equal-weight 2-D Gaussians (exact log Z)",
        "pt",
    ),
    "double_well": BuiltinEnergy(
        _double_well,
        {
            "dim": Param(int, 1, "dimension (product of independent wells)"),
            "a": Param(float, 1.0, "barrier height"),
            "c": Param(float, 0.0, "linear tilt (c > 0 favours the left well)"),
        },
        "double well sum_i a (y_i^2 - 1)^2 + c y_i (exact log Z by quadrature)",
        "hmc",
    ),
    "banana": BuiltinEnergy(
        _banana,
        {
            "dim": Param(int, 2, "dimension (>= 2)"),
            "b": Param(float, 0.1, "twist (Haario et al. 1999)"),
            "sigma1": Param(float, 10.0, "standard deviation of the first coordinate"),
        },
        "Haario et al. twisted Gaussian (exact log Z)",
        "hmc",
    ),
    "ising": BuiltinEnergy(
        _ising,
        {
            "L": Param(int, 8, "side of the L x L torus"),
            "J": Param(float, 1.0, "coupling"),
        },
        "2-D Ising model, spins in {-1, +1} (Kaufman's exact log Z)",
        "gwg",
    ),
    "rbm": BuiltinEnergy(
        _rbm,
        {
            "num_visible": Param(int, 16, "visible units"),
            "num_hidden": Param(int, 8, "hidden units"),
            "scale": Param(float, 0.5, "standard deviation of the random weights"),
            "seed": Param(int, 0, "seed of the random weights"),
        },
        "binary RBM with random weights, free energy of v (exact log Z by enumeration)",
        "block_gibbs",
    ),
}


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


def _import_attribute(spec: str) -> Any:
    """Import ``package.module:attr`` or ``path/to/file.py:attr``."""
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise UsageError(f"energy {spec!r} must be a built-in name or 'package.module:attribute'")
    if mod_name.endswith(".py") or os.sep in mod_name:
        path = Path(mod_name)
        if not path.is_file():
            raise UsageError(f"cannot read energy file {str(path)!r}: no such file")
        modspec = importlib.util.spec_from_file_location(path.stem, path)
        if modspec is None or modspec.loader is None:
            raise UsageError(f"cannot import {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(modspec)
        try:
            modspec.loader.exec_module(module)
        except OSError as exc:
            raise UsageError(f"cannot read energy file {str(path)!r}: {exc.strerror}") from None
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            raise UsageError(f"cannot import module {mod_name!r} for the energy: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def make_energy(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    device: Any = "cpu",
    dtype: Any = None,
) -> Any:
    """Build the energy (or a :class:`gibbsebm.Gibbs`) that the command line names.

    Parameters
    ----------
    name : str
        A key of :data:`BUILTIN_ENERGIES` or ``package.module:attribute``.
    params : dict
        Parameter values (strings are converted to the parameter's type).
    device, dtype
        Where the energy lives (built-in energies; user modules are moved to ``device``).

    Returns
    -------
    object
        An energy callable/module or a ``Gibbs`` distribution.

    Raises
    ------
    UsageError
        Unknown energy or parameter, or a value of the wrong type.

    Examples
    --------
    >>> make_energy("gaussian", {"dim": "3"}).event_shape
    torch.Size([3])
    """
    import torch

    params = dict(params or {})
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device)
    if ":" not in name:
        spec = BUILTIN_ENERGIES.get(name)
        if spec is None:
            raise UsageError(
                f"unknown energy {name!r}; built-in energies are {', '.join(BUILTIN_ENERGIES)} "
                "(or give package.module:attribute for your own)"
            )
        unknown = sorted(set(params) - set(spec.params))
        if unknown:
            raise UsageError(
                f"energy {name!r} has no parameter {unknown[0]!r}; its parameters are "
                f"{', '.join(spec.params)}"
            )
        kwargs = {
            k: _typed(params.get(k, p.default), p.type, f"parameter {k} of {name}")
            for k, p in spec.params.items()
        }
        try:
            return spec.factory(**kwargs, device=device, dtype=dtype)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"energy {name!r}: {exc}") from None
    obj = _import_attribute(name)
    kwargs = {k: _typed(v, None, k) for k, v in params.items()}
    from .distribution import Gibbs

    if isinstance(obj, Gibbs):
        if kwargs:
            raise UsageError(f"{name!r} is a Gibbs distribution; it takes no --param")
        return obj
    if isinstance(obj, type) or kwargs:
        if not callable(obj):
            raise UsageError(f"{name!r} is not callable")
        try:
            obj = obj(**kwargs)
        except TypeError as exc:
            raise UsageError(f"cannot build {name!r} from --param values: {exc}") from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.to(device=device)
    if not callable(obj) and not isinstance(obj, Gibbs):
        raise UsageError(f"{name!r} is not an energy (a callable) or a Gibbs distribution")
    return obj


def _default_method(name: str, dist: Any) -> str:
    spec = BUILTIN_ENERGIES.get(name)
    if spec is not None:
        return spec.default_method
    return "gwg" if dist.is_discrete else "hmc"


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
_DEFAULTS: dict[str, dict[str, Any]] = {
    "sample": {
        **_COMMON_DEFAULTS,
        "method": None,
        "num_chains": 16,
        "num_samples": 1000,
        "num_warmup": 500,
        "thin": 1,
        "checkpoint_every": 100,
    },
    "logz": {**_COMMON_DEFAULTS, "method": "ais", "betas": None, "level": 0.95},
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


def _resolve(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, the TOML file (``--config``) and explicit command-line options."""
    defaults = _DEFAULTS[command]
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


def _make_dist(cfg: dict[str, Any], device: Any, dtype: Any, beta: Any) -> Any:
    from .distribution import Gibbs

    if not cfg["energy"]:
        raise UsageError("no energy given: use --energy NAME (see --list-energies)")
    params = {k: v for k, v in _split_kv(cfg["params"], "--param").items()}
    obj = make_energy(cfg["energy"], params, device=device, dtype=dtype)
    if isinstance(obj, Gibbs):
        return obj if beta is None else obj.at(beta)
    event_shape = cfg.get("event_shape")
    if event_shape is None and getattr(obj, "event_shape", None) is None:
        raise UsageError(
            f"energy {cfg['energy']!r} has no event_shape attribute: give --event-shape, "
            "e.g. --event-shape 2 or --event-shape 8,8"
        )
    kw = {}
    if event_shape is not None:
        kw["event_shape"] = _parse_shape(event_shape)
    try:
        return Gibbs(obj, 1.0 if beta is None else beta, **kw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _dist_beta(dist: Any, given: float | None) -> float:
    """The inverse temperature: the one given (exactly), else the distribution's own."""
    if dist.beta.dim() != 0:
        raise UsageError("the Gibbs distribution must have a single beta (no temperature ladder)")
    return float(dist.beta) if given is None else given


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


def to_jsonable(obj: Any) -> Any:
    """Convert tensors, arrays, numpy scalars and non-finite floats into plain JSON values."""
    import numpy as np

    try:
        import torch

        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (atomically: temp file then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------------
def _summary_records(samples: Any) -> list[dict[str, Any]]:
    import numpy as np

    # a coordinate that never moved has undefined ESS/R-hat: arviz divides by zero and
    # returns inf/NaN, which the JSON records as null (and the summary line as n/a)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = samples.summary(round_to="none")
    df = df.reset_index().rename(columns={"index": "coordinate"})
    return df.to_dict(orient="records")


def _stats_overview(samples: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for key, value in dict(samples.stats).items():
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            continue
        v = value.detach().to("cpu")
        if v.dtype == torch.bool:
            out[f"{key}_count"] = int(v.sum())
        elif v.dtype.is_floating_point:
            out[f"{key}_mean"] = float(v.double().mean())
    return out


def _exact_comparison(dist: Any, samples: Any, summary: list[dict[str, Any]]) -> dict[str, Any]:
    """Posterior means vs. the energy's exact mean, in units of MCSE, where it is known."""
    energy = dist.energy
    if not hasattr(energy, "exact_mean"):
        return {}
    try:
        exact = energy.exact_mean(dist.beta).reshape(-1).cpu().double()
    except (NotImplementedError, ValueError, TypeError, RuntimeError):
        return {}
    draws = samples.draws.detach().cpu().double()
    mean = draws.reshape(draws.shape[0] * draws.shape[1], -1).mean(0)
    mcse = [r.get("mcse_mean") for r in summary]
    if len(mcse) != mean.numel() or any(m is None for m in mcse):
        return {"exact_mean": exact, "sample_mean": mean}
    import torch

    z = (mean - exact) / torch.as_tensor(mcse, dtype=torch.float64).clamp_min(1e-300)
    return {
        "exact_mean": exact,
        "sample_mean": mean,
        "z_mean": z,
        "max_abs_z": float(z.abs().max()),
    }


def _plot_samples(run: Path, samples: Any, dist: Any) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import torch

    files = []
    draws = samples.draws.detach().cpu().double()
    C, D = draws.shape[:2]
    flat = draws.reshape(C, D, -1)
    k = min(flat.shape[-1], 4)
    if dist.is_discrete and draws.dim() == 4:
        # lattice states (e.g. Ising): the last state of a few chains, and the per-site mean
        fig, axes = plt.subplots(1, min(C, 4) + 1, figsize=(3 * (min(C, 4) + 1), 3))
        for i in range(min(C, 4)):
            axes[i].imshow(draws[i, -1].numpy(), cmap="gray", interpolation="nearest")
            axes[i].set_title(f"chain {i}, last draw")
            axes[i].axis("off")
        axes[-1].imshow(draws.mean((0, 1)).numpy(), cmap="coolwarm", interpolation="nearest")
        axes[-1].set_title("mean over draws")
        axes[-1].axis("off")
    else:
        fig, axes = plt.subplots(k, 2, figsize=(9, 2.2 * k), squeeze=False)
        for j in range(k):
            for c in range(min(C, 8)):
                axes[j, 0].plot(flat[c, :, j].numpy(), lw=0.5, alpha=0.7)
            axes[j, 0].set_ylabel(f"y[{j}]")
            axes[j, 1].hist(flat[:, :, j].reshape(-1).numpy(), bins=50, density=True, alpha=0.7)
        axes[0, 0].set_title("trace (up to 8 chains)")
        axes[0, 1].set_title("marginal (all chains)")
    fig.tight_layout()
    fig.savefig(run / "samples.png", dpi=80)
    plt.close(fig)
    files.append("samples.png")
    energy = None
    stats = dict(samples.stats)
    for key in ("energy", "potential_energy"):
        if isinstance(stats.get(key), torch.Tensor) and stats[key].dim() == 2:
            energy = stats[key].detach().cpu().double()
            break
    if energy is not None:
        fig, ax = plt.subplots(figsize=(6, 3))
        for c in range(min(C, 8)):
            ax.plot(energy[c].numpy(), lw=0.5)
        ax.set_xlabel("draw")
        ax.set_ylabel("energy")
        ax.set_title("energy trace (up to 8 chains)")
        fig.tight_layout()
        fig.savefig(run / "energy_trace.png", dpi=80)
        plt.close(fig)
        files.append("energy_trace.png")
    return files


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    import gibbsebm

    if args.list_energies:
        _print_energies()
        return 0
    resume = bool(args.resume)
    if resume:
        if not args.output_dir:
            raise UsageError("--resume needs --output-dir, the run folder to continue")
        run = Path(args.output_dir)
        saved = run / "config.json"
        if not saved.is_file():
            raise UsageError(f"cannot resume: {str(saved)!r} not found (is this a run folder?)")
        try:
            cfg = json.loads(saved.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read {str(saved)!r}: {exc}") from None
        if (run / "summary.json").is_file():
            raise UsageError(f"run in {str(run)!r} is already complete (summary.json exists)")
        if not (run / "checkpoint.pt").is_file():
            raise UsageError(f"cannot resume: no checkpoint in {str(run)!r} yet")
        if args.progress is not None:
            cfg["progress"] = args.progress
    else:
        cfg = _resolve("sample", args)
        _check_positive(cfg, "num_chains", "num_samples", "thin", "checkpoint_every")
        if cfg["num_warmup"] is None or int(cfg["num_warmup"]) < 0:
            raise UsageError(f"--num-warmup must be >= 0, got {cfg['num_warmup']!r}")
    beta = None if cfg["beta"] is None else _check_beta(cfg["beta"])
    device, dtype = _torch_setup(cfg)
    dist = _make_dist(cfg, device, dtype, beta)
    beta = _dist_beta(dist, beta)
    method = cfg["method"] or _default_method(cfg["energy"], dist)
    cfg["method"] = method
    options = _kernel_options(cfg)
    if not resume:
        run = _run_dir(cfg, "sample")
        write_json(run / "config.json", cfg)
    print(f"gibbsebm sample: {cfg['energy']} at beta={beta} with {method}; run folder {run}")
    t0 = time.perf_counter()
    try:
        samples = gibbsebm.sample(
            dist,
            method=method,
            num_chains=int(cfg["num_chains"]),
            num_samples=int(cfg["num_samples"]),
            num_warmup=int(cfg["num_warmup"]),
            thin=int(cfg["thin"]),
            seed=int(cfg["seed"]),
            progress=bool(cfg["progress"]) if cfg["progress"] is not None else sys.stderr.isatty(),
            checkpoint=str(run / "checkpoint.pt"),
            checkpoint_every=int(cfg["checkpoint_every"]),
            **options,
        )
    except KeyboardInterrupt:
        print(
            f"gibbsebm: interrupted; continue with: gibbsebm sample --resume --output-dir {run}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    wall = time.perf_counter() - t0
    idata = samples.to_inference_data()
    idata.to_netcdf(str(run / "samples.nc"))
    records = _summary_records(samples)
    rhat = [r.get("r_hat") for r in records if r.get("r_hat") is not None]
    ess = [r.get("ess_bulk") for r in records if r.get("ess_bulk") is not None]
    finite_rhat = [x for x in rhat if math.isfinite(x)]
    finite_ess = [x for x in ess if math.isfinite(x)]
    result: dict[str, Any] = {
        "command": "sample",
        "energy": cfg["energy"],
        "params": cfg["params"],
        "beta": beta,
        "method": method,
        "num_chains": int(cfg["num_chains"]),
        "num_samples": int(cfg["num_samples"]),
        "num_warmup": int(cfg["num_warmup"]),
        "seed": int(cfg["seed"]),
        "device": str(device),
        "dtype": cfg["dtype"],
        "resumed": resume,
        "wall_time_s": wall,
        "max_r_hat": max(finite_rhat) if finite_rhat else None,
        "min_ess_bulk": min(finite_ess) if finite_ess else None,
        "stats": _stats_overview(samples),
        "exact": _exact_comparison(dist, samples, records),
        "summary": records,
        "files": ["samples.nc", "summary.json", "config.json"],
        "versions": {"gibbsebm": gibbsebm.__version__, "torch": torch.__version__},
    }
    if cfg.get("plots", True):
        result["files"] += _plot_samples(run, samples, dist)
    write_json(run / "summary.json", result)
    if (run / "checkpoint.pt").exists():
        (run / "checkpoint.pt").unlink()
    print(
        f"  {result['num_chains']} chains x {result['num_samples']} draws in {wall:.1f} s; "
        f"max R-hat {_fmt(result['max_r_hat'])}, min bulk ESS {_fmt(result['min_ess_bulk'])}"
    )
    print(f"  wrote {run / 'samples.nc'} and {run / 'summary.json'}")
    print(run)
    return 0


def _fmt(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


# ---------------------------------------------------------------------------------------------
# logz
# ---------------------------------------------------------------------------------------------
def _parse_betas(text: Any) -> list[float]:
    """``"0.1,0.2,0.5"`` or ``"0.1:1.0:10"`` (start:stop:count, linear) -> list of betas."""
    if isinstance(text, list | tuple):
        vals = [_check_beta(v, "--betas") for v in text]
    else:
        s = str(text)
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 3:
                raise UsageError(f"--betas range must be START:STOP:COUNT, got {s!r}")
            lo, hi = _check_beta(parts[0], "--betas"), _check_beta(parts[1], "--betas")
            n = _parse_value(parts[2], int, "--betas COUNT")
            if n < 2:
                raise UsageError("--betas COUNT must be >= 2")
            vals = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        else:
            vals = [_check_beta(v, "--betas") for v in s.split(",") if v.strip()]
    if not vals:
        raise UsageError("--betas is empty")
    return vals


def _estimate_record(est: Any, level: float) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "method": getattr(est, "method", None),
        "log_z": getattr(est, "log_z", None),
        "stderr": getattr(est, "stderr", None),
        "num_energy_evals": getattr(est, "num_energy_evals", None),
    }
    try:
        lo, hi = est.ci(level)
        rec["ci"] = [lo, hi]
        rec["ci_level"] = level
    except (AttributeError, TypeError, ValueError):
        pass
    for k in ("lower", "upper"):
        if getattr(est, k, None) is not None:
            rec[k] = getattr(est, k)
    diag = getattr(est, "diagnostics", None)
    if isinstance(diag, dict):
        rec["diagnostics"] = {
            k: v for k, v in diag.items() if not hasattr(v, "numel") or v.numel() <= 64
        }
    return rec


def _exact_log_z(dist: Any, beta: float | None = None) -> float | None:
    """The exact log Z where one is known (float64 at the exact ``beta``), else ``None``."""
    import torch

    energy = dist.energy
    plain = dist.base is None and dist.x is None and dist.latent is None
    if plain and getattr(energy, "has_exact_log_partition", False) and beta is not None:
        return float(energy.exact_log_partition(torch.tensor(beta, dtype=torch.float64)))
    try:
        if dist.normalized:
            return float(dist.log_partition().reshape(-1)[0].double())
    except (ValueError, NotImplementedError, RuntimeError):
        return None
    return None


def _cmd_logz(args: argparse.Namespace) -> int:
    import warnings

    import gibbsebm

    if args.list_energies:
        _print_energies()
        return 0
    cfg = _resolve("logz", args)
    beta = None if cfg["beta"] is None else _check_beta(cfg["beta"])
    level = float(cfg["level"])
    if not 0 < level < 1:
        raise UsageError(f"--level must lie in (0, 1), got {level}")
    device, dtype = _torch_setup(cfg)
    dist = _make_dist(cfg, device, dtype, beta)
    beta = _dist_beta(dist, beta)
    options = _kernel_options(cfg)
    run = _run_dir(cfg, "logz")
    write_json(run / "config.json", cfg)
    method = cfg["method"]
    progress = bool(cfg["progress"]) if cfg["progress"] is not None else sys.stderr.isatty()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cfg["betas"] is None:
            print(f"gibbsebm logz: {cfg['energy']} at beta={beta} with {method}; run folder {run}")
            est = gibbsebm.log_partition(
                dist, method=method, seed=int(cfg["seed"]), progress=progress, **options
            )
            rec = _estimate_record(est, level)
            exact = _exact_log_z(dist, beta)
            rec.update(_versus_exact(rec, exact))
            result = {"command": "logz", "energy": cfg["energy"], "params": cfg["params"]}
            result.update({"beta": beta, "estimate": rec, "files": ["logz.json", "config.json"]})
            line = f"  log Z = {rec['log_z']:.6g} +/- {_fmt(rec['stderr'])} ({method})"
            if exact is not None:
                line += f"; exact {exact:.6g}, error {rec['error']:.3g} = {_fmt(rec['z'])} stderr"
        else:
            betas = _parse_betas(cfg["betas"])
            print(f"gibbsebm logz: {cfg['energy']} over {len(betas)} betas; run folder {run}")
            if method != "ais":
                raise UsageError(
                    f"--betas estimates a curve by annealed importance sampling; drop --method "
                    f"{method} (or use --beta for one value)"
                )
            curve = gibbsebm.log_partition_curve(
                dist, betas, seed=int(cfg["seed"]), progress=progress, **options
            )
            result = {"command": "logz", "energy": cfg["energy"], "params": cfg["params"]}
            result.update(_curve_record(curve, dist, betas))
            result["files"] = ["logz.json", "config.json"]
            if cfg.get("plots", True):
                result["files"].append(_plot_curve(run, result))
            line = f"  {len(betas)} betas, log Z from {result['log_z'][0]:.4g} to {result['log_z'][-1]:.4g}"
    result["wall_time_s"] = time.perf_counter() - t0
    result["warnings"] = [str(w.message) for w in caught]
    write_json(run / "logz.json", result)
    print(line)
    for w in result["warnings"]:
        print(f"  warning: {w}")
    print(f"  wrote {run / 'logz.json'}")
    print(run)
    return 0


def _versus_exact(rec: dict[str, Any], exact: float | None) -> dict[str, Any]:
    if exact is None or rec.get("log_z") is None:
        return {"exact_log_z": exact}
    err = float(rec["log_z"]) - exact
    se = rec.get("stderr")
    z = err / float(se) if se else None
    return {"exact_log_z": exact, "error": err, "z": z}


def _curve_record(curve: Any, dist: Any, betas: list[float]) -> dict[str, Any]:
    import torch

    def get(name: str) -> Any:
        v = curve[name] if isinstance(curve, dict) else getattr(curve, name, None)
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().double().tolist()
        return v

    out: dict[str, Any] = {"betas": get("betas") or betas}
    betas = out["betas"]
    for name in (
        "log_z",
        "log_z_stderr",
        "mean_energy",
        "mean_energy_stderr",
        "heat_capacity",
        "heat_capacity_stderr",
    ):
        out[name] = get(name)
    exact = []
    for b in betas:
        exact.append(_exact_log_z(dist.at(b), b))
    out["exact_log_z"] = exact if any(e is not None for e in exact) else None
    return out


def _plot_curve(run: Path, result: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    b = result["betas"]
    se = result.get("log_z_stderr") or [0.0] * len(b)
    ax.errorbar(
        b,
        result["log_z"],
        yerr=[2 * (s or 0.0) for s in se],
        fmt="o",
        ms=3,
        label="estimate +/- 2 stderr",
    )
    if result.get("exact_log_z"):
        ax.plot(b, result["exact_log_z"], "k-", lw=1, label="exact")
    ax.set_xlabel("beta")
    ax.set_ylabel("log Z(beta)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run / "logz_curve.png", dpi=80)
    plt.close(fig)
    return "logz_curve.png"


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run = _run_dir({"output_dir": args.output_dir}, "demo")
    run_demo(run, seed=args.seed, quick=args.quick, progress=args.progress, out=sys.stdout)
    print(run)
    return 0


def _print_energies() -> None:
    for name, spec in BUILTIN_ENERGIES.items():
        params = ", ".join(f"{k}={p.default}" for k, p in spec.params.items())
        print(f"{name:12s} {spec.help}")
        print(f"{'':12s}   parameters: {params}; default method: {spec.default_method}")


# ---------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------
_SAMPLE_EPILOG = """\
examples:
  gibbsebm sample --energy gaussian --param dim=10 --method hmc --num-chains 64
  gibbsebm sample --energy ising --param L=8 --beta 0.4407 --method gwg --output-dir runs/ising
  gibbsebm sample --resume --output-dir runs/ising          # continue an interrupted run
  gibbsebm sample --energy mymodels.energies:MyEnergy --param width=32 --event-shape 2
  gibbsebm sample --config run.toml --seed 3                # options from TOML, CLI wins

writes: samples.nc (arviz netCDF), summary.json, config.json, samples.png, energy_trace.png
"""

_LOGZ_EPILOG = """\
examples:
  gibbsebm logz --energy ising --param L=8 --beta 0.4407 --method ais
  gibbsebm logz --energy gaussian --param dim=10 --method importance --option num_samples=20000
  gibbsebm logz --energy ising --param L=6 --betas 0.1:0.8:8 --method ti

writes: logz.json (estimate, stderr, CI, exact value and error when known), logz_curve.png
"""

_DEMO_EPILOG = """\
example:
  gibbsebm demo                       # about a minute on 2 CPU cores
  gibbsebm demo --quick --output-dir /tmp/tour

writes into the run folder: samples (arviz netCDF + summary), log Z estimate vs exact,
a calibration report (HTML, JSON, Markdown), figures, and demo.json/README.md.
"""

_MAIN_EPILOG = """\
examples:
  gibbsebm demo
  gibbsebm sample --energy ising --param L=8 --beta 0.4 --num-chains 32
  gibbsebm logz --energy gaussian --param dim=10 --method ais
  gibbsebm calibrate --help

run 'gibbsebm <command> --help' for the options of a command.
"""


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


def build_parser() -> argparse.ArgumentParser:
    """The ``gibbsebm`` argument parser (subcommands ``demo``, ``sample``, ``logz``, ``calibrate``)."""
    from . import __version__

    parser = _Parser(
        prog="gibbsebm",
        description="Energy-based models as Gibbs distributions: sample, estimate log Z, calibrate.",
        epilog=_MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"gibbsebm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "demo",
        help="a tour on built-in energies, written to a run folder",
        description="A tour: samples with diagnostics, a log Z with error bar against the exact "
        "value, and a calibration report, written to a run folder whose path is printed.",
        epilog=_DEMO_EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("--output-dir", metavar="DIR", help="run folder (default runs/demo-<time>)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true", help="smaller runs (a few seconds)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="progress bars (default off)",
    )
    p.set_defaults(_run=_cmd_demo)

    p = sub.add_parser(
        "sample",
        help="draw samples from exp(-beta E) with a batched sampler",
        description="Sample a Gibbs distribution exp(-beta E(y)) / Z with batched chains; "
        "writes arviz netCDF, a JSON summary with diagnostics and plots.",
        epilog=_SAMPLE_EPILOG,
        formatter_class=_Formatter,
    )
    _add_energy_options(p)
    g = p.add_argument_group("sampler")
    g.add_argument(
        "--method",
        help="ula, mala, hmc, nuts, pt, gwg, dmala, metropolis, block_gibbs "
        "(default: per energy, hmc for continuous y, gwg for discrete y)",
    )
    g.add_argument("--num-chains", type=int, help="chains run together (default 16)")
    g.add_argument("--num-samples", type=int, help="draws kept per chain (default 1000)")
    g.add_argument("--num-warmup", type=int, help="warmup/adaptation steps (default 500)")
    g.add_argument("--thin", type=int, help="keep every n-th draw (default 1)")
    g.add_argument("--checkpoint-every", type=int, help="draws between checkpoints (default 100)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --output-dir from its checkpoint",
    )
    _add_run_options(p)
    p.set_defaults(_run=_cmd_sample)

    p = sub.add_parser(
        "logz",
        help="estimate log Z(beta) with an error bar",
        description="Estimate the log partition function log Z(beta) with a standard error "
        "(or a curve over a beta ladder with mean energy and heat capacity); compares with the "
        "exact value when the energy has one.",
        epilog=_LOGZ_EPILOG,
        formatter_class=_Formatter,
    )
    _add_energy_options(p)
    g = p.add_argument_group("estimator")
    g.add_argument("--method", help="exact, importance, ais, bdmc, ti, bridge (default ais)")
    g.add_argument(
        "--betas",
        metavar="LIST",
        help="a curve over betas: 0.1,0.2,0.4 or START:STOP:COUNT",
    )
    g.add_argument("--level", type=float, help="confidence level of the interval (default 0.95)")
    _add_run_options(p)
    p.set_defaults(_run=_cmd_logz)

    _mount_calibrate(sub)
    return parser


def _mount_calibrate(sub: Any) -> None:
    """Mount ``gibbsebm calibrate`` from :mod:`gibbsebm.calibration.cli`."""
    try:
        from .calibration.cli import add_calibrate_parser, run_calibrate
    except ImportError as exc:
        reason = str(exc)
        p = sub.add_parser(
            "calibrate",
            help="calibration report (unavailable)",
            description="calibration report; unavailable in this installation",
            epilog="example:\n  gibbsebm calibrate --help",
            formatter_class=_Formatter,
        )

        def _unavailable(_args: argparse.Namespace) -> int:
            raise UsageError(f"calibrate is unavailable: {reason}")

        p.set_defaults(_run=_unavailable)
        return
    before = set(sub.choices)
    add_calibrate_parser(sub)
    names = [n for n in sub.choices if n not in before] or ["calibrate"]
    for name in names:
        cp = sub.choices[name]
        if cp.epilog is None:
            cp.epilog = (
                "example:\n  gibbsebm calibrate --energies val_energies.npy --labels "
                "val_labels.npy --output-dir runs/calib"
            )
            cp.formatter_class = _Formatter
        cp.set_defaults(_run=run_calibrate)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gibbsebm`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on a user error (one line on stderr), 130 after Ctrl-C.

    Examples
    --------
    >>> main(["sample", "--energy", "nonexistent"])  # doctest: +SKIP
    gibbsebm: error: unknown energy 'nonexistent'; built-in energies are ...
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        status = args._run(args)
    except UsageError as exc:
        return _fail(exc)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        # bad input caught by the library's own checks (ValueError names the problem)
        return _fail(exc)
    except KeyboardInterrupt:
        print("gibbsebm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(status or 0)


def _fail(exc: BaseException) -> int:
    if os.environ.get("GIBBSEBM_TRACEBACK"):
        raise exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, FileNotFoundError | PermissionError) and exc.filename:
        msg = f"cannot read {exc.filename!r}: {exc.strerror}"
    print(f"gibbsebm: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
