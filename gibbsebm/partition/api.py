"""The front door :func:`log_partition`: one call, one :class:`LogZEstimate`."""

from __future__ import annotations

import importlib
import time
from typing import Any

from ._common import check_dist, make_generator
from .result import LogZEstimate, check_trust

__all__ = ["log_partition", "METHODS"]

#: ``method=`` name -> (module, function) under :mod:`gibbsebm.partition`.
METHODS: dict[str, tuple[str, str]] = {
    "exact": ("exact", "exact_log_partition"),
    "importance": ("importance", "importance_log_partition"),
    "ais": ("ais", "ais_log_partition"),
    "bdmc": ("bdmc", "bdmc_log_partition"),
    "ti": ("ti", "ti_log_partition"),
    "bridge": ("bridge", "bridge_log_partition"),
}


def log_partition(
    dist: Any,
    method: str = "ais",
    *,
    seed: int | None = None,
    progress: bool = True,
    on_untrusted: str = "warn",
    trust_thresholds: dict[str, float] | None = None,
    executor: Any = None,
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
        exactly into the same :class:`LogZEstimate` (see
        :func:`gibbsebm.executors.run_log_partition`, which also takes ``checkpoint=``).
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
        with ``dist.attach_log_partition(estimate)``.

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
    if executor is not None:
        from ..executors import run_log_partition

        return run_log_partition(
            dist,
            method,
            executor=executor,
            seed=seed,
            progress=progress,
            on_untrusted=on_untrusted,
            trust_thresholds=trust_thresholds,
            **options,
        )
    dist = check_dist(dist, method)
    t0 = time.perf_counter()
    module_name, fn_name = METHODS[method]
    fn = getattr(importlib.import_module(f"gibbsebm.partition.{module_name}"), fn_name)
    if method == "exact":
        est = fn(dist, seed=seed, **options)
    else:
        gen = make_generator(seed, dist.beta.device)
        est = fn(dist, gen, progress=progress, **options)
        est.diagnostics.setdefault("seed", gen.initial_seed())
    est.diagnostics["wall_time_s"] = time.perf_counter() - t0
    est.diagnostics["beta"] = float(dist.beta)
    return check_trust(est, on_untrusted, trust_thresholds)
