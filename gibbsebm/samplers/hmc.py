"""Hamiltonian Monte Carlo with a leapfrog integrator, batched over chains.

One transition: draw :math:`p \\sim \\mathcal N(0, M)`, integrate ``L`` leapfrog steps of size
:math:`\\epsilon` (:func:`~gibbsebm.samplers.integrators.leapfrog`), accept the end point with
probability :math:`\\min(1, e^{-\\Delta H})`, :math:`H = -\\log\\tilde p(y) + K(p)`
(Neal 2011). A proposal whose log-density, gradient or kinetic energy is NaN/inf is rejected
and flagged ``is_nonfinite``; a transition is *divergent* when it is non-finite or its energy
error :math:`\\Delta H` exceeds 1000 (Stan's threshold).

Warmup (``adapt``, attached to this kernel's spec by
:func:`gibbsebm.samplers.registry.get_spec` from
:mod:`gibbsebm.samplers.adaptation.hamiltonian`, used by :func:`gibbsebm.sample`) tunes, with statistics pooled across chains:

* the step size by dual averaging (Hoffman & Gelman 2014) towards a harmonic-mean acceptance
  of ``target_accept`` (default 0.651, the asymptotically optimal HMC acceptance of Beskos et
  al. 2013, as in ChEES-HMC);
* a diagonal (default) or dense (``dense_mass=True``) inverse mass matrix from Welford
  estimates over Stan's windows;
* the trajectory length by ChEES (Hoffman, Radul & Sountsov 2021), with Halton-jittered
  lengths, unless ``num_steps`` is given. The default criterion is ChEES per unit of
  integration time (TFP's ``chees_rate_criterion``; see
  :func:`gibbsebm.samplers.adaptation.chees.chees` for why). ChEES targets second moments:
  on a 100-D Gaussian with the adapted diagonal metric it ends near :math:`T \approx 2.1`
  to 2.3 (whitened units; 16 or 256 chains, 200 warmup iterations) at step size 0.47 to
  0.50, near the jittered optimum 1.79 of the exact flow; a fixed-``T`` scan here gave the
  best ESS of :math:`y^2` per gradient (0.20 at :math:`T = 1.25`, 0.19 at 1.8, 0.13 at
  2.5), while the ESS of the *mean* keeps growing with :math:`T` (anti-correlated draws of
  a Gaussian), so pass ``trajectory_length=`` if only means matter.

**The step size, mass matrix and trajectory length are shared by all chains** (pooled ChEES
assumes a shared trajectory; a shared step size keeps one leapfrog count for the batch). For
a batched distribution whose members differ a lot in scale (e.g. a wide beta ladder), sample
the members separately or use ``method="pt"``.

References
----------
.. [1] R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011.
.. [2] M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014.
.. [3] A. Beskos, N. Pillai, G. Roberts, J. M. Sanz-Serna and A. Stuart, "Optimal tuning of
   the hybrid Monte Carlo algorithm", Bernoulli 19, 2013.
.. [4] M. D. Hoffman, A. Radul and P. Sountsov, "An adaptive-MCMC scheme for setting
   trajectory lengths in Hamiltonian Monte Carlo", AISTATS 2021.

Examples
--------
A hand-written loop over the kernel layer:

>>> import torch
>>> from gibbsebm.samplers import hmc
>>> fn = lambda y: -0.5 * (y ** 2).sum(-1)
>>> g = torch.Generator().manual_seed(0)
>>> state = hmc.init(torch.zeros(8, 2), fn)
>>> for _ in range(10):
...     state, info = hmc.step(g, state, fn, step_size=0.3, num_steps=5)
>>> state.position.shape, info.is_accepted.shape
(torch.Size([8, 2]), torch.Size([8]))
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from .base import LogDensityFn, SamplerSpec, logdensity_and_grad, mh_accept, select_chains
from .integrators import IntegratorState, leapfrog
from .jitter import halton
from .metrics import Metric, as_metric

__all__ = [
    "HMCState",
    "HMCInfo",
    "HamiltonianOptions",
    "init",
    "step",
    "parse_options",
    "make_spec",
    "DIVERGENCE_THRESHOLD",
]

#: Energy error beyond which a transition counts as divergent (Stan's value).
DIVERGENCE_THRESHOLD = 1000.0
#: Cap on leapfrog steps per transition (TFP's ``max_leapfrog_steps`` default).
MAX_NUM_STEPS = 1000


class HMCState(NamedTuple):
    """Chain state: ``position`` ``(C, *event)``, ``logdensity`` ``(C,)``, its gradient, and
    the transition counter (indexes the Halton jitter sequence)."""

    position: torch.Tensor
    logdensity: torch.Tensor
    logdensity_grad: torch.Tensor
    iteration: int = 0


class HMCInfo(NamedTuple):
    """Per-chain diagnostics of one transition (all ``(C,)``)."""

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor
    energy_error: torch.Tensor
    num_steps: torch.Tensor


def init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> HMCState:
    """Initial state: evaluates the log-density and its gradient at ``position``."""
    ld, g = logdensity_and_grad(logdensity_fn, position)
    return HMCState(position.detach(), ld, g, 0)


def _num_steps(
    iteration: int,
    step_size: Any,
    num_steps: int,
    trajectory_length: float | None,
    jitter: bool,
    max_num_steps: int,
) -> int:
    u = halton(iteration + 1) if jitter else 1.0
    if trajectory_length is not None:
        if isinstance(step_size, torch.Tensor):
            # per-chain step sizes (e.g. per temperature in parallel tempering): the step
            # count is shared, so take it from the smallest step (one host read per step)
            step_size = float(step_size.min())
        n = math.ceil(u * trajectory_length / step_size)
    else:
        n = math.ceil(u * num_steps)
    return min(max(1, n), max_num_steps)


def hamiltonian_proposal(
    generator: torch.Generator | None,
    state: Any,
    logdensity_fn: LogDensityFn,
    metric: Metric,
    step_size: float | torch.Tensor,
    num_steps: int,
) -> tuple[IntegratorState, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh momentum, ``num_steps`` leapfrog steps and the MH decision, per chain.

    The shared core of HMC and MALA (MALA is its one-step case). ``state`` needs
    ``position``, ``logdensity`` and ``logdensity_grad``. Returns
    ``(end, log_ratio, nonfinite, accepted, acceptance_prob)``, with
    ``log_ratio = -(H1 - H0)``, :math:`H = -\\log p + K`, set to ``-inf`` where the proposal's
    log-density or kinetic energy is not finite (a rejected, counted move).
    """
    p0, k0 = metric.sample_momentum_and_kinetic(generator, state.position)
    end = leapfrog(
        logdensity_fn,
        metric,
        IntegratorState(state.position, p0, state.logdensity, state.logdensity_grad),
        step_size,
        num_steps,
    )
    k1 = metric.kinetic_energy(end.momentum)
    log_ratio = (end.logdensity - k1) - (state.logdensity - k0)
    nonfinite = ~(torch.isfinite(end.logdensity) & torch.isfinite(k1))
    log_ratio = torch.where(nonfinite, torch.full_like(log_ratio, -math.inf), log_ratio)
    accepted, acc_prob = mh_accept(generator, log_ratio)
    return end, log_ratio, nonfinite, accepted, acc_prob


def transition(
    generator: torch.Generator | None,
    state: HMCState,
    logdensity_fn: LogDensityFn,
    step_size: float | torch.Tensor,
    num_steps: int,
    metric: Metric,
    divergence_threshold: float = DIVERGENCE_THRESHOLD,
    extras: bool = True,
) -> tuple[HMCState, HMCInfo, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """One HMC transition with exactly ``num_steps`` leapfrog steps.

    Returns the new state, its info, and ``(previous, proposal, proposal_momentum)`` (used by
    the ChEES adaptation), or ``None`` in its place with ``extras=False``: then the
    proposal's buffers become the new state's (the accepted chains keep them and the rejected
    rows are copied in, :func:`~gibbsebm.samplers.base.select_chains`), which saves a pass
    over ``(C, *event)`` per state field.
    """
    end, log_ratio, nonfinite, accepted, acc_prob = hamiltonian_proposal(
        generator, state, logdensity_fn, metric, step_size, num_steps
    )
    energy_error = -log_ratio
    divergent = nonfinite | (energy_error > divergence_threshold)
    new = HMCState(
        # with extras the proposal position is returned too: select into a copy of it
        select_chains(accepted, end.position, state.position, reuse_new=not extras),
        torch.where(accepted, end.logdensity, state.logdensity),
        select_chains(accepted, end.logdensity_grad, state.logdensity_grad, reuse_new=True),
        state.iteration + 1,
    )
    info = HMCInfo(
        acc_prob,
        accepted,
        divergent,
        nonfinite,
        energy_error,
        torch.full_like(log_ratio, num_steps, dtype=torch.int64),
    )
    return new, info, ((state.position, end.position, end.momentum) if extras else None)


def step(
    generator: torch.Generator | None,
    state: HMCState,
    logdensity_fn: LogDensityFn,
    step_size: float | torch.Tensor = 0.1,
    num_steps: int = 10,
    metric: Metric | None = None,
    trajectory_length: float | None = None,
    jitter: bool = False,
    max_num_steps: int = MAX_NUM_STEPS,
    divergence_threshold: float = DIVERGENCE_THRESHOLD,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition for every chain.

    Parameters
    ----------
    generator : torch.Generator or None
        Source of the momenta and the accept/reject uniforms.
    state : HMCState
        Current state.
    logdensity_fn : callable
        ``(C, *event) -> (C,)``.
    step_size : float or Tensor
        Leapfrog step size: a float (fastest), a 0-dim tensor or one per chain ``(C,)``.
    num_steps : int
        Leapfrog steps per transition (ignored when ``trajectory_length`` is given).
    metric : Metric, optional
        Mass matrix (:mod:`gibbsebm.samplers.metrics`); identity by default.
    trajectory_length : float, optional
        Integration time :math:`T`; the number of steps is ``ceil(u T / step_size)`` (with
        per-chain step sizes, from the smallest one: chains with larger steps integrate
        longer; this reads one scalar to the host per transition).
    jitter : bool
        Jitter the trajectory by :math:`u` = the next element of the base-2 Halton sequence
        (indexed by ``state.iteration``); otherwise :math:`u = 1`.
    max_num_steps : int
        Cap on leapfrog steps.
    divergence_threshold : float
        Energy error that flags a divergence.

    Returns
    -------
    (HMCState, HMCInfo)
        The velocity (``energy_error`` = :math:`H_1 - H_0` of the proposal).
    """
    if metric is None:
        metric = as_metric(None, state.position, state.position.dim() - 1)
    n = _num_steps(state.iteration, step_size, num_steps, trajectory_length, jitter, max_num_steps)
    new, info, _ = transition(
        generator, state, logdensity_fn, step_size, n, metric, divergence_threshold, extras=False
    )
    return new, info


_OPTIONS = {
    "step_size",
    "num_steps",
    "trajectory_length",
    "jitter",
    "inverse_mass_matrix",
    "dense_mass",
    "target_accept",
    "adapt_step_size",
    "adapt_mass_matrix",
    "adapt_trajectory_length",
    "max_num_steps",
    "divergence_threshold",
    "init_buffer",
    "base_window",
    "term_buffer",
}


def check_options(options: dict, allowed: set, method: str) -> None:
    """Raise ``ValueError`` naming unknown options."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method={method!r}; allowed: {sorted(allowed)}"
        )


def _positive(name: str, value: Any) -> None:
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


class HamiltonianOptions(NamedTuple):
    """The options of ``method="hmc"`` or ``"mala"`` after validation, with their defaults.

    Parsed once here (the kernel layer owns its option checks) and read by the warmup that
    :func:`gibbsebm.samplers.registry.get_spec` attaches
    (:mod:`gibbsebm.samplers.adaptation.hamiltonian`). ``step_size`` is ``None`` when not
    given (the warmup then finds one); the trajectory fields are HMC's (MALA keeps their
    defaults).
    """

    step_size: float | None
    inverse_mass_matrix: Any
    dense_mass: bool
    target_accept: float
    adapt_step_size: bool
    adapt_mass_matrix: bool
    divergence_threshold: float
    windows: tuple[int, int, int]
    event_dim: int
    num_steps: int | None = None
    trajectory_length: float | None = None
    adapt_trajectory_length: Any = False
    jitter: Any = False
    jitter_without_warmup: bool = False
    max_num_steps: int = MAX_NUM_STEPS


def warmup_options(
    dist: Any, options: dict, target_accept: float, **trajectory: Any
) -> HamiltonianOptions:
    """The options shared by HMC and MALA (already checked by the caller), with defaults.

    ``trajectory`` sets HMC's trajectory fields of :class:`HamiltonianOptions`.
    """
    return HamiltonianOptions(
        step_size=options.get("step_size"),
        inverse_mass_matrix=options.get("inverse_mass_matrix"),
        dense_mass=bool(options.get("dense_mass", False)),
        target_accept=float(options.get("target_accept", target_accept)),
        adapt_step_size=bool(options.get("adapt_step_size", True)),
        adapt_mass_matrix=bool(options.get("adapt_mass_matrix", True)),
        divergence_threshold=float(options.get("divergence_threshold", DIVERGENCE_THRESHOLD)),
        windows=(
            int(options.get("init_buffer", 75)),
            int(options.get("base_window", 25)),
            int(options.get("term_buffer", 50)),
        ),
        event_dim=len(dist.event_shape),
        **trajectory,
    )


def parse_options(dist: Any, options: dict) -> HamiltonianOptions:
    """Check the options of ``method="hmc"`` (see :func:`make_spec`) and fill in defaults.

    Raises
    ------
    ValueError
        For an unknown or out-of-range option or a discrete support.
    """
    check_options(options, _OPTIONS, "hmc")
    if getattr(dist, "is_discrete", False):
        raise ValueError("method='hmc' needs a continuous support; use 'gwg' or 'dmala'")
    for name in ("step_size", "trajectory_length", "target_accept", "divergence_threshold"):
        _positive(name, options.get(name))
    num_steps = options.get("num_steps")
    if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    traj = options.get("trajectory_length")
    adapt_traj = options.get("adapt_trajectory_length", num_steps is None and traj is None)
    return warmup_options(
        dist,
        options,
        0.651,
        num_steps=num_steps,
        trajectory_length=traj,
        adapt_trajectory_length=adapt_traj,
        jitter=options.get("jitter", bool(adapt_traj)),
        jitter_without_warmup=bool(options.get("jitter", False)),
        max_num_steps=int(options.get("max_num_steps", MAX_NUM_STEPS)),
    )


def make_spec(dist: Any, **options: Any) -> SamplerSpec:
    """:class:`SamplerSpec` of the ``method="hmc"`` kernel.

    This is the kernel alone (``adapt=None``: warmup steps would be plain steps);
    :func:`gibbsebm.samplers.registry.get_spec` attaches the warmup described in the module
    notes (:mod:`gibbsebm.samplers.adaptation.hamiltonian`), which reads the warmup options
    below.

    Parameters
    ----------
    dist : Gibbs
        A distribution with a continuous (real) support.
    step_size : float, optional
        Initial (or, without warmup, fixed) leapfrog step size; default: found by the
        Hoffman & Gelman heuristic during warmup, 0.1 without warmup.
    num_steps : int, optional
        Fixed number of leapfrog steps; default: trajectory length adapted by ChEES (10
        steps without warmup).
    trajectory_length : float, optional
        Fixed (or initial, with ``adapt_trajectory_length=True``) integration time.
    jitter : bool, optional
        Halton-jitter the trajectory; default True when the length is adapted.
    inverse_mass_matrix : Tensor, optional
        Initial / fixed :math:`M^{-1}`: event-shaped diagonal or ``(d, d)`` dense.
    dense_mass : bool
        Adapt a dense mass matrix (for dimensions up to a few hundred).
    target_accept : float
        Target harmonic-mean acceptance of the step-size adaptation (default 0.651).
    adapt_step_size, adapt_mass_matrix, adapt_trajectory_length : bool
        Switch the warmup adaptations.
    max_num_steps : int
        Cap on leapfrog steps per transition (default 1000).
    divergence_threshold : float
        Energy error that flags a divergence (default 1000).
    init_buffer, base_window, term_buffer : int
        Stan's warmup window sizes (defaults 75, 25, 50).
    """
    o = parse_options(dist, options)
    default_params = {
        "step_size": float(options.get("step_size", 0.1)),
        "num_steps": o.num_steps if o.num_steps is not None else 10,
        "trajectory_length": o.trajectory_length,
        "jitter": o.jitter,
        "max_num_steps": o.max_num_steps,
        "divergence_threshold": o.divergence_threshold,
    }
    return SamplerSpec(
        name="hmc",
        init=init,
        step=step,
        adapt=None,
        default_params=default_params,
        discrete=False,
    )
