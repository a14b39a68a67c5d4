"""The warmup of parallel tempering (``method="pt"``), as the ``adapt`` of its spec.

The first half of the warmup runs the inner kernel's own warmup over all replicas; the
second half runs full PT steps and tunes the inner step size per temperature by dual
averaging (:func:`~gibbsebm.samplers.adaptation.step_size.dual_averaging_warmup`), with the
acceptance statistic of each temperature pooled over its chains (see the notes of
:mod:`gibbsebm.samplers.tempering`). :func:`gibbsebm.samplers.registry.get_spec` attaches it to
the spec that :func:`gibbsebm.samplers.tempering.build` assembles.

Schedule adaptation (Syed, Bouchard-Cote, Deligiannidis & Doucet 2022, Algorithm 4): the
second half is cut into rounds of doubling length (:func:`schedule_rounds`); after every round
but the last, the swap rejection rate :math:`r_i` of each pair of neighbouring temperatures,
pooled over the chains, gives the cumulative communication barrier
:math:`\\Lambda(\\beta_k) \\approx \\sum_{i<k} r_i` (:func:`communication_barrier`; Syed et
al.'s Theorem 3: :math:`r(\\beta, \\beta') = |\\Lambda(\\beta) - \\Lambda(\\beta')| +
O(|\\beta - \\beta'|^3)`), interpolated monotonically (piecewise linear in
:math:`\\log\\beta`), and the new ladder puts the temperatures at equal increments of it
(:func:`equal_barrier_ladder`), keeping the number of temperatures and both ends. Equal
rejection rates are the optimum of the round-trip rate for a given number of temperatures
(Syed et al., Sec. 5). The per-temperature step sizes are carried to the new temperatures by
the same interpolation of :math:`\\log\\epsilon`, and every replica's log density is evaluated
afresh at its new temperature. The last (longest) round runs on the final ladder and gives
the reported barrier estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..base import LogDensityFn
from ..tempering import PTState, ReplicaExchange, restart_counts
from .step_size import dual_averaging_warmup

__all__ = [
    "pt_adapt",
    "communication_barrier",
    "equal_barrier_ladder",
    "schedule_rounds",
    "MIN_ROUND_STEPS",
    "MAX_ROUNDS",
]

#: Fewest PT steps in a round of schedule adaptation: every pair of neighbours is proposed
#: every other step, so a round gives each pair 10 proposals per chain, and its pooled
#: rejection rate a standard error below :math:`0.5 / \\sqrt{10 C}` (0.04 with 16 chains).
MIN_ROUND_STEPS = 20
#: Most rounds of schedule adaptation (the longest, last one is half of the tuning phase;
#: Syed et al. 2022 find the ladder settled after a handful of rounds).
MAX_ROUNDS = 6
#: Rejection rate given to a pair that rejected nothing, so that the barrier is strictly
#: increasing and rungs in a region without rejections are spread evenly in log beta.
_REJECTION_FLOOR = 1e-3

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
    prec = search.precisions
    if prec is None:
        prec = torch.linalg.inv(search.covariances)
    m = search.num_modes
    # for the check of unexplored modes after sampling (gibbsebm.run; tempering.basin_labels)
    summary["basins"] = {
        "locations": search.locations.reshape(m, -1),
        "precisions": prec,
        "weights": search.weights,
    }
    return rx.spec.init(pos), summary


def _interp(xq: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of ``fp`` at ``xq`` (``xp`` increasing; clamped to the
    ends)."""
    i = torch.searchsorted(xp.contiguous(), xq.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = ((xq - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return f0 + w * (f1 - f0)


def communication_barrier(rejection: torch.Tensor) -> torch.Tensor:
    """Cumulative communication barrier at each temperature of a ladder, from its coldest.

    Parameters
    ----------
    rejection : Tensor
        ``(R - 1,)`` swap rejection rates of the neighbouring pairs ``(k, k + 1)`` of a
        decreasing ladder (NaN, for a pair never proposed, counts as no rejection).

    Returns
    -------
    Tensor
        ``(R,)``: :math:`\\Lambda_0 = 0` and :math:`\\Lambda_k = \\sum_{i<k} \\max(r_i, 10^{-3})`
        (Syed et al. 2022, Algorithm 4; the floor keeps it strictly increasing). The last
        entry estimates the global barrier :math:`\\Lambda`, the ladder-free measure of how
        hard the target is to reach from the hot end: a non-reversible ladder needs about
        :math:`2\\Lambda` temperatures and its round-trip rate is at most
        :math:`1 / (2 + 2\\Lambda)` per step.

    Example
    -------
    >>> communication_barrier(torch.tensor([0.2, 0.3, 0.0]))
    tensor([0.0000, 0.2000, 0.5000, 0.5010])
    """
    r = torch.nan_to_num(rejection, nan=0.0).clamp(min=_REJECTION_FLOOR, max=1.0)
    return torch.cat([r.new_zeros(1), r.cumsum(0)])


def equal_barrier_ladder(betas: torch.Tensor, rejection: torch.Tensor) -> torch.Tensor:
    """The ladder with the same ends and length whose temperatures sit at equal increments of
    the communication barrier estimated from ``rejection`` on ``betas``.

    Parameters
    ----------
    betas : Tensor
        ``(R,)`` the current ladder, decreasing.
    rejection : Tensor
        ``(R - 1,)`` its swap rejection rates (see :func:`communication_barrier`).

    Returns
    -------
    Tensor
        ``(R,)`` decreasing, ``betas[0]`` and ``betas[-1]`` kept exactly: the inverse of the
        barrier, interpolated piecewise linearly in :math:`\\log\\beta`, at
        :math:`k \\Lambda / (R - 1)`. Equal rejections return the ladder unchanged.

    Example
    -------
    >>> b = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    >>> equal_barrier_ladder(b, torch.tensor([0.1, 0.3], dtype=torch.float64))
    tensor([1.0000, 0.3969, 0.2500], dtype=torch.float64)
    """
    lam = communication_barrier(rejection.to(betas.dtype))
    levels = torch.linspace(0.0, 1.0, betas.numel(), dtype=lam.dtype, device=lam.device)
    new = _interp(levels * lam[-1], lam, betas.log()).exp()
    new[0], new[-1] = betas[0], betas[-1]
    return new


def schedule_rounds(num_steps: int) -> list[int]:
    """Lengths of the rounds of schedule adaptation over ``num_steps`` PT steps.

    ``K`` rounds doubling in length (each at least :data:`MIN_ROUND_STEPS`, at most
    :data:`MAX_ROUNDS`), summing to ``num_steps``; the last, the longest, is about half of
    them. ``[num_steps]`` (no adaptation) when fewer than 2 rounds fit.

    Example
    -------
    >>> schedule_rounds(250)
    [36, 71, 143]
    """
    k = min(MAX_ROUNDS, int(math.floor(math.log2(num_steps / MIN_ROUND_STEPS + 1.0))))
    if k < 2:
        return [num_steps]
    base = num_steps / (2**k - 1)
    lengths = [round(base * 2**i) for i in range(k - 1)]
    return lengths + [num_steps - sum(lengths)]


def _pooled_rejection(state: PTState) -> torch.Tensor:
    """``(R - 1,)`` swap rejection rate of each pair since the counts were last restarted,
    pooled over the chains (NaN for a pair never proposed)."""
    rec = state.record
    n = rec.swap_proposals.sum(0).to(rec.swap_prob_sum.dtype)
    return 1.0 - rec.swap_prob_sum.sum(0) / n


def _plan_rounds(rx: ReplicaExchange, num_steps: int) -> tuple[list[int], str | None]:
    """The rounds of the tuning phase and, when the ladder is not adapted, why not."""
    num_r = rx.betas.numel()
    rounds = schedule_rounds(num_steps) if num_steps > 0 else []
    if rx.adapt_schedule is False:
        return [num_steps], "adapt_schedule=False"
    if num_r < 3:
        return [num_steps], f"{num_r} temperatures: nothing to move"
    if rx.target_index != 0:
        return [num_steps], "the ladder has temperatures colder than the target"
    if len(rounds) < 2:
        return [num_steps], (
            f"{num_steps} tuning steps, fewer than the {3 * MIN_ROUND_STEPS} that two rounds "
            "need (num_warmup >= 2 * that)"
        )
    return rounds, None


def _schedule_summary(rounds: list[int], why_not: str | None, history: dict) -> dict:
    """``Samples.adaptation["schedule"]``: plain data and tensors."""
    if why_not is not None:
        return {"adapted": False, "reason": why_not}
    lam = communication_barrier(history["rejection"][-1])
    return {
        "adapted": True,
        "round_lengths": list(rounds),
        "betas_per_round": torch.stack(history["betas"]),
        "rejection_per_round": torch.stack(history["rejection"]),
        "round_trips_per_round": torch.stack(history["round_trips"]),
        "cumulative_barrier": lam,
        "barrier": lam[-1],
    }


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
        if tune and params.get("trajectory_length") is not None:
            # hmc: a trajectory length T needs one step size; with one step size per
            # temperature the number of leapfrog steps n = ceil(T / eps) is fixed instead
            eps = torch.as_tensor(params["step_size"]).reshape(-1)[0]
            n_steps = math.ceil(float(params["trajectory_length"]) / float(eps))
            params["num_steps"] = max(1, min(n_steps, int(params.get("max_num_steps", n_steps))))
            params["trajectory_length"] = None
            adapt_info["num_steps"] = params["num_steps"]
        per_beta = None
        if tune:
            ref = state.logdensity
            s0 = torch.as_tensor(params["step_size"], dtype=ref.dtype, device=ref.device)
            s0 = s0.reshape(-1, num_r).mean(0) if s0.numel() == c * num_r else s0.expand(num_r)
            per_beta = s0.clone()
        rounds, why_not = _plan_rounds(rx, num_warmup - n1)
        betas = ladder_b if state.betas is None else state.betas
        history: dict[str, list] = {"betas": [], "rejection": [], "round_trips": []}
        first = n1
        for k, length in enumerate(rounds):
            state = restart_counts(state)
            its = range(first, first + length)
            first += length
            if tune:
                state, per_beta, _ = dual_averaging_warmup(
                    generator,
                    state,
                    step,
                    None,
                    params,
                    its,
                    initial_step_size=per_beta,
                    target_accept=target_accept,
                    acceptance=lambda info: info.replica_acceptance_prob.mean(0),
                    broadcast=lambda s: s.repeat(c),
                    callback=callback,
                )
            else:
                for i in its:
                    state, info = step(generator, state, None, **params)
                    if callback is not None:
                        callback(i, state, info)
            if why_not is not None:
                break
            rejection = _pooled_rejection(state)
            history["betas"].append(betas)
            history["rejection"].append(rejection)
            history["round_trips"].append(state.record.round_trips.sum())
            if k + 1 < len(rounds):
                new = equal_barrier_ladder(betas, rejection)
                if per_beta is not None:
                    x_old, x_new = betas.log().flip(0), new.log().flip(0)
                    log_eps = _interp(x_new, x_old, per_beta.log().flip(0))
                    per_beta = log_eps.flip(0).exp()
                state = rx.with_betas(state, new)
                betas = state.betas
        if tune and num_warmup > n1:
            params["step_size"] = per_beta.repeat(c)
            adapt_info["step_size_per_beta"] = per_beta
        adapt_info["betas"] = betas
        adapt_info["schedule"] = _schedule_summary(rounds, why_not, history)
        return restart_counts(state), params, adapt_info

    return adapt
