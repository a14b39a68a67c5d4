"""The front door :func:`log_partition` (one call, one :class:`LogZEstimate`) and
:func:`make_plan`, which describes an estimator's work as shards for any executor."""

from __future__ import annotations

import importlib
import inspect
import math
import time
from typing import Any

from ..distribution import Gibbs
from ..runtime.plan import resolve_seed, run_here
from ._common import check_dist, make_generator, resolution_stderr
from ._plan import LogZPlan, check_options, keyword_options
from .result import LogZEstimate, check_trust

__all__ = ["log_partition", "make_plan", "METHODS", "PLANS"]

#: ``method=`` name -> (module, function) under :mod:`gibbsebm.partition`.
METHODS: dict[str, tuple[str, str]] = {
    "exact": ("exact", "exact_log_partition"),
    "importance": ("importance", "importance_log_partition"),
    "ais": ("ais", "ais_log_partition"),
    "bdmc": ("bdmc", "bdmc_log_partition"),
    "ti": ("ti", "ti_log_partition"),
    "bridge": ("bridge", "bridge_log_partition"),
    "smc": ("smc", "smc_log_partition"),
}

#: ``method=`` name -> (module, plan class) under :mod:`gibbsebm.partition`: adding an
#: estimator is one module with its plan, and one line here.
PLANS: dict[str, tuple[str, str]] = {
    "exact": ("exact", "ExactPlan"),
    "importance": ("importance", "ImportancePlan"),
    "ais": ("ais", "AISPlan"),
    "bdmc": ("bdmc", "BDMCPlan"),
    "ti": ("ti", "TIPlan"),
    "bridge": ("bridge", "BridgePlan"),
    "smc": ("smc", "SMCPlan"),
}


def find_mode_search(diag: Any, depth: int = 0) -> dict[str, Any] | None:
    """The ``mode_search`` record of the base inside an estimate's diagnostics (or ``None``)."""
    if not isinstance(diag, dict) or depth > 4:
        return None
    if isinstance(diag.get("mode_search"), dict):
        return diag["mode_search"]
    for v in diag.values():
        found = find_mode_search(v, depth + 1)
        if found is not None:
            return found
    return None


def _independent_mode_search(dist: Any, seed: int | None) -> dict[str, Any] | None:
    from ..modes import find_modes
    from ._common import is_real_support

    if not is_real_support(dist.support):
        return None
    try:
        res = find_modes(dist, seed=None if seed is None else seed + 7919)
    except ValueError:
        return None
    out = res.describe()
    out["searched_by"] = "log_partition (independent of the base)"
    return out


def plan_class(method: str) -> type[LogZPlan]:
    """The plan class of ``method`` (a clear error for unknown names)."""
    if method not in PLANS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(PLANS)}")
    module_name, cls_name = PLANS[method]
    return getattr(importlib.import_module(f"gibbsebm.partition.{module_name}"), cls_name)


#: Count options that set how many particles, chains or samples are held at once, and those
#: that set how many steps each one takes.
_SIZE_OPTIONS = ("num_chains", "num_samples", "num_particles")
_STEP_OPTIONS = ("num_steps", "num_rungs")


def _check_sizes(dist: Gibbs, options: dict[str, Any]) -> None:
    """Refuse counts that could not be allocated or would run for days (a clear error, not
    torch's allocator failing or a hang); the limits are those of :func:`gibbsebm.sample`."""
    from .. import _validation as V

    per_item = 1
    for n in (*dist.batch_shape, *dist.event_shape):
        per_item *= int(n)
    for name in _SIZE_OPTIONS + _STEP_OPTIONS:
        v = options.get(name)
        if isinstance(v, bool) or not isinstance(v, int):
            continue  # type and lower bound: the method's own checks
        limit = (
            V.MAX_DRAW_ELEMENTS // max(per_item, 1) if name in _SIZE_OPTIONS else V.MAX_ITERATIONS
        )
        if v > limit:
            V.check_count(v, name, lo=-(2**63), hi=limit)


def make_plan(
    dist: Any, method: str = "ais", *, seed: int | None = None, **options: Any
) -> LogZPlan:
    """The work of ``log_partition(dist, method, seed=seed, **options)`` as a plan of shards.

    The setup (base, pilot run, schedule or ladder) runs here, on a generator seeded with
    ``seed``; the plan's ``shards(K)``, ``run_shard`` and ``merge`` then compute the estimate
    in any number of shards (:mod:`gibbsebm.runtime.plan`). ``run_here(plan)`` is the
    in-process estimate, bit for bit.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch Gibbs distribution.
    method : str
        A name of :data:`PLANS`.
    seed : int, optional
        Seed of the run (``None``: a fresh one, kept in ``plan.seed``).
    **options
        The method's options (see :func:`log_partition`).

    Returns
    -------
    LogZPlan

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> from gibbsebm.runtime import run_here
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)), beta=1.0)
    >>> plan = make_plan(d, "importance", seed=0, base="standard", num_samples=1000)
    >>> [s.size for s in plan.shards(3)]
    [334, 333, 333]
    >>> est = run_here(plan)
    """
    cls = plan_class(method)
    dist = check_dist(dist, method)
    _check_sizes(dist, options)
    signature = inspect.signature(cls.__init__).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature):
        check_options(method, options, keyword_options(cls.__init__, "seed"))
    if not cls.uses_generator:
        return cls(dist, make_generator(seed, dist.beta.device), seed=seed, **options)
    seed = resolve_seed(seed)
    return cls(dist, make_generator(seed, dist.beta.device), seed=seed, **options)


def log_partition(
    dist: Any,
    method: str = "ais",
    *,
    seed: int | None = None,
    progress: bool = True,
    on_untrusted: str = "warn",
    trust_thresholds: dict[str, float] | None = None,
    executor: Any = None,
    checkpoint: Any = None,
    check_modes: bool = True,
    **options: Any,
) -> LogZEstimate:
    """Estimate :math:`\\log Z_\\beta` of a Gibbs distribution with an honest standard error.

    Parameters
    ----------
    dist : Gibbs
        The distribution :math:`b(y) e^{-\\beta E(y)} / Z_\\beta` (scalar batch shape).
    method : str
        ``"exact"`` (closed form, enumeration or quadrature),
        ``"importance"`` (importance sampling from a Laplace/uniform base),
        ``"ais"`` (annealed importance sampling, the default),
        ``"bdmc"`` (forward and reverse AIS: stochastic lower and upper bounds),
        ``"ti"`` (thermodynamic integration) or ``"bridge"`` (chained bridge sampling / BAR).
    seed : int, optional
        Seed of the estimator's own ``torch.Generator`` (``None``: fresh entropy). The same
        seed on the same device gives the same estimate.
    progress : bool
        Show a progress bar when stderr is a terminal.
    on_untrusted : {"warn", "raise", "ignore"}
        What happens when the diagnostics say the estimate cannot be trusted (Pareto k-hat
        > 0.7, ESS < 10, independent batches that disagree, a too-coarse TI ladder): a
        :class:`LogZWarning`, an :class:`UntrustedLogZError` carrying the estimate in
        ``.estimate``, or nothing (the findings are always in ``estimate.problems``).
    trust_thresholds : dict, optional
        Overrides of :data:`gibbsebm.partition.TRUST_THRESHOLDS`.
    executor : None, "local", "ray" or Executor
        ``None`` (default) runs here; otherwise the particles (``ais``, ``importance``) or
        chains (``ti``, ``bridge``) are split into shards run by
        :class:`gibbsebm.executors.LocalExecutor` or :class:`gibbsebm.RayExecutor` and pooled
        exactly into the same :class:`LogZEstimate` (the method's plan, see
        :func:`make_plan`). ``exact`` and ``bdmc`` do not split and refuse an executor.
    checkpoint : path, optional
        With an executor: a directory where finished shards are kept; a rerun with the same
        arguments computes only the missing ones.
    check_modes : bool
        For continuous targets whose base did not come from a mode search (``base=`` given):
        run :func:`gibbsebm.find_modes` on a generator of its own and record
        ``diagnostics["modes"]``, so that a base covering only some of the modes found is
        flagged (more than one mode found makes any estimate conditional on them).
    **options
        Method options; see :func:`~gibbsebm.partition.importance.importance_log_partition`,
        :func:`~gibbsebm.partition.ais.ais_log_partition`,
        :func:`~gibbsebm.partition.bdmc.bdmc_log_partition`,
        :func:`~gibbsebm.partition.ti.ti_log_partition`,
        :func:`~gibbsebm.partition.bridge.bridge_log_partition`.

    Returns
    -------
    LogZEstimate
        ``log_z``, ``stderr``, ``ci(level)``, ``diagnostics`` (with the defaults chosen and
        ``wall_time_s``), and ``lower``/``upper`` for ``bdmc``. Attach it to the distribution
        with ``dist.attach_log_partition(estimate)``. Every Monte Carlo method's ``stderr``
        includes, in quadrature, a resolution floor of ``1 / num_energy_evals``
        (``diagnostics["resolution_stderr"]``, see
        :func:`~gibbsebm.partition._common.resolution_stderr`): an estimate cannot claim to
        see mass shares smaller than the points it looked at.

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(3)), beta=2.0)
    >>> est = gibbsebm.log_partition(d, method="importance", seed=0, base="standard")
    >>> abs(est.log_z - float(d.log_partition())) < 5 * est.stderr
    True
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if isinstance(dist, Gibbs):
        from .._run_init import probe_energy

        # one value per input, sane magnitude, finite somewhere: checked once, here
        probe_energy(dist, need_grad=method != "exact")
    t0 = time.perf_counter()
    if executor is None:
        if checkpoint is not None:
            raise ValueError(
                "checkpoint= keeps finished shards of a sharded run: pass executor='local' "
                "(one shard per executor shard) or drop checkpoint="
            )
        plan = make_plan(dist, method, seed=seed, **options)
        est = run_here(plan, progress=progress)
    else:
        from ..runtime.executors import _check_progress, execute, resolve_executor

        reason = plan_class(method).refuse_sharding(options)
        if reason is not None:
            raise ValueError(reason)
        _check_progress(progress)
        check_dist(dist, method)
        executor = resolve_executor(executor)
        seed = resolve_seed(seed, checkpoint)
        parts = {f"option {k!r}": v for k, v in options.items()}
        executor.check_transport({"the distribution": dist, **parts})  # before the setup runs
        plan = make_plan(dist, method, seed=seed, **options)
        est = execute(plan, executor, checkpoint=checkpoint, progress=progress)
    if plan.uses_generator:
        est.diagnostics.setdefault("seed", plan.seed)
    est.diagnostics["wall_time_s"] = time.perf_counter() - t0
    est.diagnostics["beta"] = float(plan.dist.beta)
    if method != "exact" and math.isfinite(est.stderr) and math.isfinite(est.log_z):
        floor = resolution_stderr(est.num_energy_evals)
        est.diagnostics["resolution_stderr"] = floor
        est.stderr = math.hypot(est.stderr, floor)
    modes = find_mode_search(est.diagnostics)
    if modes is None and check_modes and method != "exact" and not plan.dist.is_discrete:
        # the base did not search for modes (a user base, "standard"): search here, on a
        # generator of its own, so that a base covering one mode of several is flagged
        modes = _independent_mode_search(plan.dist, plan.seed)
    if modes is not None:
        est.diagnostics["modes"] = modes
    return check_trust(est, on_untrusted, trust_thresholds)
