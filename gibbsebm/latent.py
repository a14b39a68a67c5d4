"""Free energy of latent-variable energy-based models.

For an energy :math:`E(x, y, z)` with a latent variable :math:`z`,

.. math::

    F_\\beta(x, y) = -\\frac{1}{\\beta} \\log \\int \\exp(-\\beta E(x, y, z))\\, d\\mu(z),

with :math:`\\mu` the counting measure for discrete :math:`z` and Lebesgue measure for
continuous :math:`z`. As :math:`\\beta \\to \\infty`, :math:`F_\\beta \\to \\min_z E`; for
discrete :math:`z` taking :math:`|Z|` values,
:math:`\\min_z E - \\log|Z| / \\beta \\le F_\\beta \\le \\min_z E` and :math:`F_\\beta` is
non-decreasing in :math:`\\beta` (its derivative is the entropy of :math:`p_\\beta(z \\mid y)`
over :math:`\\beta^2`). The Gibbs distribution of a latent model (``Gibbs(energy, beta,
latent=...)``) uses :math:`F_\\beta` as the energy of :math:`y`.

How :math:`z` is summed out is set by a *latent specification*:

* :class:`DiscreteLatent` (or a plain tensor of values): exact log-sum-exp over the
  enumerated values, chunked so that memory stays bounded;
* :class:`BoxLatent`: continuous :math:`z` of dimension 1-3 on a box, tensor-product
  Gauss-Legendre quadrature;
* :class:`GaussHermiteLatent`: continuous :math:`z \\in \\mathbb R^D`, :math:`D \\le 3`,
  tensor-product Gauss-Hermite quadrature around a centre;
* :class:`ImportanceLatent`: any dimension, importance sampling from a proposal with a
  delta-method standard error.

Quadrature needs :math:`n^D` energy evaluations per row, which is why it stops at
:math:`D = 3`; above that, importance sampling is the method.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from ._validation import check_beta, check_beta_cast, check_finite, check_same_device

__all__ = [
    "FreeEnergy",
    "DiscreteLatent",
    "BoxLatent",
    "GaussHermiteLatent",
    "ImportanceLatent",
    "free_energy",
    "MAX_QUADRATURE_DIM",
]

#: Largest latent dimension handled by tensor-product quadrature (``order**D`` nodes).
MAX_QUADRATURE_DIM = 3

#: Default quadrature order per latent dimension: about 2**6 - 2**12 nodes in all.
_DEFAULT_ORDER = {1: 64, 2: 32, 3: 16}

#: Gradient steps used to refine the best node/sample when ``beta = inf`` (continuous z).
_DESCENT_STEPS = 60


class FreeEnergy(NamedTuple):
    """Result of :func:`free_energy`; the same fields for every method.

    Attributes
    ----------
    value : Tensor
        :math:`F_\\beta(x, y)`, shape ``(N,)`` (``min_z E`` when ``beta = inf``).
    stderr : Tensor
        Uncertainty of ``value``, shape ``(N,)``: 0 for exact enumeration; the difference
        between two quadrature orders for quadrature (``inf`` when fewer than :math:`2^D`
        nodes effectively carry the integral: the grid does not resolve
        :math:`e^{-\beta E}`); the delta-method standard error for
        importance sampling; for a continuous minimum, the first-order estimate of the
        decrease still available at the returned point.
    argmin : Tensor or None
        The minimising :math:`z`, shape ``(N, *z_shape)`` when ``beta = inf``; ``None`` for
        finite ``beta``.
    method : str
        ``"enumeration"``, ``"gauss-legendre"``, ``"gauss-hermite"`` or ``"importance"``;
        with ``"+descent"`` appended when a continuous minimum was refined by gradient steps.
    """

    value: torch.Tensor
    stderr: torch.Tensor
    argmin: torch.Tensor | None
    method: str


class DiscreteLatent(NamedTuple):
    """Discrete latent variable given by its enumerated values.

    Attributes
    ----------
    values : Tensor
        All values of :math:`z`, shape ``(K, *z_shape)``.

    Examples
    --------
    >>> import torch
    >>> DiscreteLatent(torch.eye(3)).values.shape  # three one-hot values
    torch.Size([3, 3])
    """

    values: torch.Tensor


class BoxLatent(NamedTuple):
    """Continuous latent :math:`z \\in [low, high] \\subset \\mathbb R^D`, :math:`D \\le 3`.

    The integral over the box is computed with the tensor product of ``order``-point
    Gauss-Legendre rules (exact for polynomials of degree :math:`2n - 1` in each coordinate;
    exponentially convergent for integrands analytic on the box). The error estimate is the
    difference from the rule of order ``order // 2``, which is conservative (it estimates
    the error of the *lower* order); it is ``inf`` when fewer than :math:`2^D` nodes
    effectively carry the integral, i.e. the grid is too coarse for the width of
    :math:`e^{-\beta E}` (raise ``order`` or shrink the box). Mass outside the box is not counted, so the box must
    contain where :math:`\\exp(-\\beta E)` matters, at every ``beta`` you use. Use this rule
    for bounded latents or integrands that are not bell-shaped.

    Attributes
    ----------
    low, high : Tensor
        Corners of the box, shape ``(D,)``.
    order : int or None
        Nodes per coordinate; ``None`` picks 64, 32 or 16 for D = 1, 2, 3.

    Examples
    --------
    >>> import math, torch
    >>> def energy(y, z):  # int exp(-(y - z)^2) dz = sqrt(pi) on the real line
    ...     return ((y - z) ** 2).sum(-1)
    >>> box = BoxLatent(torch.tensor([-10.0]), torch.tensor([10.0]))
    >>> f = free_energy(energy, torch.zeros(1, 1), 1.0, latent=box)
    >>> round(float(f.value), 5) == round(-0.5 * math.log(math.pi), 5)
    True
    """

    low: torch.Tensor
    high: torch.Tensor
    order: int | None = None


class GaussHermiteLatent(NamedTuple):
    """Continuous latent :math:`z \\in \\mathbb R^D`, :math:`D \\le 3`, by Gauss-Hermite.

    With :math:`s_\\beta = \\text{scale} / \\sqrt{\\beta}` and the substitution
    :math:`z = c + \\sqrt 2\\, s_\\beta\\, t`,

    .. math::

        \\int e^{-\\beta E(z)} dz \\approx \\prod_d (\\sqrt2 s_{\\beta,d})
        \\sum_i w_i\\, e^{t_i^2}\\, e^{-\\beta E(c + \\sqrt 2 s_\\beta t_i)},

    with the Gauss-Hermite nodes :math:`t_i` and weights :math:`w_i` for the weight
    :math:`e^{-t^2}`. The rule is exact when :math:`e^{-\\beta E}` is a Gaussian with mean
    :math:`c` and standard deviations :math:`s_\\beta` times a polynomial of degree
    :math:`< 2n`; so put the centre at the conditional minimiser of :math:`E` over
    :math:`z` and ``scale`` at its width at :math:`\\beta = 1` (:math:`h^{-1/2}` for
    curvature :math:`h`). Dividing by :math:`\\sqrt\\beta` makes the nodes follow the width
    of :math:`e^{-\\beta E}` along a temperature ladder. The error estimate is the difference
    from the rule of order ``order // 2``. Use this rule for unbounded, roughly bell-shaped
    conditionals.

    Attributes
    ----------
    center : Tensor or callable
        Centre :math:`c`, shape ``(D,)`` or ``(N, D)`` (one per row), or a callable
        ``center(y)`` / ``center(x, y)`` returning ``(N, D)``.
    scale : Tensor or float
        Width at :math:`\\beta = 1`, a scalar or shape ``(D,)``.
    order : int or None
        Nodes per coordinate; ``None`` picks 64, 32 or 16 for D = 1, 2, 3.

    Examples
    --------
    >>> import torch
    >>> def energy(y, z):  # minimiser z = y, curvature 2: width 2**-0.5 at beta = 1
    ...     return ((y - z) ** 2).sum(-1)
    >>> gh = GaussHermiteLatent(center=lambda y: y, scale=2**-0.5, order=4)
    >>> f = free_energy(energy, torch.ones(2, 1), torch.tensor([1.0, 4.0]), latent=gh)
    >>> f.value  # -log(sqrt(pi / beta)) / beta, exact for this Gaussian integrand
    tensor([-0.5724,  0.0302])
    """

    center: Any
    scale: Any
    order: int | None = None


class ImportanceLatent(NamedTuple):
    """Continuous latent of any dimension by importance sampling from a proposal.

    .. math::

        \\hat Z = \\frac1S \\sum_{s} \\frac{e^{-\\beta E(y, z_s)}}{q(z_s)}, \\quad
        z_s \\sim q, \\qquad
        \\operatorname{se}(\\hat F) \\approx \\frac{1}{\\beta}
        \\frac{\\operatorname{sd}(w)}{\\sqrt S\\, \\bar w}

    (the delta method: :math:`\\operatorname{Var} \\log \\hat Z \\approx
    \\operatorname{Var}(\\hat Z) / Z^2`). The same draws serve every row (common random
    numbers), unless the proposal has batch shape ``(N,)``: one proposal per row. The
    standard error is only as good as the proposal's coverage of :math:`e^{-\\beta E}`:
    a proposal with lighter tails than the target can under-report it.

    Attributes
    ----------
    proposal : torch.distributions.Distribution
        Proposal :math:`q` with event shape ``z_shape`` and batch shape ``()`` or ``(N,)``.
        ``Normal``, ``Independent(Normal)`` and ``MultivariateNormal`` are sampled with
        ``generator``; other distributions use their own ``sample()`` (torch's global
        generator), and then ``generator`` must be ``None``.
    num_samples : int
        Number of draws S.
    generator : torch.Generator, optional
        Source of randomness for the draws.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Independent, Normal
    >>> q = Independent(Normal(torch.zeros(5), torch.ones(5)), 1)
    >>> spec = ImportanceLatent(q, 2000, torch.Generator().manual_seed(0))
    >>> f = free_energy(lambda y, z: ((y - z) ** 2).sum(-1), torch.zeros(3, 5), 1.0, latent=spec)
    >>> bool((f.stderr > 0).all()), f.method
    (True, 'importance')
    """

    proposal: torch.distributions.Distribution
    num_samples: int = 4096
    generator: torch.Generator | None = None


# ---------------------------------------------------------------------------- helpers


def _num_params(energy: Callable) -> int | None:
    """Number of positional parameters of ``energy`` (``None`` if unknown)."""
    fn = energy.forward if isinstance(energy, torch.nn.Module) else energy
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL,):
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


def _call(
    energy: Callable, y: torch.Tensor, x: torch.Tensor | None, z: torch.Tensor
) -> torch.Tensor:
    return energy(y, z) if x is None else energy(x, y, z)


def _grid_energy(
    energy: Callable,
    y: torch.Tensor,
    x: torch.Tensor | None,
    z: torch.Tensor,
    z_shape: torch.Size,
    validate: bool,
) -> torch.Tensor:
    """Energies of every row with every latent value in its row: ``z`` is ``(N, Q, *z)``.

    Returns ``(N, Q)``. ``z`` may be an expanded view; inputs are flattened to ``N * Q``.
    """
    n, q = z.shape[0], z.shape[1]
    ev = y.shape[1:]
    y_rep = y[:, None].expand((n, q) + tuple(ev)).reshape((n * q,) + tuple(ev))
    x_rep = None
    if x is not None:
        xs = x.shape[1:]
        x_rep = x[:, None].expand((n, q) + tuple(xs)).reshape((n * q,) + tuple(xs))
    z_rep = z.reshape((n * q,) + tuple(z_shape))
    e = _call(energy, y_rep, x_rep, z_rep)
    if not isinstance(e, torch.Tensor):
        raise ValueError(
            f"energy must return a torch.Tensor of shape ({n * q},), got {type(e).__name__}"
        )
    if not e.dtype.is_floating_point:
        raise ValueError(f"energy must return a floating-point tensor, got dtype {e.dtype}")
    if tuple(e.shape) != (n * q,):
        raise ValueError(
            f"energy must return one value per input, shape ({n * q},), got shape "
            f"{tuple(e.shape)}; latent energies take y (M, *event), z (M, *z_shape) -> (M,)"
        )
    if validate and torch.isnan(e).any():
        raise ValueError(
            f"energy returned NaN for {int(torch.isnan(e).sum())} of {e.numel()} (y, z) pairs"
        )
    return e.reshape(n, q)


def _chunks(total: int, n_rows: int, max_batch: int) -> list[tuple[int, int]]:
    size = max(1, max_batch // max(1, n_rows))
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _beta_info(
    beta: Any, n: int, device: torch.device, dtype: torch.dtype, validate: bool
) -> tuple[torch.Tensor | None, bool]:
    """Return (beta as an (N,) tensor, or None when infinite; whether beta is infinite)."""
    if isinstance(beta, torch.Tensor):
        if validate:
            check_beta(beta, allow_inf=True)
        if beta.dim() > 1 or (beta.dim() == 1 and beta.shape[0] not in (1, n)):
            raise ValueError(
                f"beta must be a number or a tensor of shape ({n},) (one per row of y), "
                f"got shape {tuple(beta.shape)}"
            )
        if validate:
            inf = torch.isinf(beta)
            if inf.any():
                if not inf.all():
                    raise ValueError(
                        "beta mixes inf and finite values; compute the beta = inf rows "
                        "(the minimum over z) in a separate call"
                    )
                return None, True
        b = beta.to(device=device, dtype=dtype)  # differentiable in beta
        if validate:
            check_beta_cast(b.detach(), beta)
        return b.expand(n) if b.dim() == 0 or b.shape[0] == 1 else b, False
    check_beta(beta, allow_inf=True)
    if math.isinf(float(beta)):
        return None, True
    b = torch.full((n,), float(beta), device=device, dtype=dtype)
    return check_beta_cast(b, beta) if n else b, False


@functools.lru_cache(maxsize=64)
def _gauss_rule(
    kind: str, order: int, dim: int, device, dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor-product nodes ``(order**dim, dim)`` and log weights ``(order**dim,)``.

    Cached per (kind, order, dim, device, dtype): callers must not modify the results.
    """
    if kind == "legendre":
        t, w = np.polynomial.legendre.leggauss(order)
    else:
        t, w = np.polynomial.hermite.hermgauss(order)
        w = w * np.exp(t**2)  # weights for the integrand itself: sum w_i e^{t_i^2} f(t_i)
    t = torch.as_tensor(t, dtype=torch.float64)
    logw = torch.log(torch.as_tensor(w, dtype=torch.float64))
    grids = torch.meshgrid(*([t] * dim), indexing="ij")
    nodes = torch.stack([g.reshape(-1) for g in grids], dim=-1)
    lw = torch.meshgrid(*([logw] * dim), indexing="ij")
    logw_all = sum(g.reshape(-1) for g in lw)
    return nodes.to(device=device, dtype=dtype), logw_all.to(device=device, dtype=dtype)


class _NoGrad(Exception):
    """The energy is not differentiable in z (no gradient to refine a minimum with)."""


def _descend(
    energy: Callable,
    y: torch.Tensor,
    x: torch.Tensor | None,
    z0: torch.Tensor,
    e0: torch.Tensor,
    step0: torch.Tensor,
    low: torch.Tensor | None,
    high: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Per-row gradient descent with an adaptive step (doubled on success, halved on failure).

    A step is accepted under the Armijo condition with constant 1/2,
    :math:`E(z - t g) \\le E(z) - t |g|^2 / 2`, which on a quadratic with largest curvature
    :math:`L` accepts only :math:`t \\le 1/L`: no zig-zag between mirror points of the well.
    Returns (z, energy at z, first-order remaining-decrease estimate, whether it ran).
    Rows never move to a point of higher energy, so the result is at least as good as z0.
    """
    n = z0.shape[0]
    flat = z0.reshape(n, -1)

    def eval_grad(zf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            zz = zf.detach().requires_grad_(True)
            e = _call(energy, y.detach(), None if x is None else x.detach(), zz.reshape(z0.shape))
            if not e.requires_grad:
                raise _NoGrad
            (g,) = torch.autograd.grad(e.sum(), zz)
        return e.detach(), g

    try:
        e, g = eval_grad(flat)
    except (_NoGrad, RuntimeError):
        return z0, e0, torch.zeros_like(e0), False
    gn2 = (g * g).sum(-1)
    step = step0 / gn2.sqrt().clamp_min(torch.finfo(g.dtype).tiny)
    for _ in range(_DESCENT_STEPS):
        cand = flat - step[:, None] * g
        if low is not None:
            cand = torch.maximum(torch.minimum(cand, high), low)
        e_c, g_c = eval_grad(cand)
        ok = e_c <= e - 0.5 * step * (g * g).sum(-1)
        flat = torch.where(ok[:, None], cand, flat)
        e = torch.where(ok, e_c, e)
        g = torch.where(ok[:, None], g_c, g)
        step = torch.where(ok, step * 2.0, step * 0.5)
    # one more gradient step of length `step` would lower E by about step * |g|^2 (to first
    # order); that is what remains uncertain about the minimum.
    remaining = (step * (g * g).sum(-1)).clamp_min(0.0)
    return flat.reshape(z0.shape), e, remaining, True


# ---------------------------------------------------------------------------- methods


def _discrete(energy, y, x, beta, inf, values, max_batch, validate) -> FreeEnergy:
    n = y.shape[0]
    k = values.shape[0]
    if k == 0:
        raise ValueError("the latent has no values (values.shape[0] == 0)")
    z_shape = values.shape[1:]
    acc = None
    best_e = best_i = None
    for s, t in _chunks(k, n, max_batch):
        z = values[s:t][None].expand((n, t - s) + tuple(z_shape))
        e = _grid_energy(energy, y, x, z, z_shape, validate)
        if inf:
            m, i = e.min(dim=1)
            i = i + s
            if best_e is None:
                best_e, best_i = m, i
            else:
                better = m < best_e
                best_e = torch.where(better, m, best_e)
                best_i = torch.where(better, i, best_i)
        else:
            lse = torch.logsumexp(-beta[:, None].to(e.dtype) * e, dim=1)
            acc = lse if acc is None else torch.logaddexp(acc, lse)
    if inf:
        # recompute the minimum with the graph attached to the chosen values (differentiable)
        z_best = values[best_i]
        e = _grid_energy(energy, y, x, z_best[:, None], z_shape, False)[:, 0]
        return FreeEnergy(e, torch.zeros_like(e), z_best, "enumeration")
    value = -acc / beta.to(acc.dtype)
    return FreeEnergy(value, torch.zeros_like(value), None, "enumeration")


def _quadrature(energy, y, x, beta, inf, spec, max_batch, validate) -> FreeEnergy:
    device, dtype = y.device, (y.dtype if y.dtype.is_floating_point else torch.get_default_dtype())
    n = y.shape[0]
    if isinstance(spec, BoxLatent):
        kind = "legendre"
        low = torch.as_tensor(spec.low, device=device, dtype=dtype).reshape(-1)
        high = torch.as_tensor(spec.high, device=device, dtype=dtype).reshape(-1)
        if low.shape != high.shape:
            raise ValueError(
                f"BoxLatent low and high must have the same shape (D,), got "
                f"{tuple(low.shape)} and {tuple(high.shape)}"
            )
        if validate and not bool((high > low).all()):
            raise ValueError("BoxLatent needs high > low in every coordinate")
        dim = low.shape[0]
    else:
        kind = "hermite"
        center = spec.center
        if callable(center):
            center = center(y) if x is None else center(x, y)
        center = torch.as_tensor(center, device=device, dtype=dtype)
        dim = center.shape[-1] if center.dim() else 1
        center = center.reshape(-1, dim)
        if center.shape[0] not in (1, n):
            raise ValueError(
                f"GaussHermiteLatent center must have shape (D,) or (N, D) with N = {n}, "
                f"got {tuple(center.shape)}"
            )
        scale = torch.as_tensor(spec.scale, device=device, dtype=dtype).reshape(-1)
        if scale.shape[0] not in (1, dim):
            raise ValueError(
                f"GaussHermiteLatent scale must be a scalar or shape ({dim},), got "
                f"{tuple(scale.shape)}"
            )
        if validate and not bool((scale > 0).all()):
            raise ValueError("GaussHermiteLatent scale must be > 0")
    if not 1 <= dim <= MAX_QUADRATURE_DIM:
        raise ValueError(
            f"quadrature handles latent dimensions 1 to {MAX_QUADRATURE_DIM} "
            f"(order**D nodes), got D = {dim}; use ImportanceLatent"
        )
    order = spec.order if spec.order is not None else _DEFAULT_ORDER[dim]
    if order < 2:
        raise ValueError(f"quadrature order must be >= 2, got {order}")
    z_shape = torch.Size([dim])

    def nodes_for(order_: int, beta_rows: torch.Tensor | None):
        t, logw = _gauss_rule(kind, order_, dim, device, dtype)
        if kind == "legendre":
            half = 0.5 * (high - low)
            z = (low + high) / 2 + half * t  # (Q, D)
            z = z[None].expand(n, -1, -1)
            logw = (logw + torch.log(half).sum())[None].expand(n, -1)
        else:
            s = scale.expand(dim)[None]  # (1, D)
            if beta_rows is not None:
                s = s / beta_rows.sqrt()[:, None]  # (N, D)
            s = (math.sqrt(2.0) * s).expand(n, dim)
            z = center.expand(n, dim)[:, None, :] + s[:, None, :] * t[None]  # (N, Q, D)
            logw = logw[None] + torch.log(s).sum(-1, keepdim=True)
        return z, logw

    name = "gauss-" + kind
    if inf:
        z, _ = nodes_for(order, None)
        return _continuous_min(energy, y, x, z, z_shape, max_batch, validate, spec, name)

    def integrate(order_: int) -> tuple[torch.Tensor, torch.Tensor]:
        """F at this order, and the effective number of nodes (sum t)^2 / sum t^2."""
        z, logw = nodes_for(order_, beta)
        acc = acc2 = None
        for s, t in _chunks(z.shape[1], n, max_batch):
            e = _grid_energy(energy, y, x, z[:, s:t], z_shape, validate)
            log_t = logw[:, s:t].to(e.dtype) - beta[:, None].to(e.dtype) * e
            lse = torch.logsumexp(log_t, dim=1)
            lse2 = torch.logsumexp(2 * log_t.detach(), dim=1)
            acc = lse if acc is None else torch.logaddexp(acc, lse)
            acc2 = lse2 if acc2 is None else torch.logaddexp(acc2, lse2)
        return -acc / beta.to(acc.dtype), torch.exp(2 * acc.detach() - acc2)

    value, eff_nodes = integrate(order)
    with torch.no_grad():
        coarse, _ = integrate(max(1, order // 2))
        err = (value.detach() - coarse).abs()
        # A rule resolves a bell of width sigma once its spacing h is below ~2 sigma (the
        # aliasing error of equispaced-like rules is ~exp(-2 pi^2 sigma^2 / h^2)); then at
        # least ~2 nodes per axis carry the integral. With fewer, both orders can be wrong
        # alike and their difference means nothing: report an unknown (inf) error.
        err = torch.where(eff_nodes < 2.0**dim, torch.full_like(err, math.inf), err)
    return FreeEnergy(value, err, None, name)


def _continuous_min(energy, y, x, z, z_shape, max_batch, validate, spec, name) -> FreeEnergy:
    """min_z E over candidate points ``z`` (N, Q, *z_shape), refined by gradient descent."""
    n = y.shape[0]
    best_e = best_z = None
    with torch.no_grad():
        for s, t in _chunks(z.shape[1], n, max_batch):
            e = _grid_energy(energy, y, x, z[:, s:t], z_shape, validate)
            m, i = e.min(dim=1)
            zc = z[torch.arange(n, device=z.device), s + i]
            if best_e is None:
                best_e, best_z = m, zc
            else:
                better = m < best_e
                best_e = torch.where(better, m, best_e)
                best_z = torch.where(better.reshape((n,) + (1,) * len(z_shape)), zc, best_z)
    # initial step: about the spacing of the candidate set in each direction
    spread = (z.reshape(n, z.shape[1], -1).amax(1) - z.reshape(n, z.shape[1], -1).amin(1)).mean(
        -1
    ) / max(2.0, z.shape[1] ** (1.0 / max(1, z_shape.numel())))
    low = high = None
    if isinstance(spec, BoxLatent):
        low = torch.as_tensor(spec.low, device=z.device, dtype=z.dtype).reshape(-1)
        high = torch.as_tensor(spec.high, device=z.device, dtype=z.dtype).reshape(-1)
    z_ref, _, remaining, ran = _descend(
        energy, y, x, best_z, best_e, spread.clamp_min(1e-12), low, high
    )
    e = _grid_energy(energy, y, x, z_ref[:, None], z_shape, False)[:, 0]
    return FreeEnergy(e, remaining, z_ref.detach(), name + ("+descent" if ran else ""))


def _sample_proposal(q: torch.distributions.Distribution, num: int, gen) -> torch.Tensor:
    D = torch.distributions
    shape = torch.Size([num])
    if isinstance(q, D.Normal):
        eps = torch.randn(
            shape + q.batch_shape, generator=gen, device=q.loc.device, dtype=q.loc.dtype
        )
        return q.loc + q.scale * eps
    if isinstance(q, D.Independent) and isinstance(q.base_dist, D.Normal):
        b = q.base_dist
        eps = torch.randn(
            shape + b.batch_shape, generator=gen, device=b.loc.device, dtype=b.loc.dtype
        )
        return b.loc + b.scale * eps
    if isinstance(q, D.MultivariateNormal):
        eps = torch.randn(
            shape + q.batch_shape + q.event_shape,
            generator=gen,
            device=q.loc.device,
            dtype=q.loc.dtype,
        )
        return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    if gen is not None:
        raise ValueError(
            f"ImportanceLatent can use a generator only with Normal, Independent(Normal) or "
            f"MultivariateNormal proposals, got {type(q).__name__}; pass generator=None"
        )
    return q.sample(shape)


def _importance(energy, y, x, beta, inf, spec: ImportanceLatent, max_batch, validate):
    n = y.shape[0]
    q = spec.proposal
    if not isinstance(q, torch.distributions.Distribution):
        raise ValueError(
            f"ImportanceLatent.proposal must be a torch Distribution, got {type(q).__name__}"
        )
    if spec.num_samples < 2:
        raise ValueError(f"ImportanceLatent needs num_samples >= 2, got {spec.num_samples}")
    if tuple(q.batch_shape) not in ((), (n,)):
        raise ValueError(
            f"the proposal's batch shape must be () or ({n},) (one per row), got "
            f"{tuple(q.batch_shape)}"
        )
    z_shape = q.event_shape
    with torch.no_grad():
        zs = _sample_proposal(q, spec.num_samples, spec.generator)  # (S, [N,] *z)
        log_q = q.log_prob(zs)  # (S,) or (S, N)
    per_row = len(q.batch_shape) == 1
    if per_row:
        z = zs.movedim(0, 1)  # (N, S, *z)
        log_q = log_q.T
    else:
        z = zs[None].expand((n,) + tuple(zs.shape))
        log_q = log_q[None].expand(n, -1)
    if validate:
        check_finite(log_q, "proposal log_prob of its own draws")
    if inf:
        return _continuous_min(energy, y, x, z, z_shape, max_batch, validate, spec, "importance")
    parts = []
    for s, t in _chunks(spec.num_samples, n, max_batch):
        e = _grid_energy(energy, y, x, z[:, s:t], z_shape, validate)
        parts.append(-beta[:, None].to(e.dtype) * e - log_q[:, s:t].to(e.dtype))
    log_w = torch.cat(parts, dim=1)  # (N, S)
    num = log_w.shape[1]
    log_z = torch.logsumexp(log_w, dim=1) - math.log(num)
    value = -log_z / beta.to(log_z.dtype)
    with torch.no_grad():
        # delta method: se(log Zhat) = sd(w) / (sqrt(S) mean(w)), with w scaled by its max
        w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values)
        rel = w.std(dim=1, correction=1) / (math.sqrt(num) * w.mean(dim=1))
        stderr = rel / beta.to(rel.dtype)
    return FreeEnergy(value, stderr, None, "importance")


# ---------------------------------------------------------------------------- public


def free_energy(
    energy: Callable,
    y: torch.Tensor,
    beta: float | torch.Tensor,
    *,
    x: torch.Tensor | None = None,
    latent: Any,
    max_batch: int = 2**16,
    validate: bool = True,
) -> FreeEnergy:
    """Free energy :math:`F_\\beta(x, y) = -\\beta^{-1} \\log \\int e^{-\\beta E(x, y, z)} dz`.

    Parameters
    ----------
    energy : callable or torch.nn.Module
        ``energy(y, z)`` or, with ``x``, ``energy(x, y, z)``: ``y`` shaped ``(M, *event)``,
        ``z`` shaped ``(M, *z_shape)``, returning ``(M,)``.
    y : Tensor
        Batch of observations, shape ``(N, *event)``.
    beta : float or Tensor
        Inverse temperature > 0: a number, ``math.inf`` (returns :math:`\\min_z E` and the
        argmin) or a tensor of shape ``(N,)``, one beta per row.
    x : Tensor, optional
        Inputs of a conditional energy, shape ``(N, *x_shape)``.
    latent : DiscreteLatent, BoxLatent, GaussHermiteLatent, ImportanceLatent or Tensor
        How :math:`z` is summed out (a tensor means :class:`DiscreteLatent` values).
        For ``beta = inf`` with continuous :math:`z`, the best quadrature node or proposal
        draw is refined by per-row gradient descent (when the energy is differentiable in
        :math:`z`; box constraints are respected).
    max_batch : int
        Largest number of (y, z) pairs passed to the energy in one call.
    validate : bool
        Check values (NaN energies, beta's sign), which synchronises with the device; shape
        checks are always made. :class:`gibbsebm.Gibbs` turns it off on its hot path.

    Returns
    -------
    FreeEnergy
        ``value`` and ``stderr`` shaped ``(N,)``, ``argmin`` (``beta = inf`` only) and
        ``method``. ``value`` is differentiable with respect to ``y`` and the energy's
        parameters.

    Raises
    ------
    ValueError
        For beta <= 0 or NaN, shape mismatches, non-floating or NaN energies, and latent
        specifications that do not fit.

    Examples
    --------
    >>> import math, torch
    >>> def energy(y, z):  # two states with energies 0 and 1
    ...     return (y * z).sum(-1)
    >>> y = torch.ones(1, 1)
    >>> z = torch.tensor([[0.0], [1.0]])
    >>> f = free_energy(energy, y, 1.0, latent=DiscreteLatent(z))
    >>> round(float(f.value), 4)  # -log(1 + e^-1)
    -0.3133
    >>> free_energy(energy, y, math.inf, latent=z).argmin
    tensor([[0.]])
    """
    if not callable(energy):
        raise ValueError(f"energy must be callable (a function or nn.Module), got {energy!r}")
    if not isinstance(y, torch.Tensor) or y.dim() < 1:
        raise ValueError("y must be a tensor with a leading batch dimension, shape (N, *event)")
    n = y.shape[0]
    if x is not None:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != n:
            raise ValueError(
                f"x must be a tensor shaped (N, *x_shape) with N = {n} (the rows of y), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
    if validate:
        nparams = _num_params(energy)
        want = 2 if x is None else 3
        if nparams is not None and nparams != want:
            raise ValueError(
                f"energy takes {nparams} arguments but a latent energy needs {want}: "
                + ("energy(y, z)" if x is None else "energy(x, y, z)")
            )
    if validate and y.dtype.is_floating_point:
        check_same_device(energy, y, "y")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    dtype = y.dtype if y.dtype.is_floating_point else torch.get_default_dtype()
    beta_rows, inf = _beta_info(beta, n, y.device, dtype, validate)

    if isinstance(latent, torch.Tensor):
        latent = DiscreteLatent(latent)
    if isinstance(latent, DiscreteLatent):
        values = latent.values
        if not isinstance(values, torch.Tensor) or values.dim() < 1:
            raise ValueError("DiscreteLatent.values must be a tensor shaped (K, *z_shape)")
        if values.device != y.device:
            raise ValueError(
                f"latent values are on {values.device} but y is on {y.device}; move one of them"
            )
        return _discrete(energy, y, x, beta_rows, inf, values, max_batch, validate)
    if isinstance(latent, (BoxLatent, GaussHermiteLatent)):
        return _quadrature(energy, y, x, beta_rows, inf, latent, max_batch, validate)
    if isinstance(latent, ImportanceLatent):
        return _importance(energy, y, x, beta_rows, inf, latent, max_batch, validate)
    raise ValueError(
        "latent must be a DiscreteLatent (or a tensor of latent values), BoxLatent, "
        f"GaussHermiteLatent or ImportanceLatent, got {type(latent).__name__}"
    )
