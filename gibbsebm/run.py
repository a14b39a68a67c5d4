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
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.distributions import constraints

from ._json import to_jsonable
from .constraints import support_values
from .runtime.files import atomic_write_bytes
from .runtime.plan import Plan, Shard, resolve_seed, shard_seeds
from .runtime.transport import map_tensors
from .samplers.base import SamplerSpec
from .samplers.registry import get_spec
from .samples import Samples, _tensor_or_json

__all__ = [
    "Samples",
    "sample",
    "run_chains",
    "initial_positions",
    "shard_seeds",
    "flat_logdensity",
    "SamplePlan",
]

#: Stan's default initialisation: uniform on (-2, 2) in the unconstrained space.
INIT_RADIUS = 2.0
_CHECKPOINT_VERSION = 1


# ---------------------------------------------------------------------------------- helpers
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
    return json.dumps(to_jsonable(kw, nonfinite="keep", max_tensor_numel=16), sort_keys=True)


def _atomic_save(obj: Any, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(buf.getvalue(), path)


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
    seed = resolve_seed(seed, checkpoint)
    plan_args = dict(
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        thin=thin,
        seed=seed,
        init=init,
        kernel_options=kernel_options,
    )
    if executor is None:
        plan = SamplePlan(dist, method, **plan_args)
        (shard,) = plan.shards(1)
        return plan.run_shard(
            shard, progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every
        )
    from .runtime.executors import _check_progress, execute, resolve_executor

    _check_progress(progress)
    executor = resolve_executor(executor)
    get_spec(method, dist, **kernel_options)  # unknown method / options fail here, not remotely
    if init is not None:
        init = torch.as_tensor(init)
        event, batch = tuple(dist.event_shape), tuple(dist.batch_shape)
        if init.shape[:1] != (num_chains,):
            raise ValueError(
                f"init must have shape {(num_chains,) + event} or "
                f"{(num_chains,) + batch + event}, got {tuple(init.shape)}"
            )
    plan = SamplePlan(dist, method, **{**plan_args, "init": init})
    return execute(plan, executor, checkpoint=checkpoint, progress=progress)


def _samples_to(s: Samples, device: torch.device) -> Samples:
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    return dataclasses.replace(
        s,
        draws=s.draws.to(device),
        stats=map_tensors(s.stats, move),
        extra=map_tensors(s.extra, move),
        adaptation=map_tensors(s.adaptation, move),
    )


def _save_samples(s: Samples, path: str | os.PathLike) -> None:
    # attrs may hold str subclasses (torch.__version__ is a TorchVersion) that the safe
    # loader of Samples.load refuses; the JSON rendering makes them plain strings
    dataclasses.replace(s, attrs=to_jsonable(s.attrs, nonfinite="keep")).save(path)


def _tensor_digest(t: torch.Tensor | None) -> str | None:
    if t is None:
        return None
    import hashlib

    t = torch.as_tensor(t).detach().to("cpu").contiguous()
    h = hashlib.sha256(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class SamplePlan(Plan):
    """The chains of a sampling run as shards (see :mod:`gibbsebm.runtime.plan`).

    Shard ``k`` runs its block of chains as an ordinary in-process run seeded with the shard's
    seed (default initial positions drawn from that stream, or its slice of ``init``); each
    shard adapts its kernel on its own chains. :meth:`merge` concatenates the shards along the
    chain dimension (:meth:`Samples.concatenate`), so arviz export, ESS and R-hat see every
    chain.
    """

    kind = "sample"
    unit = "chains"
    progress_unit = "draw"

    def __init__(
        self,
        dist: Any,
        method: str,
        *,
        num_chains: int,
        num_samples: int,
        num_warmup: int,
        thin: int,
        seed: int,
        init: torch.Tensor | None,
        kernel_options: dict[str, Any],
    ) -> None:
        self.dist = dist
        self.method = method
        self.num_items = num_chains
        self.num_samples = num_samples
        self.num_warmup = num_warmup
        self.thin = thin
        self.seed = seed
        self.init = init
        self.kernel_options = dict(kernel_options)
        self.progress_desc = method

    def work(self, shard: Shard) -> int:
        return shard.size * (self.num_warmup + self.num_samples * self.thin)

    def run_shard(
        self,
        shard: Shard,
        *,
        progress: bool | str = False,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
    ) -> Samples:
        dist = self.dist
        generator = torch.Generator(device=_dist_device(dist))
        generator.manual_seed(shard.seed)
        init = self.init
        if init is not None and self.num_items != shard.size:
            init = init[shard.start : shard.start + shard.size].clone()
        flat = initial_positions(dist, shard.size, generator, init)
        position = flat.reshape((shard.size,) + tuple(dist.batch_shape) + tuple(dist.event_shape))
        return run_chains(
            dist,
            self.method,
            position,
            generator,
            num_samples=self.num_samples,
            num_warmup=self.num_warmup,
            thin=self.thin,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            seed=shard.seed,
            **self.kernel_options,
        )

    def merge(self, results: Sequence[Samples], run_info: dict[str, Any] | None = None) -> Samples:
        if run_info is None:
            (only,) = results
            return only
        home = self.home_device()
        merged = Samples.concatenate([_samples_to(r, home) for r in results])
        return dataclasses.replace(
            merged,
            options=dict(self.kernel_options),
            seed=self.seed,
            attrs={**merged.attrs, **run_info},
        )

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "sample",
            "method": self.method,
            "options": self.kernel_options,
            "num_chains": self.num_items,
            "num_samples": self.num_samples,
            "num_warmup": self.num_warmup,
            "thin": self.thin,
            "seed": self.seed,
            "batch_shape": list(self.dist.batch_shape),
            "event_shape": list(self.dist.event_shape),
            "init": _tensor_digest(self.init),
        }

    def transport_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"the distribution": self.dist}
        parts.update({f"kernel option {k!r}": v for k, v in self.kernel_options.items()})
        if self.init is not None:
            parts["init"] = self.init
        return parts

    def home_device(self) -> torch.device:
        return _dist_device(self.dist)

    def result_to_host(self, result: Samples) -> Samples:
        return _samples_to(result, torch.device("cpu"))

    def save_result(self, result: Samples, path: str | os.PathLike) -> None:
        _save_samples(result, path)

    def load_result(self, path: str | os.PathLike) -> Samples:
        return Samples.load(path)
