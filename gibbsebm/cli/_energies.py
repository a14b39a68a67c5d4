"""The energies the command line can name: built-ins with ``--param`` values, or user code.

:data:`BUILTIN_ENERGIES` maps a name to its factory, parameters and default sampler;
:func:`make_energy` builds one (or imports ``package.module:attribute``). Torch and the energy
classes are imported inside the factories, so listing or validating names stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import UsageError, _parse_shape, _split_kv, _typed

__all__ = ["Param", "BuiltinEnergy", "BUILTIN_ENERGIES", "make_energy"]


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

    from ..energies import Gaussian

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
    from ..energies import GaussianMixture

    if k < 1:
        raise ValueError(f"mixture: k must be >= 1, got {k}")
    return GaussianMixture.ring(k, radius, sd, dtype=dtype, device=device)


def _double_well(dim: int, a: float, c: float, device: Any, dtype: Any) -> Any:
    from ..energies import DoubleWell

    return DoubleWell(dim=dim, a=a, c=c, dtype=dtype, device=device)


def _banana(dim: int, b: float, sigma1: float, device: Any, dtype: Any) -> Any:
    from ..energies import Banana

    return Banana(dim=dim, b=b, sigma1=sigma1, dtype=dtype, device=device)


def _ising(L: int, J: float, device: Any, dtype: Any) -> Any:  # noqa: N803 (physics name)
    from ..energies import Ising2D

    return Ising2D(L, J, dtype=dtype, device=device)


def _rbm(num_visible: int, num_hidden: int, scale: float, seed: int, device: Any, dtype: Any):
    import torch

    from ..energies import RBM

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
    from ..distribution import Gibbs

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


def _make_dist(cfg: dict[str, Any], device: Any, dtype: Any, beta: Any) -> Any:
    from ..distribution import Gibbs

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


def _print_energies() -> None:
    for name, spec in BUILTIN_ENERGIES.items():
        params = ", ".join(f"{k}={p.default}" for k, p in spec.params.items())
        print(f"{name:12s} {spec.help}")
        print(f"{'':12s}   parameters: {params}; default method: {spec.default_method}")
