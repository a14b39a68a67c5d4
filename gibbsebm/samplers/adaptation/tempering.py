"""The warmup of parallel tempering (``method="pt"``), as the ``adapt`` of its spec.

The first half of the warmup runs the inner kernel's own warmup over all replicas; the
second half runs full PT steps and tunes the inner step size per temperature by dual
averaging (:func:`~gibbsebm.samplers.adaptation.step_size.dual_averaging_warmup`), with the
acceptance statistic of each temperature pooled over its chains (see the notes of
:mod:`gibbsebm.samplers.tempering`). :func:`gibbsebm.samplers.registry.get_spec` attaches it to
the spec that :func:`gibbsebm.samplers.tempering.build` assembles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..base import LogDensityFn
from ..tempering import PTState, ReplicaExchange, restart_counts
from .step_size import dual_averaging_warmup

__all__ = ["pt_adapt"]

#: Starts of the mode search behind the default start (:func:`gibbsebm.find_modes`'s default;
#: its saturation rounds add more while some basin was reached by a single start).
MODE_SEARCH_STARTS = 256


def _start_at_modes(
    rx: ReplicaExchange, generator: torch.Generator | None, state: PTState
) -> tuple[PTState, dict]:
    """Chains restarted at the modes :func:`gibbsebm.find_modes` finds, in proportion to their
    local masses (:func:`gibbsebm.modes.initial_positions`); every replica of a chain starts
    at the chain's point. Returns the new state and the search's summary (plain data); when
    the search fails (no finite mode) the given start is kept and the summary says why."""
    from ...modes import find_modes, initial_positions

    c = state.position.shape[0]
    try:
        search = find_modes(rx.target, num_starts=MODE_SEARCH_STARTS, generator=generator)
    except (ValueError, RuntimeError) as err:  # torch.linalg errors are RuntimeErrors
        return state, {"num_modes": 0, "error": f"{type(err).__name__}: {err}"}
    pos = initial_positions(rx.target, c, generator=generator, search=search)
    pos = pos.to(dtype=state.position.dtype, device=state.position.device)
    summary = search.describe()
    summary["allocation"] = "local mass"
    return rx.spec.init(pos), summary


def pt_adapt(rx: ReplicaExchange) -> Callable[..., tuple[PTState, dict, dict]]:
    """The ``adapt(generator, state, logdensity_fn, num_warmup, params, callback)`` of the
    parallel-tempering kernel ``rx``."""
    inner, ladder_b, ld_flat, wrap = rx.inner, rx.betas, rx.logdensity_fn, rx.wrap
    step, target_accept, num_r = rx.spec.step, rx.target_accept, ladder_b.numel()

    def adapt(
        generator: torch.Generator | None,
        state: PTState,
        logdensity_fn: LogDensityFn | None,
        num_warmup: int,
        params: dict,
        callback: Callable | None = None,
    ) -> tuple[PTState, dict, dict]:
        """Mode start (optional), inner warmup (first half), then PT steps with
        per-temperature step sizes."""
        params = dict(params)
        adapt_info: dict = {"betas": ladder_b}
        if rx.init_from_modes:
            state, adapt_info["modes"] = _start_at_modes(rx, generator, state)
        n1 = num_warmup // 2 if inner.adapt is not None else 0
        if n1 > 0:

            def cb(i: int, st: Any, inf: Any) -> None:
                if callback is not None:
                    callback(i, wrap(st, state.swap_parity, state.record), inf)

            inner_state, params, inner_adapt_info = inner.adapt(
                generator, state.inner, ld_flat, n1, params, cb
            )
            adapt_info["inner"] = inner_adapt_info
            state = wrap(inner_state, state.swap_parity, state.record)
        c = state.position.shape[0]
        tune = (
            rx.per_beta_step_size
            and target_accept is not None
            and params.get("step_size") is not None
        )
        if not tune:
            for i in range(n1, num_warmup):
                state, info = step(generator, state, None, **params)
                if callback is not None:
                    callback(i, state, info)
            return restart_counts(state), params, adapt_info
        if params.get("trajectory_length") is not None:
            # hmc: a trajectory length T needs one step size; with one step size per
            # temperature the number of leapfrog steps n = ceil(T / eps) is fixed instead
            eps = torch.as_tensor(params["step_size"]).reshape(-1)[0]
            n_steps = math.ceil(float(params["trajectory_length"]) / float(eps))
            params["num_steps"] = max(1, min(n_steps, int(params.get("max_num_steps", n_steps))))
            params["trajectory_length"] = None
            adapt_info["num_steps"] = params["num_steps"]
        ref = state.logdensity
        s0 = torch.as_tensor(params["step_size"], dtype=ref.dtype, device=ref.device)
        s0 = s0.reshape(-1, num_r).mean(0) if s0.numel() == c * num_r else s0.expand(num_r)
        state, per_beta, _ = dual_averaging_warmup(
            generator,
            state,
            step,
            None,
            params,
            range(n1, num_warmup),
            initial_step_size=s0.clone(),
            target_accept=target_accept,
            acceptance=lambda info: info.replica_acceptance_prob.mean(0),
            broadcast=lambda s: s.repeat(c),
            callback=callback,
        )
        if num_warmup > n1:
            params["step_size"] = per_beta.repeat(c)
            adapt_info["step_size_per_beta"] = per_beta
        return restart_counts(state), params, adapt_info

    return adapt
