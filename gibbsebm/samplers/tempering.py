"""Parallel tempering (replica exchange) around any batched kernel.

Every chain carries ``R`` replicas, one per inverse temperature of a ladder
:math:`\\beta_0 > \\beta_1 > \\dots > \\beta_{R-1}` that contains the target's
:math:`\\beta`. One step

1. moves every replica with the inner kernel (``kernel=``, any registered method with an
   ``init``/``step``) at its own temperature: the ``C x R`` replicas run as ``C * R`` chains of
   the inner kernel on the ladder distribution ``dist.at(betas)``, laid out as ``(C, R)``
   flattened row by row;
2. proposes to exchange the states of neighbouring replicas :math:`(r, r+1)` for the pairs with
   :math:`r` even on even steps and :math:`r` odd on odd steps (deterministic even/odd
   alternation, Okabe et al. 2001; Syed et al. 2022 show it is non-reversible and scales better
   than random pair choice), accepted per chain and pair with probability

   .. math::

       \\min\\Bigl(1, \\frac{p_{\\beta_r}(y_{r+1})\\, p_{\\beta_{r+1}}(y_r)}
                          {p_{\\beta_r}(y_r)\\, p_{\\beta_{r+1}}(y_{r+1})}\\Bigr)
       = \\min\\bigl(1, e^{(\\beta_r - \\beta_{r+1})(E(y_r) - E(y_{r+1}))}\\bigr)

   (the closed form holds when :math:`\\log p_\\beta = -\\beta E + \\text{const}`; the kernel
   evaluates the left-hand side, so it is also exact for base measures and for energies whose
   marginal depends on :math:`\\beta`, such as an RBM's tempered free energy).

The log-density (and gradient) that the inner kernel caches for a replica depend on its
:math:`\\beta`. When :math:`\\log p_\\beta = -\\beta E` exactly (no base measure, condition or
latent variable) they are rescaled by :math:`\\beta_{\\text{new}}/\\beta_{\\text{old}}`, so
exchanges cost no energy evaluation; otherwise the exchanged configurations are re-initialised
by the inner kernel's ``init`` at their new temperatures, whose log-densities also give the
swap ratio (one extra evaluation of all replicas per step).

``position`` and ``logdensity`` of the state are those of the target replica, so
:func:`gibbsebm.sample` records draws of the target. ``extra_draws`` keeps every replica:
``Samples.extra["replicas"]`` ``(C, D, R, *event)``, ``Samples.extra["replica_energy"]``
``(C, D, R)`` (:math:`E = -(\\log\\tilde p_\\beta - \\log b)/\\beta`, the free energy at that
:math:`\\beta` for latent-variable energies) and ``Samples.extra["replica_beta"]``
``(C, D, R)``, which thermodynamic integration and bridge sampling reuse
(:func:`replica_draws` collects them).

Default ladder
--------------
Geometric from :math:`\\beta` down to :math:`\\beta_{\\min} = \\beta /` :data:`HOTTEST_RATIO`
(:math:`\\beta / 20`: an energy barrier of 20 nats at the target, which a local kernel crosses
about once in :math:`e^{20} \\approx 5 \\cdot 10^8` attempts, is 1 nat in the hottest replica).
Neighbouring temperatures differ by at most the factor
:math:`1 + 2\\sqrt{\\ln 4}/\\sqrt d` (``d`` = number of coordinates of y), the spacing at which
adjacent replicas of a d-dimensional Gaussian exchange with probability about 0.25
(Vousden, Farr & Mandel 2016; the default ladder of emcee's ``PTSampler``), so the number of
temperatures grows like :math:`\\sqrt d \\log(\\beta/\\beta_{\\min})`.

Default start
-------------
Without ``init``, :func:`gibbsebm.sample` runs ``pt`` on a continuous target with
``init_from_modes=True``: before its warmup the chains are moved to the modes that
:func:`gibbsebm.find_modes` finds (256 starts and its saturation rounds, with the run's
generator), chain ``i`` at a draw from :math:`N(\\hat y_k, H_k^{-1})` of mode ``k``, the modes
getting chains in proportion to their local (Laplace) masses with at least one chain each
(:func:`gibbsebm.modes.initial_positions`); every replica of a chain starts at the chain's
point. The search's summary (``num_modes``, each mode's log mass and basin count, the start
distribution) is in ``Samples.adaptation["modes"]``. A given ``init`` wins
(``init_from_modes=False`` also keeps the default uniform start). A mode the search misses is
not started in; whether the chains then reach it is up to the tempering, and the round-trip
and R-hat checks below are what can tell.

Round trips and swap rates
--------------------------
Each configuration carries a label (the temperature it started at) that moves with the
accepted swaps. A *round trip* is a label's visit of the coldest temperature, then of the
hottest, then of the coldest again (Syed et al. 2022 use the round-trip rate as the figure of
merit of a ladder). ``Samples.stats["round_trips"]`` ``(C, D)`` counts them per chain since the
end of the warmup (cumulative: the last draw holds the run's count),
``Samples.stats["swap_rate"]`` ``(C, D, R - 1)`` is the mean swap acceptance probability of each
pair of neighbouring temperatures since then, and ``Samples.stats["replica_index"]``
``(C, D, R)`` the label at each temperature. The run's
:class:`~gibbsebm.diagnostics.SamplingWarning` names chains without a round trip
(``pt_round_trips``) and pairs whose pooled swap rate is below 0.01 (``pt_swap_rate``): a
ladder that is cut, or a run too short for tempering to have carried configurations between
the target and the hot end. Round trips do not prove that the modes mix: the hottest replica
(:math:`\\beta/20` by default) may itself be unable to cross between distant modes, and then
R-hat (checked for every run) is what flags the chains that stayed in their modes.

Unexplored modes
----------------
From the default start, every target draw is labelled with the found mode whose basin holds
it (:func:`basin_labels`: the nearest mode in Mahalanobis distance under its Laplace
precision, inside when below the :math:`\\chi^2_d` quantile at :data:`BASIN_Z` sigma, ``-1``
outside): ``Samples.stats["basin"]`` ``(C, D)``; ``Samples.stats["unvisited_modes"]`` counts
the found modes whose local weight predicts at least :data:`MIN_EXPECTED_VISITS` visits and
that no draw visited (:func:`unexplored_modes`). The run's
:class:`~gibbsebm.diagnostics.SamplingWarning` reports ``pt_unexplored_mode`` when more than
:data:`~gibbsebm.diagnostics.PT_MAX_OUTSIDE_FRACTION` of the draws lie outside every basin
(the chains reached a mode the search missed) or such a mode was never visited (the chains
were cut off from it). A mode that no start of the search finds and no chain visits leaves
no trace: no check can see it.

Adaptation
----------
The warmup (:func:`gibbsebm.samplers.adaptation.tempering.pt_adapt`, attached by
:func:`gibbsebm.samplers.registry.get_spec`): with ``num_warmup`` warmup steps, the first half
runs the inner kernel's own warmup
(``spec.adapt``: e.g. MALA's step size and mass matrix, pooled over all replicas, so the
metric is a compromise across temperatures); the second half runs full PT steps (swaps
included, so the replicas equilibrate across the ladder) and re-tunes the step size **per
temperature** by dual averaging (Hoffman & Gelman 2014), with the acceptance statistic of each
temperature pooled over its ``C`` chains, towards the inner kernel's optimal acceptance (0.574
for ``mala`` and ``dmala``, 0.651 for ``hmc``). Hot replicas get larger steps. Afterwards the
inner kernel's ``step_size`` is a tensor ``(C * R,)`` (one value per replica, constant over
chains) and the per-temperature values are in ``Samples.adaptation["step_size_per_beta"]``.
Kernels without a step size (``metropolis``, ``block_gibbs``, ``gwg``) or without an
accept/reject step (``ula``) are not tuned per temperature (``per_beta_step_size=False`` turns
it off everywhere). With ``hmc``, whose step count follows from a trajectory length ``T``
and one step size, the tuned ``T`` becomes a fixed number of leapfrog steps
:math:`n = \\lceil T / \\epsilon \\rceil` shared by all temperatures, so a hot replica's
trajectory :math:`n \\epsilon_r` grows with its step size.

Schedule adaptation
-------------------
With ``adapt_schedule`` (default: on when the ladder has at least 3 temperatures, the target
is the coldest and the second half of the warmup has at least ``3 *``
:data:`~gibbsebm.samplers.adaptation.tempering.MIN_ROUND_STEPS` steps), that second half is
cut into rounds of doubling length; after each round but the last the ladder moves so that
the temperatures sit at equal increments of the communication barrier estimated from the
pooled swap rejection rates (Syed et al. 2022, Algorithm 4; both ends and the number of
temperatures are kept; see :mod:`gibbsebm.samplers.adaptation.tempering`). Every move
re-evaluates every replica's log density at its new temperature and carries the
per-temperature step sizes over by interpolation; the last round tunes them on the final
ladder. ``Samples.adaptation["betas"]`` is the final ladder (also in
``Samples.extra["replica_beta"]``), ``Samples.adaptation["schedule"]`` holds the ladder and
rejection rates of every round, its round trips, the cumulative barrier at the final ladder
and its total ``barrier`` (or ``adapted=False`` and the reason). On a 2-D Gaussian from a
linear ladder of 8 temperatures the spread of the rejection rates fell from 0.50 to 0.02
and the round trips rose by 17%; on an 8-D Gaussian from 0.76 to 0.03 and by 109%.

References
----------
Swendsen & Wang (1986). Replica Monte Carlo simulation of spin glasses. PRL 57, 2607.
Geyer (1991). Markov chain Monte Carlo maximum likelihood. Interface Proceedings.
Okabe, Kawata, Okamoto & Mikami (2001). Replica-exchange Monte Carlo method for the isobaric-
isothermal ensemble. Chem. Phys. Lett. 335, 435-439.
Vousden, Farr & Mandel (2016). Dynamic temperature selection for parallel tempering in Markov
chain Monte Carlo simulations. MNRAS 455, 1919-1937.
Syed, Bouchard-Cote, Deligiannidis & Doucet (2022). Non-reversible parallel tempering: a
scalable highly parallel MCMC scheme. JRSS B 84, 321-350.

Examples
-------
>>> import torch, gibbsebm
>>> from gibbsebm.energies import Ising2D
>>> d = gibbsebm.Gibbs(Ising2D(3), beta=1.0)
>>> s = gibbsebm.sample(d, "pt", kernel="metropolis", num_chains=4, num_samples=10,
...                     num_warmup=10, seed=0, progress=False, warn=False)
>>> s.extra["replicas"].shape[:3], s.extra["replica_beta"][0, 0, 0].item()
(torch.Size([4, 10, 7]), 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ._ladder import (
    HOTTEST_RATIO,
    TAIL_MARGIN,
    TAIL_PROBE_RADII,
    _real_support,
    beta_ladder,
    integrable_beta_floor,
)
from ._pt_results import BASIN_Z, MIN_EXPECTED_VISITS, basin_labels, replica_draws, unexplored_modes
from .base import LogDensityFn, SamplerSpec, mh_accept, sanitize_logdensity, where_chain

__all__ = [
    "PTState",
    "PTInfo",
    "PTRecord",
    "restart_counts",
    "ReplicaExchange",
    "KernelFactory",
    "beta_ladder",
    "build",
    "make_spec",
    "replica_draws",
    "HOTTEST_RATIO",
    "integrable_beta_floor",
    "basin_labels",
    "unexplored_modes",
    "BASIN_Z",
    "MIN_EXPECTED_VISITS",
    "TAIL_MARGIN",
    "TAIL_PROBE_RADII",
]

#: ``kernel_factory(name) -> make(ladder_dist, **kernel_options) -> SamplerSpec``: gives the
#: inner kernel's spec builder (warmup included) for a method name, and raises ``ValueError``
#: for a name that cannot run inside parallel tempering. Injected by
#: :func:`gibbsebm.samplers.registry.get_spec`, so that this module needs no registry.
KernelFactory = Callable[[str], Callable[..., SamplerSpec]]

#: Optimal acceptance rates used for per-temperature step-size tuning (cited in those modules:
#: Roberts & Rosenthal 1998 for MALA, Beskos et al. 2013 for HMC, Sun et al. 2023 for DMALA).
_TARGET_ACCEPT = {"mala": 0.574, "dmala": 0.574, "hmc": 0.651}


class PTState(NamedTuple):
    """State of parallel tempering.

    Attributes
    ----------
    position : Tensor
        ``(C, *event)``: the target replica.
    logdensity : Tensor
        ``(C,)``: its log-density.
    inner : NamedTuple
        The inner kernel's state over the ``C * R`` replicas (layout ``(C, R)`` flattened).
    swap_parity : Tensor
        ``()`` long: 0 when the next swaps are the pairs ``(0, 1), (2, 3), ...``, 1 for
        ``(1, 2), (3, 4), ...``.
    record : PTRecord
        Which replica each temperature holds, and the round-trip and swap counts.
    betas : Tensor or None
        ``(R,)`` the ladder the replicas are at, decreasing; ``None``: the ladder the kernel
        was built with (the warmup's schedule adaptation sets it, see the module notes).
    """

    position: torch.Tensor
    logdensity: torch.Tensor
    inner: Any
    swap_parity: torch.Tensor
    record: PTRecord
    betas: torch.Tensor | None = None


class PTRecord(NamedTuple):
    """Replica labels, round trips and swap counts of parallel tempering (see the module notes).

    A *replica* is a configuration that moves along the ladder through accepted swaps; it is
    labelled by the temperature it started at. Its *round trip* is a visit of the coldest
    temperature (index 0), then of the hottest (index ``R - 1``), then of the coldest again
    (Syed et al. 2022, Sec. 3: the round-trip rate is the measure of how well the ladder
    moves configurations between the target and the reference).

    Attributes
    ----------
    replica_index : Tensor
        ``(C, R)`` long: the label of the replica at each temperature.
    heading : Tensor
        ``(C, R)`` long, per label: -1 before its first visit of the coldest temperature, 0
        after it (heading hot), 1 once it has reached the hottest after that (heading back).
    round_trips : Tensor
        ``(C,)`` long: round trips completed since the counts were last restarted (the end
        of the warmup).
    swap_prob_sum : Tensor
        ``(C, R - 1)``: sum of the swap acceptance probabilities of each pair since then.
    swap_proposals : Tensor
        ``(C, R - 1)`` long: how many times each pair was proposed since then.
    """

    replica_index: torch.Tensor
    heading: torch.Tensor
    round_trips: torch.Tensor
    swap_prob_sum: torch.Tensor
    swap_proposals: torch.Tensor


def _fresh_record(c: int, num_r: int, like: torch.Tensor) -> PTRecord:
    dev = like.device
    idx = torch.arange(num_r, device=dev).expand(c, num_r).clone()
    heading = torch.full((c, num_r), -1, dtype=torch.long, device=dev)
    heading[:, 0] = 0  # replica 0 starts at the coldest temperature
    return PTRecord(
        idx,
        heading,
        torch.zeros(c, dtype=torch.long, device=dev),
        torch.zeros((c, num_r - 1), dtype=like.dtype, device=dev),
        torch.zeros((c, num_r - 1), dtype=torch.long, device=dev),
    )


def restart_counts(state: PTState) -> PTState:
    """``state`` with its round-trip and swap counts set to zero (labels and headings kept):
    the warmup calls it at its end, so the counts in ``Samples.stats`` cover the draws."""
    rec = state.record
    return state._replace(
        record=rec._replace(
            round_trips=torch.zeros_like(rec.round_trips),
            swap_prob_sum=torch.zeros_like(rec.swap_prob_sum),
            swap_proposals=torch.zeros_like(rec.swap_proposals),
        )
    )


def _update_record(
    rec: PTRecord,
    moved: torch.Tensor,
    partner: torch.Tensor,
    pair_active: torch.Tensor,
    swap_prob: torch.Tensor,
) -> PTRecord:
    """Move the labels with the accepted swaps and count round trips and swap proposals."""
    c, num_r = rec.replica_index.shape
    idx = rec.replica_index
    idx = torch.where(moved, idx.gather(1, partner.expand(c, num_r)), idx)
    heading = rec.heading
    cold = idx[:, :1]
    done = heading.gather(1, cold)[:, 0] == 1  # back at the coldest after the hottest
    heading = heading.scatter(1, cold, torch.zeros_like(cold))
    hot = idx[:, -1:]
    h_hot = heading.gather(1, hot)
    heading = heading.scatter(1, hot, torch.where(h_hot == 0, torch.ones_like(h_hot), h_hot))
    active = pair_active.to(swap_prob.dtype)
    return PTRecord(
        idx,
        heading,
        rec.round_trips + done.to(torch.long),
        rec.swap_prob_sum + swap_prob.to(rec.swap_prob_sum.dtype) * active,
        rec.swap_proposals + pair_active.to(torch.long),
    )


class PTInfo(NamedTuple):
    """Per-step diagnostics.

    Attributes
    ----------
    acceptance_prob, is_accepted, is_divergent, is_nonfinite : Tensor
        ``(C,)``: the inner kernel's values for the target replica.
    replica_acceptance_prob : Tensor
        ``(C, R)``: the inner kernel's acceptance probability of every replica.
    swap_acceptance_prob : Tensor
        ``(C, R - 1)``: acceptance probability of exchanging replicas ``r`` and ``r + 1``;
        NaN for the pairs not proposed at this step (average with ``nanmean``).
    is_swap_proposed : Tensor
        ``(C, R - 1)`` bool: the pairs proposed at this step.
    is_swapped : Tensor
        ``(C, R - 1)`` bool: the exchanges that were accepted.
    replica_index : Tensor
        ``(C, R)`` long: the label of the replica at each temperature after this step
        (see :class:`PTRecord`).
    round_trips : Tensor
        ``(C,)`` long: round trips completed since the end of the warmup (cumulative, so the
        last recorded draw holds the run's count).
    swap_rate : Tensor
        ``(C, R - 1)``: mean acceptance probability of each pair over its proposals since
        the end of the warmup (cumulative; NaN before a pair's first proposal).
    """

    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor
    replica_acceptance_prob: torch.Tensor
    swap_acceptance_prob: torch.Tensor
    is_swap_proposed: torch.Tensor
    is_swapped: torch.Tensor
    replica_index: torch.Tensor
    round_trips: torch.Tensor
    swap_rate: torch.Tensor


def _ladder_logdensity(ladder: Any, num_betas: int) -> LogDensityFn:
    event = tuple(ladder.event_shape)

    def fn(y: torch.Tensor) -> torch.Tensor:
        n = y.shape[0] // num_betas
        return ladder.logdensity(y.reshape((n, num_betas) + event)).reshape(n * num_betas)

    return fn


def _merge_states(mask: torch.Tensor, proposed: Any, current: Any) -> Any:
    """Per-chain select between two states of the inner kernel (non-chain fields: current)."""
    n = mask.shape[0]
    fields = []
    for p, c in zip(proposed, current):
        if isinstance(c, torch.Tensor) and c.dim() > 0 and c.shape[0] == n:
            fields.append(where_chain(mask, p, c))
        else:
            fields.append(c)
    return type(current)(*fields)


#: Inner-state fields that :func:`_exchanged_by_rescaling` knows how to move between
#: temperatures: positions are permuted, log-densities and their gradients rescaled.
_RESCALED_FIELDS = {"logdensity", "grad", "logdensity_grad"}


def _rescalable(state: Any, n: int) -> bool:
    """Whether every per-chain field of the inner state is a position, a log-density or its
    gradient (so that :func:`_exchanged_by_rescaling` gives the exact exchanged state)."""
    for name, value in zip(state._fields, state):
        per_chain = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n
        if per_chain and name != "position" and name not in _RESCALED_FIELDS:
            return False
    return True


def _exchanged_by_rescaling(
    state: Any, partner: torch.Tensor, betas: torch.Tensor, c: int, num_r: int
) -> Any:
    """The inner state with replica ``r`` holding replica ``partner[r]``'s configuration.

    For :math:`\\log p_\\beta = -\\beta E`, the log-density and its gradient at the new
    temperature are the old ones times :math:`\\beta_r / \\beta_{\\text{partner}(r)}`.
    """
    n = c * num_r
    b = betas.to(device=partner.device)
    scale = (b / b[partner]).repeat(c)  # (N,): new beta over the beta it was evaluated at
    fields = []
    for name, value in zip(state._fields, state):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            rest = tuple(value.shape[1:])
            moved = value.reshape((c, num_r) + rest).index_select(1, partner).reshape(value.shape)
            if name in _RESCALED_FIELDS:
                moved = moved * scale.to(moved.dtype).reshape((n,) + (1,) * len(rest))
            fields.append(moved)
        else:
            fields.append(value)
    return type(state)(*fields)


class ReplicaExchange(NamedTuple):
    """Parallel tempering assembled around an inner kernel by :func:`build`.

    Attributes
    ----------
    spec : SamplerSpec
        The ``method="pt"`` kernel (``adapt=None``; the registry attaches
        :func:`gibbsebm.samplers.adaptation.tempering.pt_adapt`).
    inner : SamplerSpec
        The inner kernel's spec on the ladder distribution (with its own warmup).
    betas : Tensor
        ``(R,)`` the ladder, decreasing.
    logdensity_fn : callable
        Log-density of the ``C * R`` replicas laid out as ``(C, R)`` flattened.
    wrap : callable
        ``wrap(inner_state, swap_parity, record) -> PTState``.
    target_accept : float or None
        Target acceptance of per-temperature step-size tuning (``None``: not tuned).
    per_beta_step_size : bool
        Whether the warmup tunes the inner step size per temperature.
    target : Gibbs
        The target distribution.
    init_from_modes : bool
        Whether the warmup first moves the chains to the modes that
        :func:`gibbsebm.find_modes` finds (see the module notes).
    adapt_schedule : bool or None
        Whether the warmup adapts the ladder (``None``: when it can, see the module notes).
    with_betas : callable
        ``with_betas(state, betas) -> PTState``: the same configurations on another ladder
        (same length, same target rung), every replica's log density evaluated afresh.
    target_index : int
        Position of the target's beta in the ladder.
    """

    spec: SamplerSpec
    inner: SamplerSpec
    betas: torch.Tensor
    logdensity_fn: LogDensityFn
    wrap: Callable[..., PTState]
    target_accept: float | None
    per_beta_step_size: bool
    target: Any = None
    init_from_modes: bool = False
    adapt_schedule: bool | None = None
    with_betas: Callable[[PTState, torch.Tensor], PTState] | None = None
    target_index: int = 0


class _Rungs(NamedTuple):
    """What depends on the ladder: the ladder distribution, its flattened log density, the
    inner kernel's spec built on it, and whether exchanges can rescale log densities."""

    betas: torch.Tensor
    dist: Any
    logdensity_fn: LogDensityFn
    inner: SamplerSpec


def make_spec(dist: Any, **options: Any) -> SamplerSpec:
    """:class:`SamplerSpec` of the ``method="pt"`` kernel (``adapt=None``): ``build(dist,
    **options).spec``; the options, ``kernel_factory`` among them, are those of :func:`build`.
    """
    return build(dist, **options).spec


def build(
    dist: Any,
    *,
    kernel_factory: KernelFactory,
    kernel: str | None = None,
    betas: Any = None,
    num_betas: int | None = None,
    beta_min: float | None = None,
    per_beta_step_size: bool = True,
    init_from_modes: bool = False,
    adapt_schedule: bool | None = None,
    **kernel_options: Any,
) -> ReplicaExchange:
    """Assemble parallel tempering around ``kernel``: the ``method="pt"`` kernel and the pieces
    its warmup needs.

    :func:`gibbsebm.samplers.registry.get_spec` calls it with its ``kernel_factory`` and
    attaches the warmup described in the module notes
    (:func:`gibbsebm.samplers.adaptation.tempering.pt_adapt`) to ``.spec``.

    Parameters
    ----------
    dist : Gibbs
        Target distribution (scalar beta, no batch shape).
    kernel_factory : callable
        ``kernel_factory(name)`` returns the inner kernel's spec builder
        ``make(ladder_dist, **kernel_options) -> SamplerSpec`` and raises ``ValueError`` for
        a name it cannot run inside parallel tempering (see :data:`KernelFactory`).
    kernel : str, optional
        Inner method: any registered method with ``init``/``step`` (not ``pt`` or ``nuts``);
        default ``"mala"`` for continuous and ``"gwg"`` for discrete y.
    betas : sequence or Tensor, optional
        The ladder (any order; sorted decreasing). It must contain ``dist.beta``; colder
        replicas are allowed. Default: :func:`beta_ladder`.
    num_betas, beta_min : optional
        Shape of the default ladder (ignored with ``betas``).
    per_beta_step_size : bool
        Tune the inner step size per temperature during warmup (see the module notes).
    init_from_modes : bool
        Start the chains from the modes :func:`gibbsebm.find_modes` finds instead of the
        given positions (see "Default start" in the module notes); :func:`gibbsebm.sample`
        sets it when no ``init`` is given. Ignored for discrete or non-real supports.
    adapt_schedule : bool, optional
        Adapt the ladder during warmup to equal communication-barrier increments (see
        "Schedule adaptation" in the module notes). Default (``None``): on when the ladder
        has at least 3 temperatures, the target is its coldest and the warmup is long enough;
        ``False`` keeps the given (or default) ladder.
    **kernel_options
        Options of the inner kernel (e.g. ``step_size``, ``target_accept``).

    Returns
    -------
    ReplicaExchange
        ``.spec`` (``adapt=None``) has ``extra_draws`` keeping every replica (see
        :func:`replica_draws`).

    Raises
    ------
    ValueError
        For an unknown or unsupported kernel, a batched distribution, or a ladder that is not
        positive, has duplicates or lacks ``dist.beta``.

    Example
    -------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> from gibbsebm.samplers.registry import get_spec
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> spec = get_spec("pt", d, kernel="mala", betas=[1.0, 0.5, 0.25])
    >>> spec.name
    'pt'
    """
    if tuple(dist.batch_shape) != ():
        raise ValueError(
            "parallel tempering needs a distribution with a scalar beta and no batch shape, got "
            f"batch shape {tuple(dist.batch_shape)}"
        )
    if kernel is None:
        kernel = "gwg" if dist.is_discrete else "mala"
    make_inner = kernel_factory(kernel)
    target = dist.beta.detach()
    if betas is None:
        if beta_min is None:
            floor = integrable_beta_floor(dist)
            if floor is not None and TAIL_MARGIN * floor > float(target) / HOTTEST_RATIO:
                # heavy tails: the default hottest replica would not be normalisable
                beta_min = min(TAIL_MARGIN * floor, float(target) / 1.5)
        ladder_b = beta_ladder(
            target, dist.event_shape.numel(), num_betas=num_betas, beta_min=beta_min
        )
    else:
        ladder_b = torch.as_tensor(betas, dtype=target.dtype, device=target.device).reshape(-1)
        if ladder_b.numel() < 2:
            raise ValueError(f"betas must have at least 2 entries, got {ladder_b.numel()}")
        if not bool(torch.isfinite(ladder_b).all()) or bool((ladder_b <= 0).any()):
            raise ValueError("betas must be finite and > 0")
        ladder_b = ladder_b.sort(descending=True).values
        if bool((ladder_b[1:] == ladder_b[:-1]).any()):
            raise ValueError("betas has duplicate entries")
    hit = torch.isclose(ladder_b, target.to(ladder_b.dtype), rtol=1e-6, atol=0.0)
    if not bool(hit.any()):
        raise ValueError(
            f"betas must contain the target beta {float(target)}, got {ladder_b.tolist()}"
        )
    t_idx = int(hit.nonzero()[0])
    ladder_b = torch.where(hit, target.to(ladder_b.dtype), ladder_b)
    num_r = ladder_b.numel()

    def make_rungs(b: torch.Tensor) -> _Rungs:
        ladder = dist.at(b)
        inner = make_inner(ladder, **kernel_options)
        if inner.run is not None:
            raise ValueError(f"kernel {kernel!r} runs its own loop and cannot be used inside pt")
        return _Rungs(b, ladder, _ladder_logdensity(ladder, num_r), inner)

    built = make_rungs(ladder_b)
    ladder, inner, ld_flat = built.dist, built.inner, built.logdensity_fn
    memo = [built]

    def rungs(b: torch.Tensor | None) -> _Rungs:
        """The rungs of ladder ``b`` (built once per ladder: the identity check costs no
        device synchronisation; a restored checkpoint's copy is compared by value once)."""
        if b is None or b is ladder_b:
            return built
        last = memo[0]
        if b is last.betas:
            return last
        if b.shape == last.betas.shape and bool(torch.equal(b, last.betas.to(b))):
            memo[0] = last._replace(betas=b)
        else:
            memo[0] = make_rungs(b)
        return memo[0]

    # log p_beta(y) = -beta E(y) exactly: exchanged states need no new evaluation
    rescale = (
        ladder.base is None
        and ladder.x is None
        and ladder.latent is None
        and getattr(dist.energy, "tempered_energy", None) is None
    )
    target_accept = kernel_options.get("target_accept", _TARGET_ACCEPT.get(kernel))
    event = tuple(dist.event_shape)

    def wrap(
        inner_state: Any,
        parity: torch.Tensor,
        record: PTRecord,
        betas: torch.Tensor | None = None,
    ) -> PTState:
        c = inner_state.position.shape[0] // num_r
        pos = inner_state.position.reshape((c, num_r) + event)[:, t_idx]
        ld = inner_state.logdensity.reshape(c, num_r)[:, t_idx]
        return PTState(pos, ld, inner_state, parity, record, betas)

    def with_betas(state: PTState, betas: torch.Tensor) -> PTState:
        """The same replicas (labels and counts kept) on the ladder ``betas``: the inner state
        is initialised afresh there, so no log density of another temperature survives."""
        b = torch.as_tensor(betas).to(dtype=ladder_b.dtype, device=ladder_b.device)
        if b.shape != ladder_b.shape or not torch.isclose(b[t_idx], ladder_b[t_idx]):
            raise ValueError("a new ladder must have the same length and target rung")
        b = b.clone()
        b[t_idx] = ladder_b[t_idx]
        rg = rungs(b)
        inner_state = rg.inner.init(state.inner.position, rg.logdensity_fn)
        return wrap(inner_state, state.swap_parity, state.record, b)

    def init(position: torch.Tensor, logdensity_fn: LogDensityFn | None = None) -> PTState:
        """Replicas all start at ``position`` ``(C, *event)`` (or one each, ``(C, R, *event)``).

        ``logdensity_fn`` (the target's) is not used: the replicas' log-densities come from
        the ladder distribution.
        """
        position = position.detach()
        if tuple(position.shape[1:]) == (num_r,) + event and position.dim() == len(event) + 2:
            reps = position
        elif tuple(position.shape[1:]) == event:
            reps = position.unsqueeze(1).expand((position.shape[0], num_r) + event)
        else:
            raise ValueError(
                f"position must have shape (C, *{event}) or (C, {num_r}, *{event}), got "
                f"{tuple(position.shape)}"
            )
        flat = reps.reshape((-1,) + event).clone()
        parity = torch.zeros((), dtype=torch.long, device=position.device)
        inner_state = inner.init(flat, ld_flat)
        record = _fresh_record(reps.shape[0], num_r, inner_state.logdensity)
        return wrap(inner_state, parity, record)

    def step(
        generator: torch.Generator | None,
        state: PTState,
        logdensity_fn: LogDensityFn | None = None,
        **params: Any,
    ) -> tuple[PTState, PTInfo]:
        """One inner step of every replica, then even/odd neighbour exchanges.

        ``logdensity_fn`` (the target's) is not used (see :func:`init`); ``params`` go to the
        inner kernel's ``step``.
        """
        rg = rungs(state.betas)
        eps = params.get("step_size")
        pos_dtype = state.inner.position.dtype
        if isinstance(eps, torch.Tensor) and eps.dtype != pos_dtype and pos_dtype.is_floating_point:
            # per-replica step sizes are tuned in the log-density's dtype (float64 for an
            # energy that computes in float64); the move runs in the positions' dtype, as in
            # hmc and mala with their Python-float step size
            params = {**params, "step_size": eps.to(pos_dtype)}
        inner_state, inner_info = rg.inner.step(generator, state.inner, rg.logdensity_fn, **params)
        n = inner_state.position.shape[0]
        c = n // num_r
        dev = inner_state.position.device
        r = torch.arange(num_r, device=dev)
        parity = state.swap_parity
        lower = ((r % 2) == parity) & (r < num_r - 1)  # r is the lower member of a pair
        upper = torch.zeros_like(lower)
        upper[1:] = lower[:-1]
        partner = torch.where(lower, r + 1, torch.where(upper, r - 1, r))
        pos = inner_state.position.reshape((c, num_r) + event)
        if rescale and _rescalable(inner_state, n):
            proposed = _exchanged_by_rescaling(inner_state, partner, rg.betas, c, num_r)
        else:
            proposed_pos = pos.index_select(1, partner).reshape((n,) + event)
            proposed = rg.inner.init(proposed_pos, rg.logdensity_fn)
        ld_now = inner_state.logdensity.reshape(c, num_r)
        ld_prop = sanitize_logdensity(proposed.logdensity).reshape(c, num_r)
        log_ratio = ld_prop[:, :-1] + ld_prop[:, 1:] - ld_now[:, :-1] - ld_now[:, 1:]
        swap_ok, swap_prob = mh_accept(generator, log_ratio)
        pair_active = lower[:-1].expand(c, num_r - 1)
        swapped = swap_ok & pair_active
        moved = torch.zeros((c, num_r), dtype=torch.bool, device=dev)
        moved[:, :-1] |= swapped
        moved[:, 1:] |= swapped
        new_inner = _merge_states(moved.reshape(n), proposed, inner_state)
        record = _update_record(state.record, moved, partner, pair_active, swap_prob)
        new_state = wrap(new_inner, 1 - parity, record, state.betas)
        nan = torch.full_like(record.swap_prob_sum, float("nan"))
        swap_rate = torch.where(
            record.swap_proposals > 0,
            record.swap_prob_sum / record.swap_proposals.clamp_min(1).to(nan.dtype),
            nan,
        )

        def at_target(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(c, num_r)[:, t_idx]

        info = PTInfo(
            acceptance_prob=at_target(inner_info.acceptance_prob),
            is_accepted=at_target(inner_info.is_accepted),
            is_divergent=at_target(inner_info.is_divergent),
            is_nonfinite=at_target(inner_info.is_nonfinite),
            replica_acceptance_prob=inner_info.acceptance_prob.reshape(c, num_r),
            swap_acceptance_prob=torch.where(
                pair_active, swap_prob, torch.full_like(swap_prob, float("nan"))
            ),
            is_swap_proposed=pair_active.clone(),
            is_swapped=swapped,
            replica_index=record.replica_index,
            round_trips=record.round_trips,
            swap_rate=swap_rate,
        )
        return new_state, info

    def extra_draws(state: PTState) -> dict[str, torch.Tensor]:
        """Every replica's position, energy and beta (``(C, R, ...)``)."""
        inner_state = state.inner
        n = inner_state.position.shape[0]
        c = n // num_r
        reps = inner_state.position.reshape((c, num_r) + event)
        ld = inner_state.logdensity.reshape(c, num_r)
        if ladder.base is not None:
            ld = ld - ladder.base.log_prob(reps).to(ld.dtype)
        b = rungs(state.betas).betas.to(device=ld.device, dtype=ld.dtype).expand(c, num_r)
        return {"replicas": reps, "replica_energy": -ld / b, "replica_beta": b}

    spec = SamplerSpec(
        name="pt",
        init=init,
        step=step,
        default_params=dict(inner.default_params),
        discrete=inner.discrete,
        extra_draws=extra_draws,
    )
    from_modes = bool(init_from_modes) and not dist.is_discrete and _real_support(dist.support)
    return ReplicaExchange(
        spec,
        inner,
        ladder_b,
        ld_flat,
        wrap,
        target_accept,
        bool(per_beta_step_size),
        dist,
        from_modes,
        adapt_schedule,
        with_betas,
        t_idx,
    )
