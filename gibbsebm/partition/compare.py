"""Do several log Z estimates agree within their errors?"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy.special import gammaincc

from .result import LogZEstimate, LogZWarning

__all__ = ["compare_estimates", "Comparison", "DEFAULT_Z_THRESHOLD"]

#: Pairs are flagged beyond |z| = 3 (two-sided normal tail probability 0.0027).
DEFAULT_Z_THRESHOLD = 3.0


@dataclass
class Comparison:
    """Pairwise comparison of log Z estimates.

    Attributes
    ----------
    labels : list of str
        One label per estimate.
    z : list of list of float
        ``z[i][j] = (log_z_i - log_z_j) / sqrt(se_i^2 + se_j^2)`` (``inf`` when both
        standard errors are 0 and the values differ).
    disagreements : list of tuple
        ``(label_i, label_j, z)`` for the pairs with ``|z| > z_threshold``.
    combined_log_z, combined_stderr : float
        Inverse-variance weighted mean of the estimates with nonzero stderr (or the exact
        value if one has stderr 0) and its standard error.
    pvalue : float
        Cochran's Q homogeneity test of all estimates with nonzero stderr.
    """

    labels: list[str]
    z: list[list[float]]
    disagreements: list[tuple[str, str, float]] = field(default_factory=list)
    combined_log_z: float = float("nan")
    combined_stderr: float = float("nan")
    pvalue: float = float("nan")
    z_threshold: float = DEFAULT_Z_THRESHOLD

    @property
    def consistent(self) -> bool:
        """Whether no pair disagrees beyond the threshold."""
        return not self.disagreements

    def table(self) -> str:
        """A small text table of the pairwise z-scores."""
        w = max(len(s) for s in self.labels) + 2
        head = " " * w + "".join(f"{s:>{w}}" for s in self.labels)
        rows = [head]
        for i, s in enumerate(self.labels):
            rows.append(
                f"{s:<{w}}" + "".join(f"{self.z[i][j]:>{w}.2f}" for j in range(len(self.labels)))
            )
        return "\n".join(rows)


def compare_estimates(
    estimates: Sequence[LogZEstimate],
    *,
    labels: Sequence[str] | None = None,
    z_threshold: float = DEFAULT_Z_THRESHOLD,
    on_disagreement: str = "warn",
) -> Comparison:
    """Flag log Z estimates that disagree beyond their standard errors.

    Parameters
    ----------
    estimates : sequence of LogZEstimate
        At least two estimates of the same log Z.
    labels : sequence of str, optional
        Names (default: each estimate's ``method``, numbered when repeated).
    z_threshold : float
        A pair disagrees when ``|z| > z_threshold``.
    on_disagreement : {"warn", "ignore"}
        Emit a :class:`LogZWarning` naming the disagreeing pairs.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> a = LogZEstimate(1.00, 0.01, "ais")
    >>> b = LogZEstimate(1.50, 0.01, "ti")
    >>> compare_estimates([a, b], on_disagreement="ignore").disagreements[0][:2]
    ('ais', 'ti')
    """
    est = list(estimates)
    if len(est) < 2:
        raise ValueError("compare_estimates needs at least two estimates")
    for e in est:
        if not hasattr(e, "log_z") or not hasattr(e, "stderr"):
            raise ValueError(f"not a LogZEstimate: {e!r}")
    if on_disagreement not in ("warn", "ignore"):
        raise ValueError(f"on_disagreement must be 'warn' or 'ignore', got {on_disagreement!r}")
    if labels is None:
        names = [e.method for e in est]
        labels = [
            n if names.count(n) == 1 else f"{n}#{names[:i].count(n) + 1}"
            for i, n in enumerate(names)
        ]
    labels = list(labels)
    if len(labels) != len(est):
        raise ValueError(f"got {len(labels)} labels for {len(est)} estimates")
    n = len(est)
    z = [[0.0] * n for _ in range(n)]
    bad = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            diff = est[i].log_z - est[j].log_z
            sd = math.sqrt(est[i].stderr ** 2 + est[j].stderr ** 2)
            if sd > 0:
                z[i][j] = diff / sd
            else:
                z[i][j] = 0.0 if diff == 0 else math.copysign(math.inf, diff)
            if i < j and abs(z[i][j]) > z_threshold:
                bad.append((labels[i], labels[j], z[i][j]))
    exact = [e for e in est if e.stderr == 0]
    noisy = [e for e in est if e.stderr > 0 and math.isfinite(e.stderr)]
    comb, comb_se, pval = float("nan"), float("nan"), float("nan")
    if exact:
        comb, comb_se = exact[0].log_z, 0.0
    elif noisy:
        w = [1.0 / e.stderr**2 for e in noisy]
        comb = sum(wi * e.log_z for wi, e in zip(w, noisy)) / sum(w)
        comb_se = math.sqrt(1.0 / sum(w))
    if len(noisy) >= 2:
        w = [1.0 / e.stderr**2 for e in noisy]
        m = sum(wi * e.log_z for wi, e in zip(w, noisy)) / sum(w)
        q = sum(wi * (e.log_z - m) ** 2 for wi, e in zip(w, noisy))
        pval = float(gammaincc(0.5 * (len(noisy) - 1), 0.5 * q))
    out = Comparison(labels, z, bad, comb, comb_se, pval, z_threshold)
    if bad and on_disagreement == "warn":
        msg = "; ".join(f"{a} vs {b}: z = {v:.2f}" for a, b, v in bad)
        warnings.warn(
            f"log Z estimates disagree beyond their errors: {msg}", LogZWarning, stacklevel=2
        )
    return out
