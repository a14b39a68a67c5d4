"""The result type of every log Z estimator, and the trust checks that guard it.

Every estimator in :mod:`gibbsebm.partition` returns a :class:`LogZEstimate`. Before it is
returned, :func:`check_trust` compares its diagnostics with the thresholds in
:data:`TRUST_THRESHOLDS` and warns (:class:`LogZWarning`) or raises
(:class:`UntrustedLogZError`, with the estimate attached) when the estimate cannot be trusted.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

__all__ = [
    "LogZEstimate",
    "LogZWarning",
    "UntrustedLogZError",
    "TRUST_THRESHOLDS",
    "check_trust",
]

#: Thresholds of the trust checks.
#:
#: * ``khat``: Pareto k-hat above 0.7 means the importance weights have so heavy a right tail
#:   that the Monte Carlo error is unreliable (Vehtari, Simpson, Gelman, Yao & Gabry 2024,
#:   "Pareto smoothed importance sampling", JMLR, section 3: k > 0.7 is "unreliable" for any
#:   practical sample size).
#: * ``min_ess``: fewer than 10 effective weights: the standard error itself rests on a handful
#:   of draws (its relative error is about ``1/sqrt(2 * ESS)``, > 20 %).
#: * ``batch_pvalue``: independent batches disagree beyond their own standard errors
#:   (chi-square test of homogeneity, p < 0.001, i.e. a false alarm 1 run in 1000).
#: * ``max_rel_quadrature``: thermodynamic integration's quadrature error estimate exceeds its
#:   Monte Carlo standard error by this factor (the ladder is too coarse to trust the stderr).
#: * ``max_modes``: more modes than this found by the base's search
#:   (:func:`gibbsebm.find_modes`) makes the estimate conditional on the modes found: a mode
#:   the search missed (a narrow mode inside a broad basin is never reached by a local search
#:   from broad starts) would make every estimator too low, and no check the library can run
#:   rules that out. Raise it (``trust_thresholds={"max_modes": m}``) only when you know the
#:   list of modes is complete (symmetry, a known model); the modes are in
#:   ``diagnostics["modes"]``.
TRUST_THRESHOLDS: dict[str, float] = {
    "max_modes": 1.0,
    "khat": 0.7,
    "min_ess": 10.0,
    "batch_pvalue": 1e-3,
    "max_rel_quadrature": 3.0,
}

_ON_UNTRUSTED = ("warn", "raise", "ignore")


class LogZWarning(UserWarning):
    """A log Z estimate whose diagnostics say it cannot be trusted."""


class UntrustedLogZError(RuntimeError):
    """Raised with ``on_untrusted="raise"``; the estimate is in ``.estimate``."""

    def __init__(self, message: str, estimate: LogZEstimate) -> None:
        super().__init__(message)
        self.estimate = estimate


@dataclass
class LogZEstimate:
    """An estimate of :math:`\\log Z_\\beta` with its standard error and diagnostics.

    Attributes
    ----------
    log_z : float
        The estimate of :math:`\\log Z_\\beta` (natural log).
    stderr : float
        Its standard error (0 for exact methods).
    method : str
        The ``method=`` name that produced it.
    num_energy_evals : int
        Number of single-state energy (or energy-and-gradient) evaluations spent.
    diagnostics : dict
        Method-specific diagnostics: ``ess`` and ``khat`` of the importance weights,
        per-step increments or per-beta means, batch estimates, and ``defaults``: the
        choices made for options the caller did not give.
    lower, upper : float or None
        Stochastic lower / upper bounds where the method gives them (AIS is a stochastic
        lower bound in expectation, reverse AIS an upper bound; see :mod:`.bdmc`).
    problems : list of str
        What the trust checks found (empty when the estimate passed them).

    Examples
    --------
    >>> est = LogZEstimate(log_z=1.0, stderr=0.1, method="ais")
    >>> [round(v, 3) for v in est.ci(0.95)]
    [0.804, 1.196]
    """

    log_z: float
    stderr: float
    method: str
    num_energy_evals: int = 0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    lower: float | None = None
    upper: float | None = None
    problems: list[str] = field(default_factory=list)

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Normal-approximation confidence interval ``log_z +- z_{(1+level)/2} * stderr``.

        Parameters
        ----------
        level : float
            Coverage in (0, 1).

        Returns
        -------
        tuple of float
            ``(low, high)``.
        """
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        z = NormalDist().inv_cdf(0.5 + 0.5 * float(level))
        return (self.log_z - z * self.stderr, self.log_z + z * self.stderr)

    @property
    def trusted(self) -> bool:
        """Whether the trust checks found no problem."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON-friendly) view of the estimate."""
        return {
            "log_z": self.log_z,
            "stderr": self.stderr,
            "method": self.method,
            "num_energy_evals": self.num_energy_evals,
            "lower": self.lower,
            "upper": self.upper,
            "problems": list(self.problems),
            "diagnostics": _jsonable(self.diagnostics),
        }

    def __repr__(self) -> str:
        bounds = ""
        if self.lower is not None or self.upper is not None:
            bounds = f", lower={_fmt(self.lower)}, upper={_fmt(self.upper)}"
        flag = "" if self.trusted else f", UNTRUSTED: {'; '.join(self.problems)}"
        return (
            f"LogZEstimate(log_z={self.log_z:.6g}, stderr={self.stderr:.3g}, "
            f"method={self.method!r}{bounds}, num_energy_evals={self.num_energy_evals}{flag})"
        )


def _fmt(v: float | None) -> str:
    return "None" if v is None else f"{v:.6g}"


def _jsonable(obj: Any) -> Any:
    """Convert tensors/arrays/numpy scalars inside ``obj`` into plain Python values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def check_trust(
    estimate: LogZEstimate,
    on_untrusted: str = "warn",
    thresholds: dict[str, float] | None = None,
) -> LogZEstimate:
    """Check an estimate's diagnostics; record, warn about or raise on problems.

    The checks read these optional diagnostics: ``modes`` (the base's mode search: more than
    ``max_modes`` modes makes the estimate conditional on them), ``khat`` (Pareto k-hat of the weights),
    ``ess`` (effective sample size of the weights), ``batch_pvalue`` (homogeneity of
    independent batch estimates), ``quadrature_error`` with ``mc_stderr`` (TI), and
    ``extra_problems`` (a list of method-specific findings).

    Parameters
    ----------
    estimate : LogZEstimate
        The estimate; its ``problems`` list is filled in.
    on_untrusted : {"warn", "raise", "ignore"}
        What to do when a check fails.
    thresholds : dict, optional
        Overrides of :data:`TRUST_THRESHOLDS`.

    Returns
    -------
    LogZEstimate
        The same estimate.

    Raises
    ------
    UntrustedLogZError
        With ``on_untrusted="raise"`` when a check fails (``.estimate`` holds the estimate).
    """
    if on_untrusted not in _ON_UNTRUSTED:
        raise ValueError(f"on_untrusted must be one of {_ON_UNTRUSTED}, got {on_untrusted!r}")
    th = dict(TRUST_THRESHOLDS)
    if thresholds:
        unknown = set(thresholds) - set(th)
        if unknown:
            raise ValueError(f"unknown trust thresholds {sorted(unknown)}; known: {sorted(th)}")
        th.update(thresholds)
    d = estimate.diagnostics
    problems: list[str] = []
    if not math.isfinite(estimate.log_z) or not math.isfinite(estimate.stderr):
        problems.append(f"non-finite estimate (log_z={estimate.log_z}, stderr={estimate.stderr})")
    khat = d.get("khat")
    if khat is not None and math.isfinite(khat) and khat > th["khat"]:
        problems.append(f"Pareto k-hat {khat:.2f} > {th['khat']} (heavy-tailed weights)")
    ess = d.get("ess")
    if ess is not None and ess < th["min_ess"]:
        problems.append(f"effective sample size {ess:.1f} < {th['min_ess']:g}")
    pval = d.get("batch_pvalue")
    if pval is not None and pval < th["batch_pvalue"]:
        problems.append(
            f"independent batches disagree beyond their standard errors (p = {pval:.2g})"
        )
    qerr, mcse = d.get("quadrature_error"), d.get("mc_stderr")
    if qerr is not None and mcse is not None and qerr > th["max_rel_quadrature"] * max(mcse, 1e-12):
        problems.append(
            f"quadrature error {qerr:.3g} exceeds {th['max_rel_quadrature']:g} x the Monte Carlo "
            f"error {mcse:.3g}: use a finer beta ladder"
        )
    modes = d.get("modes")
    if isinstance(modes, dict) and modes.get("num_modes", 1) > th["max_modes"]:
        problems.append(
            f"{modes['num_modes']} modes found: the estimate is conditional on the modes found "
            "(diagnostics['modes']); a mode the search missed would make it too low and its "
            "error bar does not cover that (trust_thresholds={'max_modes': "
            f"{modes['num_modes']}}} accepts the list as complete)"
        )
    problems.extend(d.get("extra_problems", []))
    estimate.problems = problems
    if problems and on_untrusted != "ignore":
        msg = f"log Z estimate from method={estimate.method!r} cannot be trusted: " + "; ".join(
            problems
        )
        if on_untrusted == "raise":
            raise UntrustedLogZError(msg, estimate)
        warnings.warn(msg, LogZWarning, stacklevel=3)
    return estimate
