"""Where chains start, and the log-density on the flattened chain layout (driver layer)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import constraints

from .constraints import support_values

__all__ = ["INIT_RADIUS", "flat_logdensity", "initial_positions"]

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
