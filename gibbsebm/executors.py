"""Executors: run chains, AIS particles or TI/bridge chains in shards, in-process or on Ray.

Sampling chains, annealed-importance particles and the chains that climb a thermodynamic
ladder are embarrassingly parallel. An *executor* splits them into shards, runs every shard
as an ordinary in-process computation (the same :func:`gibbsebm.sample` / estimator code), and
merges the shards into one result of the same type as an unsharded run.

* :class:`LocalExecutor` runs the shards one after another in this process (the default when
  ``executor="local"``; ``executor=None`` skips this module altogether).
* :class:`RayExecutor` runs each shard as a Ray task on whichever worker is free, on CPU or GPU
  per ``resources_per_worker``, on a laptop or a cluster (``address=``).

Shard layout. ``N`` items (chains or particles) and ``K`` shards give shard ``k`` the items
``[start_k, start_k + n_k)`` with ``n_k = N // K + (k < N % K)`` (:func:`shard_sizes`). ``K``
is the executor's ``num_shards`` (default: 1 for :class:`LocalExecutor`, ``num_workers`` for
:class:`RayExecutor`).

Seeds. With ``K = 1`` the single shard uses the run's ``seed`` itself, so a one-shard run is
draw-for-draw the in-process run. With ``K > 1`` shard ``k`` uses
``gibbsebm.run.shard_seeds(seed, K)[k]`` (:class:`numpy.random.SeedSequence` spawning: the
streams do not overlap). The draws therefore depend only on ``seed`` and the layout, never on
where or in which order shards run: the same seed and layout give the same draws with
:class:`LocalExecutor` and :class:`RayExecutor` (on the same device type and torch build).
For ``log_partition`` the base distribution, pilot run and schedule or ladder are computed
once on the driver from a generator seeded with ``seed`` (as in the in-process estimator);
with one shard the particles continue that generator's stream (so the estimate equals the
in-process one), with ``K > 1`` shard ``k`` draws from ``shard_seeds(seed, K)[k]``.

Merging is exact. Samples: draws and per-draw stats are concatenated along the chain
dimension (:meth:`gibbsebm.run.Samples.concatenate`), so arviz export, ESS and R-hat see all
chains; each shard adapts its kernel on its own chains (``Samples.adaptation["shards"]``).
AIS / importance sampling: the log-weights of all shards are pooled *before* the log-mean-exp,
ESS, Pareto k-hat and batch checks, which is exactly the estimator of one run with all
particles (not an average of per-shard estimates); per-step increment means and variances and
acceptance rates are pooled exactly from the per-shard moments. TI / bridge: the shards' rungs
are stitched along the chain dimension, so every rung's mean and MCSE, the quadrature error
and the jackknife use all chains.

Faults. A failing shard is retried (Ray task retries, ``max_retries``; worker deaths and, with
``retry_exceptions=True``, exceptions). A run either returns with all shards or raises
:class:`ShardError` naming the shards that were lost, with the finished ones attached. With
``checkpoint=directory`` every finished shard is written there as soon as it arrives, and a
rerun with the same arguments computes only the missing shards.

Serialization. Before anything is submitted, :class:`RayExecutor` round-trips everything a
shard needs (the distribution with its energy, the options, ``init``; for ``log_partition``
the prepared path, base and kernel) through the serializer that carries it to the workers
(:func:`dumps`) and raises :class:`UnpicklableError` naming the part that cannot travel (see
:func:`check_picklable` for exactly what is checked).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import math
import os
import pickle
import secrets
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from .run import Samples, _dist_device, _jsonable, shard_seeds

if TYPE_CHECKING:
    from .partition.result import LogZEstimate

__all__ = [
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ShardError",
    "UnpicklableError",
    "RAY_INSTALL_HINT",
    "resolve_executor",
    "shard_sizes",
    "shard_stream_seeds",
    "check_picklable",
    "dumps",
    "run_sample",
    "run_log_partition",
    "SHARDED_LOG_PARTITION_METHODS",
]

#: How to install the optional Ray dependency.
RAY_INSTALL_HINT = "pip install gibbsebm[ray]"
#: ``log_partition`` methods whose particles can be sharded.
SHARDED_LOG_PARTITION_METHODS = ("ais", "importance", "ti", "bridge")
_MANIFEST = "manifest.json"
_CHECKPOINT_FORMAT = "gibbsebm.shards"


# ------------------------------------------------------------------------------ layout, seeds
def shard_sizes(num_items: int, num_shards: int) -> list[int]:
    """Items per shard: ``N // K`` each, the first ``N % K`` shards one more.

    Parameters
    ----------
    num_items : int
        Chains or particles to split (``N``).
    num_shards : int
        Number of shards (``K``), ``1 <= K <= N``.

    Returns
    -------
    list of int
        ``K`` sizes summing to ``N``.

    Raises
    ------
    ValueError
        If ``K < 1`` or ``K > N`` (a shard would be empty).

    Examples
    --------
    >>> shard_sizes(10, 4)
    [3, 3, 2, 2]
    """
    for name, v in (("num_items", num_items), ("num_shards", num_shards)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if num_shards > num_items:
        raise ValueError(
            f"{num_shards} shards for {num_items} chains/particles would leave shards empty; "
            "use at most one shard per chain"
        )
    q, r = divmod(num_items, num_shards)
    return [q + (1 if k < r else 0) for k in range(num_shards)]


def shard_stream_seeds(seed: int, num_shards: int) -> list[int]:
    """Seeds of the shards of a run seeded with ``seed``.

    ``[seed]`` for one shard (so a one-shard run equals the in-process run), else
    :func:`gibbsebm.run.shard_seeds` ``(seed, num_shards)``.

    Examples
    --------
    >>> shard_stream_seeds(7, 1)
    [7]
    >>> len(set(shard_stream_seeds(7, 3)))
    3
    """
    if num_shards == 1:
        return [int(seed)]
    return shard_seeds(seed, num_shards)


# ------------------------------------------------------------------------------ errors
class ShardError(RuntimeError):
    """Some shards failed for good (after their retries); the run has no result.

    Attributes
    ----------
    failed : dict of int to str
        Shard index -> what went wrong.
    completed : dict of int to object
        Results of the shards that finished (also stored on disk with ``checkpoint=``).
    """

    def __init__(self, message: str, failed: dict[int, str], completed: dict[int, Any]) -> None:
        super().__init__(message)
        self.failed = failed
        self.completed = completed


class UnpicklableError(ValueError):
    """Something a shard needs cannot be serialized to travel to a Ray worker."""


# ------------------------------------------------------------------------------ pickling
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
    gibbsebm.executors.UnpicklableError: a lock cannot be sent to Ray workers: ...
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


# ------------------------------------------------------------------------------ executors
class Executor(ABC):
    """Runs the shards of a run. Subclasses: :class:`LocalExecutor`, :class:`RayExecutor`.

    Parameters
    ----------
    num_shards : int, optional
        Number of shards (fixes the shard layout and hence the draws; see the module notes).
    max_retries : int
        Extra attempts per shard after a failure.
    """

    name = "executor"

    def __init__(self, num_shards: int | None = None, max_retries: int = 0) -> None:
        if num_shards is not None and (
            isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1
        ):
            raise ValueError(f"num_shards must be an int >= 1 or None, got {num_shards!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.num_shards = num_shards
        self.max_retries = max_retries

    def resolve_num_shards(self) -> int:
        """The number of shards this executor splits a run into."""
        return self.num_shards if self.num_shards is not None else self._default_num_shards()

    @abstractmethod
    def _default_num_shards(self) -> int: ...

    def check_transport(self, parts: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Raise :class:`UnpicklableError` if a part cannot reach the workers (no-op locally)."""

    def device(self, home: torch.device) -> torch.device:
        """Device the shards compute on, given the distribution's device ``home``."""
        return home

    @abstractmethod
    def map(
        self,
        fn: Callable[[Any, Any], Any],
        common: Any,
        args: dict[int, Any],
        on_result: Callable[[int, Any], None],
        on_tick: Callable[[], None] | None = None,
    ) -> tuple[dict[int, Any], dict[int, str]]:
        """Run ``fn(common, args[k])`` for every shard ``k``.

        ``on_result(k, result)`` is called as each shard finishes (progress, checkpoints).

        Returns
        -------
        tuple of dict
            ``(results, failures)``: shard index -> result, shard index -> error message.
        """

    def describe(self) -> dict[str, Any]:
        """JSON-able description recorded in results."""
        return {"name": self.name, "num_shards": self.num_shards, "max_retries": self.max_retries}

    def __repr__(self) -> str:
        kv = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({kv})"


class LocalExecutor(Executor):
    """Runs the shards one after another in this process.

    With the same ``num_shards`` it gives the same draws as :class:`RayExecutor` (the shard
    layout and seeds do not depend on the executor), which makes it the reference for
    debugging sharded runs. A shard that raises is retried ``max_retries`` times; the other
    shards still run (and are stored with ``checkpoint=``) before :class:`ShardError` is
    raised.

    Parameters
    ----------
    num_shards : int
        Number of shards (default 1: the run is the in-process run).
    max_retries : int
        Extra attempts for a shard that raises (default 0: a local exception is a bug, not a
        lost worker).

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> s = gibbsebm.executors.run_sample(d, "mala", executor=LocalExecutor(num_shards=2),
    ...     num_chains=4, num_samples=10, num_warmup=10, seed=0, progress=False)
    >>> s.draws.shape, s.attrs["shard_sizes"]
    (torch.Size([4, 10, 2]), [2, 2])
    """

    name = "local"

    def __init__(self, num_shards: int = 1, max_retries: int = 0) -> None:
        super().__init__(num_shards=num_shards, max_retries=max_retries)

    def _default_num_shards(self) -> int:
        return 1

    def map(self, fn, common, args, on_result, on_tick=None):
        results: dict[int, Any] = {}
        failures: dict[int, str] = {}
        for k, a in args.items():
            for attempt in range(self.max_retries + 1):
                try:
                    res = fn(common, a)
                except Exception as exc:  # recorded per shard; see ShardError
                    failures[k] = f"{type(exc).__name__}: {exc}"
                    if attempt == self.max_retries:
                        break
                else:
                    failures.pop(k, None)
                    results[k] = res
                    on_result(k, res)
                    break
            if on_tick is not None:
                on_tick()
        return results, failures


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"executor='ray' needs Ray, which is not installed: {RAY_INSTALL_HINT}"
        ) from exc
    return ray


def _call_shard(fn: Callable[[Any, Any], Any], common: bytes, arg: Any) -> Any:
    """The body of a Ray task (module level, so it travels by reference).

    ``common`` comes as the bytes of :func:`dumps` (shared by all shards through the object
    store) and is deserialized here, giving each task its own copy.
    """
    return fn(pickle.loads(common), arg)


def _ray_error_message(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


class RayExecutor(Executor):
    """Runs each shard as a Ray task on whichever worker is free.

    Parameters
    ----------
    address : str, optional
        Where to connect when Ray is not initialised yet: ``None`` starts a local Ray instance,
        ``"auto"`` joins the cluster of this node, ``"ray://host:10001"`` uses Ray Client. If
        Ray is already initialised (``ray.init(...)`` in your script), that connection is used.
    num_workers : int, optional
        Shards in flight at once and the default number of shards. Default: as many as the
        cluster's resources fit (e.g. its CPU count for one CPU per worker), read when the run
        starts; give it (or ``num_shards``) explicitly to make the shard layout, and hence the
        draws, independent of the cluster size.
    resources_per_worker : dict, optional
        Ray resources of one shard task: ``"CPU"``, ``"GPU"`` (fractions allowed), ``"memory"``
        (bytes) and custom resources. Default ``{"CPU": 1}``.
    max_retries : int
        Ray task retries per shard (worker deaths, and exceptions when ``retry_exceptions``).
    num_shards : int, optional
        Number of shards (default ``num_workers``).
    retry_exceptions : bool
        Also retry shards that raise (default True: argument errors are caught on the driver
        before submission, so what remains is worth retrying: out-of-memory, a flaky node).
    pickle_check : {"cloudpickle", "pickle"}
        How the transport check serializes (:func:`check_picklable`).
    device : str or torch.device, optional
        Device the shards compute on. Default: ``"cuda"`` when ``resources_per_worker``
        requests a GPU, else the distribution's own device. When it differs from the
        distribution's device, each worker moves its copy of the distribution there, and
        results come back on the distribution's device.
    init_kwargs : dict, optional
        Extra arguments of ``ray.init`` when this executor starts Ray (e.g. ``runtime_env``).

    Examples
    --------
    >>> import ray, gibbsebm                                      # doctest: +SKIP
    >>> ray.init(address="auto")                                  # doctest: +SKIP
    >>> ex = gibbsebm.RayExecutor(num_workers=64, resources_per_worker={"CPU": 1})  # doctest: +SKIP
    >>> s = gibbsebm.sample(dist, "hmc", num_chains=64 * 256, num_samples=1000,
    ...                     num_warmup=1000, seed=1, executor=ex)  # doctest: +SKIP
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_workers: int | None = None,
        resources_per_worker: Mapping[str, float] | None = None,
        max_retries: int = 3,
        *,
        num_shards: int | None = None,
        retry_exceptions: bool = True,
        pickle_check: str = "cloudpickle",
        device: str | torch.device | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_shards=num_shards, max_retries=max_retries)
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
        ):
            raise ValueError(f"num_workers must be an int >= 1 or None, got {num_workers!r}")
        res = dict(resources_per_worker) if resources_per_worker is not None else {"CPU": 1}
        for key, val in res.items():
            if not isinstance(key, str):
                raise ValueError(f"resource names must be strings, got {key!r}")
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not val >= 0:
                raise ValueError(f"resource {key!r} must be a number >= 0, got {val!r}")
        if not any(v > 0 for v in res.values()):
            raise ValueError("resources_per_worker must request something, e.g. {'CPU': 1}")
        _pickle_module(pickle_check)  # validates the name
        if not isinstance(retry_exceptions, bool):
            raise ValueError(f"retry_exceptions must be a bool, got {retry_exceptions!r}")
        self.address = address
        self.num_workers = num_workers
        self.resources_per_worker = res
        self.retry_exceptions = retry_exceptions
        self.pickle_check = pickle_check
        if device is None and res.get("GPU", 0) > 0:
            device = "cuda"
        self._device = torch.device(device) if device is not None else None
        self.init_kwargs = dict(init_kwargs or {})

    # -- connection and resources
    def _ray(self):
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        return ray

    def resolve_num_workers(self) -> int:
        """``num_workers``, or how many workers the cluster's resources fit."""
        if self.num_workers is not None:
            return self.num_workers
        total = self._ray().cluster_resources()
        fits = [
            int(total.get(key, 0.0) // amount + 1e-9)
            for key, amount in self.resources_per_worker.items()
            if amount > 0
        ]
        n = min(fits) if fits else 1
        if n < 1:
            raise ValueError(
                f"the Ray cluster ({total}) cannot fit one worker with resources "
                f"{self.resources_per_worker}"
            )
        return n

    def _default_num_shards(self) -> int:
        return self.resolve_num_workers()

    def check_transport(self, parts):
        check_picklable(parts, self.pickle_check)

    def device(self, home):
        return self._device if self._device is not None else home

    def _task_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "max_retries": self.max_retries,
            "retry_exceptions": self.retry_exceptions,
        }
        custom = {}
        for key, val in self.resources_per_worker.items():
            if key == "CPU":
                opts["num_cpus"] = val
            elif key == "GPU":
                opts["num_gpus"] = val
            elif key == "memory":
                opts["memory"] = val
            else:
                custom[key] = val
        opts.setdefault("num_cpus", 0)
        if custom:
            opts["resources"] = custom
        return opts

    def map(self, fn, common, args, on_result, on_tick=None):
        ray = self._ray()
        limit = self.resolve_num_workers()
        remote = ray.remote(_call_shard)
        opts = self._task_options()
        common_ref = ray.put(dumps(common, self.pickle_check))
        queue = list(args)
        pending: dict[Any, int] = {}
        results: dict[int, Any] = {}
        failures: dict[int, str] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    k = queue.pop(0)
                    ref = remote.options(name=f"gibbsebm-shard-{k}", **opts).remote(
                        fn, common_ref, args[k]
                    )
                    pending[ref] = k
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    k = pending.pop(ref)
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failures[k] = _ray_error_message(exc)
                    else:
                        results[k] = res
                        on_result(k, res)
                if on_tick is not None:
                    on_tick()
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return results, failures

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "num_workers": self.num_workers,
            "num_shards": self.num_shards,
            "resources_per_worker": dict(self.resources_per_worker),
            "max_retries": self.max_retries,
            "retry_exceptions": self.retry_exceptions,
            "device": None if self._device is None else str(self._device),
        }


def resolve_executor(executor: Executor | str | None) -> Executor:
    """The executor named or given by ``executor=``.

    Parameters
    ----------
    executor : None, "local", "ray" or Executor
        ``None`` and ``"local"`` give ``LocalExecutor()``, ``"ray"`` gives ``RayExecutor()``.

    Raises
    ------
    ImportError
        For ``"ray"`` when Ray is not installed (the message says ``pip install gibbsebm[ray]``).
    ValueError
        For anything else.
    """
    if isinstance(executor, Executor):
        return executor
    if executor is None or executor == "local":
        return LocalExecutor()
    if executor == "ray":
        _import_ray()
        return RayExecutor()
    raise ValueError(
        f"executor must be None, 'local', 'ray' or an Executor (LocalExecutor, RayExecutor), "
        f"got {executor!r}"
    )


# ------------------------------------------------------------------------------ progress
class _RunProgress:
    """One tqdm bar for the whole run, advanced by the shards as they finish.

    It counts draws of all chains (as the in-process bar of :func:`gibbsebm.sample`) or
    particle-steps (particles or chains times annealing steps or rungs), and shows how many
    shards are done.
    """

    def __init__(
        self, progress: bool | str, total: int, desc: str, num_shards: int, unit: str
    ) -> None:
        self.bar = None
        self.done = 0
        self.num_shards = num_shards
        if progress is not True and progress is not False and progress != "always":
            raise ValueError(f"progress must be True, False or 'always', got {progress!r}")
        if progress is False or total == 0:
            return
        if progress is True and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)
        self.bar.set_postfix_str(f"shards 0/{num_shards}")

    def shard_done(self, units: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(units)
            self.bar.set_postfix_str(f"shards {self.done}/{self.num_shards}")

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------ checkpoints
class _ShardStore:
    """``checkpoint=`` directory: a manifest with the run's fingerprint and one file per shard."""

    def __init__(
        self,
        path: str | os.PathLike | None,
        fingerprint: dict[str, Any],
        save: Callable[[Any, str], None],
        load: Callable[[str], Any],
    ) -> None:
        self.path = None if path is None else os.fspath(path)
        self._save, self._load = save, load
        if self.path is None:
            return
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(
                f"checkpoint={self.path!r} is a file; a sharded run stores its shards in a "
                "directory (pass a directory path)"
            )
        os.makedirs(self.path, exist_ok=True)
        text = json.dumps(_jsonable(fingerprint), sort_keys=True)
        manifest = os.path.join(self.path, _MANIFEST)
        if os.path.exists(manifest):
            with open(manifest) as fh:
                stored = json.load(fh)
            if stored.get("format") != _CHECKPOINT_FORMAT:
                raise ValueError(f"{manifest} is not a gibbsebm shard manifest")
            if json.dumps(stored.get("fingerprint"), sort_keys=True) != text:
                raise ValueError(
                    f"checkpoint directory {self.path} belongs to a different run (method, "
                    "options, counts, seed or shard layout differ); delete it or pass another "
                    "path"
                )
        else:
            tmp = f"{manifest}.tmp.{os.getpid()}"
            with open(tmp, "w") as fh:
                json.dump(
                    {"format": _CHECKPOINT_FORMAT, "fingerprint": json.loads(text)}, fh, indent=1
                )
            os.replace(tmp, manifest)

    def _file(self, k: int) -> str:
        return os.path.join(self.path, f"shard-{k:05d}.pt")

    def load_finished(self, num_shards: int) -> dict[int, Any]:
        if self.path is None:
            return {}
        return {
            k: self._load(self._file(k)) for k in range(num_shards) if os.path.exists(self._file(k))
        }

    def save(self, k: int, result: Any) -> None:
        if self.path is not None:
            self._save(result, self._file(k))


def _atomic_torch_save(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_samples(s: Samples, path: str) -> None:
    # attrs hold str subclasses (torch.__version__ is a TorchVersion) that the safe loader of
    # Samples.load refuses; a JSON round trip makes them plain strings
    plain = json.loads(json.dumps(_jsonable(s.attrs)))
    dataclasses.replace(s, attrs=plain).save(path)


def _tensor_digest(t: torch.Tensor | None) -> str | None:
    if t is None:
        return None
    t = torch.as_tensor(t).detach().to("cpu").contiguous()
    h = hashlib.sha256(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------------------------ device moves
def _to_device(obj: Any, device: torch.device) -> Any:
    """A copy of ``obj`` with every tensor (and module parameter) on ``device``."""
    import types

    buf = io.BytesIO()
    module = types.SimpleNamespace(Pickler=_pickler_class("cloudpickle"), __name__="gibbsebm")
    torch.save(obj, buf, pickle_module=module)
    buf.seek(0)
    return torch.load(buf, map_location=device, weights_only=False)


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_tensors(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_map_tensors(v, fn) for v in obj)
    return obj


def _samples_to(s: Samples, device: torch.device) -> Samples:
    move = lambda t: t.to(device)  # noqa: E731
    return dataclasses.replace(
        s,
        draws=s.draws.to(device),
        stats=_map_tensors(s.stats, move),
        extra=_map_tensors(s.extra, move),
        adaptation=_map_tensors(s.adaptation, move),
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` name the same device (``cuda`` and ``cuda:0`` on the default)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


def _check_progress(progress: Any) -> None:
    if progress is not True and progress is not False and progress != "always":
        raise ValueError(f"progress must be True, False or 'always', got {progress!r}")


def _check_seed(seed: Any, checkpoint: Any) -> int:
    if seed is None and checkpoint is not None and os.path.exists(os.fspath(checkpoint)):
        raise ValueError(
            "resuming a checkpoint needs the seed of the original run (Samples.seed / "
            "LogZEstimate.diagnostics['seed'] / the seed you passed)"
        )
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return seed


def _raise_failures(
    failures: dict[int, str],
    results: dict[int, Any],
    ranges: list[tuple[int, int]],
    seeds: list[int] | list[None],
    unit: str,
    executor: Executor,
    checkpoint: Any,
) -> None:
    if not failures:
        return
    lines = []
    for k in sorted(failures):
        a, b = ranges[k]
        seed = "" if seeds[k] is None else f", seed {seeds[k]}"
        lines.append(f"shard {k} ({unit} {a}-{b - 1}{seed}): {failures[k]}")
    tries = executor.max_retries + 1
    keep = (
        f"the {len(results)} finished shards are stored in {os.fspath(checkpoint)!r}; rerun with "
        "the same arguments to compute only the lost ones"
        if checkpoint is not None
        else "pass checkpoint=<directory> to keep finished shards across reruns"
    )
    raise ShardError(
        f"{len(failures)} of {len(ranges)} shards failed after {tries} attempt(s) each and were "
        f"lost: shard(s) {sorted(failures)}.\n  " + "\n  ".join(lines) + f"\n{keep}.",
        failures,
        results,
    )


def _ranges(sizes: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for n in sizes:
        out.append((start, start + n))
        start += n
    return out


# ------------------------------------------------------------------------------ sampling
def _sample_shard(common: dict[str, Any], arg: dict[str, Any]) -> Samples:
    """One shard of :func:`run_sample`: an ordinary in-process :func:`gibbsebm.sample` call."""
    from .run import sample

    dist, init = common["dist"], arg["init"]
    device = common["device"]
    if device is not None:
        dist = _to_device(dist, device)
        init = None if init is None else init.to(device)
    out = sample(
        dist,
        common["method"],
        num_chains=arg["num_chains"],
        num_samples=common["num_samples"],
        num_warmup=common["num_warmup"],
        thin=common["thin"],
        seed=arg["seed"],
        init=init,
        progress=False,
        **common["kernel_options"],
    )
    return _samples_to(out, torch.device("cpu")) if device is not None else out


def run_sample(
    dist: Any,
    method: str | None = None,
    *,
    executor: Executor | str | None,
    num_chains: int,
    num_samples: int,
    num_warmup: int,
    thin: int = 1,
    seed: int | None = None,
    init: torch.Tensor | None = None,
    progress: bool | str = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    **kernel_options: Any,
) -> Samples:
    """:func:`gibbsebm.sample` with the chains split into shards run by ``executor``.

    Arguments are those of :func:`gibbsebm.sample`, except:

    Parameters
    ----------
    executor : None, "local", "ray" or Executor
        Who runs the shards (see :func:`resolve_executor`); the number of shards is the
        executor's ``num_shards``.
    checkpoint : path, optional
        A *directory*: every finished shard is stored there, and a rerun with the same
        arguments computes only the missing shards (a shard interrupted midway restarts).
    checkpoint_every : int
        Unused by sharded runs (shards are the unit of checkpointing); validated only.

    Returns
    -------
    Samples
        As from :func:`gibbsebm.sample`, with ``num_chains`` chains in shard order.
        ``seed`` is the run's seed; ``attrs`` records ``executor``, ``shard_sizes``,
        ``shard_seeds`` and ``shards_from_checkpoint``; ``adaptation["shards"]`` holds the
        parameters each shard tuned.

    Raises
    ------
    ValueError
        On bad arguments (before anything runs).
    UnpicklableError
        When the distribution, options or ``init`` cannot travel to Ray workers.
    ShardError
        When shards are lost after their retries (the message names them).

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> s = run_sample(d, "mala", executor=LocalExecutor(num_shards=3), num_chains=6,
    ...                num_samples=20, num_warmup=20, seed=1, progress=False)
    >>> s.num_chains, s.attrs["shard_sizes"]
    (6, [2, 2, 2])
    """
    from .samplers.registry import get_spec

    for name, v, lo in (
        ("num_chains", num_chains, 1),
        ("num_samples", num_samples, 0),
        ("num_warmup", num_warmup, 0),
        ("thin", thin, 1),
        ("checkpoint_every", checkpoint_every, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    _check_progress(progress)
    ex = resolve_executor(executor)
    if method is None:
        method = "gwg" if getattr(dist, "is_discrete", False) else "hmc"
    get_spec(method, dist, **kernel_options)  # unknown method / options fail here, not remotely
    seed = _check_seed(seed, checkpoint)
    batch = tuple(dist.batch_shape)
    event = tuple(dist.event_shape)
    home = _dist_device(dist)
    if init is not None:
        init = torch.as_tensor(init)
        if init.shape[:1] != (num_chains,):
            raise ValueError(
                f"init must have shape {(num_chains,) + event} or "
                f"{(num_chains,) + batch + event}, got {tuple(init.shape)}"
            )
    parts: dict[str, Any] = {"the distribution": dist}
    parts.update({f"kernel option {k!r}": v for k, v in kernel_options.items()})
    if init is not None:
        parts["init"] = init
    ex.check_transport(parts)  # before anything starts (Ray included)
    num_shards = ex.resolve_num_shards()
    sizes = shard_sizes(num_chains, num_shards)
    seeds = shard_stream_seeds(seed, num_shards)
    ranges = _ranges(sizes)
    run_device = ex.device(home)
    common = {
        "dist": dist,
        "method": method,
        "num_samples": num_samples,
        "num_warmup": num_warmup,
        "thin": thin,
        "kernel_options": dict(kernel_options),
        "device": None if _same_device(run_device, home) else run_device,
    }
    args = {
        k: {
            "num_chains": sizes[k],
            "seed": seeds[k],
            "init": None if init is None else init[a:b].clone(),
        }
        for k, (a, b) in enumerate(ranges)
    }

    fingerprint = {
        "kind": "sample",
        "method": method,
        "options": kernel_options,
        "num_chains": num_chains,
        "num_samples": num_samples,
        "num_warmup": num_warmup,
        "thin": thin,
        "seed": seed,
        "shard_sizes": sizes,
        "batch_shape": list(batch),
        "event_shape": list(event),
        "init": _tensor_digest(init),
    }
    store = _ShardStore(checkpoint, fingerprint, _save_samples, Samples.load)
    finished = store.load_finished(num_shards)
    todo = {k: a for k, a in args.items() if k not in finished}
    iters = num_warmup + num_samples * thin
    bar = _RunProgress(progress, num_chains * iters, method, num_shards, "draw")
    for k in finished:
        bar.shard_done(sizes[k] * iters)

    def on_result(k: int, res: Samples) -> None:
        store.save(k, res)
        bar.shard_done(sizes[k] * iters)

    try:
        results, failures = ex.map(_sample_shard, common, todo, on_result, bar.tick)
    finally:
        bar.close()
    _raise_failures(failures, results, ranges, seeds, "chains", ex, checkpoint)
    results.update(finished)
    parts_out = [_samples_to(results[k], home) for k in range(num_shards)]
    merged = Samples.concatenate(parts_out)
    return dataclasses.replace(
        merged,
        options=dict(kernel_options),
        seed=seed,
        attrs={
            **merged.attrs,
            "executor": ex.describe(),
            "shard_sizes": sizes,
            "shard_seeds": seeds,
            "shards_from_checkpoint": sorted(finished),
        },
    )


# ------------------------------------------------------------------------------ log Z
def _isolated(common: dict[str, Any]) -> dict[str, Any]:
    """A copy of the annealing setup whose mutable kernel state is the shard's own.

    The transition kernels adapt (step sizes) and cache; every shard must start from the
    setup's state, as a Ray worker does with its deserialized copy. The copy is a
    serialization round trip (:func:`dumps`, as for Ray) in which the distribution, its
    energy and the evaluation counter stay shared (pickled as persistent references), so a
    large energy is not duplicated and shards report the counter's increase.
    """
    dist = common["dist"]
    shared = [dist, getattr(dist, "energy", None), getattr(common.get("path"), "counter", None)]
    keep = {id(o): o for o in shared if o is not None}

    class _Keep(_pickler_class("cloudpickle")):  # type: ignore[misc, valid-type]
        def persistent_id(self, obj: Any) -> Any:
            return id(obj) if id(obj) in keep and keep[id(obj)] is obj else None

    class _Restore(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return keep[pid]

    buf = io.BytesIO()
    _Keep(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(common)
    buf.seek(0)
    return _Restore(buf).load()


def _shard_generator(common: dict[str, Any], arg: dict[str, Any], device: torch.device):
    g = torch.Generator(device=device)
    if arg.get("state") is not None and device.type == common["setup_device"]:
        g.set_state(arg["state"])
    else:
        g.manual_seed(arg["seed"])
    return g


def _ais_shard(common: dict[str, Any], arg: dict[str, Any]) -> dict[str, Any]:
    """One shard of sharded AIS: anneal ``n_k`` particles along the driver's schedule."""
    from .partition.ais import anneal

    c = _isolated(common)
    if c["device"] is not None:
        c = _to_device(c, c["device"])
    path, trans, s = c["path"], c["trans"], c["schedule"]
    dev = torch.device(path.beta.device)
    g = _shard_generator(c, arg, dev)
    before = path.counter.n
    with torch.no_grad():
        z0 = path.sample_base(arg["num_chains"], g)
    run = anneal(path, trans, s, z0, g)
    cpu = torch.device("cpu")
    return {
        "log_w": run.log_w.detach().to(cpu, torch.float64),
        "incr_mean": run.incr_mean.detach().to(cpu, torch.float64),
        "incr_var": run.incr_var.detach().to(cpu, torch.float64),
        "accept": run.accept.detach().to(cpu, torch.float64),
        "num_energy_evals": int(path.counter.n - before),
        "kernel": _jsonable(trans.describe()),
    }


def _importance_shard(common: dict[str, Any], arg: dict[str, Any]) -> dict[str, Any]:
    """One shard of sharded importance sampling: ``n_k`` draws of the driver's base."""
    c = common
    if c["device"] is not None:
        c = _to_device(c, c["device"])
    dist, q, chunk = c["dist"], c["base"], c["chunk_size"]
    dev = torch.device(dist.beta.device)
    g = _shard_generator(c, arg, dev)
    n_total, out, evals = arg["num_chains"], [], 0
    with torch.no_grad():
        for start in range(0, n_total, chunk):
            n = min(chunk, n_total - start)
            y = q.sample(n, g)
            lw = dist.logdensity(y).to(torch.float64) - q.log_prob(y).to(torch.float64)
            out.append(torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw))
            evals += n
    return {
        "log_w": torch.cat(out).detach().to("cpu", torch.float64),
        "num_energy_evals": evals,
    }


def _ladder_shard(common: dict[str, Any], arg: dict[str, Any]) -> dict[str, Any]:
    """One shard of sharded TI / bridge sampling: ``n_k`` chains climb the driver's ladder."""
    from .partition._rungs import sequential_rungs

    c = _isolated(common)
    if c["device"] is not None:
        c = _to_device(c, c["device"])
    path, trans = c["path"], c["trans"]
    g = _shard_generator(c, arg, torch.device(path.beta.device))
    before = path.counter.n
    rungs = sequential_rungs(
        path,
        trans,
        c["schedule"],
        arg["num_chains"],
        g,
        burn=c["burn"],
        draws=c["draws"],
        hysteresis=c["hysteresis"],
    )
    cpu = torch.device("cpu")

    def host(d: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        return {int(k): v.detach().to(cpu, torch.float64) for k, v in d.items()}

    down = rungs.down
    return {
        "first": [float(rungs.first_log_z), float(rungs.first_stderr), float(rungs.first_ess)],
        "fwd": host(rungs.fwd),
        "bwd": host(rungs.bwd),
        "deriv": host(rungs.deriv),
        "down": None
        if down is None
        else {"fwd": host(down.fwd), "bwd": host(down.bwd), "deriv": host(down.deriv)},
        "info": _jsonable(rungs.info),
        "num_energy_evals": int(path.counter.n - before),
        "kernel": _jsonable(trans.describe()),
    }


def _pool_log_mean_exp(
    log_means: list[float], stderrs: list[float], sizes: list[int]
) -> tuple[float, float, float]:
    """Exact pooled ``(log mean w, delta-method stderr, Kish ESS)`` from per-shard summaries.

    Shard ``k`` reports :math:`\\ell_k = \\log \\bar w_k` and
    :math:`s_k = \\mathrm{sd}(w)_k / (\\sqrt{n_k} \\bar w_k)`, which give its sums
    :math:`\\sum w = n_k \\bar w_k` and :math:`\\sum w^2 = (n_k - 1)\\,\\mathrm{sd}_k^2 +
    n_k \\bar w_k^2`; the pooled log-mean-exp, its delta-method error and the ESS
    :math:`(\\sum w)^2 / \\sum w^2` follow exactly (weights rescaled by the largest
    :math:`\\bar w_k`).
    """
    lm = torch.tensor(log_means, dtype=torch.float64)
    se = torch.tensor(stderrs, dtype=torch.float64)
    n = torch.tensor(sizes, dtype=torch.float64)
    if not bool(torch.isfinite(lm).all()):
        return float("nan"), float("inf"), 0.0
    top = lm.max()
    mean_k = torch.exp(lm - top)
    sd_k = torch.where(n > 1, se * n.sqrt() * mean_k, torch.zeros_like(mean_k))
    total = n.sum()
    s1 = (n * mean_k).sum()
    s2 = ((n - 1) * sd_k**2 + n * mean_k**2).sum()
    mean = s1 / total
    var = (s2 - total * mean**2) / (total - 1)
    log_mean = float(top + torch.log(mean))
    stderr = float(var.clamp(min=0).sqrt() / (total.sqrt() * mean))
    ess = float(s1**2 / s2) if math.isfinite(float(s2)) else float("nan")
    return log_mean, stderr, ess


def _pooled_moments(
    results: list[dict[str, Any]], sizes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact pooled per-step increment mean, variance (ddof=1) and acceptance."""
    n = torch.tensor(sizes, dtype=torch.float64)[:, None]
    total = float(n.sum())
    means = torch.stack([r["incr_mean"] for r in results])  # (K, steps)
    vars_ = torch.stack([r["incr_var"] for r in results])
    mean = (n * means).sum(0) / total
    within = ((n - 1) * vars_).sum(0)
    between = (n * (means - mean) ** 2).sum(0)
    var = (within + between) / max(total - 1.0, 1.0)
    accs = [r["accept"] for r in results]
    accept = (
        (n[:, 0, None] * torch.stack(accs)).sum(0) / total
        if accs and accs[0].numel()
        else torch.zeros(0, dtype=torch.float64)
    )
    return mean, var, accept


def _log_partition_options(fn: Callable, options: dict[str, Any], method: str) -> None:
    allowed = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "progress"
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method={method!r}; known: {sorted(allowed)}"
        )


def _ladder_setup(
    dist: Any, gen: torch.Generator, options: dict[str, Any], method: str
) -> dict[str, Any]:
    """Base, kernel and conditional-ESS ladder of ``ti``/``bridge``, built on the driver.

    The same steps, in the same order on the same generator, as the sequential branch of
    :func:`gibbsebm.partition._rungs.ladder_rungs`, so that one shard reproduces the
    in-process estimate.
    """
    from .partition._common import EvalCounter, make_base
    from .partition._path import AnnealingPath
    from .partition._rungs import DEFAULT_BURN, DEFAULT_DRAWS, DEFAULT_LADDER_CHAINS, ladder_rungs
    from .partition._transitions import make_transition
    from .partition.ais import PILOT_CESS, PILOT_NUM_CHAINS, _resample_schedule, pilot_schedule

    allowed = {
        p.name
        for p in inspect.signature(ladder_rungs).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("progress", "samples")
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method={method!r}; known: {sorted(allowed)}"
        )
    o = dict(options)
    defaults: dict[str, Any] = {}
    num_chains = o.get("num_chains")
    if num_chains is None:
        num_chains = DEFAULT_LADDER_CHAINS
        defaults["num_chains"] = num_chains
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"num_chains must be an int >= 2, got {num_chains!r}")
    burn, draws = o.get("burn", DEFAULT_BURN), o.get("draws", DEFAULT_DRAWS)
    if burn < 0 or draws < 2:
        raise ValueError(f"need burn >= 0 and draws >= 2, got burn={burn}, draws={draws}")
    base, kernel = o.get("base"), o.get("kernel")
    if base is None:
        defaults["base"] = "uniform" if dist.is_discrete else "laplace"
    counter = EvalCounter()
    q = make_base(dist, base, gen, base_scale=o.get("base_scale", 1.0))
    path = AnnealingPath(dist, q, counter)
    trans = make_transition(
        path,
        kernel,
        gen,
        num_substeps=o.get("steps_per_stage", 1),
        kernel_options=o.get("kernel_options"),
    )
    if kernel is None:
        defaults["kernel"] = trans.name
    cess = o.get("cess")
    if cess is None:
        cess = PILOT_CESS
        defaults["ladder"] = f"conditional-ESS pilot, CESS fraction {cess} per rung"
    pilot, _, pdiag = pilot_schedule(
        path, trans, gen, num_chains=min(PILOT_NUM_CHAINS, num_chains), cess=cess
    )
    num_rungs = o.get("num_rungs")
    if num_rungs is None:
        sched = pilot
        defaults["num_rungs"] = sched.numel() - 1
    else:
        if isinstance(num_rungs, bool) or not isinstance(num_rungs, int) or num_rungs < 2:
            raise ValueError(f"num_rungs must be an int >= 2, got {num_rungs!r}")
        sched = _resample_schedule(pilot, num_rungs)
    if sched.numel() < 3:
        sched = _resample_schedule(sched, 2)
    return {
        "path": path,
        "trans": trans,
        "schedule": sched,
        "num_chains": num_chains,
        "burn": burn,
        "draws": draws,
        "hysteresis": bool(o.get("hysteresis", True)),
        "defaults": defaults,
        "pilot": pdiag,
    }


def _finish_ladder(
    method: str, res: list[dict[str, Any]], sizes: list[int], ladder: dict[str, Any]
) -> tuple[float, float, dict[str, Any]]:
    """Stitch the shards' rungs along the chain dimension and run the TI / bridge reduction."""
    from .partition._rungs import RungData

    if len(res) == 1:
        first = tuple(res[0]["first"])
    else:
        first = _pool_log_mean_exp(
            [r["first"][0] for r in res], [r["first"][1] for r in res], sizes
        )

    def cat(name: str) -> dict[int, torch.Tensor]:
        return {k: torch.cat([r[name][k] for r in res], 0) for k in res[0][name]}

    info = dict(res[0]["info"])
    info["num_chains"] = sum(sizes)
    rungs = RungData(
        ladder["schedule"].to("cpu", torch.float64),
        first[0],
        first[1],
        first[2],
        cat("fwd"),
        cat("bwd"),
        cat("deriv"),
        info,
    )
    if res[0]["down"] is not None:
        # the same chains walked back down the ladder: stitch that pass the same way
        def cat_down(name: str) -> dict[int, torch.Tensor]:
            return {
                k: torch.cat([r["down"][name][k] for r in res], 0) for k in res[0]["down"][name]
            }

        rungs.down = RungData(
            rungs.s,
            first[0],
            first[1],
            first[2],
            cat_down("fwd"),
            cat_down("bwd"),
            cat_down("deriv"),
            dict(info),
        )
        rungs.info["passes"] = "up and down"
    rungs.info.update(ladder["pilot"])
    rungs.info["first_interval"] = "importance sampling from the base to the first rung"
    if method == "ti":
        from .partition.ti import ti_from_rungs

        log_z, se, diag = ti_from_rungs(rungs)
    else:
        from .partition.bridge import bridge_from_rungs

        log_z, se, diag = bridge_from_rungs(rungs)
    diag.update({**ladder["path"].describe(), "kernel": res[0]["kernel"]})
    diag["defaults"] = ladder["defaults"]
    return log_z, se, diag


def run_log_partition(
    dist: Any,
    method: str = "ais",
    *,
    executor: Executor | str | None,
    seed: int | None = None,
    progress: bool | str = True,
    on_untrusted: str = "warn",
    trust_thresholds: dict[str, float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    **options: Any,
) -> LogZEstimate:
    """:func:`gibbsebm.log_partition` with the particles split into shards run by ``executor``.

    ``method="ais"``: the base, the pilot run and the annealing schedule are set up once on
    the driver (seeded with ``seed``, as in-process); the ``num_chains`` particles are split
    into shards that anneal along that schedule, each with its own copy of the kernel (whose
    step size adapts on the shard's particles). ``method="importance"``: the base is fitted on
    the driver and the ``num_samples`` draws are sharded. The shards' log-weights are pooled
    before the log-mean-exp, so the estimate, its delta-method and batch standard errors, ESS
    and Pareto k-hat are those of one run with all particles; per-step increment statistics
    are pooled exactly.

    ``method="ti"`` / ``"bridge"``: the base, kernel and conditional-ESS ladder are built on
    the driver; the ``num_chains`` chains are split into shards, each climbing the whole
    ladder (rung ``k`` starts from rung ``k - 1``, as in-process). The rungs of all shards are
    stitched along the chain dimension before the reduction, so per-rung means and MCSEs, the
    per-chain integrals (TI), the jackknife over chain groups (bridge) and the quadrature
    error use every chain; the first interval's importance-sampling estimate is pooled
    exactly from the shards' sums of weights (:func:`_pool_log_mean_exp`). Reusing a finished
    parallel-tempering run (``samples=``) has nothing to shard and is refused.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch Gibbs distribution.
    method : {"ais", "importance", "ti", "bridge"}
        Estimators whose particles or chains can be sharded.
    executor : None, "local", "ray" or Executor
        Who runs the shards.
    seed : int, optional
        Seed of the run (``None``: a fresh one, recorded in ``diagnostics["seed"]``).
    progress : bool or "always"
        One progress bar for the whole run, advanced as shards finish.
    on_untrusted, trust_thresholds
        As in :func:`gibbsebm.log_partition`.
    checkpoint : path, optional
        Directory for finished shards; a rerun computes only the missing ones.
    **options
        Options of :func:`~gibbsebm.partition.ais.ais_log_partition`,
        :func:`~gibbsebm.partition.importance.importance_log_partition`,
        :func:`~gibbsebm.partition.ti.ti_log_partition` or
        :func:`~gibbsebm.partition.bridge.bridge_log_partition`.

    Returns
    -------
    LogZEstimate
        As in-process, with ``diagnostics["shards"]`` (executor, sizes, seeds, per-shard
        ``log_z`` for information, evaluation counts and kernels).

    Raises
    ------
    ValueError
        For a method without a sharded implementation or bad options.
    UnpicklableError
        When the setup cannot travel to Ray workers.
    ShardError
        When shards are lost after their retries.

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=2.0)
    >>> est = run_log_partition(d, "importance", executor=LocalExecutor(num_shards=4),
    ...                         seed=0, progress=False, base="standard", num_samples=4000)
    >>> abs(est.log_z - float(d.log_partition())) < 5 * est.stderr
    True
    """
    from .partition import ais as ais_mod
    from .partition import importance as imp_mod
    from .partition._common import check_dist, make_base, make_generator
    from .partition._stats import batch_homogeneity, rounding_error, summarize_log_weights
    from .partition.result import LogZEstimate, check_trust

    if method not in SHARDED_LOG_PARTITION_METHODS:
        raise ValueError(
            f"method={method!r} has no sharded implementation; with an executor use one of "
            f"{list(SHARDED_LOG_PARTITION_METHODS)}, or drop executor= to run it in-process"
        )
    _check_progress(progress)
    t0 = time.perf_counter()
    dist = check_dist(dist, method)
    ex = resolve_executor(executor)
    seed = _check_seed(seed, checkpoint)
    home = dist.beta.device
    run_device = ex.device(home)
    gen = make_generator(seed, home)
    options = dict(options)
    num_batches_given = "num_batches" in options
    num_batches = options.pop("num_batches", ais_mod.DEFAULT_NUM_BATCHES)
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
        raise ValueError(f"num_batches must be an int >= 0, got {num_batches!r}")

    common: dict[str, Any] = {
        "dist": dist,
        "device": None if _same_device(run_device, home) else run_device,
        "setup_device": home.type,
    }
    opt_parts = {f"option {k!r}": v for k, v in options.items()}
    ex.check_transport({"the distribution": dist, **opt_parts})  # before the setup runs
    if method == "ais":
        _log_partition_options(ais_mod.ais_log_partition, {**options, "num_batches": 0}, method)
        setup = ais_mod.prepare_annealing(dist, gen, **options)
        n_items = setup.num_chains
        common.update(path=setup.path, trans=setup.trans, schedule=setup.s)
        shard_fn = _ais_shard
        schedule_digest = _tensor_digest(setup.s)
        parts = {"the annealing path (distribution and base)": setup.path}
        parts["the annealing kernel"] = setup.trans
        steps = setup.s.numel() - 1
        setup_evals = setup.counter.n
        defaults = setup.defaults
    elif method in ("ti", "bridge"):
        if options.get("samples") is not None:
            raise ValueError(
                "samples= reuses a finished parallel-tempering run, so there is nothing to "
                "shard; drop executor= (or drop samples= to shard the ladder's chains)"
            )
        options.pop("samples", None)
        if num_batches_given:
            raise ValueError(f"num_batches is not an option of method={method!r}")
        ladder = _ladder_setup(dist, gen, options, method)
        n_items, defaults = ladder["num_chains"], ladder["defaults"]
        common.update(
            path=ladder["path"],
            trans=ladder["trans"],
            schedule=ladder["schedule"],
            burn=ladder["burn"],
            draws=ladder["draws"],
            hysteresis=ladder["hysteresis"],
        )
        shard_fn = _ladder_shard
        schedule_digest = _tensor_digest(ladder["schedule"])
        parts = {"the ladder path (distribution and base)": ladder["path"]}
        parts["the ladder kernel"] = ladder["trans"]
        steps = ladder["schedule"].numel() - 1
        setup_evals = ladder["path"].counter.n
    else:
        _log_partition_options(
            imp_mod.importance_log_partition, {**options, "num_batches": 0}, method
        )
        defaults = {}
        n_items = options.get("num_samples")
        if n_items is None:
            n_items = imp_mod.DEFAULT_NUM_SAMPLES
            defaults["num_samples"] = n_items
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 2:
            raise ValueError(f"num_samples must be an int >= 2, got {n_items!r}")
        if options.get("base") is None:
            defaults["base"] = "uniform" if dist.is_discrete else "laplace"
        q = make_base(dist, options.get("base"), gen, base_scale=options.get("base_scale", 1.0))
        chunk = options.get("chunk_size", imp_mod._CHUNK)
        common.update(base=q, chunk_size=chunk)
        shard_fn = _importance_shard
        schedule_digest = None
        parts = {"the distribution": dist, "the base distribution": q}
        steps = 1
        setup_evals = 0

    num_shards = ex.resolve_num_shards()
    sizes = shard_sizes(n_items, num_shards)
    ranges = _ranges(sizes)
    seeds: list[Any] = [None] if num_shards == 1 else shard_seeds(seed, num_shards)
    state = gen.get_state() if num_shards == 1 else None
    args = {
        k: {"num_chains": sizes[k], "seed": seeds[k], "state": state} for k in range(num_shards)
    }
    if num_shards == 1:
        # off the setup's device, the single shard cannot continue its stream: seed it
        args[0]["seed"] = shard_seeds(seed, 1)[0]
    ex.check_transport(parts)  # what the setup built

    fingerprint = {
        "kind": f"log_partition/{method}",
        "options": options,
        "num_batches": num_batches,
        "seed": seed,
        "shard_sizes": sizes,
        "schedule": schedule_digest,
        "event_shape": list(dist.event_shape),
    }

    def load(path: str) -> dict[str, Any]:
        return torch.load(path, map_location="cpu", weights_only=True)

    store = _ShardStore(checkpoint, fingerprint, _atomic_torch_save, load)
    finished = store.load_finished(num_shards)
    todo = {k: a for k, a in args.items() if k not in finished}
    bar = _RunProgress(progress, n_items * steps, method, num_shards, "particle-step")
    for k in finished:
        bar.shard_done(sizes[k] * steps)

    def on_result(k: int, res: dict[str, Any]) -> None:
        store.save(k, res)
        bar.shard_done(sizes[k] * steps)

    try:
        results, failures = ex.map(shard_fn, common, todo, on_result, bar.tick)
    finally:
        bar.close()
    shown_seeds = seeds if num_shards > 1 else [seed]
    unit = "chains" if method in ("ti", "bridge") else "particles"
    _raise_failures(failures, results, ranges, shown_seeds, unit, ex, checkpoint)
    results.update(finished)
    res = [results[k] for k in range(num_shards)]
    shard_info = {
        "executor": ex.describe(),
        "shard_sizes": sizes,
        "shard_seeds": shown_seeds,
        "shards_from_checkpoint": sorted(finished),
        "shard_num_energy_evals": [r["num_energy_evals"] for r in res],
    }
    num_evals = setup_evals + sum(r["num_energy_evals"] for r in res)
    if method in ("ti", "bridge"):
        log_z, se, diag = _finish_ladder(method, res, sizes, ladder)
        shard_info["shard_kernels"] = [r["kernel"] for r in res]
        diag["shards"] = shard_info
        diag["seed"] = seed
        diag["wall_time_s"] = time.perf_counter() - t0
        diag["beta"] = float(dist.beta)
        est = LogZEstimate(
            log_z=log_z, stderr=se, method=method, num_energy_evals=num_evals, diagnostics=diag
        )
        return check_trust(est, on_untrusted, trust_thresholds)
    log_w = torch.cat([r["log_w"] for r in res])
    summ = summarize_log_weights(log_w)
    batches = batch_homogeneity(log_w, num_batches)
    se = summ["stderr"]
    rounding = rounding_error(log_w, dist.beta.dtype)
    shard_info["shard_log_z"] = [summarize_log_weights(r["log_w"])["log_mean"] for r in res]
    diag: dict[str, Any] = {
        "ess": summ["ess"],
        "ess_fraction": summ["ess_fraction"],
        "khat": summ["khat"],
        "log_weight_sd": summ["log_weight_sd"],
        "num_nonfinite_weights": summ["num_nonfinite_weights"],
    }
    if method == "ais":
        if batches.get("batch_based_stderr") is not None and math.isfinite(se):
            se = max(se, float(batches["batch_based_stderr"]))
        incr_mean, incr_var, accept = _pooled_moments(res, sizes)
        fin = log_w[torch.isfinite(log_w)]
        diag = {**setup.diag, **diag}
        diag.update(
            {
                "delta_method_stderr": summ["stderr"],
                "mean_log_weight": float(fin.mean()) if fin.numel() else float("nan"),
                "num_chains": n_items,
                "num_steps": steps,
                "schedule": setup.s.tolist(),
                "step_increment_mean": incr_mean.tolist(),
                "step_increment_var": incr_var.tolist(),
                "acceptance": accept.tolist(),
                "kernel": res[0]["kernel"],
                "defaults": defaults,
                **setup.path.describe(),
                **batches,
            }
        )
        shard_info["shard_kernels"] = [r["kernel"] for r in res]
        lower = summ["log_mean"]
    else:
        diag.update({"base": common["base"].describe(), "defaults": defaults, **batches})
        lower = None
    se = math.sqrt(se**2 + rounding**2)
    diag["rounding_error"] = rounding
    diag["shards"] = shard_info
    diag["seed"] = seed
    diag["wall_time_s"] = time.perf_counter() - t0
    diag["beta"] = float(dist.beta)
    est = LogZEstimate(
        log_z=summ["log_mean"],
        stderr=se,
        method=method,
        num_energy_evals=num_evals,
        diagnostics=diag,
        lower=lower,
    )
    return check_trust(est, on_untrusted, trust_thresholds)
