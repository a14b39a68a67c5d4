"""Trajectory-length adaptation by ChEES (Hoffman, Radul & Sountsov 2021).

ChEES, the *change in the estimator of the expected square*, of one HMC transition from
:math:`y` to the proposal :math:`y'` is

.. math::

    \\mathrm{ChEES} = \\tfrac14 \\, \\mathbb E\\big[(\\|y' - \\bar y'\\|^2 - \\|y - \\bar y\\|^2)^2\\big],

estimated across chains (the means :math:`\\bar y`, :math:`\\bar y'` are the cross-chain mean
and the acceptance-weighted mean of the proposals). With the jittered trajectory
:math:`t = u T` its per-chain gradient with respect to :math:`\\log T` is

.. math::

    g = u\\, T\\, (\\|y' - \\bar y'\\|^2 - \\|y - \\bar y\\|^2)\\,(y' - \\bar y')^\\top v',

where :math:`v' = M^{-1} p'` is the velocity at the end of the trajectory. The chains'
gradients are averaged with weights equal to their acceptance probabilities (divergent
transitions get weight 0), and :math:`\\log T` moves by an Adam step with no momentum
(:math:`\\beta_1 = 0`, :math:`\\beta_2 = 0.95`, learning rate 0.025: TensorFlow Probability's
``GradientBasedTrajectoryLengthAdaptation`` defaults ``adaptation_rate=0.025``,
``averaged_sq_grad_adaptation_rate=0.05``), each update clipped to :math:`\\pm 0.35` in log
space as in TFP and BlackJAX. :math:`T` is kept below ``max_num_steps * step_size``
(``max_num_steps=1000``, TFP's ``max_leapfrog_steps``). The value used after
warmup is the iterate average of :math:`\\log T` with weights :math:`t^{-\\kappa}`,
:math:`\\kappa = 0.75`, the averaging that dual averaging uses for the step size.

Trajectory lengths are jittered, :math:`t_i = u_i T`, with :math:`u_i` the base-2 Halton
(van der Corput) sequence (:func:`~gibbsebm.samplers.jitter.halton`, a kernel-level block
re-exported here), a quasi-random choice that the ChEES paper recommends over i.i.d.
uniform jitter; the same :math:`u_i` serves all chains at iteration :math:`i`, so every chain
runs the same number of leapfrog steps (no masking, full SIMD width).

Pooling the criterion across chains assumes one trajectory length (and one step size) shared
by all chains, which is what :func:`gibbsebm.sample` does.

References
----------
.. [1] M. D. Hoffman, A. Radul and P. Sountsov, "An adaptive-MCMC scheme for setting
   trajectory lengths in Hamiltonian Monte Carlo", AISTATS 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..jitter import halton

__all__ = ["ChEESState", "chees", "halton"]


class ChEESState(NamedTuple):
    """``log_length`` (current), ``log_length_avg``, ``sq_grad_avg`` (Adam's second moment), ``t``."""

    log_length: torch.Tensor
    log_length_avg: torch.Tensor
    sq_grad_avg: torch.Tensor
    t: int


def chees(
    learning_rate: float = 0.025,
    beta2: float = 0.95,
    max_update: float = 0.35,
    kappa: float = 0.75,
    criterion: str = "chees_rate",
) -> tuple[Callable, Callable, Callable]:
    """ChEES trajectory-length adaptation as an ``(init, update, final)`` triple.

    Parameters
    ----------
    learning_rate, beta2, max_update : float
        Adam step on :math:`\\log T` (with :math:`\\beta_1 = 0`) and its clip.
    kappa : float
        Iterate-averaging exponent of the final :math:`\\log T`.
    criterion : {"chees_rate", "chees"}
        ``"chees"`` maximises ChEES itself; ``"chees_rate"`` (default) maximises ChEES per
        unit of (jittered) trajectory length, TFP's ``chees_rate_criterion``, i.e. per
        gradient evaluation. Why the rate: for a standard Gaussian in :math:`d` dimensions
        an exact trajectory gives :math:`\\mathrm{ChEES}(t) = d \\sin^2 t`; under the jitter
        :math:`t = uT` its average :math:`d(\\tfrac12 - \\sin(2T)/(4T))` is nearly flat beyond
        :math:`T \\approx 2`, so the plain criterion drifts to long, costly trajectories,
        while the rate peaks near :math:`T \\approx 2`.

    Returns
    -------
    init : callable
        ``init(trajectory_length: Tensor) -> ChEESState``.
    update : callable
        ``update(state, previous, proposal, velocity, acceptance_prob, is_divergent, jitter,
        step_size, max_num_steps, actual_length=None, center=None) -> ChEESState``;
        positions ``(C, *event)``, ``jitter`` is :math:`u`, ``actual_length`` the
        integration time the leapfrog steps really covered (``ceil(u T / eps) * eps``;
        default :math:`uT`). ``center`` (shape ``event``) replaces both cross-chain means
        by an outside estimate of :math:`E[y]`: needed with one chain, whose cross-chain
        mean is the chain itself and makes the gradient exactly zero (the warmup passes the
        running mean of the chain's positions since the last restart).
    final : callable
        ``final(state) -> Tensor``: the averaged trajectory length.

    Examples
    --------
    >>> import torch
    >>> init, update, final = chees()
    >>> float(final(init(torch.tensor(1.0))))
    1.0
    """

    if criterion not in ("chees", "chees_rate"):
        raise ValueError(f"criterion must be 'chees' or 'chees_rate', got {criterion!r}")

    def init(trajectory_length: torch.Tensor) -> ChEESState:
        log_t = torch.log(torch.as_tensor(trajectory_length))
        return ChEESState(log_t, log_t.clone(), torch.zeros_like(log_t), 0)

    def update(
        state: ChEESState,
        previous: torch.Tensor,
        proposal: torch.Tensor,
        velocity: torch.Tensor,
        acceptance_prob: torch.Tensor,
        is_divergent: torch.Tensor,
        jitter: float,
        step_size: torch.Tensor | float,
        max_num_steps: int,
        actual_length: float | None = None,
        center: torch.Tensor | None = None,
    ) -> ChEESState:
        c = previous.shape[0]
        x0 = previous.reshape(c, -1)
        x1 = proposal.reshape(c, -1)
        v1 = velocity.reshape(c, -1)
        # one row sum instead of two isfinite().all(1) passes over (C, d) (a NaN or inf entry
        # makes the sum non-finite; a finite row whose sum overflows is left out as well),
        # and the (C, d) selections only when some chain is left out: the ChEES update took
        # more time than the HMC transition on a 100-D Gaussian with 4096 chains
        finite = torch.isfinite(x1.sum(1) + v1.sum(1)) & ~is_divergent
        w = torch.where(finite, acceptance_prob, torch.zeros_like(acceptance_prob))
        if not bool(finite.all()):
            x1 = torch.where(finite[:, None], x1, torch.zeros_like(x1))
            v1 = torch.where(finite[:, None], v1, torch.zeros_like(v1))
        w_sum = w.sum()
        if center is None:
            x0c = x0 - x0.mean(0)
            x1c = x1 - (w[:, None] * x1).sum(0) / (w_sum + 1e-20)
        else:
            # one chain: cross-chain means are the chain itself (zero gradient); centre on an
            # outside estimate of E[y] (the running mean of the warmup positions)
            c0 = center.reshape(1, -1).to(x0.dtype)
            x0c, x1c = x0 - c0, x1 - c0
        diff_sq = (x1c * x1c).sum(1) - (x0c * x0c).sum(1)
        # d ChEES_i / dt at the end of the trajectory
        dc_dt = diff_sq * (x1c * v1).sum(1)
        # the nominal time u T moves with log T at rate u T; the integrator runs
        # ceil(u T / eps) steps, i.e. an actual time t >= u T that the cost is proportional to
        nominal = jitter * state.log_length.exp()
        actual = nominal if actual_length is None else actual_length
        if criterion == "chees":
            g = nominal * dc_dt
        else:
            # d (ChEES_i / t) / d log T = (u T / t) (dChEES_i/dt - ChEES_i / t)
            g = (nominal / actual) * (dc_dt - 0.25 * diff_sq * diff_sq / actual)
        grad = (w * g).sum() / (w_sum + 1e-20)
        t = state.t + 1
        sq = beta2 * state.sq_grad_avg + (1.0 - beta2) * grad * grad
        sq_hat = sq / (1.0 - beta2**t)
        step = learning_rate * grad / (sq_hat.sqrt() + 1e-20)
        step = step.clamp(-max_update, max_update)
        log_t = state.log_length + step
        log_eps = torch.log(torch.as_tensor(step_size, dtype=log_t.dtype, device=log_t.device))
        # only an upper clip here: a floor at one step would let the large step sizes that
        # dual averaging explores right after a restart drag T up; a trajectory always has
        # at least one leapfrog step anyway
        log_t = torch.minimum(log_t, log_eps + math.log(max_num_steps))
        # a non-finite update (every chain divergent) keeps the previous value
        ok = torch.isfinite(log_t)
        log_t = torch.where(ok, log_t, state.log_length)
        sq = torch.where(ok, sq, state.sq_grad_avg)
        weight = t ** (-kappa)
        log_avg = weight * log_t + (1.0 - weight) * state.log_length_avg
        return ChEESState(log_t, log_avg, sq, t)

    def final(state: ChEESState) -> torch.Tensor:
        return state.log_length_avg.exp() if state.t else state.log_length.exp()

    return init, update, final
