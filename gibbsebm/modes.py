"""Mode discovery for continuous Gibbs distributions: :func:`find_modes`.

A multi-start local search of :math:`\\ell(y) = \\log b(y) - \\beta E(y)` that reports what it
found and how it looked:

1. **Start distribution**, scaled from the energy. Along random directions :math:`u` from a
   centre :math:`c` (the best of a few probes), the log-density is probed on radii
   :math:`r = 2^{-4}, \\dots, 2^{12}`; the *search radius* :math:`R` is the largest radius at
   which some direction still has :math:`\\ell(c + r u) \\ge \\ell_{\\max} - (d + 10)`, i.e. where
   the density has not yet fallen far below the typical set of a :math:`d`-dimensional target
   (a Gaussian of scale :math:`\\sigma` gives :math:`R \\approx \\sigma\\sqrt{2(d + 10)}`). The
   starts are :math:`c + \\sigma_i z`, :math:`z \\sim N(0, I)`, with :math:`\\sigma_i = \\sigma (2\\,\\text{overdispersion})^{-u_i^2}`,
   :math:`u_i \\sim U(0, 1)`, :math:`\\sigma = \\text{overdispersion} \\cdot R/\\sqrt d` (mostly
   broad starts reach far basins, narrower ones the small basins between them); one start sits at
   :math:`c`.
2. **Batched gradient ascent**, every start with a step size of its own (one call of the
   energy per iteration for all starts; no shared line search or curvature, which would throw
   starts out of narrow basins), then two Newton steps at each distinct mode.
3. **Deduplication** by Mahalanobis distance: in descending order of :math:`\\ell`, a converged
   point within distance 2 (squared distance 4) of a kept mode under that mode's precision is
   counted in its basin; otherwise it becomes a new mode. Points whose Hessian has a clearly
   negative eigenvalue (saddles) or whose gradient did not vanish are counted as unconverged.
4. **Local masses.** Each mode gets the Laplace log mass
   :math:`\\ell(\\hat y) + \\tfrac d2 \\log 2\\pi - \\tfrac12 \\log|H|`. Its error is *measured*:
   ``num_mass_draws`` draws from :math:`N(\\hat y, H^{-1})` give an importance estimate of the
   same local integral (draws assigned to the mode's basin by the nearest-mode rule), and
   ``log_mass_error`` is :math:`|\\text{Laplace} - \\text{IS}| + 2\\,\\mathrm{se}_{IS}`. A mode
   whose Hessian is singular or not positive definite (e.g. :math:`E = \\sum y^4/4`, whose
   Hessian is 0 at the mode) gets a Gaussian matched to importance moments from a broad
   Gaussian at the mode (``curvature="moments"``) and the importance mass.

The result's ``unseen_probability`` is the Good-Turing estimate (number of basins hit by
exactly one start, over the number of starts) of the chance that one more start would land in
a basin not yet seen. It says nothing about modes whose basins the start distribution almost
never reaches (a narrow mode inside a broad one): **no local search can promise that every
mode was found**, and the estimators that use this search say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .distribution import Gibbs

__all__ = ["find_modes", "ModeSearch", "initial_positions"]

#: Squared Mahalanobis distance under which two converged points are the same mode.
DEDUP_DISTANCE2 = 4.0
#: Relative eigenvalue below which a Hessian counts as singular (moment fallback).
DEGENERATE_RTOL = 1e-6


@dataclass
class ModeSearch:
    """What :func:`find_modes` found.

    Attributes
    ----------
    locations : Tensor
        Modes, shape ``(M, *event_shape)``, in descending order of local mass.
    log_density : Tensor
        :math:`\\ell(\\hat y) = \\log b - \\beta E` at each mode, ``(M,)``.
    energies : Tensor
        :math:`-\\ell(\\hat y)/\\beta` (the energy when there is no base measure), ``(M,)``.
    log_masses : Tensor
        Local log mass of each mode (Laplace, or importance for degenerate curvature), ``(M,)``.
    log_mass_errors : Tensor
        Measured error of each local log mass (see the module docstring), ``(M,)``.
    log_masses_is : Tensor
        The importance estimate of each local log mass, ``(M,)``.
    covariances : Tensor
        Local covariances :math:`H^{-1}` (or moment-matched), ``(M, d, d)``.
    curvature : list of str
        ``"laplace"`` (positive definite Hessian) or ``"moments"`` (singular Hessian).
    basin_counts : Tensor
        Number of starts that converged to each mode, ``(M,)``.
    num_starts, num_unconverged : int
        Starts run, and starts that ended at no accepted mode (saddles, unconverged, non-finite).
    start_distribution : dict
        ``{"kind": "gaussian", "center": [...], "scale": float, "search_radius": float,
        "overdispersion": float, "scaled_from": "energy"|"user"}``.
    num_energy_evals : int
        Single-state evaluations of the log-density (gradients included).
    """

    locations: torch.Tensor
    log_density: torch.Tensor
    energies: torch.Tensor
    log_masses: torch.Tensor
    log_mass_errors: torch.Tensor
    log_masses_is: torch.Tensor
    covariances: torch.Tensor
    curvature: list[str]
    basin_counts: torch.Tensor
    num_starts: int
    num_unconverged: int
    start_distribution: dict[str, Any]
    num_energy_evals: int = 0
    precisions: torch.Tensor | None = field(default=None, repr=False)

    @property
    def num_modes(self) -> int:
        return int(self.locations.shape[0])

    @property
    def log_mass(self) -> float:
        """:math:`\\log \\sum_m` (local mass): the Laplace-mixture approximation of log Z."""
        return float(torch.logsumexp(self.log_masses.to(torch.float64), 0))

    @property
    def weights(self) -> torch.Tensor:
        """Local masses normalized to sum to one."""
        return torch.softmax(self.log_masses.to(torch.float64), 0)

    @property
    def unseen_probability(self) -> float:
        """Good-Turing chance that one more start lands in an unseen basin."""
        singletons = int((self.basin_counts == 1).sum())
        return singletons / max(self.num_starts, 1)

    def describe(self, max_listed: int = 20) -> dict[str, Any]:
        """Plain-data summary (``diagnostics["modes"]`` of the estimators)."""
        m = min(self.num_modes, max_listed)
        d = self.locations[0].numel() if self.num_modes else 0
        listed = []
        for i in range(m):
            entry: dict[str, Any] = {
                "log_density": float(self.log_density[i]),
                "log_mass": float(self.log_masses[i]),
                "log_mass_error": float(self.log_mass_errors[i]),
                "weight": float(self.weights[i]),
                "basin_count": int(self.basin_counts[i]),
                "curvature": self.curvature[i],
            }
            if d <= 10:
                entry["location"] = self.locations[i].reshape(-1).tolist()
            listed.append(entry)
        return {
            "num_modes": self.num_modes,
            "modes": listed,
            "num_listed": m,
            "num_starts": self.num_starts,
            "num_unconverged": self.num_unconverged,
            "num_rounds": self.start_distribution.get("rounds"),
            "unseen_probability": self.unseen_probability,
            "log_mass_total": self.log_mass,
            "start_distribution": self.start_distribution,
        }


def _flat(dist: Gibbs):
    ev = dist.event_shape

    def f(yf: torch.Tensor) -> torch.Tensor:
        return dist.logdensity(yf.reshape(yf.shape[:-1] + ev))

    return f


def _hessian(fn, y: torch.Tensor) -> torch.Tensor:
    def scalar(v: torch.Tensor) -> torch.Tensor:
        return fn(v[None])[0]

    try:
        h = torch.autograd.functional.hessian(scalar, y, vectorize=True)
    except RuntimeError:
        h = torch.autograd.functional.hessian(scalar, y)
    h = -h.to(torch.float64)
    return 0.5 * (h + h.T)


def _grad(fn, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        v = fn(y)
        (g,) = torch.autograd.grad(v.sum(), y)
    return v.detach(), g.detach()


def _finite(v: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(v), v, torch.full_like(v, -math.inf))


def search_scale(
    dist: Gibbs, generator: torch.Generator, *, num_directions: int = 32
) -> tuple[torch.Tensor, float, int]:
    """Centre and search radius of the start distribution (see the module docstring).

    Returns
    -------
    tuple
        ``(center (d,), radius, num_energy_evals)``.
    """
    d = math.prod(dist.event_shape)
    dtype, device = dist.beta.dtype, dist.beta.device
    f = _flat(dist)
    radii = torch.tensor([2.0 ** (k / 2) for k in range(-8, 25)], dtype=dtype, device=device)
    u = torch.randn((num_directions, d), generator=generator, dtype=dtype, device=device)
    u = u / u.norm(dim=-1, keepdim=True)
    center = torch.zeros(d, dtype=dtype, device=device)
    evals = 0
    with torch.no_grad():
        pts = center + radii[:, None, None] * u[None]  # (R, D, d)
        vals = _finite(f(pts.reshape(-1, d)).reshape(len(radii), num_directions))
        v0 = _finite(f(center[None]))[0]
        evals += pts.shape[0] * pts.shape[1] + 1
    top = torch.maximum(vals.max(), v0)
    if not bool(torch.isfinite(top)):
        return center, 1.0, evals
    ok = (vals >= top - (d + 10.0)).any(-1)  # (R,)
    idx = torch.nonzero(ok).reshape(-1)
    radius = float(radii[int(idx.max())]) if idx.numel() else float(radii[0])
    # a radius where even the highest probe is negligible must exist above; else the energy
    # may not be integrable in the probed range: keep the largest radius probed
    return center, max(radius, float(radii[0])), evals


def find_modes(
    dist: Gibbs,
    *,
    num_starts: int = 256,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    init_scale: float | None = None,
    overdispersion: float = 3.0,
    max_iter: int = 500,
    num_mass_draws: int = 256,
    max_modes: int = 256,
    max_starts: int | None = None,
) -> ModeSearch:
    """Find the modes of a continuous Gibbs distribution by a batched multi-start search.

    See the module docstring (:mod:`gibbsebm.modes`) for the start distribution, the
    deduplication rule and how the local-mass errors are measured.

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch Gibbs distribution on an unconstrained real support.
    num_starts : int
        Number of starting points (all optimised at once).
    seed : int, optional
        Seed of a fresh generator (ignored when ``generator`` is given).
    generator : torch.Generator, optional
        Randomness for the starts and the mass checks (on the distribution's device).
    init_scale : float, optional
        Fixed standard deviation of the starts around 0 (``None``: scaled from the energy).
    overdispersion : float
        Factor on the energy-derived start scale (> 1 starts beyond the typical set).
    max_iter : int
        L-BFGS iterations.
    num_mass_draws : int
        Draws per mode for the importance check of its local mass (0: no check; the error
        is then ``inf``).
    max_modes : int
        Most modes kept (the rest are counted as unconverged).
    max_starts : int, optional
        Budget of starts for the saturation rounds (default ``16 * num_starts``): while some
        basin was reached by only one start, another round with as many starts as all before
        runs (``num_starts``, then doubling), until every basin seen was reached at least twice
        or the budget is spent.

    Returns
    -------
    ModeSearch

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import GaussianMixture
    >>> gm = GaussianMixture(torch.tensor([[-3.0, 0.0], [3.0, 0.0]]), torch.tensor([0.5, 1.0]))
    >>> res = gibbsebm.find_modes(gibbsebm.Gibbs(gm), num_starts=32, seed=0)
    >>> res.num_modes
    2
    """
    if not isinstance(dist, Gibbs) or dist.batch_shape != torch.Size():
        raise ValueError("find_modes needs a scalar-batch gibbsebm.Gibbs distribution")
    if dist.is_discrete or not _real(dist.support):
        raise ValueError(f"find_modes needs an unconstrained real support, got {dist.support}")
    if isinstance(num_starts, bool) or not isinstance(num_starts, int) or num_starts < 1:
        raise ValueError(f"num_starts must be a positive int, got {num_starts!r}")
    if overdispersion <= 0:
        raise ValueError(f"overdispersion must be > 0, got {overdispersion}")
    dtype, device = dist.beta.dtype, dist.beta.device
    if generator is None:
        generator = torch.Generator(device=device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
    ev = dist.event_shape
    d = math.prod(ev)
    f = _flat(dist)
    evals = 0
    if init_scale is None:
        center, radius, n = search_scale(dist, generator)
        evals += n
        scale = overdispersion * radius / math.sqrt(d)
        start = {
            "kind": "gaussian",
            "center": center.tolist() if d <= 10 else "0",
            "scale": scale,
            "search_radius": radius,
            "overdispersion": overdispersion,
            "scaled_from": "energy",
        }
    else:
        center = torch.zeros(d, dtype=dtype, device=device)
        scale = float(init_scale)
        start = {"kind": "gaussian", "center": "0", "scale": scale, "scaled_from": "user"}
    kept_y: list[torch.Tensor] = []
    kept_P: list[torch.Tensor] = []  # precision (float64)
    kept_C: list[torch.Tensor] = []  # covariance (float64)
    kept_kind: list[str] = []
    counts: list[int] = []
    unconverged = 0
    total = 0
    rounds = 0
    n_new = num_starts
    max_total = 16 * num_starts if max_starts is None else max(int(max_starts), num_starts)
    while True:
        # scales scale * (2 overdispersion)^(-u^2), u ~ U(0, 1): mostly broad starts (far
        # basins), some narrower ones (the small basins between them)
        u = torch.rand((n_new, 1), generator=generator, dtype=dtype, device=device)
        per = scale * (2.0 * overdispersion) ** (-u * u) if init_scale is None else scale
        y0 = center + per * torch.randn((n_new, d), generator=generator, dtype=dtype, device=device)
        if total == 0:
            y0[0] = center
        pts, n_ev = _ascend(f, y0, scale, max_iter)
        evals += n_ev
        vals, grads = _grad(f, pts)
        evals += n_new
        vals = _finite(vals)
        order = torch.argsort(vals, descending=True).tolist()

        for i in order:
            if not bool(torch.isfinite(vals[i])):
                unconverged += 1
                continue
            m = pts[i]
            hit = _same_mode(m, kept_y, kept_P)
            if hit is not None:
                counts[hit] += 1
                continue
            if len(kept_y) >= max_modes:
                unconverged += 1
                continue
            H = _hessian(f, m)
            evals += 2 * d
            evalsH, evecs = torch.linalg.eigh(H)
            top = float(evalsH.abs().max()) if evalsH.numel() else 0.0
            if top > 0 and float(evalsH.min()) < -1e-3 * top:
                unconverged += 1  # a saddle or a point still on a slope
                continue
            if top > 0 and float(evalsH.min()) > DEGENERATE_RTOL * top:
                # two Newton steps polish the mode (L-BFGS stops at a loose gradient on flat modes)
                for _ in range(2):
                    v, g = _grad(f, m[None])
                    evals += 1
                    step = torch.linalg.solve(H, g[0].to(torch.float64))
                    cand = m + step.to(dtype)
                    vc, _ = _grad(f, cand[None])
                    evals += 1
                    if bool(torch.isfinite(vc[0])) and float(vc[0]) >= float(v[0]) - 1e-9:
                        m = cand
                vals_m, g = _grad(f, m[None])
                evals += 1
                gnorm = float(g.norm())
                if gnorm * math.sqrt(1.0 / max(float(evalsH.min()), 1e-300)) > 1.0:
                    unconverged += 1  # still more than one local sd from a stationary point
                    continue
                H = _hessian(f, m)
                evals += 2 * d
                evalsH, evecs = torch.linalg.eigh(H)
                if float(evalsH.min()) <= 0:
                    unconverged += 1
                    continue
                vals[i] = vals_m[0]
                C = (evecs / evalsH) @ evecs.T
                P = H
                kind = "laplace"
            else:
                C, n = _moment_cov(f, m, scale, generator)
                evals += n
                if C is None:
                    unconverged += 1
                    continue
                P = torch.linalg.inv(C)
                kind = "moments"
            hit = _same_mode(m, kept_y, kept_P)
            if hit is not None:
                # the ascent stopped short on a flat direction, and the Newton steps took it to a
                # mode already kept (a rotated 10-D Gaussian with condition number 1e4 gave 27
                # "modes" at one location, 1.5e-8 apart, so every estimate was untrusted)
                counts[hit] += 1
                continue
            kept_y.append(m)
            kept_P.append(0.5 * (P + P.T))
            kept_C.append(0.5 * (C + C.T))
            kept_kind.append(kind)
            counts.append(1)
        total += n_new
        rounds += 1
        # saturation: stop when every basin seen was reached by at least two starts (the
        # Good-Turing chance of an unseen basin is then 0 at this sample size) or the budget
        # is spent; else double the starts
        if total >= max_total or not counts or min(counts) >= 2:
            break
        n_new = min(total, max_total - total)

    start["rounds"] = rounds
    if not kept_y:
        raise ValueError(
            "find_modes found no finite mode (is the energy bounded below and finite?); "
            f"{num_starts} starts of scale {scale:.3g}"
        )
    modes = torch.stack(kept_y)
    with torch.no_grad():
        ld = f(modes).to(torch.float64)
    evals += len(kept_y)
    covs = torch.stack(kept_C)
    precs = torch.stack(kept_P)
    logdet_c = torch.linalg.slogdet(covs)[1]
    laplace = ld + 0.5 * d * math.log(2 * math.pi) + 0.5 * logdet_c
    is_mass, is_se, n = _basin_masses(f, modes, covs, precs, num_mass_draws, generator)
    evals += n
    log_masses = laplace.clone()
    errs = (laplace - is_mass).abs() + 2 * is_se
    for k, kind in enumerate(kept_kind):
        if kind == "moments":
            log_masses[k] = is_mass[k]
            errs[k] = 2 * is_se[k] + 0.1 * (1 + abs(float(is_mass[k])))  # moment fit: loose
    errs = torch.where(torch.isnan(errs), torch.full_like(errs, math.inf), errs)
    order = torch.argsort(log_masses, descending=True)
    beta = float(dist.beta)
    return ModeSearch(
        locations=modes[order].reshape((-1,) + ev),
        log_density=ld[order],
        energies=-ld[order] / beta if beta != 0 else -ld[order],
        log_masses=log_masses[order],
        log_mass_errors=errs[order],
        log_masses_is=is_mass[order],
        covariances=covs[order],
        curvature=[kept_kind[i] for i in order.tolist()],
        basin_counts=torch.tensor(counts)[order.cpu()],
        num_starts=total,
        num_unconverged=unconverged,
        start_distribution=start,
        num_energy_evals=evals,
        precisions=precs[order],
    )


def _same_mode(m: torch.Tensor, kept_y: list, kept_P: list) -> int | None:
    """Index of the first kept mode within squared Mahalanobis distance
    :data:`DEDUP_DISTANCE2` of ``m`` under that mode's precision, or ``None``."""
    m64 = m.to(torch.float64)
    for j, (km, kp) in enumerate(zip(kept_y, kept_P)):
        dm = m64 - km.to(torch.float64)
        if float(dm @ kp.to(torch.float64) @ dm) < DEDUP_DISTANCE2:
            return j
    return None


def _ascend(f, y: torch.Tensor, scale: float, iters: int) -> tuple[torch.Tensor, int]:
    """Per-start gradient ascent of ``f`` with a step size of each start's own (x1.5 after an
    accepted step, x0.5 after a rejected one): starts never share a step or a curvature
    estimate, so a start in a narrow basin is not thrown out of it by its broad neighbours
    (which a joint L-BFGS on the sum of all starts does)."""
    n = y.shape[0]
    v, g = _grad(f, y)
    v = _finite(v)
    eta = torch.full((n, 1), 0.01 * scale, dtype=y.dtype, device=y.device)
    evals = n
    for _ in range(iters):
        gn = g.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        prop = y + eta * g / gn * torch.minimum(gn, 1.0 / eta.clamp_min(1e-300))
        vp, gp = _grad(f, prop)
        vp = _finite(vp)
        evals += n
        ok = (vp > v)[:, None]
        y = torch.where(ok, prop, y)
        v = torch.where(ok[:, 0], vp, v)
        g = torch.where(ok, gp, g)
        eta = torch.where(ok, eta * 1.5, eta * 0.5).clamp(1e-12, 1e6)
        if bool((eta < 1e-10).all()):
            break
    return y.detach(), evals


def _real(support) -> bool:
    from torch.distributions import constraints

    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real or isinstance(support, type(constraints.real))


def _moment_cov(f, m: torch.Tensor, scale: float, generator, n: int = 4096):
    """Covariance of the target near ``m`` from self-normalized importance moments of a broad
    Gaussian at ``m`` (fallback for a singular Hessian); ``None`` if the weights collapse."""
    d = m.numel()
    s = scale
    for _ in range(4):
        z = torch.randn((n, d), generator=generator, dtype=m.dtype, device=m.device)
        yy = m + s * z
        with torch.no_grad():
            lw = _finite(f(yy)).to(torch.float64) + 0.5 * (z.to(torch.float64) ** 2).sum(-1)
        w = torch.softmax(lw, 0)
        ess = float(1.0 / (w * w).sum())
        if ess >= 50:
            y64 = yy.to(torch.float64)
            mu = (w[:, None] * y64).sum(0)
            dy = y64 - mu
            C = (w[:, None, None] * dy[:, :, None] * dy[:, None, :]).sum(0)
            C = C + 1e-9 * torch.eye(d, dtype=C.dtype, device=C.device) * float(C.diagonal().mean())
            try:
                torch.linalg.cholesky(C)
            except RuntimeError:
                return None, n
            return C, n
        s = s / 2
    return None, 4 * n


def _basin_masses(f, modes, covs, precs, n, generator):
    """Importance estimate of each mode's local mass: draws from ``N(mode, cov)``, weight
    :math:`e^{\\ell}/q` if the draw is nearest (Mahalanobis) to that mode, else 0."""
    M, d = modes.shape
    dtype = modes.dtype
    if n <= 0:
        inf = torch.full((M,), math.inf, dtype=torch.float64)
        return torch.full((M,), math.nan, dtype=torch.float64), inf, 0
    out, se = [], []
    L = torch.linalg.cholesky(covs)
    half_logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    for k in range(M):
        z = torch.randn((n, d), generator=generator, dtype=torch.float64, device=modes.device)
        y = modes[k].to(torch.float64) + z @ L[k].T
        with torch.no_grad():
            ld = _finite(f(y.to(dtype))).to(torch.float64)
        logq = -0.5 * (z * z).sum(-1) - half_logdet[k] - 0.5 * d * math.log(2 * math.pi)
        diff = y[None] - modes.to(torch.float64)[:, None]  # (M, n, d)
        dist2 = torch.einsum("mni,mij,mnj->mn", diff, precs, diff)
        nearest = dist2.argmin(0) == k
        lw = torch.where(nearest, ld - logq, torch.full_like(ld, -math.inf))
        top = lw.max()
        if not bool(torch.isfinite(top)):
            out.append(-math.inf)
            se.append(math.inf)
            continue
        w = torch.exp(lw - top)
        mean = w.mean()
        out.append(float(top + torch.log(mean)))
        se.append(float(w.std() / (math.sqrt(n) * mean)))
    return (
        torch.tensor(out, dtype=torch.float64),
        torch.tensor(se, dtype=torch.float64),
        M * n,
    )


def initial_positions(
    dist: Gibbs,
    num_chains: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    search: ModeSearch | None = None,
    num_starts: int = 256,
) -> torch.Tensor:
    """Starting points for MCMC chains spread over the modes found (for ``pt`` and friends).

    Chain ``i`` starts at a draw from :math:`N(\\hat y_k, \\Sigma_k)` of mode ``k``; the
    modes get chains in proportion to their local masses, with every mode getting at least
    one chain while ``num_chains >= num_modes`` (largest remainder rounding).

    Parameters
    ----------
    dist : Gibbs
        Continuous scalar-batch Gibbs distribution.
    num_chains : int
        Number of chains.
    generator, seed : optional
        Randomness (as :func:`find_modes`).
    search : ModeSearch, optional
        A search already run (else :func:`find_modes` runs here).
    num_starts : int
        Starts of that search.

    Returns
    -------
    Tensor
        ``(num_chains, *event_shape)``.
    """
    if generator is None:
        generator = torch.Generator(device=dist.beta.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
    if search is None:
        search = find_modes(dist, num_starts=num_starts, generator=generator)
    w = search.weights
    M = search.num_modes
    if num_chains >= M:
        counts = torch.ones(M, dtype=torch.long) + torch.floor(w.cpu() * (num_chains - M)).long()
        rest = num_chains - int(counts.sum())
        frac = w.cpu() * (num_chains - M) - torch.floor(w.cpu() * (num_chains - M))
        counts[torch.argsort(frac, descending=True)[:rest]] += 1
    else:
        counts = torch.zeros(M, dtype=torch.long)
        counts[:num_chains] = 1  # modes are sorted by mass
    comp = torch.repeat_interleave(torch.arange(M), counts).to(search.locations.device)
    d = search.covariances.shape[-1]
    L = torch.linalg.cholesky(search.covariances)
    z = torch.randn((num_chains, d), generator=generator, dtype=torch.float64, device=comp.device)
    y = search.locations.reshape(M, d).to(torch.float64)[comp] + torch.einsum(
        "nij,nj->ni", L[comp], z
    )
    return y.to(dist.beta.dtype).reshape((num_chains,) + dist.event_shape)
