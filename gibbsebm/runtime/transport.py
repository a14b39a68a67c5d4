"""Getting a plan to its workers: serialization checks and device moves.

* :func:`dumps` serializes with the pickler that carries shards to Ray workers (cloudpickle)
  while keeping constraint singletons singletons;
* :func:`check_picklable` round-trips every part a shard needs before anything is submitted and
  names the part that cannot travel (:class:`UnpicklableError`);
* :func:`to_device` copies an object with every tensor on another device (a worker computing on
  a GPU), :func:`isolated_copy` gives each shard its own copy of mutable state.

These are in-memory round trips of objects built in this process; nothing here reads a file.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "UnpicklableError",
    "dumps",
    "check_picklable",
    "to_device",
    "map_tensors",
    "isolated_copy",
]


class UnpicklableError(ValueError):
    """Something a shard needs cannot be serialized to travel to a Ray worker."""


def _pickle_module(pickler: str):
    if pickler == "pickle":
        return pickle
    if pickler == "cloudpickle":
        try:
            from ray import cloudpickle
        except ImportError:
            import cloudpickle  # type: ignore[no-redef]
        return cloudpickle
    raise ValueError(f"pickle_check must be 'cloudpickle' or 'pickle', got {pickler!r}")


def _module_constraints() -> dict[int, tuple[str, str, Any]]:
    """``id -> (module, name, object)`` of the constraint singletons of torch and gibbsebm."""
    import importlib

    from torch.distributions.constraints import Constraint

    out: dict[int, tuple[str, str, Any]] = {}
    for modname in ("torch.distributions.constraints", "gibbsebm.constraints"):
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if isinstance(obj, Constraint) and not name.startswith("_"):
                out.setdefault(id(obj), (modname, name, obj))
    return out


def _constraint_by_name(module: str, name: str) -> Any:
    """The module-level constraint ``module.name`` (the unpickling side of :func:`dumps`)."""
    import importlib

    return getattr(importlib.import_module(module), name)


def _pickler_class(pickler: str) -> type:
    """A Pickler (``pickler``'s) that pickles module-level constraints by reference."""
    module = _pickle_module(pickler)
    singletons = _module_constraints()
    base = module.Pickler if pickler == "pickle" else module.CloudPickler

    class _Pickler(base):  # type: ignore[misc, valid-type]
        def reducer_override(self, o: Any) -> Any:
            ref = singletons.get(id(o))
            if ref is not None and ref[2] is o:
                return _constraint_by_name, ref[:2]
            parent = getattr(super(), "reducer_override", None)
            return parent(o) if parent is not None else NotImplemented

    return _Pickler


def dumps(obj: Any, pickler: str = "cloudpickle") -> bytes:
    """Serialize ``obj`` for the workers, keeping constraint singletons singletons.

    Code in torch and gibbsebm tests supports by identity (``support is constraints.real``),
    and a plain pickle round trip makes a new, non-identical object. Module-level constraint
    objects of :mod:`torch.distributions.constraints` and :mod:`gibbsebm.constraints` are
    therefore pickled by reference. Everything else is pickled by ``pickler``
    (``"cloudpickle"``, as Ray does, or the standard library's ``"pickle"``); the bytes load
    with :func:`pickle.loads`.
    """
    buf = io.BytesIO()
    _pickler_class(pickler)(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def check_picklable(parts: Mapping[str, Any], pickler: str = "cloudpickle") -> None:
    """Check that every part survives a serialization round trip, naming the first that does not.

    Each value of ``parts`` is serialized with :func:`dumps` (``pickler``) and deserialized
    again in this process, which is exactly what happens between the driver and a Ray worker.
    For a failing :class:`gibbsebm.Gibbs` distribution the check descends into its ``energy``
    to name it.

    * ``"cloudpickle"`` (what Ray uses): functions and classes of importable modules travel by
      reference, lambdas, closures and ``__main__`` code by value (their captured variables
      must be picklable). It fails on objects no pickler can serialize: closures or energies
      holding locks, sockets, database connections, CUDA streams, ...
    * ``"pickle"`` (standard library, strict): everything by reference, so lambdas, closures
      and functions or classes defined inside functions are rejected; use it to make sure the
      code that runs on a cluster comes from installed modules.

    Neither can tell whether a module importable here is importable on remote workers (ship
    your own modules with Ray's ``runtime_env={"py_modules": [...]}``).

    Parameters
    ----------
    parts : mapping of str to object
        Description -> object, e.g. ``{"the distribution": dist}``.
    pickler : {"cloudpickle", "pickle"}
        Serializer to check with.

    Raises
    ------
    UnpicklableError
        With a message naming the part (and, for a distribution, its energy).

    Examples
    --------
    >>> import threading
    >>> check_picklable({"a list": [1, 2]})
    >>> check_picklable({"a lock": threading.Lock()})
    Traceback (most recent call last):
    ...
    gibbsebm.runtime.transport.UnpicklableError: a lock cannot be sent to Ray workers: ...
    """
    _pickle_module(pickler)  # validates the name
    for what, obj in parts.items():
        error = _round_trip_error(obj, pickler)
        if error is None:
            continue
        culprit = what
        energy = getattr(obj, "energy", None)
        if energy is not None:
            inner = _round_trip_error(energy, pickler)
            if inner is not None:
                culprit, error = f"the energy {_short_repr(energy)} of {what}", inner
        hint = (
            "define it with `def` at module level (or as an nn.Module / EnergyModel class) "
            "in an importable module, or use pickle_check='cloudpickle'"
            if pickler == "pickle"
            else "keep unpicklable state (locks, sockets, connections, ...) out of the energy "
            "and the options, or rebuild it lazily on first use"
        )
        raise UnpicklableError(
            f"{culprit} cannot be sent to Ray workers: it does not survive a {pickler} "
            f"round trip ({type(error).__name__}: {error}). Nothing was submitted; {hint}."
        ) from error


def _round_trip_error(obj: Any, pickler: str) -> Exception | None:
    """The exception a serialization round trip of ``obj`` raises, or ``None``."""
    try:
        pickle.loads(dumps(obj, pickler))
    except Exception as exc:  # any failure of the serializer means "cannot travel"
        return exc
    return None


def _short_repr(obj: Any) -> str:
    """``function 'f.<locals>.g'`` for functions, ``Name instance`` for other objects."""
    qual = getattr(obj, "__qualname__", None)
    if callable(obj) and isinstance(qual, str) and not isinstance(obj, type):
        return f"{type(obj).__name__} {qual!r}"
    return f"{type(obj).__name__} instance"


def to_device(obj: Any, device: torch.device) -> Any:
    """A copy of ``obj`` with every tensor (and module parameter) on ``device``."""
    import types

    buf = io.BytesIO()
    module = types.SimpleNamespace(Pickler=_pickler_class("cloudpickle"), __name__="gibbsebm")
    torch.save(obj, buf, pickle_module=module)
    buf.seek(0)
    return torch.load(buf, map_location=device, weights_only=False)


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_tensors(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(map_tensors(v, fn) for v in obj)
    return obj


def isolated_copy(obj: Any, shared: Sequence[Any] = ()) -> Any:
    """A copy of ``obj`` in which only the objects in ``shared`` are not copied.

    Transition kernels adapt (step sizes) and cache in place; every shard must start from the
    setup's state, as a Ray worker does with its deserialized copy. The copy is a serialization
    round trip (:func:`dumps`, as for Ray) in which the ``shared`` objects (a distribution, its
    energy, an evaluation counter) are pickled as persistent references, so a large energy is
    not duplicated and shards can report a shared counter's increase.
    """
    keep = {id(o): o for o in shared if o is not None}

    class _Keep(_pickler_class("cloudpickle")):  # type: ignore[misc, valid-type]
        def persistent_id(self, o: Any) -> Any:
            return id(o) if id(o) in keep and keep[id(o)] is o else None

    class _Restore(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return keep[pid]

    buf = io.BytesIO()
    _Keep(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    buf.seek(0)
    return _Restore(buf).load()
