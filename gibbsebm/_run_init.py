"""Where chains start, and the log-density on the flattened chain layout (driver layer)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import constraints

from .constraints import support_values

__all__ = [
    "INIT_RADIUS",
    "MAX_INIT_REDRAWS",
    "checked_start",
    "flat_logdensity",
    "initial_positions",
    "unconstrained",
]

#: Stan's default initialisation: uniform on (-2, 2) in the unconstrained space.
INIT_RADIUS = 2.0


def _dist_device(dist: Any) -> torch.device:
    beta = getattr(dist, "beta", None)
    if isinstance(beta, torch.Tensor):
        return beta.device
    return torch.device("cpu")


def _dist_dtype(dist: Any) -> torch.dtype:
    beta = getattr(dist, "beta", None)
    if isinstance(beta, torch.Tensor) and beta.dtype.is_floating_point:
        return beta.dtype
    return torch.get_default_dtype()


def _batch_size(dist: Any) -> int:
    return math.prod(tuple(getattr(dist, "batch_shape", ())))


def flat_logdensity(dist: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``dist.logdensity`` on flattened chains ``(n * prod(batch), *event) -> (n * prod(batch),)``.

    For an unbatched distribution without base measure, condition or latent variables whose
    beta is a scalar, this is ``energy(y) * (-beta)`` directly (one kernel fewer than the
    general path, which goes through :meth:`gibbsebm.Gibbs.logdensity`).
    """
    batch = tuple(dist.batch_shape)
    event = tuple(dist.event_shape)
    energy = getattr(dist, "energy", None)
    simple = (
        not batch
        and getattr(dist, "base", None) is None
        and getattr(dist, "x", None) is None
        and getattr(dist, "latent", None) is None
        and energy is not None
        and getattr(energy, "tempered_energy", None) is None
        and isinstance(getattr(dist, "beta", None), torch.Tensor)
    )
    if simple:
        neg_beta = -dist.beta.detach()

        def fn(y: torch.Tensor) -> torch.Tensor:
            e = energy(y)
            return e * neg_beta.to(e.dtype)

        return fn
    if not batch:
        return dist.logdensity
    b = math.prod(batch)

    def fn_batched(y: torch.Tensor) -> torch.Tensor:
        n = y.shape[0] // b
        return dist.logdensity(y.reshape((n,) + batch + event)).reshape(n * b)

    return fn_batched


def initial_positions(
    dist: Any,
    num_chains: int,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Initial positions ``(num_chains * prod(batch), *event)`` (flattened chain layout).

    Defaults, by support:

    * real (``real``, ``real_vector``, independent reals): uniform on ``(-2, 2)`` per
      coordinate, as Stan;
    * ``positive``: ``exp`` of uniform ``(-2, 2)``; an interval ``[a, b]``: uniform on it;
    * finite discrete supports (binary, spin, integer intervals): uniformly random states.

    An explicit ``init`` is a tensor ``(num_chains, *event)`` (shared across the batch) or
    ``(num_chains, *batch, *event)``.

    Raises
    ------
    ValueError
        For a wrong ``init`` shape, a non-finite ``init``, or a support without a default.
    """
    device, dtype = _dist_device(dist), _dist_dtype(dist)
    batch = tuple(dist.batch_shape)
    event = tuple(dist.event_shape)
    b = math.prod(batch)
    full = (num_chains,) + batch + event
    if init is not None:
        init = torch.as_tensor(init)
        if init.device != device:
            raise ValueError(f"init is on {init.device} but the distribution is on {device}")
        if tuple(init.shape) == (num_chains,) + event and batch:
            init = init.reshape((num_chains,) + (1,) * len(batch) + event).expand(full)
        if tuple(init.shape) != full:
            raise ValueError(
                f"init must have shape {(num_chains,) + event} or {full}, got {tuple(init.shape)}"
            )
        if init.dtype.is_floating_point and not bool(torch.isfinite(init).all()):
            raise ValueError("init has non-finite values")
        return init.reshape((num_chains * b,) + event).clone()
    shape = (num_chains * b,) + event
    support = dist.support
    values = support_values(support, dtype=dtype, device=device)
    if values is not None:
        idx = torch.randint(values.numel(), shape, generator=generator, device=device)
        return values[idx]
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    # type checks, not identity: copies of torch's constraint singletons travel with pickled
    # distributions (e.g. to Ray workers)
    if type(base) is type(constraints.real):
        return (2.0 * u - 1.0) * INIT_RADIUS
    if isinstance(base, constraints.greater_than) and float(base.lower_bound) == 0.0:
        return torch.exp((2.0 * u - 1.0) * INIT_RADIUS)
    if isinstance(base, constraints.interval):
        lo, hi = float(base.lower_bound), float(base.upper_bound)
        return lo + (hi - lo) * u
    raise ValueError(
        f"no default initialisation for support {support}; pass init=tensor of shape "
        f"{(num_chains,) + event}"
    )


#: How many times a default initial position with a non-finite log density or gradient is
#: redrawn (from the same default start distribution) before the run gives up.
MAX_INIT_REDRAWS = 100


def probe_energy(dist: Any, *, need_grad: bool = False, num_points: int = 16) -> None:
    """Check the energy at a few default starts drawn from its own generator (seed 0).

    The boundary check of estimators that do not start from :func:`initial_positions`: one
    value per input (a scalar for a batch is an error naming the shapes), a warning when the
    magnitude makes 32-bit arithmetic meaningless, an error when the energy is not finite at
    any of the points or (``need_grad``, continuous supports) does not depend on y through
    autograd. Distributions without a default start are not probed.
    """
    g = torch.Generator(device=_dist_device(dist))
    g.manual_seed(0)
    try:
        flat = initial_positions(dist, num_points, g)
    except ValueError:
        return
    _probe(dist, flat, check_only=True)
    fn = flat_logdensity(dist)
    continuous = flat.dtype.is_floating_point and not getattr(dist, "is_discrete", False)
    y = flat.detach().clone().requires_grad_(continuous and need_grad)
    with torch.enable_grad():
        ld = fn(y)
    if not bool(torch.isfinite(ld.detach()).any()):
        raise ValueError(
            f"the log density is not finite at any of {flat.shape[0]} default starting points "
            "(uniform on (-2, 2) per coordinate for real supports): check the energy, or "
            "give it a region where it is finite"
        )
    if continuous and need_grad and not ld.requires_grad:
        raise ValueError(
            "the energy's output does not depend on y through torch autograd (no grad_fn): "
            "gradient-based methods need a differentiable energy written in torch"
        )


def _probe(
    dist: Any, flat: torch.Tensor, *, check_only: bool = False, need_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log density ``(n,)`` at ``flat`` and a mask of chains whose start is unusable.

    Checks, once per run and at its boundary, that the energy returns one value per chain
    (a scalar for a batch is an error naming the shapes) and warns when its magnitude makes
    32-bit arithmetic meaningless. A start is unusable when its log density is not finite or
    (for continuous supports, where the energy is differentiable) its gradient is not.
    """
    from ._validation import check_energy_output, check_float32_magnitude

    n = flat.shape[0]
    batch, event = tuple(dist.batch_shape), tuple(dist.event_shape)
    b = _batch_size(dist)
    if hasattr(dist, "_energy_flat") and hasattr(dist, "_flatten"):
        y = flat.reshape((n // max(1, b),) + batch + event)
        y_flat, x_flat, beta, _ = dist._flatten(y)
        with torch.no_grad():
            e = dist._energy_flat(y_flat, x_flat, beta)
        check_energy_output(e, y_flat.shape[0])
        check_float32_magnitude(e, beta)
    fn = flat_logdensity(dist)
    if check_only:
        return None, None  # type: ignore[return-value]
    grad_ok = None
    if flat.dtype.is_floating_point and not getattr(dist, "is_discrete", False):
        y = flat.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            ld = fn(y)
            if isinstance(ld, torch.Tensor) and tuple(ld.shape) == (n,) and ld.requires_grad:
                try:
                    (g,) = torch.autograd.grad(ld.sum(), y, allow_unused=True)
                except RuntimeError:
                    g = None
                if g is not None:
                    grad_ok = torch.isfinite(g.reshape(n, -1)).all(-1)
            if need_grad and isinstance(ld, torch.Tensor) and not ld.requires_grad:
                raise ValueError(
                    "the energy's output does not depend on y through torch autograd (no "
                    "grad_fn): gradient-based samplers need a differentiable energy written "
                    "in torch"
                )
        ld = ld.detach() if isinstance(ld, torch.Tensor) else ld
    else:
        with torch.no_grad():
            ld = fn(flat)
    check_energy_output(ld, n, name="the log density")
    bad = ~torch.isfinite(ld)
    if grad_ok is not None:
        bad = bad | ~grad_ok
    return ld, bad


def checked_start(
    dist: Any,
    flat: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    num_chains: int | None = None,
    max_redraws: int = MAX_INIT_REDRAWS,
    need_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check initial positions ``(n * prod(batch), *event)``; redraw unusable default starts.

    Parameters
    ----------
    dist : Gibbs
        Target.
    flat : Tensor
        Initial positions on the flattened chain layout.
    generator : torch.Generator, optional
        Given for default starts: chains whose log density or gradient is not finite are
        redrawn from :func:`initial_positions` (at most ``max_redraws`` times each). ``None``
        (explicit ``init``): such chains are an error naming them.
    num_chains : int, optional
        Chains per batch member (``flat.shape[0] // prod(batch)`` by default).
    need_grad : bool
        The sampler uses gradients: an energy that does not depend on y through autograd
        is an error.

    Returns
    -------
    positions : Tensor
        The (possibly redrawn) initial positions.
    redraws : Tensor
        ``(n * prod(batch),)`` int64, how many times each chain's start was redrawn.

    Raises
    ------
    ValueError
        Energy output of the wrong shape or dtype, an explicit start outside a finite support
        or with a non-finite log density or gradient, or default starts that stay non-finite
        after ``max_redraws`` attempts.
    """
    from ._validation import check_in_support

    n = flat.shape[0]
    redraws = torch.zeros(n, dtype=torch.int64, device=flat.device)
    if generator is None:
        check_in_support(dist.support, flat, "init")
    _, bad = _probe(dist, flat, need_grad=need_grad)
    if not bool(bad.any()):
        return flat, redraws
    if generator is None:
        idx = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"init: the log density or its gradient is not finite at the start of "
            f"{len(idx)} of {n} (flattened) chains: {idx[:10]}{' ...' if len(idx) > 10 else ''}; "
            "start them where the energy is finite"
        )
    nc = num_chains if num_chains is not None else n // max(1, _batch_size(dist))
    flat = flat.clone()
    for _ in range(max_redraws):
        fresh = initial_positions(dist, nc, generator)
        flat[bad] = fresh[bad]
        redraws += bad.to(torch.int64)
        _, now_bad = _probe(dist, flat)
        bad = bad & now_bad
        if not bool(bad.any()):
            return flat, redraws
    idx = bad.nonzero().flatten().tolist()
    raise ValueError(
        f"the default start region cannot be left: after {max_redraws} redraws the log density "
        f"or its gradient is still not finite for {len(idx)} of {n} (flattened) chains "
        f"({idx[:10]}{' ...' if len(idx) > 10 else ''}); pass init= with finite starting points"
    )


# ---------------------------------------------------------------- constrained continuous supports
#: Coordinatewise continuous constraints sampled through ``torch.distributions.biject_to``.
_ELEMENTWISE = (
    constraints.greater_than,
    constraints.greater_than_eq,
    constraints.less_than,
    constraints.interval,
    constraints.half_open_interval,
)


def _elementwise_constraint(support: Any) -> Any:
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    return base


class _JacobianBase(torch.distributions.Distribution):
    """The base measure of the unconstrained coordinates ``u``: :math:`|\\det J_T(u)|` times
    the original base measure at :math:`y = T(u)` (not tempered, as a base measure)."""

    arg_constraints: dict = {}

    def __init__(self, transform: Any, event_shape: torch.Size, base: Any = None) -> None:
        self.transform, self.orig_base = transform, base
        super().__init__(torch.Size(), event_shape, validate_args=False)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        y = self.transform(u)
        ladj = self.transform.log_abs_det_jacobian(u, y)
        out = ladj.sum(tuple(range(-len(self.event_shape), 0))) if self.event_shape else ladj
        if self.orig_base is not None:
            out = out + self.orig_base.log_prob(y)
        return out


class _ComposedEnergy:
    """``E(T(u))`` (or ``E(x, T(u))`` for a conditional energy): the energy in ``u``."""

    def __init__(self, energy: Any, transform: Any, conditional: bool) -> None:
        self.energy, self.transform, self.conditional = energy, transform, conditional

    def __getattr__(self, name: str) -> Any:
        # a tempered energy E(y, beta) stays tempered in u (looked up only when missing here)
        if name == "tempered_energy" and hasattr(self.__dict__.get("energy"), name):
            return self._tempered
        raise AttributeError(name)

    def _tempered(self, *args: torch.Tensor) -> torch.Tensor:
        tempered = self.energy.tempered_energy
        if self.conditional:
            x, u, b = args
            return tempered(x, self.transform(u), b)
        u, b = args
        return tempered(self.transform(u), b)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if self.conditional:
            x, u = args
            return self.energy(x, self.transform(u))
        (u,) = args
        return self.energy(self.transform(u))


def unconstrained(dist: Any) -> tuple[Any, Callable, Callable] | None:
    """The distribution of ``u = T^{-1}(y)`` for a constrained continuous support.

    For a support such as ``positive`` or an ``interval`` (coordinatewise, possibly
    ``independent``), ``T = torch.distributions.biject_to(support)`` maps the real line onto
    it and the density of ``u`` is :math:`p(T(u))\\,|\\det J_T(u)|`: a Gibbs distribution
    with energy :math:`E(T(u))` and base measure :math:`|\\det J_T(u)|` (the Jacobian is not
    tempered), as Stan, Pyro and NumPyro sample constrained sites. Returns ``(dist_u,
    to_constrained, to_unconstrained)``, or ``None`` for discrete and real supports.

    Raises
    ------
    ValueError
        For another constrained continuous support (e.g. ``simplex``), whose bijection changes
        the event shape, or a latent-variable model: reparametrize the energy by hand.
    """
    if getattr(dist, "is_discrete", False) or not hasattr(dist, "energy"):
        return None
    support = dist.support
    base = _elementwise_constraint(support)
    if type(base) is type(constraints.real):
        return None
    if not isinstance(base, _ELEMENTWISE) or getattr(dist, "latent", None) is not None:
        raise ValueError(
            f"the continuous samplers move on the real line; the support {support} "
            + ("of a latent-variable model " if getattr(dist, "latent", None) is not None else "")
            + "has no coordinatewise bijection here (only positive, greater_than, less_than and "
            "interval supports are sampled through torch.distributions.biject_to): sample "
            "u = T^{-1}(y) yourself, with energy E(T(u)) - log|det J_T(u)| / beta on a real "
            "support, and map the draws back with T"
        )
    from .distribution import Gibbs

    transform = torch.distributions.biject_to(base)
    event = dist.event_shape
    new = Gibbs(
        _ComposedEnergy(dist.energy, transform, dist.x is not None),
        dist.beta,
        condition=dist.x,
        base=_JacobianBase(transform, event, dist.base),
        support=constraints.independent(constraints.real, len(event))
        if len(event)
        else constraints.real,
        event_shape=event,
    )
    if dist.x is not None and dist.batch_shape == torch.Size():
        new = new._single_condition()
    return new, transform, transform.inv
