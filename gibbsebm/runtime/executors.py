"""Executors: they map a plan's shards, in this process or on Ray, and do nothing else.

An executor knows a computation only through the shard protocol of
:mod:`gibbsebm.runtime.plan`: it asks the plan for its shards, runs ``plan.run_shard`` for each
(retrying failures), stores finished shards in a checkpoint folder, shows one progress bar and
hands the results to ``plan.merge``. It imports nothing from the sampling driver or the
estimators, so a new estimator that writes its plan runs on every executor without a line here.

* :class:`LocalExecutor` runs the shards one after another in this process.
* :class:`RayExecutor` runs each shard as a Ray task on whichever worker is free, on CPU or GPU
  per ``resources_per_worker``, on a laptop or a cluster (``address=``).

Faults. A failing shard is retried (Ray task retries, ``max_retries``; worker deaths and, with
``retry_exceptions=True``, exceptions). A run either returns with all shards or raises
:class:`ShardError` naming the shards that were lost, with the finished ones attached. With
``checkpoint=directory`` every finished shard is written there as soon as it arrives, and a
rerun with the same arguments computes only the missing shards.

Serialization. Before anything is submitted, :class:`RayExecutor` round-trips everything a
shard needs through the serializer that carries it to the workers and raises
:class:`~gibbsebm.runtime.transport.UnpicklableError` naming the part that cannot travel.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .._json import to_jsonable
from ..errors import CheckpointMismatchError, CorruptFileError
from ._ray_network import LOOPBACK, check_loopback_node, is_loopback, ray_loopback_node
from .files import load_json, save_json, symlinks_in
from .plan import Plan, Shard, same_device
from .transport import _pickle_module, check_picklable, dumps, to_device

__all__ = [
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ShardError",
    "RAY_INSTALL_HINT",
    "resolve_executor",
    "execute",
]

#: How to install the optional Ray dependency.
RAY_INSTALL_HINT = "pip install gibbsebm[ray]"
_MANIFEST = "manifest.json"
_CHECKPOINT_FORMAT = "gibbsebm.shards"


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
    ...     num_chains=4, num_samples=10, num_warmup=10, seed=0, progress=False,
    ...     warn=False)  # a sharding demo: too short to pass the checks
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
        Where to connect when Ray is not initialised yet: ``None`` starts a new local Ray
        instance that listens on the loopback address ``127.0.0.1`` only (unless
        ``RAY_ADDRESS`` is set, which counts as an address), ``"auto"`` joins the cluster of
        this node, ``"ray://host:10001"`` uses Ray Client. If Ray is already initialised
        (``ray.init(...)`` in your script), that connection is used as it is.
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
        Without ``address``, the local head is started with ``address="local"``,
        ``_node_ip_address="127.0.0.1"`` (every Ray server then binds ``127.0.0.1``) and no
        dashboard unless these say otherwise; if Ray does not keep the loopback node address,
        a ``RuntimeWarning`` says so once (see ``docs/ray.md``).

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
    def _private_head(self) -> bool:
        """Whether this executor starts its own Ray head (no address given, in ``address``,
        ``init_kwargs`` or ``RAY_ADDRESS``)."""
        return (
            self.address is None
            and self.init_kwargs.get("address") is None
            and not os.environ.get("RAY_ADDRESS")
        )

    def _init_kwargs(self) -> dict[str, Any]:
        """Arguments of ``ray.init`` when this executor starts or joins Ray.

        A Ray head started here (no ``address``, no ``RAY_ADDRESS`` in the environment) is a
        private one: a new local instance (``address="local"``: never a cluster that
        ``ray start`` left running), whose node address is ``127.0.0.1`` and which starts no
        dashboard. ``init_kwargs`` overrides any of these.
        """
        kwargs = dict(self.init_kwargs)
        if self._private_head():
            kwargs.setdefault("address", "local")
            kwargs.setdefault("_node_ip_address", LOOPBACK)
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("dashboard_host", LOOPBACK)
        else:
            kwargs.setdefault("address", self.address)
        return kwargs

    def _ray(self):
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = self._init_kwargs()
            loopback = self._private_head() and is_loopback(kwargs.get("_node_ip_address"))
            if loopback:
                with ray_loopback_node(ray):
                    ray.init(**kwargs)
                check_loopback_node(ray)
            else:
                ray.init(**kwargs)
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
        if os.path.islink(self.path):
            raise CorruptFileError(
                f"checkpoint={self.path!r} is a symbolic link; gibbsebm does not follow links "
                "to its checkpoint folders",
                self.path,
            )
        os.makedirs(self.path, exist_ok=True)
        links = symlinks_in(self.path)
        if links:
            raise CorruptFileError(
                f"checkpoint folder {self.path} holds symbolic links ({', '.join(links[:3])}); "
                "gibbsebm does not follow links in its folders: remove them",
                self.path,
            )
        # one canonical JSON rendering (tensors in options as short lists or described)
        current = json.loads(
            json.dumps(to_jsonable(fingerprint, nonfinite="keep", max_tensor_numel=16))
        )
        manifest = os.path.join(self.path, _MANIFEST)
        if os.path.lexists(manifest):
            stored = load_json(manifest, kind="shard-manifest", what="gibbsebm shard manifest")
            if stored.get("format") != _CHECKPOINT_FORMAT:
                raise CorruptFileError(f"{manifest} is not a gibbsebm shard manifest", manifest)
            old = stored.get("fingerprint")
            if not isinstance(old, dict):
                raise CorruptFileError(f"{manifest} has no run fingerprint", manifest)
            diff = _fingerprint_differences(old, current)
            if diff:
                raise CheckpointMismatchError(
                    f"checkpoint directory {self.path} belongs to a different run; differing "
                    f"field(s): {', '.join(diff)}.\n  "
                    + "\n  ".join(
                        f"{k}: checkpoint {_clip(a)}, this call {_clip(b)}"
                        for k, (a, b) in diff.items()
                    )
                    + "\nPass the original arguments, or delete the folder (or pass another "
                    "path) to start afresh.",
                    fields=diff,
                    path=self.path,
                )
        else:
            save_json(
                {"format": _CHECKPOINT_FORMAT, "fingerprint": current},
                manifest,
                kind="shard-manifest",
            )

    def _file(self, k: int) -> str:
        return os.path.join(self.path, f"shard-{k:05d}.pt")

    def load_finished(self, num_shards: int) -> dict[int, Any]:
        if self.path is None:
            return {}
        return {
            k: self._load(self._file(k))
            for k in range(num_shards)
            if os.path.lexists(self._file(k))
        }

    def save(self, k: int, result: Any) -> None:
        if self.path is not None:
            self._save(result, self._file(k))


def _fingerprint_differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """``field -> (old, new)`` for the fields that differ (nested dicts as ``a.b``)."""
    out: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "energy_code_note" or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_fingerprint_differences(a, b, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = (a, b)
    return out


def _clip(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def _check_progress(progress: Any) -> None:
    if progress is not True and progress is not False and progress != "always":
        raise ValueError(f"progress must be True, False or 'always', got {progress!r}")


def _raise_failures(
    failures: dict[int, str],
    results: dict[int, Any],
    shards: list[Shard],
    plan: Plan,
    executor: Executor,
    checkpoint: Any,
) -> None:
    if not failures:
        return
    lines = []
    for k in sorted(failures):
        sh = shards[k]
        seed = "" if sh.seed is None else f", seed {sh.seed}"
        lines.append(
            f"shard {k} ({plan.unit} {sh.start}-{sh.start + sh.size - 1}{seed}): {failures[k]}"
        )
    tries = executor.max_retries + 1
    keep = (
        f"the {len(results)} finished shards are stored in {os.fspath(checkpoint)!r}; rerun with "
        "the same arguments to compute only the lost ones"
        if checkpoint is not None
        else "pass checkpoint=<directory> to keep finished shards across reruns"
    )
    raise ShardError(
        f"{len(failures)} of {len(shards)} shards failed after {tries} attempt(s) each and were "
        f"lost: shard(s) {sorted(failures)}.\n  " + "\n  ".join(lines) + f"\n{keep}.",
        failures,
        results,
    )


def _run_shard(common: tuple[Plan, torch.device | None], shard: Shard) -> Any:
    """The body of every shard task: move the plan if the worker computes elsewhere, run."""
    plan, device = common
    if device is None:
        return plan.run_shard(shard)
    return plan.result_to_host(to_device(plan, device).run_shard(shard))


def execute(
    plan: Plan,
    executor: Executor | str | None,
    *,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | str = True,
) -> Any:
    """Run ``plan``'s shards with ``executor`` and merge them.

    Parameters
    ----------
    plan : Plan
        The computation (see :mod:`gibbsebm.runtime.plan`).
    executor : None, "local", "ray" or Executor
        Who runs the shards; the number of shards is the executor's ``num_shards``.
    checkpoint : path, optional
        A directory: every finished shard is stored there, and a rerun of the same plan
        computes only the missing shards.
    progress : bool or "always"
        One progress bar for the whole run, advanced as shards finish.

    Returns
    -------
    object
        ``plan.merge(results, run_info)``.

    Raises
    ------
    ValueError
        If the plan cannot be split, or the checkpoint folder belongs to another run.
    UnpicklableError
        When something a shard needs cannot travel to the workers.
    ShardError
        When shards are lost after their retries.
    """
    _check_progress(progress)
    ex = resolve_executor(executor)
    ex.check_transport(plan.transport_parts())  # before anything starts (Ray included)
    num_shards = ex.resolve_num_shards()
    shards = plan.shards(num_shards)
    home = plan.home_device()
    run_device = ex.device(home)
    device = None if same_device(run_device, home) else run_device
    sizes = [s.size for s in shards]
    store = _ShardStore(
        checkpoint, {**plan.fingerprint(), "shard_sizes": sizes}, plan.save_result, plan.load_result
    )
    finished = store.load_finished(num_shards)
    todo = {s.index: s for s in shards if s.index not in finished}
    total = sum(plan.work(s) for s in shards)
    bar = _RunProgress(progress, total, plan.progress_desc, num_shards, plan.progress_unit)
    for k in finished:
        bar.shard_done(plan.work(shards[k]))

    def on_result(k: int, res: Any) -> None:
        store.save(k, res)
        bar.shard_done(plan.work(shards[k]))

    try:
        results, failures = ex.map(_run_shard, (plan, device), todo, on_result, bar.tick)
    finally:
        bar.close()
    _raise_failures(failures, results, shards, plan, ex, checkpoint)
    results.update(finished)
    run_info = {
        "executor": ex.describe(),
        "shard_sizes": sizes,
        "shard_seeds": [s.seed for s in shards],
        "shards_from_checkpoint": sorted(finished),
    }
    return plan.merge([results[k] for k in range(num_shards)], run_info)
