"""Calibration of the learning rate of a Gibbs posterior (see :mod:`gibbsebm.workflow`):
the loss minimiser, the sandwich (loss-likelihood bootstrap) rate, the bootstrap itself,
credible regions, and the generalized posterior calibration of Syring & Martin (2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .._validation import check_beta
from .posterior import LossFn, _check_losses, _num_obs, weighted_gibbs_posterior

__all__ = [
    "minimize_loss",
    "sandwich_learning_rate",
    "loss_likelihood_bootstrap",
    "credible_region_contains",
    "LearningRateCalibration",
    "calibrate_learning_rate",
]


def minimize_loss(
    loss_fn: LossFn,
    data: Any,
    theta_init: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> torch.Tensor:
    """Minimise :math:`\\sum_i w_{ki} \\ell(\\theta_k, z_i)` for every row ``k`` (L-BFGS).

    Parameters
    ----------
    loss_fn, data
        As in :func:`gibbs_posterior`.
    theta_init : Tensor
        ``(d,)`` or ``(K, d)`` starting points.
    weights : Tensor, optional
        ``(K, n)`` observation weights (default: one row of ones).
    max_iter : int
        L-BFGS iterations.
    tol : float
        Gradient tolerance of L-BFGS.

    Returns
    -------
    Tensor
        Minimisers, ``(d,)`` or ``(K, d)`` as ``theta_init``. The problems are separable, so
        one L-BFGS run on the sum solves each.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([0.0, 1.0, 5.0])
    >>> minimize_loss(lambda th, z: (z - th) ** 2, z, torch.zeros(1))
    tensor([2.])
    """
    squeeze = theta_init.dim() == 1
    theta0 = theta_init.detach().reshape(-1, theta_init.shape[-1])
    n = _num_obs(data)
    if weights is None:
        weights = torch.ones(theta0.shape[0], n, dtype=theta0.dtype, device=theta0.device)
    if theta0.shape[0] == 1 and weights.shape[0] > 1:
        theta0 = theta0.expand(weights.shape[0], -1)
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )
    scale = 1.0 / max(float(weights.sum(-1).max()), 1.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        losses = _check_losses(loss_fn(theta, data), theta.shape[0], n)
        total = (losses * weights.to(losses.dtype)).sum() * scale
        total.backward()
        return total

    opt.step(closure)
    out = theta.detach()
    if not torch.isfinite(out).all():
        raise ValueError("minimising the loss diverged (non-finite parameters)")
    return out[0] if squeeze else out


def _per_obs_grad_and_hessian(
    loss_fn: LossFn, data: Any, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-observation gradients ``(n, d)`` and the mean Hessian ``(d, d)`` at ``theta``."""
    n = _num_obs(data)

    def per_obs(th: torch.Tensor) -> torch.Tensor:
        return _check_losses(loss_fn(th.unsqueeze(0), data), 1, n)[0]

    grads = torch.autograd.functional.jacobian(per_obs, theta)  # (n, d)
    hess = torch.autograd.functional.hessian(lambda th: per_obs(th).mean(), theta)
    return grads.detach(), hess.detach()


def sandwich_learning_rate(
    loss_fn: LossFn, data: Any, theta_hat: torch.Tensor
) -> tuple[float, dict[str, Any]]:
    """Learning rate matching the loss-likelihood bootstrap (Lyddon, Holmes & Walker 2019).

    With :math:`J = \\frac1n\\sum_i \\nabla^2 \\ell(\\hat\\theta, z_i)` and
    :math:`I = \\frac1n\\sum_i \\nabla\\ell(\\hat\\theta, z_i)\\nabla\\ell(\\hat\\theta, z_i)^\\top`,
    the Gibbs posterior at rate :math:`\\omega` has asymptotic covariance
    :math:`(n\\omega J)^{-1}` and the loss-likelihood bootstrap (and the sampling
    distribution of :math:`\\hat\\theta`) has :math:`n^{-1} J^{-1} I J^{-1}`. Matching their
    Fisher information in trace gives

    .. math::

        \\omega = \\frac{\\operatorname{tr}(J I^{-1} J^\\top)}{\\operatorname{tr}(J)}.

    Exact when :math:`I \\propto J` (e.g. a squared loss with homoscedastic noise of variance
    :math:`\\sigma^2`: :math:`\\omega = 1/\\sigma^2`).

    Returns
    -------
    (float, dict)
        :math:`\\omega` and ``{"J": ..., "I": ...}``.

    References
    ----------
    Lyddon, S. P., Holmes, C. C., Walker, S. G. (2019). General Bayesian updating and the
    loss-likelihood bootstrap. *Biometrika* 106(2), 465-478.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([-2.0, 2.0, -2.0, 2.0], dtype=torch.float64)
    >>> w, _ = sandwich_learning_rate(lambda th, z: 0.5 * (z - th) ** 2, z,
    ...                               torch.zeros(1, dtype=torch.float64))
    >>> round(w, 6)  # 1 / variance
    0.25
    """
    grads, J = _per_obs_grad_and_hessian(loss_fn, data, theta_hat)
    n = grads.shape[0]
    info = grads.T @ grads / n
    try:
        JIJ = J @ torch.linalg.solve(info, J.T)
    except RuntimeError:
        raise ValueError(
            "the per-observation gradient covariance I is singular at theta_hat: "
            "the sandwich learning rate is not defined"
        ) from None
    omega = float(torch.trace(JIJ) / torch.trace(J))
    if not (omega > 0 and math.isfinite(omega)):
        raise ValueError(
            f"sandwich learning rate is not positive ({omega}): is J positive definite?"
        )
    return omega, {"J": J, "I": info}


def loss_likelihood_bootstrap(
    loss_fn: LossFn,
    data: Any,
    theta_init: torch.Tensor,
    num_draws: int = 1000,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draws of the loss-likelihood bootstrap (Lyddon, Holmes & Walker 2019).

    Each draw is :math:`\\arg\\min_\\theta \\sum_i w_i \\ell(\\theta, z_i)` with
    :math:`w \\sim n\\,\\mathrm{Dirichlet}(1, \\dots, 1)` (the Bayesian bootstrap); all draws
    are optimised together.

    Returns
    -------
    Tensor
        ``(num_draws, d)``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(40, generator=g, dtype=torch.float64)
    >>> draws = loss_likelihood_bootstrap(lambda th, z: (z - th) ** 2, z,
    ...                                   torch.zeros(1, dtype=torch.float64), 200, generator=g)
    >>> draws.shape
    torch.Size([200, 1])
    """
    n = _num_obs(data)
    dtype = theta_init.dtype
    e = -torch.log(
        torch.rand(num_draws, n, generator=generator, dtype=dtype, device=theta_init.device)
    )
    w = n * e / e.sum(-1, keepdim=True)  # n * Dirichlet(1,...,1)
    return minimize_loss(loss_fn, data, theta_init.reshape(1, -1), weights=w)


def credible_region_contains(
    draws: torch.Tensor, point: torch.Tensor, level: float = 0.95
) -> torch.Tensor:
    """Whether ``point`` lies in the level-``level`` credible region of each set of draws.

    The region of draws :math:`\\theta^{(s)}` with mean :math:`m` and covariance :math:`S` is
    the ellipsoid :math:`\\{\\theta: (\\theta - m)^\\top S^{-1} (\\theta - m) \\le q\\}` with
    :math:`q` the empirical ``level`` quantile of the draws' own Mahalanobis distances (in one
    dimension: the interval symmetric about the mean that holds ``level`` of the draws).

    Parameters
    ----------
    draws : Tensor
        ``(S, K, d)``: ``S`` draws of ``K`` posteriors.
    point : Tensor
        ``(d,)`` or ``(K, d)``.
    level : float
        Credibility level in (0, 1).

    Returns
    -------
    Tensor
        ``(K,)`` booleans.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> draws = torch.randn(4000, 2, 1, generator=g)
    >>> credible_region_contains(draws, torch.tensor([[1.0], [3.0]]))
    tensor([ True, False])
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = draws.to(torch.float64)
    m = x.mean(0)  # (K, d)
    r = x - m
    cov = torch.einsum("skd,ske->kde", r, r) / (x.shape[0] - 1)
    d = x.shape[-1]
    cov = (
        cov
        + 1e-12
        * torch.eye(d, dtype=x.dtype, device=x.device)
        * cov.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
    )
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, r.permute(1, 2, 0), upper=False)  # (K, d, S)
    md = (z**2).sum(1)  # (K, S)
    q = torch.quantile(md, level, dim=1)
    p = point.to(torch.float64).expand_as(m) - m
    zp = torch.linalg.solve_triangular(chol, p.unsqueeze(-1), upper=False).squeeze(-1)
    return (zp**2).sum(-1) <= q


@dataclass
class LearningRateCalibration:
    """Result of :func:`calibrate_learning_rate`.

    Attributes
    ----------
    beta : float
        The calibrated learning rate :math:`\\omega`.
    method : str
        ``"gpc"`` or ``"llb"``.
    level : float
        Nominal coverage of the credible regions.
    coverage : float or None
        Estimated coverage of the level-``level`` regions at ``beta`` (``gpc``: bootstrap
        estimate over ``num_bootstrap`` resamples), with ``coverage_stderr`` its binomial
        standard error :math:`\\sqrt{c(1-c)/B}`.
    theta_hat : Tensor
        The loss minimiser on the full data.
    history : list of (float, float)
        ``(beta, estimated coverage)`` at every step of the search (``gpc``).
    diagnostics : dict
        ``beta_sandwich`` (the ``llb`` rate, also used as the starting point of ``gpc``),
        sampler diagnostics (max R-hat, min ESS over the bootstrap posteriors), and the
        settings used.
    """

    beta: float
    method: str
    level: float
    coverage: float | None
    coverage_stderr: float | None
    theta_hat: torch.Tensor
    history: list[tuple[float, float]] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _bootstrap_weights(
    num_bootstrap: int, n: int, generator: torch.Generator, ref: torch.Tensor
) -> torch.Tensor:
    idx = torch.randint(n, (num_bootstrap, n), generator=generator, device=ref.device)
    w = torch.zeros(num_bootstrap, n, dtype=ref.dtype, device=ref.device)
    w.scatter_add_(1, idx, torch.ones_like(idx, dtype=ref.dtype))
    return w


def _coverage_at(
    beta: float,
    loss_fn: LossFn,
    data: Any,
    weights: torch.Tensor,
    prior: torch.distributions.Distribution,
    theta_hat: torch.Tensor,
    theta_boot: torch.Tensor,
    level: float,
    seed: int,
    sampler: str,
    sampler_options: dict[str, Any],
) -> tuple[float, dict[str, Any]]:
    from ..run import sample

    post = weighted_gibbs_posterior(loss_fn, data, weights, prior, beta=beta)
    num_chains = sampler_options.get("num_chains", 4)
    init = theta_boot.unsqueeze(0).expand((num_chains,) + theta_boot.shape).clone()
    opts = dict(sampler_options)
    opts.setdefault("num_samples", 250)
    opts.setdefault("num_warmup", 250)
    opts["num_chains"] = num_chains
    res = sample(post, method=sampler, seed=seed, init=init, progress=False, **opts)
    draws = res.draws.reshape((-1,) + tuple(post.event_shape))  # (S, K, d)
    inside = credible_region_contains(draws, theta_hat, level)
    diag: dict[str, Any] = {}
    try:
        summ = res.summary()
        diag = {
            "max_r_hat": float(summ["r_hat"].max()),
            "min_ess_bulk": float(summ["ess_bulk"].min()),
        }
    except (KeyError, AttributeError, ValueError):
        pass
    return float(inside.to(torch.float64).mean()), diag


def calibrate_learning_rate(
    loss_fn: LossFn,
    data: Any,
    *,
    prior: torch.distributions.Distribution,
    theta_init: torch.Tensor,
    level: float = 0.95,
    method: str = "gpc",
    num_bootstrap: int = 200,
    tol: float | None = None,
    max_iter: int = 12,
    beta_init: float | None = None,
    sampler: str = "hmc",
    sampler_options: dict[str, Any] | None = None,
    seed: int = 0,
) -> LearningRateCalibration:
    """Choose the learning rate of a Gibbs posterior so that its credible regions cover.

    ``method="gpc"`` is the generalized posterior calibration of Syring & Martin (2019):
    with :math:`\\hat\\theta` the loss minimiser on the data and :math:`D_1^*, \\dots, D_B^*`
    bootstrap resamples, the coverage of the level-:math:`(1-\\alpha)` credible regions
    :math:`C_\\omega(D_b^*)` of the Gibbs posteriors is estimated by

    .. math::

        \\hat c(\\omega) = \\frac1B \\sum_{b=1}^B \\mathbf 1\\{\\hat\\theta \\in C_\\omega(D_b^*)\\},

    and :math:`\\omega` is moved until :math:`\\hat c(\\omega) = 1 - \\alpha`. Syring & Martin
    use a stochastic-approximation recursion; here the resamples and the sampler's random
    numbers are held fixed across :math:`\\omega` (common random numbers), so
    :math:`\\hat c` is a function of :math:`\\omega` alone and is solved by bracketing and
    bisection in :math:`\\log\\omega`, stopping when :math:`|\\hat c - (1-\\alpha)|` is
    within ``tol`` (default: two binomial standard errors of :math:`\\hat c`). All ``B``
    Gibbs posteriors are sampled at once as one batched target
    (:func:`weighted_gibbs_posterior`). The search starts from ``beta_init`` (default: the
    ``llb`` rate).

    ``method="llb"`` returns the information-matching rate of the loss-likelihood bootstrap
    (Lyddon, Holmes & Walker 2019; :func:`sandwich_learning_rate`): no sampling, exact for
    losses whose gradient covariance is proportional to their Hessian, asymptotic otherwise.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(theta (C, d), data) -> per-observation losses (C, n)``.
    data : Tensor or tuple of Tensors
        Observations on the leading dimension.
    prior : torch.distributions.Distribution
        Prior over :math:`\\theta`, event shape ``(d,)``.
    theta_init : Tensor
        ``(d,)`` starting point for minimising the loss (its dtype and device are used).
    level : float
        Nominal coverage :math:`1 - \\alpha` of the credible regions.
    method : {"gpc", "llb"}
        Calibration method.
    num_bootstrap : int
        Bootstrap resamples :math:`B` (``gpc``).
    tol : float, optional
        Stop when :math:`|\\hat c - \\text{level}| \\le` ``tol`` (``gpc``).
    max_iter : int
        Maximum number of coverage evaluations (``gpc``).
    beta_init : float, optional
        Starting rate of the ``gpc`` search (default: the ``llb`` rate, usually close).
    sampler : str
        ``method=`` of :func:`gibbsebm.sample` for the bootstrap posteriors.
    sampler_options : dict, optional
        Options for :func:`gibbsebm.sample` (``num_chains``, ``num_samples``, ``num_warmup``,
        kernel options).
    seed : int
        Seed of the resamples and of the sampler (the same seed at every :math:`\\omega`).

    Returns
    -------
    LearningRateCalibration
        ``beta`` (the learning rate) with the coverage estimate, its standard error, the
        search history and diagnostics.

    References
    ----------
    Syring, N., Martin, R. (2019). Calibrating general posterior credible regions.
    *Biometrika* 106(2), 479-486.

    Lyddon, S. P., Holmes, C. C., Walker, S. G. (2019). General Bayesian updating and the
    loss-likelihood bootstrap. *Biometrika* 106(2), 465-478.

    Examples
    --------
    >>> import pyro, torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = 2.0 * torch.randn(100, generator=g, dtype=torch.float64)  # noise sd 2
    >>> prior = pyro.distributions.Normal(torch.zeros(1, dtype=torch.float64), 10.0).to_event(1)
    >>> cal = calibrate_learning_rate(lambda th, z: 0.5 * (z - th) ** 2, z, prior=prior,
    ...                               theta_init=torch.zeros(1, dtype=torch.float64),
    ...                               method="llb")
    >>> 0.15 < cal.beta < 0.4  # 1 / sd^2 = 0.25
    True
    """
    if method not in ("gpc", "llb"):
        raise ValueError(f"method must be 'gpc' or 'llb', got {method!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if num_bootstrap < 10:
        raise ValueError(f"num_bootstrap must be >= 10, got {num_bootstrap}")
    n = _num_obs(data)
    theta_init = torch.as_tensor(theta_init)
    if theta_init.dim() != 1:
        raise ValueError(f"theta_init must be shaped (d,), got {tuple(theta_init.shape)}")
    theta_hat = minimize_loss(loss_fn, data, theta_init)
    beta_llb, info = sandwich_learning_rate(loss_fn, data, theta_hat)
    diagnostics: dict[str, Any] = {"beta_sandwich": beta_llb, "J": info["J"], "I": info["I"]}
    if method == "llb":
        return LearningRateCalibration(
            beta=beta_llb,
            method="llb",
            level=level,
            coverage=None,
            coverage_stderr=None,
            theta_hat=theta_hat,
            diagnostics=diagnostics,
        )

    g = torch.Generator(device=theta_hat.device).manual_seed(seed)
    weights = _bootstrap_weights(num_bootstrap, n, g, theta_hat)
    theta_boot = minimize_loss(loss_fn, data, theta_hat.reshape(1, -1), weights=weights)
    opts = dict(sampler_options or {})
    se_nominal = math.sqrt(level * (1 - level) / num_bootstrap)
    tol = 2.0 * se_nominal if tol is None else tol
    history: list[tuple[float, float]] = []
    sampler_diag: list[dict[str, Any]] = []

    def coverage(beta: float) -> float:
        c, dg = _coverage_at(
            beta, loss_fn, data, weights, prior, theta_hat, theta_boot, level, seed, sampler, opts
        )
        history.append((beta, c))
        sampler_diag.append({"beta": beta, **dg})
        return c

    # bracket: coverage decreases as beta grows (narrower regions)
    start = beta_llb if beta_init is None else float(beta_init)
    check_beta(start, name="beta_init")
    lo = hi = start
    c = coverage(start)
    best = (abs(c - level), start, c)
    factor = 2.0
    c_lo = c_hi = c
    while len(history) < max_iter and abs(c - level) > tol:
        if c > level:  # regions too wide: raise beta
            lo, c_lo = hi, c
            hi = hi * factor
            c = c_hi = coverage(hi)
            if c <= level:
                break
        else:
            hi, c_hi = lo, c
            lo = lo / factor
            c = c_lo = coverage(lo)
            if c >= level:
                break
        best = min(best, (abs(c - level), history[-1][0], c))
    best = min(best, (abs(c - level), history[-1][0], c))
    # bisection in log beta between lo (coverage >= level) and hi (coverage <= level)
    while len(history) < max_iter and best[0] > tol and c_lo >= level >= c_hi and lo < hi:
        mid = math.sqrt(lo * hi)
        c = coverage(mid)
        best = min(best, (abs(c - level), mid, c))
        if c > level:
            lo, c_lo = mid, c
        else:
            hi, c_hi = mid, c
    _, beta, cov = best
    diagnostics.update(
        {
            "num_bootstrap": num_bootstrap,
            "tol": tol,
            "sampler": sampler,
            "sampler_options": opts,
            "converged": best[0] <= tol,
            "sampler_diagnostics": sampler_diag,
        }
    )
    return LearningRateCalibration(
        beta=beta,
        method="gpc",
        level=level,
        coverage=cov,
        coverage_stderr=math.sqrt(max(cov * (1 - cov), 1e-12) / num_bootstrap),
        theta_hat=theta_hat,
        history=history,
        diagnostics=diagnostics,
    )
