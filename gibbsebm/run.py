"""The sampling driver: :func:`sample` runs any registered sampler and returns :class:`Samples`.

Layout. Chains live on the leading dimension. A *batched* distribution (``dist.batch_shape``
non-empty: a conditional Gibbs over several inputs, a ladder of betas) is sampled by
flattening the batch into chains: ``num_chains`` chains for each batch member, positions
``(num_chains * prod(batch), *event)`` in the order ``(chain, *batch)``; draws come back
shaped ``(num_chains, num_samples, *batch, *event)`` and stats ``(num_chains, num_samples,
*batch, ...)``. Adaptation statistics are pooled over all flattened chains and the tuned
parameters are shared (see :mod:`gibbsebm.samplers.hmc`).

Seeds. ``seed`` (an int) seeds one :class:`torch.Generator` on the distribution's device; that
single stream produces, in this order, the default initial positions, the warmup and the
draws. Same seed, same device, same arguments -> the same draws (different devices use
different generators and give different, equally valid, draws). ``seed=None`` picks a fresh
seed and records it in ``Samples.seed``, so every run can be repeated. To split chains into
shards (e.g. one per worker), give each shard its own generator from :func:`shard_seeds` and
run it with :func:`run_chains`; :meth:`Samples.concatenate` joins the shards along the chain
dimension. A sharded run is reproducible from its seed and shard sizes, but its draws differ
from an unsharded run with the same seed (and each shard adapts on its own chains).

Checkpoints. With ``checkpoint=path`` the driver writes, atomically (temporary file +
:func:`os.replace`), the sampler state, the generator state, the tuned parameters and the
draws so far: once after warmup and every ``checkpoint_every`` recorded draws. Calling
:func:`sample` again with the same arguments resumes from the file, and the result equals that
of an uninterrupted run draw for draw. An interrupted warmup restarts from the beginning
(deterministically). Checkpoints are pickles: load only files you wrote.

Threads. Batched chains make few, large tensor operations, so intra-op threads help only when
the cores are free. On small or shared CPUs, oversubscribed BLAS/OpenMP threads spin-wait:
measured here on 2 shared cores, a ``(32, 10) @ (10, 10)`` matmul took 5 us with
``torch.set_num_threads(1)`` and 250 us with two threads, and a whole HMC run was 4x slower.
Set ``torch.set_num_threads`` to the number of cores you really have to yourself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.distributions import constraints

from .constraints import support_values
from .samplers.base import SamplerSpec
from .samplers.registry import get_spec

__all__ = [
    "Samples",
    "sample",
    "run_chains",
    "initial_positions",
    "shard_seeds",
    "flat_logdensity",
]

#: Stan's default initialisation: uniform on (-2, 2) in the unconstrained space.
INIT_RADIUS = 2.0
_CHECKPOINT_VERSION = 1


# ---------------------------------------------------------------------------------- Samples
@dataclasses.dataclass
class Samples:
    """Draws and per-draw statistics of a sampling run.

    Attributes
    ----------
    draws : Tensor
        ``(num_chains, num_samples, *batch_shape, *event_shape)``.
    stats : dict of str to Tensor
        Per-draw statistics shaped ``(num_chains, num_samples, *batch_shape, ...)``: every
        field of the sampler's ``Info`` (``acceptance_prob``, ``is_accepted``,
        ``is_divergent``, ``is_nonfinite``, ...), plus ``step_size``, ``beta``, ``logdensity``
        (:math:`\\log b(y) - \\beta E(y)`) and ``energy`` (:math:`E(y)` of the draw).
    extra : dict of str to Tensor
        Additional per-draw arrays the sampler asks to keep (e.g. all replicas of ``pt``).
    method : str
        The ``method=`` name.
    options : dict
        The kernel options given to :func:`sample`.
    seed : int or None
        The seed of the run (``None`` for runs started from a caller-supplied generator).
    num_warmup, thin : int
        Warmup length and thinning.
    batch_shape, event_shape : tuple of int
        Shapes of the distribution.
    adaptation : dict
        Tuned parameters (step size, inverse mass matrix, trajectory length, ...).
    attrs : dict
        Extra JSON-serialisable metadata.
    """

    draws: torch.Tensor
    stats: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    method: str = ""
    options: dict = dataclasses.field(default_factory=dict)
    seed: int | None = None
    num_warmup: int = 0
    thin: int = 1
    batch_shape: tuple = ()
    event_shape: tuple = ()
    adaptation: dict = dataclasses.field(default_factory=dict)
    attrs: dict = dataclasses.field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return int(self.draws.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.draws.shape[1])

    def __repr__(self) -> str:
        acc = self.stats.get("acceptance_prob")
        acc_s = f", mean acceptance={float(acc.double().mean()):.3f}" if acc is not None else ""
        return (
            f"Samples(method={self.method!r}, draws={tuple(self.draws.shape)}, "
            f"stats={sorted(self.stats)}{acc_s})"
        )

    # -- diagnostics ----------------------------------------------------------------------
    def to_inference_data(self, var_name: str = "y"):
        """An :class:`arviz.InferenceData` with ``posterior``, ``sample_stats`` and attrs.

        See :func:`gibbsebm.interop.arviz.to_inference_data`.
        """
        from .interop.arviz import to_inference_data

        return to_inference_data(self, var_name=var_name)

    def summary(self, **kwargs: Any):
        """Per-coordinate mean, sd, MCSE, bulk/tail ESS and R-hat (:func:`arviz.summary`).

        Returns
        -------
        pandas.DataFrame
        """
        from .interop.arviz import summary

        return summary(self, **kwargs)

    # -- persistence ----------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "format": "gibbsebm.Samples",
            "version": 1,
            "draws": self.draws.detach().cpu(),
            "stats": {k: v.detach().cpu() for k, v in self.stats.items()},
            "extra": {k: v.detach().cpu() for k, v in self.extra.items()},
            "meta": {
                "method": self.method,
                "options": _jsonable(self.options),
                "seed": self.seed,
                "num_warmup": self.num_warmup,
                "thin": self.thin,
                "batch_shape": list(self.batch_shape),
                "event_shape": list(self.event_shape),
                "attrs": _jsonable(self.attrs),
            },
            "adaptation": _tensor_or_json(self.adaptation),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (a torch file with tensors and JSON-like metadata only), atomically."""
        _atomic_save(self._payload(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Samples:
        """Read a file written by :meth:`save` (safe: ``torch.load(weights_only=True)``)."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ValueError(f"{path} is not a gibbsebm Samples file ({err})") from None
        if not isinstance(payload, dict) or payload.get("format") != "gibbsebm.Samples":
            raise ValueError(f"{path} is not a gibbsebm Samples file")
        m = payload["meta"]
        return cls(
            draws=payload["draws"],
            stats=dict(payload["stats"]),
            extra=dict(payload["extra"]),
            method=m["method"],
            options=m["options"],
            seed=m["seed"],
            num_warmup=m["num_warmup"],
            thin=m["thin"],
            batch_shape=tuple(m["batch_shape"]),
            event_shape=tuple(m["event_shape"]),
            adaptation=payload["adaptation"],
            attrs=m["attrs"],
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Samples]) -> Samples:
        """Join runs of the same sampler along the chain dimension (e.g. shards).

        Raises
        ------
        ValueError
            If the parts differ in method, number of draws, shapes or recorded statistics.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("concatenate needs at least one Samples")
        first = parts[0]
        for p in parts[1:]:
            if p.method != first.method:
                raise ValueError(f"cannot concatenate methods {first.method!r} and {p.method!r}")
            if p.draws.shape[1:] != first.draws.shape[1:]:
                raise ValueError(
                    f"draws shapes differ beyond the chain dim: {tuple(first.draws.shape)} vs "
                    f"{tuple(p.draws.shape)}"
                )
            if set(p.stats) != set(first.stats) or set(p.extra) != set(first.extra):
                raise ValueError("the parts record different statistics")
        return cls(
            draws=torch.cat([p.draws for p in parts], 0),
            stats={k: torch.cat([p.stats[k] for p in parts], 0) for k in first.stats},
            extra={k: torch.cat([p.extra[k] for p in parts], 0) for k in first.extra},
            method=first.method,
            options=first.options,
            seed=first.seed if all(p.seed == first.seed for p in parts) else None,
            num_warmup=first.num_warmup,
            thin=first.thin,
            batch_shape=first.batch_shape,
            event_shape=first.event_shape,
            adaptation={"shards": [p.adaptation for p in parts]},
            attrs={**first.attrs, "shard_seeds": [p.seed for p in parts]},
        )


# ---------------------------------------------------------------------------------- helpers
def _jsonable(obj: Any) -> Any:
    """A JSON-serialisable rendering of options (tensors become short descriptions)."""
    if isinstance(obj, str):
        return str(obj)  # plain str, also for subclasses such as torch's TorchVersion
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        if obj.numel() <= 16:
            return obj.detach().cpu().tolist()
        return f"Tensor(shape={tuple(obj.shape)}, dtype={obj.dtype})"
    return repr(obj)


def _tensor_or_json(obj: Any) -> Any:
    """Keep tensors (on CPU) and JSON-able values; render anything else with repr."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k): _tensor_or_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tensor_or_json(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def _atomic_save(obj: Any, path: str | os.PathLike) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def shard_seeds(seed: int, num_shards: int) -> list[int]:
    """Independent 63-bit seeds for ``num_shards`` shards of a run seeded with ``seed``.

    Uses :class:`numpy.random.SeedSequence` spawning, so shard streams do not overlap.

    Examples
    --------
    >>> len(shard_seeds(0, 3)), shard_seeds(0, 3) == shard_seeds(0, 3)
    (3, True)
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    children = np.random.SeedSequence(int(seed)).spawn(num_shards)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


def _dist_device(dist: Any) -> torch.device:
    beta = getattr(dist, "beta", None)
    if isinstance(beta, torch.Tensor):
        return beta.device
    return torch.device("cpu")


def _dist_dtype(dist: Any) -> torch.dtype:
    beta = getattr(dist, "beta", None)
    if isinstance(beta, torch.Tensor) and beta.dtype.is_floating_point:
        return beta.dtype
    return torch.get_default_dtype()


def _batch_size(dist: Any) -> int:
    return math.prod(tuple(getattr(dist, "batch_shape", ())))


def flat_logdensity(dist: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``dist.logdensity`` on flattened chains ``(n * prod(batch), *event) -> (n * prod(batch),)``.

    For an unbatched distribution without base measure, condition or latent variables whose
    beta is a scalar, this is ``energy(y) * (-beta)`` directly (one kernel fewer than the
    general path, which goes through :meth:`gibbsebm.Gibbs.logdensity`).
    """
    batch = tuple(dist.batch_shape)
    event = tuple(dist.event_shape)
    energy = getattr(dist, "energy", None)
    simple = (
        not batch
        and getattr(dist, "base", None) is None
        and getattr(dist, "x", None) is None
        and getattr(dist, "latent", None) is None
        and energy is not None
        and getattr(energy, "tempered_energy", None) is None
        and isinstance(getattr(dist, "beta", None), torch.Tensor)
    )
    if simple:
        neg_beta = -dist.beta.detach()

        def fn(y: torch.Tensor) -> torch.Tensor:
            e = energy(y)
            return e * neg_beta.to(e.dtype)

        return fn
    if not batch:
        return dist.logdensity
    b = math.prod(batch)

    def fn_batched(y: torch.Tensor) -> torch.Tensor:
        n = y.shape[0] // b
        return dist.logdensity(y.reshape((n,) + batch + event)).reshape(n * b)

    return fn_batched


def initial_positions(
    dist: Any,
    num_chains: int,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Initial positions ``(num_chains * prod(batch), *event)`` (flattened chain layout).

    Defaults, by support:

    * real (``real``, ``real_vector``, independent reals): uniform on ``(-2, 2)`` per
      coordinate, as Stan;
    * ``positive``: ``exp`` of uniform ``(-2, 2)``; an interval ``[a, b]``: uniform on it;
    * finite discrete supports (binary, spin, integer intervals): uniformly random states.

    An explicit ``init`` is a tensor ``(num_chains, *event)`` (shared across the batch) or
    ``(num_chains, *batch, *event)``.

    Raises
    ------
    ValueError
        For a wrong ``init`` shape, a non-finite ``init``, or a support without a default.
    """
    device, dtype = _dist_device(dist), _dist_dtype(dist)
    batch = tuple(dist.batch_shape)
    event = tuple(dist.event_shape)
    b = math.prod(batch)
    full = (num_chains,) + batch + event
    if init is not None:
        init = torch.as_tensor(init)
        if init.device != device:
            raise ValueError(f"init is on {init.device} but the distribution is on {device}")
        if tuple(init.shape) == (num_chains,) + event and batch:
            init = init.reshape((num_chains,) + (1,) * len(batch) + event).expand(full)
        if tuple(init.shape) != full:
            raise ValueError(
                f"init must have shape {(num_chains,) + event} or {full}, got {tuple(init.shape)}"
            )
        if init.dtype.is_floating_point and not bool(torch.isfinite(init).all()):
            raise ValueError("init has non-finite values")
        return init.reshape((num_chains * b,) + event).clone()
    shape = (num_chains * b,) + event
    support = dist.support
    values = support_values(support, dtype=dtype, device=device)
    if values is not None:
        idx = torch.randint(values.numel(), shape, generator=generator, device=device)
        return values[idx]
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    # type checks, not identity: copies of torch's constraint singletons travel with pickled
    # distributions (e.g. to Ray workers)
    if type(base) is type(constraints.real):
        return (2.0 * u - 1.0) * INIT_RADIUS
    if isinstance(base, constraints.greater_than) and float(base.lower_bound) == 0.0:
        return torch.exp((2.0 * u - 1.0) * INIT_RADIUS)
    if isinstance(base, constraints.interval):
        lo, hi = float(base.lower_bound), float(base.upper_bound)
        return lo + (hi - lo) * u
    raise ValueError(
        f"no default initialisation for support {support}; pass init=tensor of shape "
        f"{(num_chains,) + event}"
    )


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


# ---------------------------------------------------------------------------------- driver core
def _as_tensor_field(value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.full((like.shape[0],), value, device=like.device)


def _fingerprint(**kw: Any) -> str:
    return json.dumps(_jsonable(kw), sort_keys=True)


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
    fingerprint: str,
) -> dict:
    """Run on flattened chains; returns flat arrays ``(C, D, ...)``."""
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

        params = dict(spec.default_params)
        ckpt = None
        if checkpoint is not None and os.path.exists(checkpoint):
            ckpt = torch.load(checkpoint, map_location=position.device, weights_only=False)
            if not isinstance(ckpt, dict) or ckpt.get("version") != _CHECKPOINT_VERSION:
                raise ValueError(f"{checkpoint} is not a gibbsebm checkpoint")
            if ckpt["fingerprint"] != fingerprint:
                raise ValueError(
                    f"checkpoint {checkpoint} belongs to a different run (method, options, "
                    "chains, draws or seed differ); delete it or pass another path"
                )
        if ckpt is None:
            state = spec.init(position, logdensity_fn)
            adapt_info: dict = {}
            if spec.adapt is not None:
                state, params, adapt_info = spec.adapt(
                    generator,
                    state,
                    logdensity_fn,
                    num_warmup,
                    params,
                    lambda i, st, info: bar.update("warmup", info),
                )
            else:
                for _ in range(num_warmup):
                    state, info = spec.step(generator, state, logdensity_fn, **params)
                    bar.update("warmup", info)
            start = 0
            buffers: dict[str, torch.Tensor] | None = None
            extra_buf: dict[str, torch.Tensor] | None = None
            draws = torch.empty(
                (position.shape[0], num_samples) + tuple(position.shape[1:]),
                dtype=position.dtype,
                device=position.device,
            )
            logd = None
        else:
            state, params, adapt_info = ckpt["state"], ckpt["params"], ckpt["adapt_info"]
            generator.set_state(ckpt["generator_state"])
            start = ckpt["k"]
            draws, buffers, extra_buf, logd = (
                ckpt["draws"],
                ckpt["stats"],
                ckpt["extra"],
                ckpt["logdensity"],
            )
            if bar.bar is not None:
                bar.bar.update(num_warmup + start * thin)

        def save(k: int) -> None:
            if checkpoint is None:
                return
            _atomic_save(
                {
                    "version": _CHECKPOINT_VERSION,
                    "fingerprint": fingerprint,
                    "k": k,
                    "state": state,
                    "params": params,
                    "adapt_info": adapt_info,
                    "generator_state": generator.get_state(),
                    "draws": draws,
                    "stats": buffers,
                    "extra": extra_buf,
                    "logdensity": logd,
                },
                checkpoint,
            )

        if ckpt is None:
            save(0)
        c = position.shape[0]
        for k in range(start, num_samples):
            for _ in range(thin):
                state, info = spec.step(generator, state, logdensity_fn, **params)
                bar.update("sample", info)
            if buffers is None:
                buffers = {}
                for name, value in info._asdict().items():
                    v = _as_tensor_field(value, state.position)
                    buffers[name] = torch.empty(
                        (c, num_samples) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
                    )
                logd = torch.empty(
                    (c, num_samples), dtype=state.logdensity.dtype, device=position.device
                )
                if spec.extra_draws is not None:
                    extra_buf = {}
                    for name, v in spec.extra_draws(state).items():
                        extra_buf[name] = torch.empty(
                            (c, num_samples) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
                        )
            draws[:, k] = state.position
            logd[:, k] = state.logdensity
            for name, value in info._asdict().items():
                buffers[name][:, k] = _as_tensor_field(value, state.position)
            if extra_buf is not None:
                for name, v in spec.extra_draws(state).items():
                    extra_buf[name][:, k] = v
            if checkpoint is not None and (k + 1) % checkpoint_every == 0 and k + 1 < num_samples:
                save(k + 1)
        if checkpoint is not None:
            save(num_samples)
        return {
            "draws": draws,
            "stats": buffers or {},
            "extra": extra_buf or {},
            "logdensity": logd
            if logd is not None
            else torch.empty((c, 0), dtype=position.dtype, device=position.device),
            "params": params,
            "adapt_info": adapt_info,
        }
    finally:
        bar.close()


def _unflatten(t: torch.Tensor, n: int, batch: tuple) -> torch.Tensor:
    """``(n * B, D, ...)`` -> ``(n, D, *batch, ...)``."""
    if not batch:
        return t
    rest = tuple(t.shape[2:])
    t = t.reshape((n,) + batch + (t.shape[1],) + rest)
    nb = len(batch)
    perm = (0, nb + 1) + tuple(range(1, nb + 1)) + tuple(range(nb + 2, t.dim()))
    return t.permute(perm).contiguous()


def _param_stat(value: Any, like: torch.Tensor) -> torch.Tensor | None:
    """A per-draw stat ``(C, D)`` from a step parameter (float, 0-dim or ``(C,)`` tensor)."""
    c, d = like.shape[0], like.shape[1]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return torch.full((c, d), float(value), dtype=like.dtype, device=like.device)
    if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
        v = value.detach().to(like.device)
        if v.dim() == 0:
            return v.expand(c, d).to(like.dtype).clone()
        if v.dim() == 1 and v.shape[0] == c:
            return v[:, None].expand(c, d).to(like.dtype).clone()
    return None


def _library_versions() -> dict[str, str]:
    import pyro

    from . import __version__

    out = {
        "gibbsebm": __version__,
        "torch": str(torch.__version__),
        "pyro": str(pyro.__version__),
        "numpy": str(np.__version__),
    }
    try:
        import arviz

        out["arviz"] = str(arviz.__version__)
    except ImportError:  # pragma: no cover - arviz is a dependency
        pass
    return out


def run_chains(
    dist: Any,
    method: str,
    position: torch.Tensor,
    generator: torch.Generator,
    *,
    num_samples: int,
    num_warmup: int,
    thin: int = 1,
    progress: bool | str = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    seed: int | None = None,
    **kernel_options: Any,
) -> Samples:
    """Run one block of chains from given positions with a given generator.

    This is :func:`sample` without the seeding and default initialisation: the building
    block for sharded runs (each shard with its own generator, see :func:`shard_seeds`),
    whose results :meth:`Samples.concatenate` joins.

    Parameters
    ----------
    dist : Gibbs
        Target distribution.
    method : str
        A name from :data:`gibbsebm.samplers.registry.METHODS`.
    position : Tensor
        ``(n, *event)`` for an unbatched distribution, ``(n, *batch, *event)`` otherwise.
    generator : torch.Generator
        Random stream (on ``dist``'s device).
    num_samples, num_warmup, thin, progress, checkpoint, checkpoint_every
        As in :func:`sample`.
    seed : int, optional
        Recorded in the result (and the checkpoint fingerprint) only.
    **kernel_options
        Passed to the sampler's ``make_spec``.

    Returns
    -------
    Samples
    """
    batch = tuple(dist.batch_shape)
    event = tuple(dist.event_shape)
    n = position.shape[0]
    if tuple(position.shape) != (n,) + batch + event:
        raise ValueError(
            f"position must have shape (n, *batch, *event) = (n, {batch}, {event}), got "
            f"{tuple(position.shape)}"
        )
    spec = get_spec(method, dist, **kernel_options)
    flat = position.reshape((n * _batch_size(dist),) + event)
    fp = _fingerprint(
        method=method,
        options=kernel_options,
        num_chains=n,
        num_samples=num_samples,
        num_warmup=num_warmup,
        thin=thin,
        seed=seed,
        batch=batch,
        event=event,
    )
    out = _run_flat(
        spec,
        flat_logdensity(dist),
        flat,
        generator,
        num_samples=num_samples,
        num_warmup=num_warmup,
        thin=thin,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        fingerprint=fp,
    )
    draws = out["draws"]
    c = draws.shape[0]
    stats: dict[str, torch.Tensor] = dict(out["stats"])
    logd = out["logdensity"]
    stats["logdensity"] = logd
    params = out["params"]
    if "step_size" not in stats:
        s = _param_stat(params.get("step_size"), logd)
        if s is not None:
            stats["step_size"] = s
    # per-chain beta of the flattened layout (chain, *batch)
    beta = getattr(dist, "beta", None)
    if isinstance(beta, torch.Tensor) and "beta" not in stats:
        b_flat = beta.detach().expand(batch).reshape(-1).to(logd.dtype) if batch else beta
        b_flat = b_flat.reshape(-1).repeat(c // max(1, b_flat.numel()))
        stats["beta"] = b_flat[:, None].expand(c, logd.shape[1]).clone()
    stats["energy"] = _energy_of_draws(dist, draws, logd, stats.get("beta"))
    return Samples(
        draws=_unflatten(draws, n, batch),
        stats={k: _unflatten(v, n, batch) for k, v in stats.items()},
        extra={k: _unflatten(v, n, batch) for k, v in out.get("extra", {}).items()},
        method=method,
        options=dict(kernel_options),
        seed=seed,
        num_warmup=num_warmup,
        thin=thin,
        batch_shape=batch,
        event_shape=event,
        adaptation=_tensor_or_json(out.get("adapt_info", {})),
        attrs={"library_versions": _library_versions()},
    )


def _energy_of_draws(
    dist: Any, draws: torch.Tensor, logd: torch.Tensor, beta: torch.Tensor | None
) -> torch.Tensor:
    """:math:`E(y) = -(\\log\\tilde p(y) - \\log b(y)) / \\beta` of every draw, ``(C, D)``."""
    if beta is None:
        return -logd
    ld = logd
    base = getattr(dist, "base", None)
    if base is not None and draws.numel():
        c, d = logd.shape
        batch = tuple(dist.batch_shape)
        n = c // max(1, _batch_size(dist))
        y = draws.reshape((n,) + batch + (d,) + tuple(dist.event_shape))
        nb = len(batch)
        perm = (0, nb + 1) + tuple(range(1, nb + 1)) + tuple(range(nb + 2, y.dim()))
        lb = base.log_prob(y.permute(perm))  # (n, D, *batch)
        if batch:
            lb = lb.permute((0,) + tuple(range(2, 2 + nb)) + (1,)).reshape(c, d)
        ld = ld - lb.reshape(c, d).to(ld.dtype)
    return -ld / beta.to(ld.dtype)


def sample(
    dist: Any,
    method: str | None = None,
    *,
    num_chains: int,
    num_samples: int,
    num_warmup: int,
    thin: int = 1,
    seed: int | None = None,
    init: torch.Tensor | None = None,
    progress: bool | str = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    executor: Any = None,
    **kernel_options: Any,
) -> Samples:
    """Draw MCMC samples from a Gibbs distribution with many chains in one tensor.

    Parameters
    ----------
    dist : Gibbs
        Target :math:`p_\\beta(y) \\propto b(y) e^{-\\beta E(y)}`; a batched distribution
        (conditional on several inputs, or a beta ladder) is sampled member by member with
        ``num_chains`` chains each.
    method : str, optional
        ``"ula"``, ``"mala"``, ``"hmc"``, ``"nuts"``, ``"pt"`` (with ``kernel=``), and for
        discrete y ``"gwg"``, ``"dmala"``, ``"metropolis"``, ``"block_gibbs"``. Default:
        ``"hmc"`` for continuous and ``"gwg"`` for discrete supports.
    num_chains : int
        Chains per batch member.
    num_samples : int
        Recorded draws per chain (after thinning).
    num_warmup : int
        Warmup (adaptation) iterations, discarded.
    thin : int
        Keep every ``thin``-th iteration.
    seed : int, optional
        Seed of the run's generator (see the module notes for how it maps to draws);
        ``None`` picks one and records it in ``Samples.seed``.
    init : Tensor, optional
        Initial positions ``(num_chains, *event)`` or ``(num_chains, *batch, *event)``.
        Default: uniform on ``(-2, 2)`` for real supports (as Stan), uniformly random states
        for finite discrete ones (see :func:`initial_positions`).
    progress : bool or "always"
        Progress bar (draws/s, acceptance): ``True`` shows it when stderr is a terminal,
        ``"always"`` forces it, ``False`` hides it.
    checkpoint : path, optional
        Checkpoint file; an existing file from the same call is resumed.
    checkpoint_every : int
        Recorded draws between checkpoints.
    executor : None, "local", "ray" or Executor
        ``None`` (default) runs here; otherwise the chains are split into shards run by
        :class:`gibbsebm.executors.LocalExecutor` or :class:`gibbsebm.RayExecutor` and merged
        (see :func:`gibbsebm.executors.run_sample`; ``checkpoint`` is then a directory).
    **kernel_options
        Options of the sampler (e.g. ``step_size``, ``num_steps``, ``dense_mass``,
        ``target_accept`` for ``hmc``).

    Returns
    -------
    Samples
        ``draws`` ``(num_chains, num_samples, *batch, *event)``, per-draw ``stats``, arviz
        conversion and summary.

    Raises
    ------
    ValueError
        On bad arguments (unknown method or options, non-positive counts, wrong ``init``).

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> s = gibbsebm.sample(d, "hmc", num_chains=8, num_samples=50, num_warmup=50, seed=0,
    ...                     progress=False)
    >>> s.draws.shape
    torch.Size([8, 50, 2])
    """
    if executor is not None:
        from .executors import run_sample

        return run_sample(
            dist,
            method,
            executor=executor,
            num_chains=num_chains,
            num_samples=num_samples,
            num_warmup=num_warmup,
            thin=thin,
            seed=seed,
            init=init,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            **kernel_options,
        )
    for name, v, lo in (
        ("num_chains", num_chains, 1),
        ("num_samples", num_samples, 0),
        ("num_warmup", num_warmup, 0),
        ("thin", thin, 1),
        ("checkpoint_every", checkpoint_every, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if method is None:
        method = "gwg" if getattr(dist, "is_discrete", False) else "hmc"
    device = _dist_device(dist)
    if seed is None and checkpoint is not None and os.path.exists(checkpoint):
        raise ValueError(
            "resuming a checkpoint needs the seed of the original run (Samples.seed / the "
            "seed you passed)"
        )
    if seed is None:
        seed = secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    flat = initial_positions(dist, num_chains, generator, init)
    position = flat.reshape((num_chains,) + tuple(dist.batch_shape) + tuple(dist.event_shape))
    return run_chains(
        dist,
        method,
        position,
        generator,
        num_samples=num_samples,
        num_warmup=num_warmup,
        thin=thin,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        seed=seed,
        **kernel_options,
    )
