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
from collections.abc import Callable
from typing import Any

import torch

from ..base import LogDensityFn
from ..integrators import IntegratorState, leapfrog
from ..metrics import Metric, dense_metric, diagonal_metric
from .chees import chees, halton
from .dual_averaging import dual_averaging
from .welford import welford
from .windows import build_schedule

__all__ = ["find_reasonable_step_size", "run_warmup", "pooled_accept_stat"]

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
    step's mean acceptance probability across chains crosses 1/2.

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
            break
        new = eps * (2.0**direction)
        if not math.isfinite(new) or new < 1e-12 or new > 1e6:
            break
        eps = new
        a = accept(eps)
    return eps


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
) -> tuple[Any, dict, dict]:
    """Run ``num_warmup`` adapting transitions; return ``(state, params, adapt_info)``.

    ``transition(generator, state, step_size, metric, num_steps) -> (state, info, extras)``
    with ``extras = (previous_position, proposal_position, proposal_momentum)``;
    ``step_size`` is in the kernel's own units; ``to_leapfrog``/``from_leapfrog`` convert it
    to and from a leapfrog step size (identity for HMC; :math:`\\sqrt{2\\tau}` for MALA) for
    the step-size heuristic.
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

    final_eps = float(da_final(da)) if (adapt_step_size and num_warmup > 0) else eps0
    params: dict[str, Any] = {"step_size": final_eps, "metric": metric}
    info_out: dict[str, Any] = {
        "step_size": final_eps,
        "inverse_mass": metric.inverse_mass,
        "num_metric_updates": n_metric_updates,
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
