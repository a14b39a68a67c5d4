"""Pyro's No-U-Turn Sampler on a Gibbs distribution, returned as the same :class:`Samples`.

``method="nuts"`` runs :class:`pyro.infer.NUTS` through :class:`pyro.infer.MCMC` with a
``potential_fn`` :math:`U(y) = -\\log\\tilde p(y)` built from the same ``Gibbs`` object (so
``nuts`` and ``hmc`` target exactly the same density), one chain after another (Pyro runs one
chain per process; here they run sequentially in this process). Each chain has its own
warmup: Pyro's windowed adaptation of a per-chain step size (dual averaging to
``target_accept``, default 0.8) and a diagonal (or, with ``dense_mass=True``, dense) mass
matrix. This is the reference path: correct and slow; use ``hmc`` for many chains.

Randomness: Pyro draws from torch's global generator. For chain ``c`` the driver draws a seed
from the run's generator and runs Pyro inside :func:`torch.random.fork_rng` seeded with it, so
the run is reproducible from ``seed`` and the caller's global random state is left untouched.

Per-draw statistics: ``acceptance_prob`` (NUTS's mean acceptance statistic of the tree),
``is_divergent``, ``is_accepted`` (the draw differs from the previous one),
``is_nonfinite`` (the draw's log-density is not finite; Pyro itself reports NaN energies
inside a tree as divergences) and the per-chain ``step_size``.

For a batched distribution each flattened chain targets its own member; its potential
evaluates the whole batch and keeps one member (simple, ``prod(batch)`` times the cost).

References
----------
.. [1] M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014.
.. [2] E. Bingham et al., "Pyro: Deep universal probabilistic programming", JMLR 20, 2019.
"""

from __future__ import annotations

import contextlib
import math
import operator
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .base import LogDensityFn, SamplerSpec
from .hmc import _positive, check_options

__all__ = ["NUTSState", "NUTSInfo", "init", "step", "make_spec"]


class NUTSState(NamedTuple):
    """``position`` ``(C, *event)`` and ``logdensity`` ``(C,)``."""

    position: torch.Tensor
    logdensity: torch.Tensor


class NUTSInfo(NamedTuple):
    """Per-chain diagnostics (all ``(C,)``)."""

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor


class _Progress(NamedTuple):
    acceptance_prob: torch.Tensor


def init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> NUTSState:
    """Initial state: the log-density at ``position``."""
    with torch.no_grad():
        return NUTSState(position.detach(), logdensity_fn(position).detach())


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _chain_potential(chain_logdensity: Callable[[torch.Tensor, int], torch.Tensor], c: int):
    def potential_fn(params: dict) -> torch.Tensor:
        return -chain_logdensity(params["y"], c)

    return potential_fn


def _seeds(generator: torch.Generator | None, n: int, device: torch.device) -> list[int]:
    return torch.randint(0, 2**62, (n,), generator=generator, device=device).tolist()


def _member_logdensity(logdensity_fn: LogDensityFn, dist: Any) -> Callable:
    batch = tuple(getattr(dist, "batch_shape", ())) if dist is not None else ()
    event = tuple(dist.event_shape) if dist is not None else None
    b = math.prod(batch)
    if b <= 1:

        def one(y: torch.Tensor, c: int) -> torch.Tensor:
            return logdensity_fn(y.unsqueeze(0))[0]

        return one

    def member(y: torch.Tensor, c: int) -> torch.Tensor:
        return dist.logdensity(y.expand(batch + event)).reshape(-1)[c % b]

    return member


def step(
    generator: torch.Generator | None,
    state: NUTSState,
    logdensity_fn: LogDensityFn,
    step_size: float = 0.1,
    max_tree_depth: int = 10,
    chain_logdensity: Callable | None = None,
) -> tuple[NUTSState, NUTSInfo]:
    """One NUTS transition per chain with a fixed step size and unit mass (no adaptation).

    Chains run one after another through Pyro's kernel (this is the one sampler with a Python
    loop over chains). ``chain_logdensity(y, c)`` evaluates chain ``c``'s log-density of a
    single ``y`` (default: ``logdensity_fn(y[None])[0]``).
    """
    from pyro.infer import NUTS

    y = state.position
    member = chain_logdensity or _member_logdensity(logdensity_fn, None)
    seeds = _seeds(generator, y.shape[0], y.device)
    new_pos, acc, div = [], [], []
    for c in range(y.shape[0]):
        kernel = NUTS(
            potential_fn=_chain_potential(member, c),
            step_size=step_size,
            adapt_step_size=False,
            adapt_mass_matrix=False,
            max_tree_depth=max_tree_depth,
        )
        kernel.initial_params = {"y": y[c].detach()}
        with _seeded(seeds[c], y.device), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            kernel.setup(0)
            out = kernel.sample({"y": y[c].detach()})
        new_pos.append(out["y"].detach())
        acc.append(float(kernel._mean_accept_prob))
        div.append(len(kernel._divergences) > 0)
        kernel.cleanup()
    pos = torch.stack(new_pos)
    with torch.no_grad():
        ld = logdensity_fn(pos)
    moved = (pos != y).reshape(y.shape[0], -1).any(1)
    info = NUTSInfo(
        torch.tensor(acc, dtype=y.dtype, device=y.device),
        moved,
        torch.tensor(div, device=y.device),
        ~torch.isfinite(ld),
    )
    return NUTSState(pos, ld), info


_OPTIONS = {"step_size", "max_tree_depth", "target_accept", "dense_mass", "adapt_mass_matrix"}


def make_spec(dist: Any, **options: Any) -> SamplerSpec:
    """:class:`SamplerSpec` for ``method="nuts"`` (Pyro's NUTS, chains run sequentially).

    Parameters
    ----------
    dist : Gibbs
        A distribution with a continuous support.
    step_size : float
        Initial step size (default 1.0, Pyro's).
    max_tree_depth : int
        Maximum tree depth (default 10).
    target_accept : float
        Target acceptance of Pyro's step-size adaptation (default 0.8).
    dense_mass : bool
        Adapt a dense mass matrix (Pyro's ``full_mass``).
    adapt_mass_matrix : bool
        Adapt the mass matrix during warmup (default True).
    """
    check_options(options, _OPTIONS, "nuts")
    if getattr(dist, "is_discrete", False):
        raise ValueError("method='nuts' needs a continuous support")
    for name in ("step_size", "target_accept"):
        _positive(name, options.get(name))
    step_size = float(options.get("step_size", 1.0))
    raw_depth = options.get("max_tree_depth", 10)
    try:
        depth = -1 if isinstance(raw_depth, bool) else operator.index(raw_depth)
    except TypeError:
        depth = -1
    if depth < 1:
        raise ValueError(f"max_tree_depth must be an integer >= 1, got {raw_depth!r}")
    target = float(options.get("target_accept", 0.8))
    dense = bool(options.get("dense_mass", False))
    adapt_mass = bool(options.get("adapt_mass_matrix", True))

    def run(generator, position, logdensity_fn, num_samples, num_warmup, thin, callback):
        from pyro.infer import MCMC, NUTS

        member = _member_logdensity(logdensity_fn, dist)
        c_total = position.shape[0]
        seeds = _seeds(generator, c_total, position.device)
        total = num_samples * thin
        draws, accs, divs, steps = [], [], [], []
        it = [0]
        for c in range(c_total):
            acc_c: list[float] = []
            div_c: list[bool] = []
            step_c: list[float] = []
            prev = {"mean": 0.0, "n": 0}

            def hook(kernel, params, stage, i, acc_c=acc_c, div_c=div_c, step_c=step_c, prev=prev):
                sampling = stage.startswith("Sample")
                if sampling:
                    n = kernel._t - kernel._warmup_steps
                    m = kernel._mean_accept_prob
                    a = n * m - (n - 1) * prev["mean"] if n > 1 else m
                    prev["mean"] = m
                    acc_c.append(min(1.0, max(0.0, a)))
                    div_c.append(bool(kernel._divergences) and kernel._divergences[-1] == n - 1)
                    step_c.append(float(kernel.step_size))
                callback(
                    it[0],
                    None,
                    _Progress(torch.tensor([acc_c[-1] if sampling else float("nan")])),
                )
                it[0] += 1

            kernel = NUTS(
                potential_fn=_chain_potential(member, c),
                step_size=step_size,
                adapt_step_size=num_warmup > 0,
                adapt_mass_matrix=adapt_mass and num_warmup > 0,
                full_mass=dense,
                target_accept_prob=target,
                max_tree_depth=depth,
            )
            mcmc = MCMC(
                kernel,
                num_samples=total,
                warmup_steps=num_warmup,
                initial_params={"y": position[c].detach()},
                disable_progbar=True,
                hook_fn=hook,
            )
            with _seeded(seeds[c], position.device):
                mcmc.run()
            y = mcmc.get_samples()["y"].detach()
            idx = slice(thin - 1, None, thin)
            draws.append(y[idx])
            accs.append(torch.tensor(acc_c, dtype=position.dtype)[idx])
            divs.append(torch.tensor(div_c, dtype=torch.bool)[idx])
            steps.append(torch.tensor(step_c, dtype=position.dtype)[idx])
        dev = position.device
        draws_t = torch.stack(draws).to(dev)  # (C, D, *event)
        d = draws_t.shape[1]
        event = tuple(position.shape[1:])
        with torch.no_grad():
            flat = draws_t.transpose(0, 1).reshape((d * c_total,) + event)
            logd = (
                logdensity_fn(flat).reshape(d, c_total).T.contiguous()
                if d
                else torch.empty((c_total, 0), dtype=position.dtype, device=dev)
            )
        prev_pos = torch.cat([position.detach().unsqueeze(1), draws_t[:, :-1]], 1)
        moved = (draws_t != prev_pos).reshape(c_total, d, -1).any(-1)
        stats = {
            "acceptance_prob": torch.stack(accs).to(dev),
            "is_accepted": moved,
            "is_divergent": torch.stack(divs).to(dev),
            "is_nonfinite": ~torch.isfinite(logd),
            "step_size": torch.stack(steps).to(dev),
        }
        return {
            "draws": draws_t,
            "stats": stats,
            "logdensity": logd,
            "params": {"step_size": stats["step_size"][:, -1] if d else None},
            "adapt_info": {"step_size": stats["step_size"][:, -1] if d else None},
        }

    def bound_step(generator, state, logdensity_fn, **params):
        return step(
            generator,
            state,
            logdensity_fn,
            chain_logdensity=_member_logdensity(logdensity_fn, dist),
            **params,
        )

    return SamplerSpec(
        name="nuts",
        init=init,
        step=bound_step,
        adapt=None,
        default_params={"step_size": step_size, "max_tree_depth": depth},
        run=run,
    )
