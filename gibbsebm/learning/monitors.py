"""What a training run learned, measured once per epoch with its error.

A monitor is an object with a ``name`` and ``__call__(ctx) -> dict[str, float]`` that
returns at least ``{name: value, name + "_stderr": stderr}``; ``gibbsebm.learning.fit``
calls it after every epoch with a ``MonitorContext`` and stores the numbers in the
epoch's ``history`` row. Monitors that carry state from one epoch to the next (the AIS
schedule) implement ``state_dict``/``load_state_dict`` so checkpoints resume them exactly.

* ``ExactLogLikelihood``: held-out \\(\\frac1n\\sum_i \\log p(y_i)\\) with the exact
  \\(\\log Z\\) (RBMs with a small layer, small Ising models, any energy on an enumerable
  finite support); the error is the test-set sampling error.
* ``AISLogLikelihood``: the same with \\(\\log Z\\) from annealed importance sampling
  (``gibbsebm.log_partition`` with ``method="ais"``), warm-started from the previous
  epoch's schedule; ``stderr`` is the AIS error of \\(\\log Z\\).
* ``MMDMonitor`` and ``mmd``: the unbiased squared maximum mean discrepancy between
  model samples and held-out data with a jackknife standard error.
* ``CalibrationMonitor``: ECE and NLL of a classifier with bootstrap errors
  (``gibbsebm.calibration``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..distribution import Gibbs

__all__ = [
    "MonitorContext",
    "ExactLogLikelihood",
    "AISLogLikelihood",
    "MMDMonitor",
    "CalibrationMonitor",
    "MMDResult",
    "mmd",
    "exact_log_partition_of",
]


@dataclass
class MonitorContext:
    """What a monitor sees after an epoch.

    Attributes
    ----------
    energy : nn.Module
        The energy being trained (in eval use: no gradients needed).
    epoch : int
        1-based epoch just finished.
    seed : int
        A seed for this epoch's monitor randomness (derived from the run's seed and the
        epoch, so that a resumed run measures the same numbers).
    generator : torch.Generator
        Seeded with ``seed``, on the energy's device.
    init_fn : callable
        The run's chain initialiser ``init_fn(n, generator)``.
    draw : callable
        ``draw(start, num_steps) -> Negatives`` with the run's sampler.
    event_shape : torch.Size
    """

    energy: Any
    epoch: int
    seed: int
    generator: torch.Generator
    init_fn: Callable[..., torch.Tensor]
    draw: Callable[..., Any]
    event_shape: torch.Size


def _mean_and_stderr(v: torch.Tensor) -> tuple[float, float]:
    v = v.detach().to(torch.float64)
    n = v.numel()
    sd = float(v.std(unbiased=True)) if n > 1 else float("nan")
    return float(v.mean()), sd / math.sqrt(n)


def exact_log_partition_of(energy: Any, event_shape: torch.Size) -> float:
    """Exact \\(\\log Z\\) at \\(\\beta = 1\\): the energy's closed form or enumeration.

    Raises
    ------
    ValueError
        If neither exists (use ``AISLogLikelihood``).
    """
    if getattr(energy, "has_exact_log_partition", False):
        return float(energy.exact_log_partition(1.0))
    dist = Gibbs(energy, 1.0, event_shape=event_shape, support=getattr(energy, "support", None))
    if dist.num_states is not None and dist.has_enumerate_support:
        return float(dist.log_partition())
    raise ValueError(
        f"{type(energy).__name__} has no exact log Z and its support is not enumerable: "
        "monitor with AISLogLikelihood instead"
    )


class ExactLogLikelihood:
    """Held-out mean log-likelihood with the exact \\(\\log Z\\).

    Reports ``name`` (nats per example), ``name_stderr`` (the standard error of the mean over
    the held-out examples; \\(\\log Z\\) itself is exact) and ``name_log_z``.

    Parameters
    ----------
    data : Tensor
        Held-out examples ``(n, *event)`` on the energy's device.
    name : str

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.energies import RBM
    >>> rbm = RBM.random(6, 3, generator=torch.Generator().manual_seed(0))
    >>> m = ExactLogLikelihood(torch.zeros(4, 6))
    >>> ctx = MonitorContext(rbm, 1, 0, None, None, None, torch.Size([6]))
    >>> sorted(m(ctx))
    ['exact_ll', 'exact_ll_log_z', 'exact_ll_stderr']
    """

    def __init__(self, data: torch.Tensor, name: str = "exact_ll") -> None:
        self.data = data
        self.name = name

    def __call__(self, ctx: MonitorContext) -> dict[str, float]:
        with torch.no_grad():
            log_z = exact_log_partition_of(ctx.energy, ctx.event_shape)
            ll = -ctx.energy(self.data).to(torch.float64) - log_z
        mean, se = _mean_and_stderr(ll)
        return {self.name: mean, f"{self.name}_stderr": se, f"{self.name}_log_z": log_z}


class AISLogLikelihood:
    """Held-out mean log-likelihood with \\(\\log Z\\) from AIS, with its error.

    Reports ``name`` (nats per example), ``name_stderr`` (the AIS standard error of
    \\(\\log Z\\), the error of the estimator), ``name_data_stderr`` (the held-out sampling
    error, shared with an exact monitor on the same data), ``name_log_z`` and
    ``name_trusted`` (1.0 if the estimator's trust checks passed, else 0.0).

    From the second epoch on, the annealing schedule of the previous epoch is reused (its
    pilot run is skipped); AIS is unbiased for any schedule, and the trust checks still
    flag a schedule that has become too coarse.

    Parameters
    ----------
    data : Tensor
        Held-out examples.
    name : str
    warm_start : bool
        Reuse the previous epoch's schedule.
    every : int
        Run every ``every`` epochs (and after the last one).
    **ais_options
        Options of ``gibbsebm.partition.ais.ais_log_partition`` (``num_chains``,
        ``kernel``, ``base``, ...).
    """

    def __init__(
        self,
        data: torch.Tensor,
        name: str = "ais_ll",
        *,
        warm_start: bool = True,
        every: int = 1,
        **ais_options,
    ) -> None:
        self.data = data
        self.every = every
        self.name = name
        self.warm_start = warm_start
        self.ais_options = ais_options
        self.schedule: list[float] | None = None

    def __call__(self, ctx: MonitorContext) -> dict[str, float]:
        from ..partition.api import log_partition

        dist = Gibbs(
            ctx.energy,
            1.0,
            event_shape=ctx.event_shape,
            support=getattr(ctx.energy, "support", None),
        )
        opts = dict(self.ais_options)
        if self.warm_start and self.schedule is not None and "schedule" not in opts:
            opts["schedule"] = torch.tensor(self.schedule, dtype=torch.float64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = log_partition(
                dist, "ais", seed=ctx.seed, progress=False, on_untrusted="warn", **opts
            )
        self.schedule = list(est.diagnostics.get("schedule", []) or []) or None
        with torch.no_grad():
            neg_e = -ctx.energy(self.data).to(torch.float64)
        mean, se = _mean_and_stderr(neg_e)
        trusted = not getattr(est, "problems", None) and not caught
        return {
            self.name: mean - est.log_z,
            f"{self.name}_stderr": float(est.stderr),
            f"{self.name}_data_stderr": se,
            f"{self.name}_log_z": float(est.log_z),
            f"{self.name}_trusted": 1.0 if trusted else 0.0,
        }

    def state_dict(self) -> dict:
        return {"schedule": self.schedule}

    def load_state_dict(self, state: dict) -> None:
        self.schedule = state.get("schedule")


class MMDResult(NamedTuple):
    """Unbiased \\(\\mathrm{MMD}^2\\), its jackknife standard error and the bandwidth."""

    value: float
    stderr: float
    bandwidth: float


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> MMDResult:
    """Unbiased squared MMD with a Gaussian kernel and its two-sample jackknife error.

    \\[
    \\widehat{\\mathrm{MMD}}^2_u = \\frac{1}{m(m-1)}\\sum_{i\\ne i'} k(x_i, x_{i'})
    + \\frac{1}{n(n-1)}\\sum_{j\\ne j'} k(y_j, y_{j'})
    - \\frac{2}{mn}\\sum_{i,j} k(x_i, y_j),
    \\qquad k(a, b) = e^{-\\|a-b\\|^2 / (2h^2)}
    \\]

    (Gretton et al. 2012, eq. 3; it can be negative when the distributions agree). The
    standard error is the jackknife over both samples (leave-one-out values in closed form
    from the kernel row sums). The bandwidth \\(h\\) defaults to the median pairwise
    distance of the pooled sample (the median heuristic).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
    >>> r = mmd(a, b)
    >>> abs(r.value) < 4 * r.stderr
    True

    References
    ----------
    A. Gretton et al., "A kernel two-sample test", JMLR 13 (2012).
    """
    x = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    y = y.detach().reshape(y.shape[0], -1).to(device=x.device, dtype=torch.float64)
    m, n = x.shape[0], y.shape[0]
    if m < 3 or n < 3:
        raise ValueError(f"mmd needs at least 3 points in each sample, got {m} and {n}")
    dxx, dyy, dxy = _sqdist(x, x), _sqdist(y, y), _sqdist(x, y)
    if bandwidth is None:
        pooled = torch.cat([dxx.reshape(-1), dyy.reshape(-1), dxy.reshape(-1)])
        bandwidth = float(pooled[pooled > 0].median().sqrt()) if (pooled > 0).any() else 1.0
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    kxx = torch.exp(-dxx / (2 * bandwidth**2)).fill_diagonal_(0.0)
    kyy = torch.exp(-dyy / (2 * bandwidth**2)).fill_diagonal_(0.0)
    kxy = torch.exp(-dxy / (2 * bandwidth**2))
    sxx, syy, sxy = kxx.sum(), kyy.sum(), kxy.sum()
    value = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)
    # leave x_i out
    rx, rxy = kxx.sum(1), kxy.sum(1)
    loo_x = (
        (sxx - 2 * rx) / ((m - 1) * (m - 2)) + syy / (n * (n - 1)) - 2 * (sxy - rxy) / ((m - 1) * n)
    )
    ry, ryx = kyy.sum(1), kxy.sum(0)
    loo_y = (
        sxx / (m * (m - 1)) + (syy - 2 * ry) / ((n - 1) * (n - 2)) - 2 * (sxy - ryx) / (m * (n - 1))
    )
    var = (m - 1) / m * ((loo_x - loo_x.mean()) ** 2).sum() + (n - 1) / n * (
        (loo_y - loo_y.mean()) ** 2
    ).sum()
    return MMDResult(float(value), float(var.sqrt()), float(bandwidth))


class MMDMonitor:
    """Unbiased \\(\\mathrm{MMD}^2\\) between model samples and held-out data.

    Model samples come from ``num_steps`` steps of the run's sampler started at fresh
    ``init_fn`` draws (``num_samples`` chains). Reports ``name``, ``name_stderr`` and
    ``name_bandwidth``.

    Parameters
    ----------
    heldout : Tensor
        Held-out data.
    num_samples : int, optional
        Chains (default: as many as held-out points).
    num_steps : int
        Sampler steps per chain.
    bandwidth : float, optional
        Kernel bandwidth (default: the median heuristic, fixed at the first epoch so the
        numbers of different epochs are comparable).
    name : str
    """

    def __init__(
        self,
        heldout: torch.Tensor,
        *,
        num_samples: int | None = None,
        num_steps: int = 200,
        bandwidth: float | None = None,
        name: str = "mmd",
    ) -> None:
        self.heldout = heldout
        self.num_samples = num_samples or heldout.shape[0]
        self.num_steps = num_steps
        self.bandwidth = bandwidth
        self.name = name

    def __call__(self, ctx: MonitorContext) -> dict[str, float]:
        start = ctx.init_fn(self.num_samples, ctx.generator)
        neg = ctx.draw(start, self.num_steps)
        r = mmd(neg.samples, self.heldout, self.bandwidth)
        if self.bandwidth is None:
            self.bandwidth = r.bandwidth
        return {
            self.name: r.value,
            f"{self.name}_stderr": r.stderr,
            f"{self.name}_bandwidth": r.bandwidth,
        }

    def state_dict(self) -> dict:
        return {"bandwidth": self.bandwidth}

    def load_state_dict(self, state: dict) -> None:
        self.bandwidth = state.get("bandwidth")


class CalibrationMonitor:
    """ECE and NLL of a classifier on held-out labelled data, with bootstrap errors.

    ``logits_fn(energy, x) -> (n, K)`` gives the logits (negative label energies); the
    metrics are ``gibbsebm.calibration.expected_calibration_error`` and
    ``gibbsebm.calibration.negative_log_likelihood``. Reports ``name_ece``,
    ``name_ece_stderr``, ``name_nll``, ``name_nll_stderr`` and ``name_accuracy``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        logits_fn: Callable[[Any, torch.Tensor], torch.Tensor],
        *,
        name: str = "calib",
        n_bootstrap: int = 200,
    ) -> None:
        self.x = x
        self.labels = labels
        self.logits_fn = logits_fn
        self.name = name
        self.n_bootstrap = n_bootstrap

    def __call__(self, ctx: MonitorContext) -> dict[str, float]:
        from ..calibration import expected_calibration_error, negative_log_likelihood

        with torch.no_grad():
            probs = torch.softmax(self.logits_fn(ctx.energy, self.x).to(torch.float64), -1)
        probs = probs.cpu()
        labels = self.labels.cpu()
        seed = ctx.seed % (2**31)
        ece = expected_calibration_error(probs, labels, n_bootstrap=self.n_bootstrap, seed=seed)
        nll = negative_log_likelihood(probs, labels, n_bootstrap=self.n_bootstrap, seed=seed)
        acc = float((probs.argmax(-1) == labels).to(torch.float64).mean())
        n = self.name
        return {
            f"{n}_ece": ece.value,
            f"{n}_ece_stderr": ece.stderr,
            f"{n}_nll": nll.value,
            f"{n}_nll_stderr": nll.stderr,
            f"{n}_accuracy": acc,
        }
