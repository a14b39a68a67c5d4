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

Checkpoints. With ``checkpoint=path`` the driver writes, atomically (temporary file, fsync,
:func:`os.replace`, fsync of the folder), the sampler state, the generator state, the tuned
parameters and the draws so far, with a SHA-256 checksum and the run's identity (see
:mod:`gibbsebm._run_loop`): at the start of the warmup, after it, every ``checkpoint_every``
recorded draws and on Ctrl-C. Calling :func:`sample` again with the same arguments resumes
from the file, and the result equals that of an uninterrupted run draw for draw; other
arguments (``beta``, the energy's parameters or code, method, options, dtype, ...) raise
:class:`~gibbsebm.errors.CheckpointMismatchError` naming what differs, and a damaged file
raises :class:`~gibbsebm.errors.CorruptFileError`. An interrupted adaptive warmup restarts
from its beginning (deterministically, with a warning). Checkpoints hold plain data only and
are read with ``torch.load(weights_only=True)``: a crafted file cannot run code.

Threads. Batched chains make few, large tensor operations, so intra-op threads help only when
the cores are free. On small or shared CPUs, oversubscribed BLAS/OpenMP threads spin-wait:
measured here on 2 shared cores, a ``(32, 10) @ (10, 10)`` matmul took 5 us with
``torch.set_num_threads(1)`` and 250 us with two threads, and a whole HMC run was 4x slower.
Set ``torch.set_num_threads`` to the number of cores you really have to yourself.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import _validation
from ._json import to_jsonable
from ._run_init import (
    _batch_size,
    _dist_device,
    checked_start,
    flat_logdensity,
    initial_positions,
    unconstrained,
)
from ._run_loop import _run_flat, run_identity
from .runtime.plan import Plan, Shard, resolve_seed, shard_seeds, tensor_digest
from .runtime.transport import map_tensors
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
    _init_redraws: torch.Tensor | None = None,
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
        Recorded in the result (and the checkpoint's run identity) only.
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
    flat = position.reshape((n * _batch_size(dist),) + event)
    if _init_redraws is None:
        # explicit positions: checked (support, energy shape, finite start), never redrawn
        flat, _init_redraws = checked_start(
            dist, flat, None, need_grad=_needs_grad(method, kernel_options)
        )
    target = dist  # the chains' identity (checkpoints) is the constrained target's
    # a constrained continuous support (positive, interval) is sampled in u = T^{-1}(y)
    # with the log-Jacobian as base measure; the draws are mapped back with T
    reparam = unconstrained(dist)
    to_constrained = None
    if reparam is not None:
        dist, to_constrained, to_unconstrained = reparam
        flat = to_unconstrained(flat)
        if not bool(torch.isfinite(flat).all()):
            raise ValueError(
                f"a starting position is on the boundary of the support {target.support} "
                "(it maps to an infinite unconstrained coordinate): start inside it"
            )
    spec = get_spec(method, dist, **kernel_options)
    identity = functools.partial(
        run_identity,
        target,
        flat,
        method=method,
        options=kernel_options,
        num_chains=n,
        num_samples=num_samples,
        num_warmup=num_warmup,
        thin=thin,
        seed=seed,
        batch_shape=batch,
        event_shape=event,
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
        identity=identity,
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
    d = logd.shape[1]
    stats["init_redraws"] = _init_redraws.to(logd.device)[:, None].expand(c, d).clone()
    stuck = _stuck_chains(draws, stats)
    stats["stuck_chains"] = stuck[:, None].expand(c, d).clone()
    # stuck chains are reported by the run's one SamplingWarning (Samples.diagnose)
    basins = (out.get("adapt_info") or {}).get("modes", {}).get("basins")
    if method == "pt" and basins is not None:
        stats.update(_mode_visits(draws, basins))
    if to_constrained is not None:
        draws = to_constrained(draws)
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


#: Fewest recorded draws over which a chain without an accepted move is reported as stuck.
STUCK_MIN_DRAWS = 10

_GRADIENT_METHODS = ("ula", "mala", "hmc", "nuts")


def _needs_grad(method: str, options: dict[str, Any]) -> bool:
    if method == "pt":
        return options.get("kernel") in _GRADIENT_METHODS
    return method in _GRADIENT_METHODS


def _mode_visits(draws: torch.Tensor, basins: dict) -> dict[str, torch.Tensor]:
    """``basin`` ``(C, D)``: the found mode whose basin holds each target draw of ``pt`` (-1:
    none) and ``unvisited_modes`` ``(C, D)``: found modes with due but no visits (checked
    by ``pt_unexplored_mode``; see :func:`gibbsebm.samplers.tempering.basin_labels`)."""
    from .samplers.tempering import basin_labels, unexplored_modes

    dev = draws.device
    lab = basin_labels(draws, basins["locations"].to(dev), basins["precisions"].to(dev))
    missed = unexplored_modes(lab, basins["weights"].to(dev))
    return {"basin": lab, "unvisited_modes": missed.expand(lab.shape).clone()}


def _stuck_chains(draws: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(C,)`` bool: chains with no accepted move over the recorded draws.

    Judged only with at least :data:`STUCK_MIN_DRAWS` recorded draws (a healthy chain with
    acceptance 0.65 has zero accepted moves in 10 draws with probability 3e-5).

    From the kernel's ``is_accepted`` where it reports one (over the draws' iterations), else
    from the draws themselves (a chain whose every draw equals its first).
    """
    c, d = draws.shape[0], draws.shape[1]
    if d < STUCK_MIN_DRAWS:
        return torch.zeros(c, dtype=torch.bool, device=draws.device)
    acc = stats.get("is_accepted")
    if (
        isinstance(acc, torch.Tensor)
        and acc.dtype == torch.bool
        and tuple(acc.shape[:2])
        == (
            c,
            d,
        )
    ):
        moved = acc.reshape(c, -1).any(-1)
    else:
        moved = (draws != draws[:, :1]).reshape(c, -1).any(-1)
    return ~moved


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
    warn: bool = True,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    **kernel_options: Any,
) -> Samples:
    """Draw MCMC samples from a Gibbs distribution with many chains in one tensor.

    Parameters
    ----------
    dist : Gibbs or Pyro model
        Target :math:`p_\\beta(y) \\propto b(y) e^{-\\beta E(y)}`; a batched distribution
        (conditional on several inputs, or a beta ladder) is sampled member by member with
        ``num_chains`` chains each. A Pyro model (any callable that is not a Gibbs) is
        sampled over its unconstrained latent sites, all chains in one vectorized model call
        (:class:`gibbsebm.interop.pyro.PyroModelPotential`); ``Samples.sites`` then holds
        each site's draws ``(chains, draws, *site_shape)`` in the constrained space.
    method : str, optional
        ``"ula"``, ``"mala"``, ``"hmc"``, ``"nuts"``, ``"pt"`` (with ``kernel=``), and for
        discrete y ``"gwg"``, ``"dmala"``, ``"metropolis"``, ``"block_gibbs"``. Default:
        ``"hmc"`` for continuous and ``"gwg"`` for discrete supports. A constrained
        continuous support (``positive``, ``greater_than``, ``less_than``, ``interval``,
        coordinatewise) is sampled in ``u = T^{-1}(y)``, ``T = biject_to(support)``, with
        the log-Jacobian as an untempered base measure (as Stan and Pyro do; see
        :func:`gibbsebm._run_init.unconstrained`); the draws are returned in ``y`` and
        ``stats["logdensity"]`` is that of ``u``. Other constrained supports are refused.
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
        for finite discrete ones (see :func:`initial_positions`); ``method="pt"`` on a
        continuous target then moves the chains to the modes :func:`gibbsebm.find_modes`
        finds (``init_from_modes``, see :mod:`gibbsebm.samplers.tempering`).
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
    warn : bool
        After the run, check the draws as Stan does (R-hat, bulk and tail ESS, divergences,
        tree depth, E-BFMI, non-finite proposals, stuck chains: `Samples.diagnose()`) and
        issue one `gibbsebm.SamplingWarning` listing every problem with its figure.
        ``False`` skips the checks.
    model_args, model_kwargs
        Arguments of a Pyro model.
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
    >>> s = gibbsebm.sample(d, "hmc", num_chains=8, num_samples=500, num_warmup=200, seed=0,
    ...                     progress=False)
    >>> s.draws.shape
    torch.Size([8, 500, 2])
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
    if callable(dist) and not hasattr(dist, "logdensity"):  # a Pyro model (issue 14)
        from .interop.pyro import PyroModelPotential

        pot = PyroModelPotential(dist, model_args, model_kwargs)
        if method == "exchange":
            from .samplers.exchange import memory_problem, sample_exchange

            if thin != 1 or checkpoint is not None or executor is not None:
                raise ValueError(
                    "method 'exchange' runs in process without thinning or checkpoints: "
                    "thin, checkpoint and executor are not supported"
                )
            seed = resolve_seed(seed, None)
            out = sample_exchange(pot, num_chains=num_chains, num_samples=num_samples,
                                  num_warmup=num_warmup, init=init, **kernel_options,
                                  generator=torch.Generator().manual_seed(seed))  # fmt: skip
            out = Samples(draws=out["draws"], stats=out["stats"], method="exchange",
                          options=dict(kernel_options), seed=seed, num_warmup=num_warmup,
                          event_shape=(pot.dim,), adaptation=out["adaptation"],
                          attrs={"exact_auxiliary": out["exact_auxiliary"],
                                 "auxiliary": out["auxiliary"],
                                 "auxiliary_check": out["auxiliary_check"]},
                          sites=pot.constrain(out["draws"]))  # fmt: skip
            # the checks of every other method, and the auxiliary chains' memory
            return _warned(out, memory_problem(out.attrs["auxiliary_check"])) if warn else out
        opts = dict(num_chains=num_chains, num_samples=num_samples, num_warmup=num_warmup)
        s = sample(pot.as_gibbs(), method, **opts, thin=thin, seed=seed, init=init,
                   progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                   executor=executor, warn=warn, **kernel_options)  # fmt: skip
        return dataclasses.replace(s, sites=pot.constrain(s.draws))
    total = num_warmup + num_samples * thin
    if total > _validation.MAX_ITERATIONS:
        raise ValueError(
            f"num_warmup + num_samples * thin = {total} iterations per chain exceeds the limit "
            f"gibbsebm._validation.MAX_ITERATIONS = {_validation.MAX_ITERATIONS}; raise it "
            "there if you really mean it"
        )
    size = (
        num_chains
        * _batch_size(dist)
        * int(np.prod(tuple(getattr(dist, "event_shape", ()))))
        * (num_samples + 1)
    )
    if size > _validation.MAX_DRAW_ELEMENTS:
        raise ValueError(
            f"num_chains * prod(batch) * prod(event) * (num_samples + 1) = {size} values exceeds "
            f"gibbsebm._validation.MAX_DRAW_ELEMENTS = {_validation.MAX_DRAW_ELEMENTS} (the "
            "draws would not fit in memory); raise it there if you really mean it"
        )
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
        out = plan.run_shard(
            shard, progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every
        )
        return _warned(out) if warn else out
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
    out = execute(plan, executor, checkpoint=checkpoint, progress=progress)
    return _warned(out) if warn else out


def _warned(samples: Samples, extra: list | tuple = ()) -> Samples:
    """Issue one :class:`~gibbsebm.diagnostics.SamplingWarning` for the run's problems (and the
    method's ``extra`` ones), if any."""
    from .diagnostics import warn_problems

    warn_problems(samples.diagnose() + list(extra), stacklevel=3)
    return samples


def _samples_to(s: Samples, device: torch.device) -> Samples:
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    return dataclasses.replace(
        s,
        draws=s.draws.to(device),
        stats=map_tensors(s.stats, move),
        extra=map_tensors(s.extra, move),
        adaptation=map_tensors(s.adaptation, move),
        sites=None if s.sites is None else map_tensors(s.sites, move),
    )


def _save_samples(s: Samples, path: str | os.PathLike) -> None:
    # attrs may hold str subclasses (torch.__version__ is a TorchVersion) that the safe
    # loader of Samples.load refuses; the JSON rendering makes them plain strings
    dataclasses.replace(s, attrs=to_jsonable(s.attrs, nonfinite="keep")).save(path)


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
        # default starts with a non-finite log density or gradient are redrawn; explicit
        # ones are an error naming the chains
        flat, redraws = checked_start(
            dist,
            flat,
            generator if init is None else None,
            num_chains=shard.size,
            need_grad=_needs_grad(self.method, self.kernel_options),
        )
        position = flat.reshape((shard.size,) + tuple(dist.batch_shape) + tuple(dist.event_shape))
        opts = self.kernel_options
        if init is None and self.method == "pt":  # default start: the modes find_modes finds
            opts = {"init_from_modes": True, **opts}
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
            _init_redraws=redraws,
            **opts,
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
            "init": tensor_digest(self.init),
            # beta, dtype, device kind and digests of the energy's parameters and code
            "target": run_identity(self.dist, None),
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
