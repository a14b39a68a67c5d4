"""The warmup loop shared by HMC and MALA: step size, mass matrix and trajectory length.

Per warmup iteration (all statistics pooled across chains, one set of parameters for all
chains):

1. one transition of the kernel with the current step size (and, for HMC, a jittered number
   of leapfrog steps from the current trajectory length);
2. dual averaging of the log step size towards ``target_accept``, fed with the cross-chain
   mean acceptance probability (MALA) or its harmonic mean over non-divergent chains (HMC,
   as ChEES-HMC does: the harmonic mean is dominated by the chains that accept least);
3. ChEES gradient step on the log trajectory length (HMC only), from the first slow window
   on: in the initial fast buffer the chains are still travelling to the typical set, and
   their ChEES gradients, orders of magnitude above the stationary ones, would dominate
   Adam's second moment and freeze :math:`\\log T` for hundreds of iterations (this made
   the length collapse to one leapfrog step on a logistic regression). With one chain the
   positions are centred on the chain's running mean instead of the cross-chain mean;
4. inside a slow window (:func:`~gibbsebm.samplers.adaptation.windows.build_schedule`), the
   new positions of all chains enter a pooled Welford estimate; at the end of the window it
   becomes the inverse mass matrix (diagonal, or dense with ``dense=True``), the step size is
   re-initialised by the Hoffman & Gelman heuristic and dual averaging restarts, as in Stan;
   ChEES restarts too, from the current length or :math:`\\pi/2` in the new metric's units
   if that is longer (fresh Adam second moment and iterate average, so the final length
   averages the last window only).

The loop reads two scalars to the host per iteration (step size and trajectory length: the
number of leapfrog steps is a Python int); sampling after warmup has no host syncs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..base import LogDensityFn, logdensity_and_grad, where_chain
from ..integrators import IntegratorState, leapfrog
from ..metrics import Metric, dense_metric, diagonal_metric
from .chees import chees, halton
from .dual_averaging import dual_averaging
from .welford import welford
from .windows import build_schedule

__all__ = ["find_reasonable_step_size", "run_warmup", "pooled_accept_stat", "final_step_size"]

#: Floor of the trajectory length when ChEES restarts after a metric update. The new inverse
#: mass matrix is the estimated covariance, so in its units a Gaussian target is whitened and
#: every coordinate has period :math:`2\pi`; an exact trajectory's ChEES, :math:`d \sin^2 t`,
#: peaks at a quarter period :math:`\pi / 2`. Restarting from there rather than from the
#: one-step length of the first phase saves the :math:`\log(\pi/(2\epsilon)) / 0.025`
#: iterations Adam needs to climb (its step is at most about the learning rate), which a
#: short warmup does not have; ChEES then moves it either way.
_RESTART_MIN_LENGTH = math.pi / 2

#: Hoffman & Gelman (2014), Algorithm 4: double or halve until the one-step acceptance
#: probability crosses 1/2; capped so a flat or broken density cannot loop forever.
_MAX_HEURISTIC_ITERS = 100

#: Dual averaging's averaged iterate is trusted only after this many updates since its last
#: (re)start. Its first iterates overshoot to about :math:`10\,\epsilon_0` (``mu`` is
#: :math:`\log 10\epsilon_0`) and the average after 1 or 2 updates is such an iterate:
#: on a unit Gaussian, 1 warmup iteration ended at step size 9.8 and 25 (with a 2-iteration
#: final buffer) at 5.4, and no chain moved afterwards. With fewer updates the final step size
#: is the smaller of the average and the restart value (the step-size heuristic's, or the
#: given one), so adaptation never ends above where it started.
MIN_AVERAGING_ITERS = 10

#: Fewer dual-averaging updates than this after the last restart get a ``UserWarning``.
MIN_ADAPT_ITERS = 5


def pooled_accept_stat(
    acceptance_prob: torch.Tensor, is_divergent: torch.Tensor, statistic: str
) -> torch.Tensor:
    """Cross-chain acceptance statistic: ``"mean"``, or ``"harmonic"``.

    The harmonic mean runs over the non-divergent chains (BlackJAX's ChEES rule): a chain
    with acceptance 0 among them pulls it to 0, divergent ones (NaN energies, energy errors
    above the threshold) are left out; with no non-divergent chain it is 0.
    """
    if statistic == "mean":
        return torch.nan_to_num(acceptance_prob, nan=0.0).mean()
    ok = ~is_divergent
    a = torch.nan_to_num(acceptance_prob, nan=0.0)
    inv = torch.where(ok, 1.0 / a, torch.zeros_like(a))  # 1/0 = inf -> harmonic mean 0
    n_ok = ok.sum().to(a.dtype)
    hm = n_ok / inv.sum()
    return torch.where(n_ok > 0, torch.nan_to_num(hm, nan=0.0), torch.zeros_like(hm))


def find_reasonable_step_size(
    generator: torch.Generator | None,
    position: torch.Tensor,
    logdensity: torch.Tensor,
    grad: torch.Tensor,
    logdensity_fn: LogDensityFn,
    metric: Metric,
    initial: float,
) -> float:
    """Hoffman & Gelman (2014) Algorithm 4, pooled: the leapfrog step size at which one
    step's mean acceptance probability across chains crosses 1/2, taken on the accepting side
    (the largest tried step whose mean acceptance is above 1/2 when doubling).

    Draws momenta from ``generator``; chains do not move.
    """
    eps = float(initial)

    def accept(e: float) -> float:
        p = metric.sample_momentum(generator, position)
        s = leapfrog(logdensity_fn, metric, IntegratorState(position, p, logdensity, grad), e, 1)
        delta = (s.logdensity - metric.kinetic_energy(s.momentum)) - (
            logdensity - metric.kinetic_energy(p)
        )
        a = torch.exp(torch.nan_to_num(delta, nan=-math.inf).clamp(max=0.0))
        return float(a.mean())

    a = accept(eps)
    direction = 1.0 if a > 0.5 else -1.0
    for _ in range(_MAX_HEURISTIC_ITERS):
        if not (a > 0.5 if direction > 0 else a < 0.5):
            # doubling crossed 1/2: return the last step on the accepting side (Algorithm 4
            # returns the first one past it, 3.2 on a unit Gaussian where leapfrog is
            # unstable above 2, and a warmup too short to correct it froze every chain)
            return eps / 2.0 if direction > 0 else eps
        new = eps * (2.0**direction)
        if not math.isfinite(new) or new < 1e-12 or new > 1e6:
            break
        eps = new
        a = accept(eps)
    return eps


def final_step_size(da: Any, da_final: Callable, num_warmup: int) -> float:
    """The step size that warmup ends with: dual averaging's averaged iterate, or, after fewer
    than :data:`MIN_AVERAGING_ITERS` updates since its last restart (or a non-finite average),
    the smaller of it and the restart value; a ``UserWarning`` below :data:`MIN_ADAPT_ITERS`."""
    avg = float(da_final(da))
    restart = math.exp(float(da.mu) - math.log(10.0))
    if not math.isfinite(avg) or avg <= 0.0:
        return restart
    if da.t >= MIN_AVERAGING_ITERS:
        return avg
    if da.t < MIN_ADAPT_ITERS:
        warnings.warn(
            f"num_warmup={num_warmup} leaves {da.t} step-size adaptation iteration(s) after the "
            f"last restart (at least {MIN_ADAPT_ITERS} needed, {MIN_AVERAGING_ITERS} to average); "
            f"using step size {min(avg, restart):.3g}, not tuned: increase num_warmup",
            UserWarning,
            stacklevel=2,
        )
    return min(avg, restart)


def reinitialize_stuck(
    generator: torch.Generator | None, state: Any, accepted: torch.Tensor
) -> tuple[Any, torch.Tensor]:
    """Copy the state of randomly chosen chains that accepted a move onto those that accepted
    none (``accepted``: per-chain counts over the last stretch of warmup), as Stan users do by
    hand with stuck chains. Returns ``(state, stuck)``; with no stuck chain, or no chain that
    moved, the state is returned unchanged and no random number is drawn."""
    stuck = accepted == 0
    n_stuck = int(stuck.sum())
    n_ok = stuck.numel() - n_stuck
    if n_stuck == 0 or n_ok == 0:
        return state, stuck
    healthy = torch.nonzero(~stuck).flatten()
    pick = torch.randint(0, n_ok, (stuck.numel(),), generator=generator, device=healthy.device)
    idx = torch.where(stuck, healthy[pick], torch.arange(stuck.numel(), device=stuck.device))
    c = stuck.numel()
    fields = [
        f[idx] if torch.is_tensor(f) and f.dim() > 0 and f.shape[0] == c else f for f in state
    ]
    return type(state)(*fields), stuck


def reevaluate_chains(state: Any, logdensity_fn: LogDensityFn, mask: torch.Tensor) -> Any:
    """``state`` with the log density and its gradient of the chains in ``mask`` ``(C,)``
    evaluated afresh at their positions (no evaluation when ``mask`` is all ``False``).

    :func:`reinitialize_stuck` copies a whole chain state, cached log density included; that
    is the right value only when every chain has the same log density. Parallel tempering
    warms up its ``C * R`` replicas as chains of different temperatures, so a replica copied
    from another temperature kept a log density of the wrong :math:`\\beta`, and every later
    accept/reject and swap ratio read that stale value (the replica could stay stuck with it
    through the whole run)."""
    if not bool(mask.any()):
        return state
    ld, grad = logdensity_and_grad(logdensity_fn, state.position)
    return state._replace(
        logdensity=torch.where(mask, ld.to(state.logdensity.dtype), state.logdensity),
        logdensity_grad=where_chain(
            mask, grad.to(state.logdensity_grad.dtype), state.logdensity_grad
        ),
    )


#: A chain is *far out* when its log density is below the cross-chain median by more than
#: ``FAR_OUT_LOGDENSITY`` times the larger of the event size and the chains' robust spread of
#: log densities (1.4826 times their median absolute deviation), and its score, in the current
#: metric's units (:math:`g^\top M^{-1} g`), is more than ``FAR_OUT_SCORE`` times the
#: cross-chain median. At stationarity :math:`-\log p` has standard deviation about
#: :math:`\sqrt{d/2}` (a Gaussian) and :math:`E[g^\top M^{-1} g] = d` in whitened units, so
#: both margins are far beyond what chains in the typical set reach; requiring both keeps a
#: chain in a broad, lower mode (smaller score) or in a narrow, higher one (higher density).
FAR_OUT_LOGDENSITY = 10.0
FAR_OUT_SCORE = 100.0
#: Fewest chains for a median to stand for the bulk.
FAR_OUT_MIN_CHAINS = 8


def far_out_chains(state: Any, metric: Metric) -> torch.Tensor:
    """Chains ``(C,)`` whose log density is far below and whose score is far above the bulk's
    (:data:`FAR_OUT_LOGDENSITY`, :data:`FAR_OUT_SCORE`); all ``False`` with fewer than
    :data:`FAR_OUT_MIN_CHAINS` chains. Still travelling in from a far-out start, such chains
    accept little, stretch the pooled variance estimate and make the shared step size small."""
    ld = state.logdensity
    c = ld.shape[0]
    if c < FAR_OUT_MIN_CHAINS:
        return torch.zeros(c, dtype=torch.bool, device=ld.device)
    d = state.position[0].numel()
    ok = torch.isfinite(ld)
    ldf = torch.where(ok, ld, torch.full_like(ld, -math.inf))
    med = ldf.median()
    mad = 1.4826 * (ldf - med).abs().median()
    margin = FAR_OUT_LOGDENSITY * torch.clamp(torch.nan_to_num(mad, nan=0.0), min=float(d))
    score = 2.0 * metric.kinetic_energy(state.logdensity_grad)
    score = torch.nan_to_num(score, nan=math.inf)
    return (ldf < med - margin) & (score > FAR_OUT_SCORE * score.median())


def _metric_from(cov: torch.Tensor, dense: bool, like: torch.Tensor) -> Metric:
    event_shape = like.shape[1:]
    if dense:
        return dense_metric(cov.to(like.dtype))
    return diagonal_metric(cov.to(like.dtype).reshape(event_shape))


def run_warmup(
    generator: torch.Generator | None,
    state: Any,
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    transition: Callable,
    step_size: float | None,
    metric: Metric,
    to_leapfrog: Callable[[float], float],
    from_leapfrog: Callable[[float], float],
    target_accept: float,
    accept_statistic: str,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense: bool = False,
    num_steps: int | None = None,
    trajectory_length: float | None = None,
    adapt_trajectory_length: bool = False,
    jitter: bool = False,
    max_num_steps: int = 1000,
    windows: tuple[int, int, int] = (75, 25, 50),
    callback: Callable | None = None,
    reinitialize: bool = True,
) -> tuple[Any, dict, dict]:
    """Run ``num_warmup`` adapting transitions; return ``(state, params, adapt_info)``.

    ``transition(generator, state, step_size, metric, num_steps) -> (state, info, extras)``
    with ``extras = (previous_position, proposal_position, proposal_momentum)``;
    ``step_size`` is in the kernel's own units; ``to_leapfrog``/``from_leapfrog`` convert it
    to and from a leapfrog step size (identity for HMC; :math:`\\sqrt{2\\tau}` for MALA) for
    the step-size heuristic.

    With ``reinitialize`` (default), a chain that accepted no move between two checks (the
    end of the initial buffer and of every slow window) restarts from a randomly chosen chain
    that did (:func:`reinitialize_stuck`), and so does a chain that is far out of the bulk
    (:func:`far_out_chains`; counted in ``far_out_per_chain`` as well). ``adapt_info`` holds
    ``reinitialized_chains`` (how many restarts), ``reinitialized_per_chain`` ``(C,)`` and
    ``zero_acceptance_chains`` ``(C,)``: the chains that accepted nothing since the last check
    before the end (over the whole warmup when it has no slow window, and then nothing is
    restarted).
    """
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    pos = state.position

    def heuristic(start: float, st: Any, m: Metric) -> float:
        eps = find_reasonable_step_size(
            generator,
            st.position,
            st.logdensity,
            st.logdensity_grad,
            logdensity_fn,
            m,
            to_leapfrog(start),
        )
        return from_leapfrog(eps)

    find_initial = step_size is None
    eps0 = 0.1 if step_size is None else float(step_size)
    if adapt_step_size and find_initial and num_warmup > 0:
        eps0 = heuristic(eps0, state, metric)
    da_init, da_update, da_final = dual_averaging()
    ref = pos.new_tensor(eps0)
    da = da_init(ref)
    schedule = build_schedule(num_warmup, *windows) if adapt_mass_matrix else []
    w_init, w_update, w_final = welford(dense)
    d = pos[0].numel()
    wf = w_init(d, pos)
    ends = {stop for _, stop in schedule}
    in_window = [False] * num_warmup
    for start, stop in schedule:
        for i in range(start, stop):
            in_window[i] = True

    use_traj = trajectory_length is not None or adapt_trajectory_length
    if use_traj:
        t_init = trajectory_length if trajectory_length is not None else to_leapfrog(eps0)
        c_init, c_update, c_final = chees()
        ch = c_init(pos.new_tensor(float(t_init)))
        # ChEES starts with the first slow window: during the initial fast buffer the chains
        # are still travelling to the typical set, their ChEES gradients are not the
        # stationary ones and are orders of magnitude larger, and through Adam's second
        # moment they would freeze log T for hundreds of iterations afterwards
        first = build_schedule(num_warmup, *windows)
        chees_start = first[0][0] if first else 0
    n_metric_updates = 0
    run_sum, run_n = torch.zeros_like(pos[0]), 0
    # stuck chains: a chain that accepted nothing since the last check (the end of the initial
    # buffer and of every slow window) restarts from a randomly chosen chain that moved
    # and at the end of warmup (the chains that accepted nothing in the final buffer)
    checks = set()
    if reinitialize and schedule:
        checks = {schedule[0][0], num_warmup} | ends
    accepted = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    n_reinit = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    n_far = torch.zeros_like(n_reinit)
    for i in range(num_warmup):
        if use_traj:
            eps_t, len_t = torch.stack([da.log_step_size.exp(), ch.log_length.exp()]).tolist()
        else:
            eps_t = float(da.log_step_size.exp()) if adapt_step_size else eps0
            len_t = None
        if not adapt_step_size:
            eps_t = eps0
        u = halton(i + 1)
        if len_t is not None:
            eff = len_t * u if (jitter or adapt_trajectory_length) else len_t
            steps = min(max(1, math.ceil(eff / to_leapfrog(eps_t))), max_num_steps)
        elif num_steps is not None:
            steps = max(1, math.ceil(u * num_steps)) if jitter else num_steps
        else:
            steps = 1
        state, info, extras = transition(generator, state, eps_t, metric, steps)
        if adapt_step_size:
            stat = pooled_accept_stat(info.acceptance_prob, info.is_divergent, accept_statistic)
            da = da_update(da, stat, target_accept)
        if use_traj and adapt_trajectory_length and i >= chees_start:
            x0, x1, p1 = extras
            center = None
            if x0.shape[0] == 1:
                run_sum, run_n = run_sum + x0[0], run_n + 1
                center = run_sum / run_n
            ch = c_update(
                ch,
                x0,
                x1,
                metric.velocity(p1),
                info.acceptance_prob,
                info.is_divergent,
                u,
                to_leapfrog(eps_t),
                max_num_steps,
                steps * to_leapfrog(eps_t),
                center=center,
            )
        accepted = accepted + info.is_accepted.to(torch.long)
        if (i + 1) in checks:
            far = far_out_chains(state, metric)
            n_far = n_far + far.to(torch.long)
            state, stuck = reinitialize_stuck(
                generator, state, torch.where(far, torch.zeros_like(accepted), accepted)
            )
            state = reevaluate_chains(state, logdensity_fn, stuck)
            n_reinit = n_reinit + stuck.to(torch.long)
            if i + 1 < num_warmup:
                accepted = torch.zeros_like(accepted)
        if in_window[i]:
            wf = w_update(wf, state.position)
        if (i + 1) in ends:
            metric = _metric_from(w_final(wf), dense, pos)
            n_metric_updates += 1
            wf = w_init(d, pos)
            if adapt_step_size:
                eps_now = float(da.log_step_size.exp())
                eps_now = heuristic(eps_now, state, metric)
                da = da_init(pos.new_tensor(eps_now))
            if use_traj and adapt_trajectory_length:
                # new metric, new geometry: restart Adam's second moment (still dominated
                # by the large gradients of earlier phases), the iterate average and the
                # one-chain centre from the current length, as dual averaging restarts
                ch = c_init(ch.log_length.exp().clamp(min=_RESTART_MIN_LENGTH))
                run_sum, run_n = torch.zeros_like(pos[0]), 0
        if callback is not None:
            callback(i, state, info)

    final_eps = (
        final_step_size(da, da_final, num_warmup) if (adapt_step_size and num_warmup > 0) else eps0
    )
    params: dict[str, Any] = {"step_size": final_eps, "metric": metric}
    info_out: dict[str, Any] = {
        "step_size": final_eps,
        "inverse_mass": metric.inverse_mass,
        "num_metric_updates": n_metric_updates,
        "reinitialized_chains": int(n_reinit.sum()),
        "reinitialized_per_chain": n_reinit,
        "far_out_per_chain": n_far,
        "zero_acceptance_chains": accepted == 0,
    }
    if use_traj:
        length = (
            float(c_final(ch))
            if adapt_trajectory_length and num_warmup > 0
            else float(ch.log_length.exp())
        )
        lf = to_leapfrog(final_eps)
        length = min(max(length, lf), max_num_steps * lf)
        params["trajectory_length"] = length
        info_out["trajectory_length"] = length
    return state, params, info_out
