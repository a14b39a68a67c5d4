"""The four benchmark targets of issue 3, written once for torch (gibbsebm) and once for JAX.

Every target provides

* ``torch_dist(device, dtype)``: a :class:`gibbsebm.Gibbs` at beta = 1;
* ``jax_logdensity``: the same unnormalised log-density as a JAX function of one position
  ``(d,)`` (for BlackJAX and NumPyro; JAX is imported lazily, the library never imports it);
* ``init(num_chains, rng)``: initial positions ``(num_chains, d)`` (float32 NumPy), the same
  array for every library;
* ``check(draws, reference)``: a correctness check on draws ``(chain, draw, d)`` returning a
  JSON-able dict with ``passed``.

T1  banana, d = 2, b = 0.1, sigma1 = 10 (Haario, Saksman & Tamminen 1999, section 3); chains
    start from N(0, I). Check: means and variances within 5 MCSE of the closed forms
    (``Banana.exact_mean`` / ``exact_covariance``).
T2  100-D diagonal Gaussian, standard deviations log-spaced from 0.1 to 10 (condition number
    1e4); chains start from N(0, I). Check: means and variances within 5 MCSE of the truth.
T3  ring of 8 Gaussians (radius 4, sd 0.5; ``GaussianMixture.ring``); EVERY chain starts in
    mode 0 (mean (4, 0) plus N(0, 0.5^2 I)). Check: the weight of each mode (nearest mode by
    responsibility) within 3 MCSE of 1/8.
T4  Bayesian logistic regression on scikit-learn's breast_cancer data (569 x 30, standardised,
    plus an intercept: 31 parameters, N(0, 1) prior); chains start from N(0, I). Check: means
    and variances agree with a long reference run (BlackJAX NUTS) within 5 combined MCSE.

MCSE of a mean is arviz's ``mcse(method="mean")`` over the (chain, draw) array (it uses the
multi-chain ESS, so between-chain disagreement widens it); the MCSE of a variance is the MCSE
of the mean of the squared deviation from the exact (or reference) mean.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import gibbsebm
from gibbsebm.energies import Banana, EnergyModel, GaussianMixture

#: Tolerances in MCSE units (issue 3: moments within 5 MCSE; mode weights within 3 MCSE).
MOMENT_Z = 5.0
MODE_Z = 3.0


# ------------------------------------------------------------------------------ torch energies
class DiagonalGaussianEnergy(EnergyModel):
    """:math:`E(y) = \\tfrac12 \\sum_i y_i^2 / \\sigma_i^2` (elementwise, no matmul).

    :class:`gibbsebm.energies.Gaussian` stores a dense precision and costs a ``d x d`` matmul
    per evaluation; the JAX side of the benchmark uses the elementwise form, so the torch side
    does too (same arithmetic for every library).
    """

    def __init__(self, sd: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv_var", 1.0 / sd**2)
        self.event_shape = torch.Size([sd.shape[0]])
        self.support = torch.distributions.constraints.real_vector

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (y * y * self.inv_var).sum(-1)


class LogisticRegressionEnergy(EnergyModel):
    """Negative log posterior of Bayesian logistic regression with a N(0, I) prior.

    .. math::

        E(\\theta) = \\sum_n \\big[\\operatorname{softplus}(x_n^\\top\\theta) - t_n x_n^\\top
        \\theta\\big] + \\tfrac12 \\lVert\\theta\\rVert^2 .
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("xt", features.T.contiguous())  # (d, n)
        self.register_buffer("t", labels)
        self.event_shape = torch.Size([features.shape[1]])
        self.support = torch.distributions.constraints.real_vector

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        eta = theta @ self.xt  # (C, n)
        nll = (torch.nn.functional.softplus(eta) - eta * self.t).sum(-1)
        return nll + 0.5 * (theta * theta).sum(-1)


def breast_cancer_design() -> tuple[np.ndarray, np.ndarray]:
    """Standardised breast_cancer features with an intercept column ``(569, 31)``, labels."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([np.ones((x.shape[0], 1)), x], 1)
    return x.astype(np.float32), data.target.astype(np.float32)


# ------------------------------------------------------------------------------ statistics
def _dataset(name: str, values: np.ndarray):
    """arviz dataset of ``(chain, draw, k)``; silences arviz's "more chains than draws" warning
    (thousands of short chains are the point of the benchmark)."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains")
        return az.convert_to_dataset({name: values.astype(np.float64)})


def _arviz_mcse_mean(values: np.ndarray) -> np.ndarray:
    """MCSE of the mean per coordinate of ``values`` ``(chain, draw, k)`` (arviz)."""
    import arviz as az

    ds = _dataset("v", values)
    return np.asarray(az.mcse(ds, method="mean")["v"].values, dtype=np.float64)


def min_bulk_ess(draws: np.ndarray) -> float:
    """Minimum over coordinates of arviz's bulk ESS of ``draws`` ``(chain, draw, d)``."""
    import arviz as az

    ds = _dataset("y", draws)
    ess = np.asarray(az.ess(ds, method="bulk")["y"].values, dtype=np.float64)
    if not np.all(np.isfinite(ess)):
        return 0.0
    return float(ess.min())


def moment_z(draws: np.ndarray, mean: np.ndarray, var: np.ndarray) -> dict[str, Any]:
    """z-scores of the sample means and variances against known values (MCSE units)."""
    m = draws.mean((0, 1))
    mcse_m = _arviz_mcse_mean(draws)
    sq = (draws - mean) ** 2
    v = sq.mean((0, 1))
    mcse_v = _arviz_mcse_mean(sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        zm = np.abs(m - mean) / mcse_m
        zv = np.abs(v - var) / mcse_v
    zm = np.where(np.isfinite(zm), zm, np.inf)
    zv = np.where(np.isfinite(zv), zv, np.inf)
    return {
        "max_z_mean": float(zm.max()),
        "max_z_var": float(zv.max()),
        "worst_mean": [float(m[zm.argmax()]), float(mean[zm.argmax()]), int(zm.argmax())],
        "worst_var": [float(v[zv.argmax()]), float(var[zv.argmax()]), int(zv.argmax())],
    }


# ------------------------------------------------------------------------------ targets
@dataclasses.dataclass
class Target:
    """One benchmark target (see the module notes)."""

    key: str
    title: str
    dim: int
    make_energy: Callable[[torch.device, torch.dtype], EnergyModel]
    make_jax_logdensity: Callable[[], Callable]
    init: Callable[[int, np.random.Generator], np.ndarray]
    check: Callable[[np.ndarray, dict | None], dict]
    needs_reference: bool = False

    def torch_dist(self, device: str | torch.device = "cpu", dtype=torch.float32):
        return gibbsebm.Gibbs(self.make_energy(torch.device(device), dtype), beta=1.0)


def _standard_normal_init(dim: int) -> Callable[[int, np.random.Generator], np.ndarray]:
    def init(n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, dim)).astype(np.float32)

    return init


# T1 -----------------------------------------------------------------------------------
BANANA_B = 0.1
BANANA_SIGMA1 = 10.0


def _banana_energy(device, dtype):
    return Banana(dim=2, b=BANANA_B, sigma1=BANANA_SIGMA1, dtype=dtype, device=device)


def _banana_jax():

    b, s1 = BANANA_B, BANANA_SIGMA1

    def logdensity(y):
        x2 = y[1] + b * y[0] ** 2 - b * s1**2
        return -0.5 * (y[0] ** 2 / s1**2 + x2**2)

    return logdensity


def _banana_check(draws: np.ndarray, reference: dict | None) -> dict:
    banana = Banana(dim=2, b=BANANA_B, sigma1=BANANA_SIGMA1)
    mean = banana.exact_mean(1.0).numpy()
    var = torch.diagonal(banana.exact_covariance(1.0)).numpy()
    out = moment_z(draws, mean, var)
    out["passed"] = bool(out["max_z_mean"] <= MOMENT_Z and out["max_z_var"] <= MOMENT_Z)
    out["rule"] = f"means and variances within {MOMENT_Z:g} MCSE of the exact values"
    return out


# T2 -----------------------------------------------------------------------------------
GAUSS_DIM = 100
GAUSS_SD = np.logspace(-1.0, 1.0, GAUSS_DIM)


def _gauss_energy(device, dtype):
    return DiagonalGaussianEnergy(torch.as_tensor(GAUSS_SD, dtype=dtype, device=device))


def _gauss_jax():
    import jax.numpy as jnp

    inv_var = jnp.asarray(1.0 / GAUSS_SD**2, dtype=jnp.float32)

    def logdensity(y):
        return -0.5 * jnp.sum(y * y * inv_var)

    return logdensity


def _gauss_check(draws: np.ndarray, reference: dict | None) -> dict:
    out = moment_z(draws, np.zeros(GAUSS_DIM), GAUSS_SD**2)
    out["passed"] = bool(out["max_z_mean"] <= MOMENT_Z and out["max_z_var"] <= MOMENT_Z)
    out["rule"] = f"means and variances within {MOMENT_Z:g} MCSE of the truth (100 coordinates)"
    return out


# T3 -----------------------------------------------------------------------------------
RING_MODES, RING_RADIUS, RING_SD = 8, 4.0, 0.5


def _ring_energy(device, dtype):
    return GaussianMixture.ring(RING_MODES, RING_RADIUS, RING_SD, dtype=dtype, device=device)


def _ring_means() -> np.ndarray:
    angle = 2 * math.pi * np.arange(RING_MODES) / RING_MODES
    return RING_RADIUS * np.stack([np.cos(angle), np.sin(angle)], -1)


def _ring_jax():
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    means = jnp.asarray(_ring_means(), dtype=jnp.float32)

    def logdensity(y):
        z = (y - means) / RING_SD
        return logsumexp(-0.5 * jnp.sum(z * z, -1))

    return logdensity


def _ring_init(n: int, rng: np.random.Generator) -> np.ndarray:
    """Every chain in mode 0: its mean plus N(0, sd^2 I)."""
    start = _ring_means()[0] + RING_SD * rng.standard_normal((n, 2))
    return start.astype(np.float32)


def _ring_check(draws: np.ndarray, reference: dict | None) -> dict:
    means = _ring_means()
    c, n, _ = draws.shape
    d2 = ((draws[:, :, None, :] - means) ** 2).sum(-1)  # equal weights and scales: nearest mode
    mode = d2.argmin(-1)
    ind = (mode[..., None] == np.arange(RING_MODES)).astype(np.float64)  # (c, n, K)
    w = ind.mean((0, 1))
    mcse = _arviz_mcse_mean(ind)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(w - 1.0 / RING_MODES) / mcse
    z = np.where(np.isfinite(z), z, np.inf)
    return {
        "weights": [round(float(x), 4) for x in w],
        "mcse": [round(float(x), 4) if np.isfinite(x) else None for x in mcse],
        "max_z": float(z.max()),
        "passed": bool(z.max() <= MODE_Z),
        "rule": f"each of the 8 mode weights within {MODE_Z:g} MCSE of 1/8, single-mode start",
    }


# T4 -----------------------------------------------------------------------------------
def _logreg_energy(device, dtype):
    x, t = breast_cancer_design()
    return LogisticRegressionEnergy(
        torch.as_tensor(x, dtype=dtype, device=device),
        torch.as_tensor(t, dtype=dtype, device=device),
    )


def _logreg_jax():
    import jax
    import jax.numpy as jnp

    x, t = breast_cancer_design()
    xj, tj = jnp.asarray(x), jnp.asarray(t)

    def logdensity(theta):
        eta = xj @ theta
        return jnp.sum(tj * eta - jax.nn.softplus(eta)) - 0.5 * jnp.sum(theta * theta)

    return logdensity


def _logreg_check(draws: np.ndarray, reference: dict | None) -> dict:
    if reference is None:
        return {"passed": None, "rule": "no reference run"}
    ref_mean = np.asarray(reference["mean"])
    ref_var = np.asarray(reference["var"])
    m = draws.mean((0, 1))
    mcse_m = _arviz_mcse_mean(draws)
    sq = (draws - ref_mean) ** 2
    v = sq.mean((0, 1))
    mcse_v = _arviz_mcse_mean(sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        zm = np.abs(m - ref_mean) / np.sqrt(mcse_m**2 + np.asarray(reference["mcse_mean"]) ** 2)
        zv = np.abs(v - ref_var) / np.sqrt(mcse_v**2 + np.asarray(reference["mcse_var"]) ** 2)
    zm = np.where(np.isfinite(zm), zm, np.inf)
    zv = np.where(np.isfinite(zv), zv, np.inf)
    return {
        "max_z_mean": float(zm.max()),
        "max_z_var": float(zv.max()),
        "passed": bool(zm.max() <= MOMENT_Z and zv.max() <= MOMENT_Z),
        "rule": f"means and variances within {MOMENT_Z:g} combined MCSE of the reference run",
    }


def reference_summary(draws: np.ndarray) -> dict:
    """Mean, variance and their MCSEs of a reference run ``(chain, draw, d)``."""
    m = draws.mean((0, 1))
    sq = (draws - m) ** 2
    return {
        "mean": m.tolist(),
        "var": sq.mean((0, 1)).tolist(),
        "mcse_mean": _arviz_mcse_mean(draws).tolist(),
        "mcse_var": _arviz_mcse_mean(sq).tolist(),
        "min_bulk_ess": min_bulk_ess(draws),
    }


TARGETS: dict[str, Target] = {
    "T1": Target(
        "T1",
        "banana 2-D (b = 0.1, sigma1 = 10), start N(0, I)",
        2,
        _banana_energy,
        _banana_jax,
        _standard_normal_init(2),
        _banana_check,
    ),
    "T2": Target(
        "T2",
        "100-D diagonal Gaussian, sd log-spaced 0.1..10",
        GAUSS_DIM,
        _gauss_energy,
        _gauss_jax,
        _standard_normal_init(GAUSS_DIM),
        _gauss_check,
    ),
    "T3": Target(
        "T3",
        "ring of 8 Gaussians (radius 4, sd 0.5), every chain starts in mode 0",
        2,
        _ring_energy,
        _ring_jax,
        _ring_init,
        _ring_check,
    ),
    "T4": Target(
        "T4",
        "logistic regression, breast_cancer (31 parameters, N(0, 1) prior)",
        31,
        _logreg_energy,
        _logreg_jax,
        _standard_normal_init(31),
        _logreg_check,
        needs_reference=True,
    ),
}
