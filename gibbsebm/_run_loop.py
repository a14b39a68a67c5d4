"""The driver's step loop: warmup, recording, progress and checkpoints (driver layer).

Checkpoints. A checkpoint file (:mod:`gibbsebm.runtime.files`: header, SHA-256, plain data
read with ``weights_only=True``) holds

* ``identity``: what defines the run (:func:`run_identity`: method, options, beta, dtype,
  device kind, counts, seed, initial positions, digests of the energy's parameters and code);
  resuming with any of them changed raises :class:`~gibbsebm.errors.CheckpointMismatchError`
  naming the fields;
* ``phase`` (``"warmup"`` or ``"sample"``) and ``k``, the warmup steps or recorded draws done;
* the sampler state, the tuned parameters, the adaptation record and the generator state at
  that point, as plain data: NamedTuples (states, :class:`~gibbsebm.samplers.metrics.Metric`)
  become ``{"__t__": "namedtuple", "cls": ..., "fields": ...}`` and are rebuilt only from
  classes of gibbsebm modules already imported (nothing is imported or called by name from a
  file);
* the draws and per-draw statistics recorded so far.

It is written at the start of the warmup, every ``checkpoint_every`` steps of a warmup without
adaptation, after the warmup, every ``checkpoint_every`` recorded draws, at the end, and when
the run is interrupted with Ctrl-C (``KeyboardInterrupt``: the last completed step is saved,
then the interrupt goes on). An adaptive warmup (step size, mass matrix) cannot be resumed
midway: resuming a checkpoint written during it restarts the warmup from its beginning, with a
warning, and gives the same draws as an uninterrupted run.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ._json import to_jsonable
from .errors import CheckpointMismatchError, CorruptFileError
from .runtime.files import load_tensors, save_tensors
from .samplers.base import SamplerSpec

__all__ = [
    "_run_flat",
    "run_identity",
    "load_checkpoint",
    "tune_cpu_allocator",
    "CHECKPOINT_VERSION",
]

#: Version of the checkpoint payload (1: pickled objects, no longer read).
CHECKPOINT_VERSION = 2
_FORMAT = "gibbsebm.checkpoint"


# ------------------------------------------------------------------------------- allocator
#: glibc ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this size come from the heap instead of a fresh ``mmap`` (32 MiB is glibc's
#: largest allowed value on 64-bit systems, ``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse instead of being returned to the system.
TRIM_THRESHOLD = 256 * 1024 * 1024
#: ``None`` until the first call; then whether the tuning was applied (once per process).
_ALLOCATOR_TUNED: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep the step's large CPU tensors on the heap instead of mapping them every step.

    A transition at thousands of chains allocates and frees a few tensors of megabytes each
    (momenta, gradients, proposals). glibc serves blocks above ``M_MMAP_THRESHOLD`` with a
    fresh ``mmap`` and returns them with ``munmap`` (and trims the heap above
    ``M_TRIM_THRESHOLD``), so every step pays the kernel's page faults for memory it just gave
    back. This raises the two thresholds with ``mallopt`` (``MMAP_THRESHOLD``,
    ``TRIM_THRESHOLD``): the freed blocks are reused, at the price of keeping up to
    ``TRIM_THRESHOLD`` bytes of freed memory in the process.

    It is applied once per process (the thresholds are process-wide) by every sampling run on
    the CPU. It does nothing off glibc (macOS, Windows, musl) or when the environment variable
    ``GIBBSEBM_MALLOC_TUNE`` is ``0``. Draws are unchanged: only where memory comes from.

    Returns
    -------
    bool
        Whether the thresholds are set (now or by an earlier call).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if os.environ.get("GIBBSEBM_MALLOC_TUNE", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
            return False  # not glibc (e.g. musl): mallopt's parameters differ
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = (mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1) and ok
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


# ---------------------------------------------------------------------------------- progress
class _Progress:
    """tqdm bar over warmup + sampling iterations: draws/s (all chains) and mean acceptance.

    ``progress=True`` shows it when stderr is a terminal, ``"always"`` forces it, ``False``
    hides it. The acceptance is read from the device only when the bar refreshes.
    """

    def __init__(self, progress: bool | str, total: int, desc: str, num_chains: int = 1) -> None:
        self.bar = None
        if progress is False or total == 0:
            return
        if progress is True:
            if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
                return
        elif progress != "always":
            raise ValueError(f"progress must be True, False or 'always', got {progress!r}")
        from tqdm import tqdm

        # one iteration moves every chain: count draws (all chains) so the rate is draws/s
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="draw",
            unit_scale=num_chains if num_chains > 1 else False,
            dynamic_ncols=True,
            leave=True,
        )
        self.acc_sum = None
        self.count = 0
        self.every = max(1, total // 200)

    def update(self, phase: str, info: Any) -> None:
        if self.bar is None:
            return
        acc = getattr(info, "acceptance_prob", None)
        if acc is not None:
            m = acc.detach().double().mean()
            self.acc_sum = m if self.acc_sum is None else self.acc_sum + m
            self.count += 1
        self.bar.update(1)
        if self.bar.n % self.every == 0 and self.acc_sum is not None:
            self.bar.set_postfix_str(f"{phase} acc={float(self.acc_sum) / self.count:.3f}")
            self.acc_sum, self.count = None, 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------- identity
def _short(value: Any, limit: int = 16) -> Any:
    """A JSON-able rendering for the identity: small tensors as values, others as digests."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= limit:
            return to_jsonable(value, nonfinite="keep")
        return {"sha256": _tensor_hash(value), "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(k): _short(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_short(v, limit) for v in value]
    return to_jsonable(value, nonfinite="keep")


def _tensor_hash(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(str((tuple(t.shape), str(t.dtype))).encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _feed(h: Any, value: Any, depth: int, seen: set[int]) -> None:
    """Feed the data ``value`` holds (tensors, numbers, module states, closures) into ``h``."""
    if isinstance(value, torch.Tensor):
        h.update(b"T" + _tensor_hash(value).encode())
        return
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        h.update(repr(value).encode())
        return
    if depth <= 0 or id(value) in seen:
        h.update(type(value).__qualname__.encode())
        return
    seen.add(id(value))
    if isinstance(value, torch.nn.Module):
        h.update(b"M" + type(value).__qualname__.encode())
        for k, v in sorted(value.state_dict(keep_vars=False).items()):
            h.update(k.encode())
            _feed(h, v, depth - 1, seen)
        # plain attributes (hyperparameters such as a coupling J or a float scale)
        for k, v in sorted(vars(value).items()):
            if not k.startswith("_") and k != "training":
                h.update(k.encode())
                _feed(h, v, depth - 1, seen)
        return
    if isinstance(value, dict):
        for k, v in sorted(value.items(), key=lambda kv: repr(kv[0])):
            h.update(repr(k).encode())
            _feed(h, v, depth - 1, seen)
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _feed(h, v, depth - 1, seen)
        return
    if isinstance(value, functools.partial):
        _feed(h, (value.func, value.args, value.keywords), depth - 1, seen)
        return
    if inspect.ismethod(value):
        _feed(h, (value.__self__, value.__func__), depth - 1, seen)
        return
    if inspect.isfunction(value):
        h.update(b"F" + value.__qualname__.encode())
        cells = [c.cell_contents for c in (value.__closure__ or ()) if _has_contents(c)]
        # module-level data the function reads (a weight tensor, a scale): by name
        data = {
            name: value.__globals__[name]
            for name in value.__code__.co_names
            if isinstance(value.__globals__.get(name), (torch.Tensor, torch.nn.Module, int, float))
            and not isinstance(value.__globals__.get(name), bool)
        }
        _feed(h, (cells, data, value.__defaults__, value.__kwdefaults__), depth - 1, seen)
        return
    if (
        inspect.isclass(value)
        or inspect.ismodule(value)
        or callable(value)
        and not hasattr(value, "__dict__")
    ):
        h.update(getattr(value, "__qualname__", type(value).__qualname__).encode())
        return
    h.update(b"O" + type(value).__qualname__.encode())
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        _feed(h, {k: v for k, v in attrs.items() if not k.startswith("__")}, depth - 1, seen)


def _has_contents(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _energy_code(energy: Any) -> tuple[str | None, str]:
    """SHA-256 of the energy's source code and what was hashed (or why it could not be)."""
    target = energy
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.ismethod(target):
        target = target.__func__
    if not (inspect.isfunction(target) or inspect.isclass(target)):
        target = type(target)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
    try:
        src = inspect.getsource(target)
    except (OSError, TypeError) as err:
        return None, f"source of {name} not available ({type(err).__name__}); not checked"
    return hashlib.sha256(src.encode("utf-8")).hexdigest(), name


def run_identity(dist: Any, position: torch.Tensor | None, **fields: Any) -> dict[str, Any]:
    """What defines a sampling run, as recorded in its checkpoint and compared on resume.

    Parameters
    ----------
    dist : Gibbs
        The target.
    position : Tensor or None
        The chains' initial positions (flattened), whose digest identifies ``init`` and the
        default start; ``None`` leaves ``init`` out and takes dtype and device from ``beta``.
    **fields
        The call's own fields (method, options, counts, seed, shapes).

    Returns
    -------
    dict
        JSON-able: ``fields`` plus ``dtype``, ``device`` (its kind, e.g. ``"cuda"``), ``beta``,
        ``condition``, ``base``, ``energy`` (its type), ``energy_parameters`` (SHA-256 of the
        parameters and buffers of an ``nn.Module`` energy, or of the tensors, modules and
        numbers a function energy closes over or reads as module globals), ``energy_code`` (SHA-256 of the energy's class or
        function source; ``None`` with ``energy_code_note`` saying why when the source is
        not available) and ``init``.
    """
    energy = getattr(dist, "energy", None)
    h = hashlib.sha256()
    _feed(h, energy, 6, set())
    code, note = _energy_code(energy)
    base = getattr(dist, "base", None)
    hb = hashlib.sha256()
    _feed(hb, base, 4, set())
    ident = {k: _short(v) for k, v in fields.items()}
    ref = position if position is not None else getattr(dist, "beta", torch.zeros(()))
    ident.update(
        {
            "dtype": str(ref.dtype).replace("torch.", ""),
            "device": ref.device.type,
            "beta": _short(getattr(dist, "beta", None)),
            "condition": _short(getattr(dist, "x", None), limit=0),
            "base": None if base is None else f"{type(base).__qualname__}:{hb.hexdigest()}",
            "support": str(getattr(dist, "support", None)),
            "energy": f"{type(energy).__module__}.{type(energy).__qualname__}",
            "energy_parameters": h.hexdigest(),
            "energy_code": code,
            "energy_code_note": note,
        }
    )
    if position is not None:
        ident["init"] = _tensor_hash(position)
    return ident


def _differences(stored: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    out = {}
    for key in sorted(set(stored) | set(current)):
        if key == "energy_code_note":
            continue
        a, b = stored.get(key), current.get(key)
        if a != b:
            out[key] = (a, b)
    return out


_WHY = {
    "energy_parameters": "the energy's parameters or buffers changed",
    "energy_code": "the source code of the energy changed",
    "init": "the initial positions differ (init= or seed)",
}


def _clip(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def _check_identity(path: str, stored: Any, current: dict) -> None:
    if not isinstance(stored, dict):
        raise CorruptFileError(f"{path} is not a gibbsebm checkpoint (no run identity)", path)
    diff = _differences(stored, current)
    if not diff:
        return
    lines = [
        f"{k}: checkpoint {_clip(a)}, this call {_clip(b)}" + (f" ({_WHY[k]})" if k in _WHY else "")
        for k, (a, b) in diff.items()
    ]
    raise CheckpointMismatchError(
        f"checkpoint {path} belongs to a different run; resuming it would mix two runs. "
        f"Differing field(s): {', '.join(diff)}.\n  "
        + "\n  ".join(lines)
        + "\nPass the original arguments, or delete the checkpoint (or choose another path) to "
        "start afresh.",
        fields=diff,
        path=path,
    )


# ---------------------------------------------------------------------------------- plain data
def _encode(obj: Any) -> Any:
    """Plain data for a checkpoint: tensors (on the CPU), numbers, strings, tagged containers."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        cls = type(obj)
        return {
            "__t__": "namedtuple",
            "cls": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {f: _encode(getattr(obj, f)) for f in obj._fields},
        }
    if isinstance(obj, dict):
        return {"__t__": "dict", "items": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__t__": "tuple", "items": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return {"__t__": "list", "items": [_encode(v) for v in obj]}
    if isinstance(obj, torch.dtype):
        return {"__t__": "dtype", "name": str(obj).replace("torch.", "")}
    if isinstance(obj, torch.device):
        return {"__t__": "device", "name": str(obj)}
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
        return obj.item()
    raise TypeError(
        f"cannot checkpoint a value of type {type(obj).__qualname__} ({_clip(obj)}); a sampler's "
        "state and parameters must be tensors, numbers, strings and NamedTuples of those"
    )


def _named_tuple_class(name: str, fields: list[str], path: str) -> type:
    module, _, qual = name.partition(":")
    mod = sys.modules.get(module)
    bad = CorruptFileError(
        f"{path} names the class {name!r}, which is not a sampler state of a loaded gibbsebm "
        "module; the checkpoint was refused",
        path,
    )
    if mod is None or not (module == "gibbsebm" or module.startswith("gibbsebm.")):
        raise bad
    obj: Any = mod
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    if not (
        isinstance(obj, type)
        and issubclass(obj, tuple)
        and tuple(getattr(obj, "_fields", ())) == tuple(fields)
    ):
        raise bad
    return obj


def _decode(obj: Any, device: torch.device, path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if not isinstance(obj, dict) or "__t__" not in obj:
        raise CorruptFileError(f"{path}: unexpected value in a checkpoint ({_clip(obj)})", path)
    tag = obj["__t__"]
    if tag == "namedtuple":
        fields = obj["fields"]
        cls = _named_tuple_class(str(obj["cls"]), list(fields), path)
        return cls(**{k: _decode(v, device, path) for k, v in fields.items()})
    if tag == "dict":
        return {_decode(k, device, path): _decode(v, device, path) for k, v in obj["items"]}
    if tag == "tuple":
        return tuple(_decode(v, device, path) for v in obj["items"])
    if tag == "list":
        return [_decode(v, device, path) for v in obj["items"]]
    if tag == "dtype":
        dt = getattr(torch, str(obj["name"]), None)
        if not isinstance(dt, torch.dtype):
            raise CorruptFileError(f"{path}: unknown dtype {obj['name']!r}", path)
        return dt
    if tag == "device":
        return torch.device(str(obj["name"]))
    raise CorruptFileError(f"{path}: unknown value tag {tag!r} in a checkpoint", path)


def _cpu(d: dict[str, torch.Tensor] | None, k: int) -> dict[str, torch.Tensor] | None:
    return None if d is None else {n: v[:, :k].detach().to("cpu") for n, v in d.items()}


def load_checkpoint(path: str | os.PathLike, identity: dict | None = None) -> dict:
    """Read and check a sampling checkpoint (CPU tensors; the generator state stays a CPU
    ``ByteTensor``, as :meth:`torch.Generator.set_state` needs on every device).

    Raises
    ------
    CorruptFileError
        If the file is not an intact gibbsebm checkpoint of this version.
    CheckpointMismatchError
        If ``identity`` is given and the checkpoint's differs.
    """
    p = os.fspath(path)
    ck = load_tensors(p, what="gibbsebm checkpoint", kind="checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != _FORMAT:
        raise CorruptFileError(f"{p} is not a gibbsebm checkpoint", p)
    if ck.get("version") != CHECKPOINT_VERSION:
        raise CorruptFileError(
            f"{p} is a checkpoint of version {ck.get('version')!r}; this gibbsebm resumes "
            f"version {CHECKPOINT_VERSION} only (start the run afresh)",
            p,
        )
    if ck.get("phase") not in ("warmup", "sample") or not isinstance(ck.get("k"), int):
        raise CorruptFileError(f"{p} is a damaged gibbsebm checkpoint (phase/step)", p)
    gs = ck.get("generator_state")
    if gs is not None and not (isinstance(gs, torch.Tensor) and gs.dtype == torch.uint8):
        raise CorruptFileError(f"{p}: the generator state is not a byte tensor", p)
    if identity is not None:
        _check_identity(p, ck.get("identity"), identity)
    return ck


# ---------------------------------------------------------------------------------- driver core
def _as_tensor_field(value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.full((like.shape[0],), value, device=like.device)


def _run_flat(
    spec: SamplerSpec,
    logdensity_fn: Callable,
    position: torch.Tensor,
    generator: torch.Generator | None,
    *,
    num_samples: int,
    num_warmup: int,
    thin: int,
    progress: bool | str,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int,
    identity: dict | Callable[[], dict] | None = None,
) -> dict:
    """Run on flattened chains; returns flat arrays ``(C, D, ...)``.

    ``identity`` (or a function computing it, called only when checkpointing) is recorded in
    the checkpoint and compared on resume.
    """
    if position.device.type == "cpu":
        tune_cpu_allocator()
    total_iters = num_warmup + num_samples * thin
    bar = _Progress(progress, total_iters, spec.name, position.shape[0])
    try:
        if spec.run is not None:
            if checkpoint is not None:
                raise ValueError(
                    f"checkpoint= is not supported for method={spec.name!r}, which runs its "
                    "own loop"
                )
            out = spec.run(
                generator,
                position,
                logdensity_fn,
                num_samples,
                num_warmup,
                thin,
                lambda i, st, info: bar.update("sample" if i >= num_warmup else "warmup", info),
            )
            out.setdefault("extra", {})
            return out
        return _loop(
            spec,
            logdensity_fn,
            position,
            generator,
            bar,
            num_samples=num_samples,
            num_warmup=num_warmup,
            thin=thin,
            checkpoint=None if checkpoint is None else os.fspath(checkpoint),
            checkpoint_every=checkpoint_every,
            identity=identity,
        )
    finally:
        bar.close()


def _loop(
    spec: SamplerSpec,
    logdensity_fn: Callable,
    position: torch.Tensor,
    generator: torch.Generator | None,
    bar: _Progress,
    *,
    num_samples: int,
    num_warmup: int,
    thin: int,
    checkpoint: str | None,
    checkpoint_every: int,
    identity: dict | Callable[[], dict] | None,
) -> dict:
    device = position.device
    c = position.shape[0]
    if checkpoint is not None:
        if generator is None:
            raise ValueError("checkpoint= needs an explicit generator")
        if callable(identity):
            identity = identity()
        identity = dict(identity or {})
    ckpt = None
    if checkpoint is not None and os.path.lexists(checkpoint):
        ckpt = load_checkpoint(checkpoint, identity)

    # what the run has done so far; ``last`` is the latest consistent point (after a whole
    # step or a whole recorded draw), which Ctrl-C saves
    run: dict[str, Any] = {
        "params": dict(spec.default_params),
        "adapt_info": {},
        "draws": None,
        "stats": None,
        "extra": None,
        "logdensity": None,
    }
    last: dict[str, Any] = {}
    saved: dict[str, Any] = {}

    def mark(phase: str, k: int, state: Any) -> None:
        if checkpoint is None:
            return
        last.update(phase=phase, k=k, state=state, generator_state=generator.get_state())

    def save() -> None:
        if checkpoint is None or not last or saved == {"phase": last["phase"], "k": last["k"]}:
            return
        k = last["k"] if last["phase"] == "sample" else 0
        save_tensors(
            {
                "format": _FORMAT,
                "version": CHECKPOINT_VERSION,
                "identity": identity,
                "phase": last["phase"],
                "k": last["k"],
                "state": None if last["state"] is None else _encode(last["state"]),
                "params": _encode(run["params"]),
                "adapt_info": _encode(run["adapt_info"]),
                "generator_state": None
                if last["generator_state"] is None
                else last["generator_state"].detach().to("cpu"),
                "draws": None if run["draws"] is None else run["draws"][:, :k].detach().cpu(),
                "stats": _cpu(run["stats"], k),
                "extra": _cpu(run["extra"], k),
                "logdensity": None
                if run["logdensity"] is None
                else run["logdensity"][:, :k].detach().cpu(),
            },
            checkpoint,
            kind="checkpoint",
        )
        saved.clear()
        saved.update(phase=last["phase"], k=last["k"])

    try:
        state, start = _warmup_or_resume(
            spec, logdensity_fn, position, generator, bar, ckpt, run, mark, save,
            num_samples=num_samples, num_warmup=num_warmup, thin=thin, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
        )  # fmt: skip
        if ckpt is not None and ckpt["phase"] == "sample":
            saved.update(phase="sample", k=start)
        mark("sample", start, state)
        save()
        for k in range(start, num_samples):
            for _ in range(thin):
                state, info = spec.step(generator, state, logdensity_fn, **run["params"])
                bar.update("sample", info)
            if run["stats"] is None:
                _allocate(spec, run, state, info, c, num_samples, device)
            run["draws"][:, k] = state.position
            run["logdensity"][:, k] = state.logdensity
            for name, value in info._asdict().items():
                run["stats"][name][:, k] = _as_tensor_field(value, state.position)
            if run["extra"] is not None:
                for name, v in spec.extra_draws(state).items():
                    run["extra"][name][:, k] = v
            if checkpoint is not None:
                mark("sample", k + 1, state)
                if (k + 1) % checkpoint_every == 0 or k + 1 == num_samples:
                    save()
    except KeyboardInterrupt:
        save()  # the last completed step; then the interrupt goes on
        raise
    draws = run["draws"]
    if draws is None:
        draws = torch.empty((c, num_samples) + tuple(position.shape[1:]), dtype=position.dtype,
                            device=device)  # fmt: skip
    return {
        "draws": draws,
        "stats": run["stats"] or {},
        "extra": run["extra"] or {},
        "logdensity": run["logdensity"]
        if run["logdensity"] is not None
        else torch.empty((c, 0), dtype=position.dtype, device=device),
        "params": run["params"],
        "adapt_info": run["adapt_info"],
    }


def _allocate(spec, run, state, info, c, num_samples, device) -> None:
    """Buffers for the draws and per-draw statistics (shapes from the first ``info``)."""
    pos = state.position
    if run["draws"] is None:
        run["draws"] = torch.empty(
            (c, num_samples) + tuple(pos.shape[1:]), dtype=pos.dtype, device=device
        )
    run["stats"] = {}
    for name, value in info._asdict().items():
        v = _as_tensor_field(value, pos)
        run["stats"][name] = torch.empty(
            (c, num_samples) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
        )
    run["logdensity"] = torch.empty((c, num_samples), dtype=state.logdensity.dtype, device=device)
    if spec.extra_draws is not None:
        run["extra"] = {}
        for name, v in spec.extra_draws(state).items():
            run["extra"][name] = torch.empty(
                (c, num_samples) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
            )


def _restore_buffers(ckpt: dict, run: dict, num_samples: int, device: torch.device) -> None:
    """Full-length buffers from the recorded part stored in a checkpoint."""

    def grow(t: torch.Tensor) -> torch.Tensor:
        out = torch.empty((t.shape[0], num_samples) + tuple(t.shape[2:]), dtype=t.dtype,
                          device=device)  # fmt: skip
        out[:, : t.shape[1]] = t.to(device)
        return out

    if ckpt.get("draws") is not None:
        run["draws"] = grow(ckpt["draws"])
    if ckpt.get("stats") is not None:
        run["stats"] = {n: grow(v) for n, v in ckpt["stats"].items()}
        run["logdensity"] = grow(ckpt["logdensity"])
    if ckpt.get("extra") is not None:
        run["extra"] = {n: grow(v) for n, v in ckpt["extra"].items()}


def _warmup_or_resume(
    spec, logdensity_fn, position, generator, bar, ckpt, run, mark, save, *,
    num_samples, num_warmup, thin, checkpoint, checkpoint_every,
):  # fmt: skip
    """Run (or resume, or restart) the warmup; returns ``(state, first draw to record)``."""
    device = position.device
    path = checkpoint
    if ckpt is not None and ckpt["phase"] == "sample":
        state = _decode(ckpt["state"], device, path)
        run["params"] = _decode(ckpt["params"], device, path)
        run["adapt_info"] = _decode(ckpt["adapt_info"], device, path)
        generator.set_state(ckpt["generator_state"].cpu())
        _restore_buffers(ckpt, run, num_samples, device)
        if bar.bar is not None:
            bar.bar.update(num_warmup + ckpt["k"] * thin)
        return state, ckpt["k"]
    w0 = 0
    state = None
    if ckpt is not None and ckpt.get("state") is not None:  # a plain warmup, resumed midway
        state = _decode(ckpt["state"], device, path)
        run["params"] = _decode(ckpt["params"], device, path)
        generator.set_state(ckpt["generator_state"].cpu())
        w0 = ckpt["k"]
        if bar.bar is not None:
            bar.bar.update(w0)
    elif ckpt is not None:
        warnings.warn(
            f"checkpoint {path} was written during the warmup of method {spec.name!r}, whose "
            "adaptation cannot be resumed midway: the warmup restarts from its beginning "
            "(the draws are those of an uninterrupted run)",
            stacklevel=4,
        )
    if state is None:
        state = spec.init(position, logdensity_fn)
    if spec.adapt is not None:
        if checkpoint is not None:
            # records the run's identity; a resume restarts the (adaptive) warmup
            mark("warmup", 0, None)
            save()
        state, params, adapt_info = spec.adapt(
            generator,
            state,
            logdensity_fn,
            num_warmup,
            run["params"],
            lambda i, st, info: bar.update("warmup", info),
        )
        run["params"], run["adapt_info"] = params, adapt_info
        return state, 0
    if checkpoint is not None:
        mark("warmup", w0, state)
        save()
    for w in range(w0, num_warmup):
        state, info = spec.step(generator, state, logdensity_fn, **run["params"])
        bar.update("warmup", info)
        if checkpoint is not None:
            mark("warmup", w + 1, state)
            if (w + 1) % checkpoint_every == 0:
                save()
    return state, 0
