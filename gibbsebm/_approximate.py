"""The approximate fallback of :meth:`gibbsebm.Gibbs.sample`: short batched MCMC (MALA in the
unconstrained space of a continuous support, single-site Metropolis sweeps on a finite discrete
support) with a warm state cached per energy object, so that Pyro tools that call ``sample()``
(``init_to_uniform``, ``Predictive``, guides) work on Gibbs sites without an exact sampler.
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Any

import torch

from .constraints import support_values

__all__ = [
    "APPROX_COLD_STEPS",
    "APPROX_WARM_STEPS",
    "ApproximateSampleWarning",
    "approximate_sample",
    "mala_chain",
    "metropolis_sweeps",
]


class ApproximateSampleWarning(UserWarning):
    """``Gibbs.sample`` returned approximate draws (a short MCMC run), not exact ones."""


#: Budget of the approximate fallback of :meth:`Gibbs.sample`: steps from a cold start
#: (MALA steps for continuous y, sweeps of single-site Metropolis updates for discrete y) ...
APPROX_COLD_STEPS = 200
#: ... and steps from the warm state cached for the same energy, beta and shapes.
APPROX_WARM_STEPS = 20

# Warm states of the approximate sampler, per energy object (weak keys: a cache entry dies
# with its energy, so this holds no state of its own beyond an energy's lifetime).
_WARM_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def approximate_sample(
    dist: Any, sample_shape: torch.Size, generator: torch.Generator | None
) -> torch.Tensor:
    """Approximate draws from a short batched MCMC run (the fallback of :meth:`Gibbs.sample`).

    One chain per requested draw: Metropolis-adjusted Langevin (MALA) in the unconstrained
    space of a continuous support (step size adapted toward acceptance 0.57), or sweeps of
    single-site Metropolis updates over a finite discrete support. A cold start runs
    :data:`APPROX_COLD_STEPS` steps; the final state is cached per energy object, beta and
    shapes, and a later call continues from it for :data:`APPROX_WARM_STEPS` steps.
    """
    kind = "gwg" if dist.is_discrete else "hmc"
    if dist.is_discrete and support_values(dist._support) is None:
        raise NotImplementedError(
            f"no sampler for the discrete support {dist._support}; use gibbsebm.sample(dist, "
            f"method='{kind}', ...)"
        )
    warnings.warn(
        f"Gibbs.sample: no exact sampler for {type(dist.energy).__name__}; the draws come "
        f"from a short MCMC run ({APPROX_COLD_STEPS} steps cold, {APPROX_WARM_STEPS} warm) "
        f"and are approximate. For inference use gibbsebm.sample(dist, method='{kind}').",
        ApproximateSampleWarning,
        stacklevel=3,
    )
    n = max(1, sample_shape.numel())
    shape = (n,) + tuple(dist.batch_shape) + tuple(dist.event_shape)
    key = (
        tuple(dist.beta.detach().flatten().tolist()),
        tuple(dist.batch_shape),
        tuple(dist.event_shape),
        repr(dist._support),
        None if dist.x is None else id(dist.x),
    )
    try:
        per_energy = _WARM_CACHE.setdefault(dist.energy, {})
    except TypeError:  # an energy that cannot be weakly referenced: no cache
        per_energy = {}
    cached = per_energy.get(key)
    dtype, device = dist.beta.dtype, dist.beta.device
    if cached is not None:
        pos, step = cached
        idx = torch.arange(n, device=pos.device) % pos.shape[0]
        pos, steps = pos[idx].clone(), APPROX_WARM_STEPS
    else:
        pos, step, steps = None, None, APPROX_COLD_STEPS
    with torch.no_grad():
        if dist.is_discrete:
            pos = metropolis_sweeps(dist, pos, shape, steps, generator, dtype, device)
        else:
            pos, step = mala_chain(dist, pos, step, shape, steps, generator, dtype, device)
    per_energy[key] = (pos.detach(), step)
    return pos.detach().reshape(sample_shape + dist.batch_shape + dist.event_shape)


def mala_chain(dist: Any, pos, step, shape, steps, generator, dtype, device):
    from torch.distributions import biject_to

    t = biject_to(dist._support)
    ev = len(dist.event_shape)

    def logp_grad(u):
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            y = t(u)
            lp = dist.logdensity(y)
            ladj = t.log_abs_det_jacobian(u, y)
            while ladj.dim() > lp.dim():
                ladj = ladj.sum(-1)
            lp = lp + ladj
            (g,) = torch.autograd.grad(lp.sum(), u)
        lp = lp.detach()
        bad = ~torch.isfinite(lp)
        return torch.where(bad, torch.full_like(lp, -math.inf), lp), torch.nan_to_num(g)

    if pos is None:
        u = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    else:
        u = t.inv(pos.to(dtype))
    log_step = math.log(0.1) if step is None else math.log(step)
    lp, g = logp_grad(u)
    red = tuple(range(lp.dim(), u.dim()))  # event dims of u

    def _sum(x):
        return x.sum(red) if red else x

    for i in range(steps):
        h = math.exp(log_step)
        noise = torch.randn(u.shape, generator=generator, dtype=dtype, device=device)
        prop = u + h * g + math.sqrt(2 * h) * noise
        lp_p, g_p = logp_grad(prop)
        fwd = -_sum((prop - u - h * g) ** 2) / (4 * h)
        bwd = -_sum((u - prop - h * g_p) ** 2) / (4 * h)
        log_a = torch.nan_to_num(lp_p - lp + bwd - fwd, nan=-math.inf)
        unif = torch.rand(lp.shape, generator=generator, dtype=dtype, device=device)
        acc = torch.log(unif) < log_a
        u = torch.where(acc.reshape(acc.shape + (1,) * ev), prop, u)
        lp = torch.where(acc, lp_p, lp)
        g = torch.where(acc.reshape(acc.shape + (1,) * ev), g_p, g)
        rate = float(torch.exp(log_a.clamp(max=0.0)).mean())
        log_step += (rate - 0.574) / math.sqrt(i + 10.0)
    return t(u), math.exp(log_step)


def metropolis_sweeps(dist: Any, pos, shape, sweeps, generator, dtype, device):
    vals = support_values(dist._support, dtype=dtype, device=device)
    k = vals.numel()
    if pos is None:
        pos = vals[torch.randint(k, shape, generator=generator, device=device)]
    y = pos.to(dtype).clone()
    flat = y.reshape(shape[: len(shape) - len(dist.event_shape)] + (-1,))
    d = flat.shape[-1]
    lp = dist.logdensity(y)
    for _ in range(sweeps):
        for _ in range(d):
            j = torch.randint(d, lp.shape + (1,), generator=generator, device=device)
            new = vals[torch.randint(k, lp.shape + (1,), generator=generator, device=device)]
            prop = flat.scatter(-1, j, new)
            prop_y = prop.reshape(y.shape)
            lp_p = dist.logdensity(prop_y)
            log_a = torch.nan_to_num(lp_p - lp, nan=-math.inf)
            unif = torch.rand(lp.shape, generator=generator, dtype=dtype, device=device)
            acc = torch.log(unif) < log_a
            flat = torch.where(acc[..., None], prop, flat)
            lp = torch.where(acc, lp_p, lp)
    return flat.reshape(y.shape)
