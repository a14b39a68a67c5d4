"""Partition functions: :math:`\\log Z_\\beta` with honest error bars.

Front door: :func:`log_partition` (methods ``exact``, ``importance``, ``ais``, ``bdmc``,
``ti``, ``bridge``), :func:`log_partition_curve` (log Z, mean energy and heat capacity over
a beta ladder) and :func:`compare_estimates` (flags estimates that disagree). Every
estimator returns a :class:`LogZEstimate` and warns (:class:`LogZWarning`) or raises
(:class:`UntrustedLogZError`) when its diagnostics say it cannot be trusted.
"""

from .api import METHODS, log_partition
from .result import (
    TRUST_THRESHOLDS,
    LogZEstimate,
    LogZWarning,
    UntrustedLogZError,
    check_trust,
)

__all__ = [
    "log_partition",
    "log_partition_curve",
    "compare_estimates",
    "LogZEstimate",
    "LogZWarning",
    "UntrustedLogZError",
    "LogZCurve",
    "Comparison",
    "TRUST_THRESHOLDS",
    "METHODS",
    "check_trust",
]


def __getattr__(name: str):
    if name in ("log_partition_curve", "LogZCurve"):
        from . import curve

        return getattr(curve, name)
    if name in ("compare_estimates", "Comparison"):
        from . import compare

        return getattr(compare, name)
    raise AttributeError(f"module 'gibbsebm.partition' has no attribute {name!r}")
