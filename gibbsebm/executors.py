"""Executors: run chains, AIS particles or TI/bridge chains in shards, in-process or on Ray.

Sampling chains, annealed-importance particles and the chains that climb a thermodynamic
ladder are embarrassingly parallel. The sampling driver and every estimator describe their
work as a *plan* (:mod:`gibbsebm.runtime.plan`: a setup done once, seeded picklable shards,
``run_shard`` and ``merge``); an *executor* only maps the shards, retries, checkpoints finished
shards and reports progress (:mod:`gibbsebm.runtime.executors`), and the plan merges them into
one result of the same type as an unsharded run. This module is the public face: the executor
classes and the two sharded entry points.

* :class:`LocalExecutor` runs the shards one after another in this process (``executor="local"``;
  ``executor=None`` runs the plan in-process as one shard).
* :class:`RayExecutor` runs each shard as a Ray task on whichever worker is free, on CPU or GPU
  per ``resources_per_worker``, on a laptop or a cluster (``address=``).

Shard layout. ``N`` items (chains or particles) and ``K`` shards give shard ``k`` the items
``[start_k, start_k + n_k)`` with ``n_k = N // K + (k < N % K)`` (:func:`shard_sizes`). ``K``
is the executor's ``num_shards`` (default: 1 for :class:`LocalExecutor`, ``num_workers`` for
:class:`RayExecutor`).

Seeds. With ``K = 1`` the single shard continues the run's own stream, so a one-shard run is
draw-for-draw the in-process run. With ``K > 1`` shard ``k`` uses
``gibbsebm.runtime.shard_seeds(seed, K)[k]`` (:class:`numpy.random.SeedSequence` spawning: the
streams do not overlap). The draws therefore depend only on ``seed`` and the layout, never on
where or in which order shards run: the same seed and layout give the same draws with
:class:`LocalExecutor` and :class:`RayExecutor` (on the same device type and torch build).
For ``log_partition`` the base distribution, pilot run and schedule or ladder are computed
once on the driver when the plan is made, as in the in-process estimator.

Merging is exact. Samples: draws and per-draw stats are concatenated along the chain
dimension (:meth:`gibbsebm.Samples.concatenate`), so arviz export, ESS and R-hat see all
chains; each shard adapts its kernel on its own chains (``Samples.adaptation["shards"]``).
AIS / importance sampling: the log-weights of all shards are pooled *before* the log-mean-exp,
ESS, Pareto k-hat and batch checks, which is exactly the estimator of one run with all
particles (not an average of per-shard estimates); per-step increment means and variances and
acceptance rates are pooled exactly from the per-shard moments. TI / bridge: the shards' rungs
are stitched along the chain dimension, so every rung's mean and MCSE, the quadrature error
and the jackknife use all chains.

Faults. A failing shard is retried (Ray task retries, ``max_retries``; worker deaths and, with
``retry_exceptions=True``, exceptions). A run either returns with all shards or raises
:class:`ShardError` naming the shards that were lost, with the finished ones attached. With
``checkpoint=directory`` every finished shard is written there as soon as it arrives, and a
rerun with the same arguments computes only the missing shards.

Serialization. Before anything is submitted, :class:`RayExecutor` round-trips everything a
shard needs (the distribution with its energy, the options, ``init``; for ``log_partition``
the prepared path, base and kernel) through the serializer that carries it to the workers
(:func:`dumps`) and raises :class:`UnpicklableError` naming the part that cannot travel (see
:func:`check_picklable` for exactly what is checked).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from .runtime.executors import (
    RAY_INSTALL_HINT,
    Executor,
    LocalExecutor,
    RayExecutor,
    ShardError,
    execute,
    resolve_executor,
)
from .runtime.plan import shard_sizes, shard_stream_seeds
from .runtime.transport import UnpicklableError, check_picklable, dumps

if TYPE_CHECKING:
    from .partition.result import LogZEstimate
    from .samples import Samples

__all__ = [
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ShardError",
    "UnpicklableError",
    "RAY_INSTALL_HINT",
    "resolve_executor",
    "shard_sizes",
    "shard_stream_seeds",
    "check_picklable",
    "dumps",
    "execute",
    "run_sample",
    "run_log_partition",
    "SHARDED_LOG_PARTITION_METHODS",
]

#: ``log_partition`` methods whose particles can be sharded.
SHARDED_LOG_PARTITION_METHODS = ("ais", "importance", "ti", "bridge")


def run_sample(
    dist: Any,
    method: str | None = None,
    *,
    executor: Executor | str | None,
    num_chains: int,
    num_samples: int,
    num_warmup: int,
    thin: int = 1,
    seed: int | None = None,
    init: torch.Tensor | None = None,
    progress: bool | str = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    **kernel_options: Any,
) -> Samples:
    """:func:`gibbsebm.sample` with the chains split into shards run by ``executor``.

    Arguments are those of :func:`gibbsebm.sample`, except:

    Parameters
    ----------
    executor : None, "local", "ray" or Executor
        Who runs the shards (see :func:`resolve_executor`); the number of shards is the
        executor's ``num_shards``.
    checkpoint : path, optional
        A *directory*: every finished shard is stored there, and a rerun with the same
        arguments computes only the missing shards (a shard interrupted midway restarts).
    checkpoint_every : int
        Unused by sharded runs (shards are the unit of checkpointing); validated only.

    Returns
    -------
    Samples
        As from :func:`gibbsebm.sample`, with ``num_chains`` chains in shard order.
        ``seed`` is the run's seed; ``attrs`` records ``executor``, ``shard_sizes``,
        ``shard_seeds`` and ``shards_from_checkpoint``; ``adaptation["shards"]`` holds the
        parameters each shard tuned.

    Raises
    ------
    ValueError
        On bad arguments (before anything runs).
    UnpicklableError
        When the distribution, options or ``init`` cannot travel to Ray workers.
    ShardError
        When shards are lost after their retries (the message names them).

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> s = run_sample(d, "mala", executor=LocalExecutor(num_shards=3), num_chains=6,
    ...                num_samples=20, num_warmup=20, seed=1, progress=False,
    ...                warn=False)  # a sharding demo: too short to pass the checks
    >>> s.num_chains, s.attrs["shard_sizes"]
    (6, [2, 2, 2])
    """
    from .run import sample

    return sample(
        dist,
        method,
        executor="local" if executor is None else executor,
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        thin=thin,
        seed=seed,
        init=init,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        **kernel_options,
    )


def run_log_partition(
    dist: Any,
    method: str = "ais",
    *,
    executor: Executor | str | None,
    seed: int | None = None,
    progress: bool | str = True,
    on_untrusted: str = "warn",
    trust_thresholds: dict[str, float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    **options: Any,
) -> LogZEstimate:
    """:func:`gibbsebm.log_partition` with the particles split into shards run by ``executor``.

    ``method="ais"``: the base, the pilot run and the annealing schedule are set up once on
    the driver (seeded with ``seed``, as in-process); the ``num_chains`` particles are split
    into shards that anneal along that schedule, each with its own copy of the kernel (whose
    step size adapts on the shard's particles). ``method="importance"``: the base is fitted on
    the driver and the ``num_samples`` draws are sharded. The shards' log-weights are pooled
    before the log-mean-exp, so the estimate, its delta-method and batch standard errors, ESS
    and Pareto k-hat are those of one run with all particles; per-step increment statistics
    are pooled exactly.

    ``method="ti"`` / ``"bridge"``: the base, kernel and conditional-ESS ladder are built on
    the driver; the ``num_chains`` chains are split into shards, each climbing the whole
    ladder (rung ``k`` starts from rung ``k - 1``, as in-process). The rungs of all shards are
    stitched along the chain dimension before the reduction, so per-rung means and MCSEs, the
    per-chain integrals (TI), the jackknife over chain groups (bridge) and the quadrature
    error use every chain; the first interval's importance-sampling estimate is pooled
    exactly from the shards' sums of weights (:func:`_pool_log_mean_exp`). Reusing a finished
    parallel-tempering run (``samples=``) has nothing to shard and is refused.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch Gibbs distribution.
    method : {"ais", "importance", "ti", "bridge"}
        Estimators whose particles or chains can be sharded.
    executor : None, "local", "ray" or Executor
        Who runs the shards.
    seed : int, optional
        Seed of the run (``None``: a fresh one, recorded in ``diagnostics["seed"]``).
    progress : bool or "always"
        One progress bar for the whole run, advanced as shards finish.
    on_untrusted, trust_thresholds
        As in :func:`gibbsebm.log_partition`.
    checkpoint : path, optional
        Directory for finished shards; a rerun computes only the missing ones.
    **options
        Options of :func:`~gibbsebm.partition.ais.ais_log_partition`,
        :func:`~gibbsebm.partition.importance.importance_log_partition`,
        :func:`~gibbsebm.partition.ti.ti_log_partition` or
        :func:`~gibbsebm.partition.bridge.bridge_log_partition`.

    Returns
    -------
    LogZEstimate
        As in-process, with ``diagnostics["shards"]`` (executor, sizes, seeds, per-shard
        ``log_z`` for information, evaluation counts and kernels).

    Raises
    ------
    ValueError
        For a method without a sharded implementation or bad options.
    UnpicklableError
        When the setup cannot travel to Ray workers.
    ShardError
        When shards are lost after their retries.

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=2.0)
    >>> est = run_log_partition(d, "importance", executor=LocalExecutor(num_shards=4),
    ...                         seed=0, progress=False, base="standard", num_samples=4000)
    >>> abs(est.log_z - float(d.log_partition())) < 5 * est.stderr
    True
    """
    from .partition import log_partition

    if method not in SHARDED_LOG_PARTITION_METHODS:
        raise ValueError(
            f"method={method!r} has no sharded implementation; with an executor use one of "
            f"{list(SHARDED_LOG_PARTITION_METHODS)}, or drop executor= to run it in-process"
        )
    return log_partition(
        dist,
        method,
        executor="local" if executor is None else executor,
        seed=seed,
        progress=progress,
        on_untrusted=on_untrusted,
        trust_thresholds=trust_thresholds,
        checkpoint=checkpoint,
        **options,
    )
