"""Shared pieces of the log Z estimators: input checks, generators, evaluation counting,
progress bars and the base distributions (uniform on a finite support; Gaussian or mixture
of Gaussians from a Laplace approximation).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import constraints

from ..constraints import support_values
from ..distribution import Gibbs

__all__ = [
    "check_dist",
    "make_generator",
    "EvalCounter",
    "progress_bar",
    "is_real_support",
    "UniformBase",
    "GaussianMixtureBase",
    "laplace_base",
    "make_base",
]


def check_dist(dist: Any, method: str) -> Gibbs:
    """Require a scalar-batch :class:`~gibbsebm.Gibbs` distribution.

    A conditional distribution with a condition batch of one (``dist.condition(x[i:i+1])``,
    batch shape ``(1,)``) and a scalar ``beta`` is accepted as the one conditional
    distribution :math:`p_\\beta(y \\mid x_i)`; the estimate is its log Z.
    """
    if not isinstance(dist, Gibbs):
        raise ValueError(
            f"log_partition needs a gibbsebm.Gibbs distribution, got {type(dist).__name__}"
        )
    dist = dist._single_condition()
    if method != "exact" and not dist.is_discrete:
        from .._run_init import unconstrained

        # Z is the same integral in u = T^{-1}(y): the estimators run on the real line, where
        # their Laplace / Gaussian bases live, with the log-Jacobian as base measure
        reparam = unconstrained(dist)
        if reparam is not None:
            dist = reparam[0]
    if dist.batch_shape != torch.Size():
        batch = tuple(dist.batch_shape)
        if dist.x is not None and dist.beta.dim() == 0:
            hint = (
                f"the condition has a batch of {dist.x.shape[0]} inputs: estimate one log Z per "
                "input, e.g. [gibbsebm.log_partition(dist.condition(dist.x[i:i+1])) "
                f"for i in range({dist.x.shape[0]})]"
            )
        else:
            hint = (
                "beta is a ladder: use gibbsebm.log_partition_curve(dist, betas) for a ladder "
                "of betas, or gibbsebm.log_partition(dist.at(b)) for one scalar beta b"
                + (
                    " (a conditional one per input: dist.at(b).condition(dist.x[i:i+1]))"
                    if dist.x is not None
                    else ""
                )
            )
        raise ValueError(
            f"method={method!r} estimates one log Z; the distribution has batch shape "
            f"{batch}: {hint}"
        )
    return dist


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device``: seeded with ``seed``, or from OS entropy if ``None``."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        g.manual_seed(seed)
    return g


class EvalCounter:
    """Counts single-state energy evaluations of the wrapped log-density functions."""

    def __init__(self) -> None:
        self.n = 0

    def wrap(self, fn: Callable[[torch.Tensor], torch.Tensor], event_dim: int) -> Callable:
        def counted(y: torch.Tensor) -> torch.Tensor:
            lead = y.shape[: y.dim() - event_dim]
            self.n += math.prod(lead)
            return fn(y)

        return counted


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else a no-op bar."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
        file=sys.stderr,
    )


def is_real_support(support: constraints.Constraint) -> bool:
    """Whether ``support`` is (a product of) the real line."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real or isinstance(support, type(constraints.real))


# ---------------------------------------------------------------------- base distributions
class UniformBase:
    """Uniform distribution on a finite product support (values ``vals`` per coordinate)."""

    kind = "uniform"

    def __init__(self, vals: torch.Tensor, event_shape: torch.Size) -> None:
        self.vals = vals
        self.event_shape = torch.Size(event_shape)
        n = math.prod(self.event_shape)
        self.log_norm = n * math.log(vals.numel())  # log |support|

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(
            0,
            self.vals.numel(),
            (n,) + self.event_shape,
            generator=generator,
            device=self.vals.device,
        )
        return self.vals[idx]

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        lead = y.shape[: y.dim() - len(self.event_shape)]
        # a constant, written as a function of y (zero gradient) so that gradient-based
        # discrete kernels (GWG, DMALA) can run on the base itself
        return y.reshape(lead + (-1,))[..., 0].to(y.dtype) * 0 - self.log_norm

    def describe(self) -> dict[str, Any]:
        return {"kind": "uniform", "num_values": int(self.vals.numel()), "log_size": self.log_norm}


class GaussianMixtureBase:
    """Mixture of Gaussians on flattened ``y``: weights, means ``(M, d)``, Cholesky ``(M, d, d)``.

    One component is a plain Gaussian. ``whiten`` gives the affine map ``y = mu + L z`` from the
    mixture's overall mean and covariance, used to precondition the samplers.
    """

    kind = "gaussian"

    def __init__(
        self,
        means: torch.Tensor,
        scale_trils: torch.Tensor,
        log_weights: torch.Tensor,
        event_shape: torch.Size,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.means = means
        self.scale_trils = scale_trils
        self.log_weights = log_weights - torch.logsumexp(log_weights, 0)
        self.event_shape = torch.Size(event_shape)
        self.d = means.shape[-1]
        diag = torch.diagonal(scale_trils, dim1=-2, dim2=-1)
        self._half_logdet = torch.log(diag).sum(-1)  # (M,)
        self.info = info or {}

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        m = self.means
        comp = torch.multinomial(
            self.log_weights.exp(), n, replacement=True, generator=generator
        )  # (n,)
        eps = torch.randn((n, self.d), generator=generator, dtype=m.dtype, device=m.device)
        y = m[comp] + torch.einsum("nij,nj->ni", self.scale_trils[comp], eps)
        return y.reshape((n,) + self.event_shape)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        lead = y.shape[: y.dim() - len(self.event_shape)]
        yf = y.reshape((-1, self.d))
        diff = (yf[None, :, :] - self.means[:, None, :]).transpose(-1, -2)  # (M, d, n)
        sol = torch.linalg.solve_triangular(self.scale_trils, diff, upper=False)  # (M, d, n)
        comp_lp = (
            -0.5 * (sol**2).sum(-2)
            - self._half_logdet[:, None]
            - 0.5 * self.d * math.log(2 * math.pi)
            + self.log_weights[:, None]
        )  # (M, n)
        return torch.logsumexp(comp_lp, dim=0).reshape(lead)

    def whiten(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(d,)`` and Cholesky factor ``(d, d)`` of the mixture's overall covariance."""
        w = self.log_weights.exp()
        mu = (w[:, None] * self.means).sum(0)
        covs = self.scale_trils @ self.scale_trils.transpose(-1, -2)
        diff = self.means - mu
        cov = (w[:, None, None] * (covs + diff[:, :, None] * diff[:, None, :])).sum(0)
        cov = 0.5 * (cov + cov.T)
        return mu, torch.linalg.cholesky(cov)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "laplace" if self.info.get("laplace") else "gaussian",
            "num_components": self.num_components,
            "component_weights": self.log_weights.exp().tolist(),
        }
        out.update({k: v for k, v in self.info.items() if k != "laplace"})
        modes = getattr(self, "modes", None)
        if modes is not None:
            out["mode_search"] = modes.describe()
        return out


def _flat_logdensity(dist: Gibbs) -> Callable[[torch.Tensor], torch.Tensor]:
    ev = dist.event_shape

    def f(yf: torch.Tensor) -> torch.Tensor:
        return dist.logdensity(yf.reshape(yf.shape[:-1] + ev))

    return f


def laplace_base(
    dist: Gibbs,
    generator: torch.Generator,
    *,
    num_starts: int = 256,
    init_scale: float | None = None,
    scale: float = 1.0,
    max_iter: int = 500,
) -> GaussianMixtureBase:
    """Laplace approximation of a continuous Gibbs distribution, one component per mode found.

    The modes of :math:`\\ell(y) = \\log b(y) - \\beta E(y)` come from
    :func:`gibbsebm.find_modes` (``num_starts`` batched L-BFGS starts from a start distribution
    scaled from the energy, deduplicated by Mahalanobis distance). Each mode gets a Gaussian
    :math:`N(\\hat y, s^2 H^{-1})`, :math:`H = -\\nabla^2 \\ell(\\hat y)`, weighted by its local
    (Laplace) mass. A mode whose Hessian is singular or not positive definite (e.g.
    :math:`E = \\sum y^4/4`) gets a Gaussian matched to importance moments instead, and the
    base's ``describe()["kind"]`` says so (``"moment-matched gaussian"`` or
    ``"laplace+moments"``).

    Parameters
    ----------
    dist : Gibbs
        A continuous, unconstrained Gibbs distribution.
    generator : torch.Generator
        Randomness for the starting points and the local-mass checks.
    num_starts : int
        Number of optimisation starts.
    init_scale : float, optional
        Fixed standard deviation of the starts around 0 (``None``: scaled from the energy,
        see :mod:`gibbsebm.modes`).
    scale : float
        Factor on the standard deviations (``> 1`` widens the base, giving it heavier tails
        relative to the target).
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    GaussianMixtureBase
        With the :class:`~gibbsebm.modes.ModeSearch` in ``.modes``.
    """
    from ..modes import find_modes

    if not is_real_support(dist.support):
        raise ValueError(
            f"the Laplace base needs an unconstrained real support, got {dist.support}; "
            "pass base=(mean, covariance) or a torch MultivariateNormal"
        )
    if scale <= 0:
        raise ValueError(f"base_scale must be > 0, got {scale}")
    ev = dist.event_shape
    d = math.prod(ev)
    dtype, device = dist.beta.dtype, dist.beta.device
    try:
        res = find_modes(
            dist,
            num_starts=num_starts,
            generator=generator,
            init_scale=init_scale,
            max_iter=max_iter,
        )
    except ValueError as err:
        raise ValueError(
            f"the Laplace approximation failed: {err}; pass base=(mean, covariance)"
        ) from None
    covs = res.covariances * scale**2
    L = torch.linalg.cholesky(covs)
    kinds = set(res.curvature)
    if kinds == {"laplace"}:
        kind = None
    elif kinds == {"moments"}:
        kind = "moment-matched gaussian"
    else:
        kind = "laplace+moments"
    info: dict[str, Any] = {
        "laplace": True,
        "num_starts": num_starts,
        "num_modes_found": res.num_modes,
        "scale": scale,
        "modes": res.locations.reshape(res.num_modes, d).tolist()
        if d <= 10
        else f"{res.num_modes} modes",
        "laplace_log_z": res.log_mass,
        "num_nonpositive_curvature_modes": sum(c != "laplace" for c in res.curvature),
        "start_distribution": res.start_distribution,
    }
    if kind is not None:
        info["kind"] = kind
        info["why"] = "singular or indefinite Hessian at a mode: covariance from importance moments"
    base = GaussianMixtureBase(
        res.locations.reshape(res.num_modes, d).to(dtype),
        L.to(dtype=dtype, device=device),
        res.log_masses.to(dtype=dtype, device=device),
        ev,
        info,
    )
    base.modes = res
    base.setup_evals = res.num_energy_evals
    return base


def make_base(
    dist: Gibbs,
    base: Any,
    generator: torch.Generator,
    *,
    base_scale: float = 1.0,
    num_starts: int = 256,
) -> UniformBase | GaussianMixtureBase:
    """Build the base distribution named by ``base`` (see :func:`gibbsebm.log_partition`)."""
    dtype, device = dist.beta.dtype, dist.beta.device
    ev = dist.event_shape
    d = math.prod(ev)
    if base is None:
        base = "uniform" if dist.is_discrete else "laplace"
    if isinstance(base, str):
        if base == "uniform":
            vals = support_values(dist.support, dtype=dtype, device=device)
            if vals is None:
                raise ValueError(
                    f"base='uniform' needs a finite discrete support, got {dist.support}"
                )
            return UniformBase(vals, ev)
        if dist.is_discrete:
            raise ValueError(f"base={base!r} is for continuous y; use base='uniform'")
        if base == "laplace":
            return laplace_base(dist, generator, scale=base_scale, num_starts=num_starts)
        if base == "standard":
            return GaussianMixtureBase(
                torch.zeros((1, d), dtype=dtype, device=device),
                base_scale * torch.eye(d, dtype=dtype, device=device)[None],
                torch.zeros(1, dtype=dtype, device=device),
                ev,
                {"kind": "standard normal", "scale": base_scale},
            )
        raise ValueError(
            f"unknown base {base!r}; use 'laplace', 'standard', 'uniform', a (mean, covariance) "
            "pair or a torch Normal/MultivariateNormal"
        )
    if dist.is_discrete:
        raise ValueError("discrete y supports only base='uniform'")
    if isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    if isinstance(base, torch.distributions.MultivariateNormal):
        mean, L = base.loc, base.scale_tril
    elif isinstance(base, torch.distributions.Normal):
        mean = base.loc.expand(ev).reshape(d)
        L = torch.diag(base.scale.expand(ev).reshape(d))
    elif isinstance(base, tuple) and len(base) == 2:
        mean = torch.as_tensor(base[0]).reshape(d)
        cov = torch.as_tensor(base[1])
        cov = torch.diag(cov.reshape(d)) if cov.numel() == d else cov.reshape(d, d)
        try:
            L = torch.linalg.cholesky(cov.to(torch.float64))
        except RuntimeError:
            raise ValueError("base covariance must be symmetric positive definite") from None
    else:
        raise ValueError(
            f"unsupported base {type(base).__name__}: use 'laplace', 'standard', 'uniform', a "
            "(mean, covariance) pair or a torch Normal/MultivariateNormal"
        )
    mean = mean.to(dtype=dtype, device=device).reshape(1, d)
    L = (L.to(dtype=dtype, device=device) * base_scale).reshape(1, d, d)
    return GaussianMixtureBase(
        mean, L, torch.zeros(1, dtype=dtype, device=device), ev, {"kind": "user gaussian"}
    )


def roundoff_stderr(dist: Any, log_z: float) -> float:
    """Floating-point floor of a log Z standard error.

    Log-densities are computed in the energy's dtype; each of the ``n`` event coordinates
    contributes a rounding of about one unit in the last place of the log-density's scale,
    and these errors are systematic (every draw shares them), so no number of draws averages
    them away. With a nearly exact base (a Laplace base on a Gaussian, a mode mixture on a
    Gaussian mixture) the Monte Carlo error falls below this floor and an estimate 2.6e-7
    off in float32 (10-D Gaussian) stated a stderr of 4e-8 (z = 6, measured by
    ``benchmarks/coverage_benchmark.py``). The floor

    .. math:: \\varepsilon_{\\text{dtype}}\\,(1 + |\\log Z|)\\,\\sqrt{n}

    is added in quadrature to the stated standard error.

    Parameters
    ----------
    dist : Gibbs
        The target (its ``beta`` dtype and event shape).
    log_z : float
        The estimate.

    Returns
    -------
    float
        The floor (0 for a non-finite estimate).
    """
    if not math.isfinite(log_z):
        return 0.0
    dtype = getattr(getattr(dist, "beta", None), "dtype", None)
    if dtype is None or not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    n = max(1, math.prod(tuple(getattr(dist, "event_shape", ()) or ())))
    return float(torch.finfo(dtype).eps) * (1.0 + abs(log_z)) * math.sqrt(n)


def resolution_stderr(num_energy_evals: int) -> float:
    """Monte Carlo resolution floor of a log Z standard error: ``1 / num_energy_evals``.

    An estimate that evaluated the energy at ``N`` points has not looked at regions whose
    share of the mass is below about ``1 / N``; the spread of its weights says nothing about
    them, so with a nearly exact base its Monte Carlo standard error can fall far below the
    mass it cannot see. Measured: the 8-D five-mode Gaussian mixture at beta = 2, whose
    mode-mixture base is exact but for the cross terms between modes (a share of 7.8e-11 of
    the mass, in the thin regions between the modes that no draw reaches), gave ``ais`` and
    ``importance`` 7.4e-11 low with a stated stderr of 2e-12 to 4e-12 (z = -20 to -38, trusted
    once the mode list is accepted). Added in quadrature to the stated standard error, this
    floor changes nothing where the Monte Carlo error is larger than ``1 / N`` (any estimate
    whose base is not nearly exact).

    Parameters
    ----------
    num_energy_evals : int
        Energy evaluations the estimate spent.

    Returns
    -------
    float
        The floor (0 when no evaluation was counted).

    Examples
    --------
    >>> resolution_stderr(1000)
    0.001
    """
    n = int(num_energy_evals)
    return 1.0 / n if n > 0 else 0.0
