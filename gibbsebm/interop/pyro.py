"""Pyro models as batched potentials: the adapter behind ``gibbsebm.sample(model, ...)``.

:class:`PyroModelPotential` traces a Pyro model once, maps every continuous latent site to the
unconstrained space as Pyro's ``initialize_model`` does (``biject_to(site.support)``), and
evaluates the log joint density of ``C`` chains in one call by running the model inside a
``pyro.plate`` over the chains (placed left of the model's own plates) with the sites
conditioned on the chains' values. The Jacobians of the transforms are included, so the
potential is the density of the unconstrained parameters. :meth:`PyroModelPotential.as_gibbs`
wraps it as a :class:`gibbsebm.Gibbs` on ``R^D`` that every sampler of the library accepts, and
:meth:`PyroModelPotential.constrain` maps draws back to the sites.

A model can be vectorized when every sample statement broadcasts over a new leftmost batch
dimension: batch dimensions declared with ``pyro.plate`` (or ``.to_event`` for event dims) and
no Python control flow on sampled values. Otherwise the adapter raises ``ValueError`` naming
the site and the cause.

Examples
--------
>>> import torch, pyro, pyro.distributions as dist
>>> def model():
...     pyro.sample("s", dist.LogNormal(0.0, 1.0))
>>> pot = PyroModelPotential(model)
>>> pot.dim, pot.logdensity(torch.zeros(3, 1)).shape
(1, torch.Size([3]))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to

from ..distribution import DoublyIntractableError, Gibbs

__all__ = ["PyroModelPotential", "sites_inference_data"]

_CHAINS = "_gibbsebm_chains"


class PyroModelPotential:
    """The log joint of a Pyro model over its unconstrained latent sites, batched on chains.

    Parameters
    ----------
    model : callable
        A Pyro model; observed sites use ``obs=``.
    model_args, model_kwargs
        Arguments of the model.

    Attributes
    ----------
    site_names : list of str
        Latent sites in trace order.
    site_shapes : dict of str to tuple
        Constrained shape of each site (one draw).
    dim : int
        Dimension ``D`` of the unconstrained vector.
    max_plate_nesting : int
        Plates of the model; the chains plate sits at dim ``-(max_plate_nesting + 1)``.
    """

    def __init__(
        self, model: Callable, model_args: tuple = (), model_kwargs: dict | None = None
    ) -> None:
        if isinstance(model, Gibbs) or not callable(model):
            raise ValueError("model must be a Pyro model (a callable), not a Gibbs distribution")
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        with poutine.block():
            proto = poutine.trace(model).get_trace(*self.model_args, **self.model_kwargs)
        nest = 0
        self.site_names: list[str] = []
        #: observed sites whose distribution is a Gibbs (the exchange method's likelihoods)
        self.observed_gibbs: list[str] = []
        self.site_shapes: dict[str, tuple] = {}
        self._transforms: dict[str, Any] = {}
        self._ushapes: dict[str, tuple] = {}
        self._batch_dims: dict[str, int] = {}
        dtype = None
        for name, site in proto.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            for f in site["cond_indep_stack"]:
                if f.vectorized and f.dim is not None:
                    nest = max(nest, -f.dim)
            if site["is_observed"]:
                if isinstance(site["fn"], Gibbs) or isinstance(
                    getattr(site["fn"], "base_dist", None), Gibbs
                ):
                    self.observed_gibbs.append(name)
                continue
            fn = site["fn"]
            if getattr(fn.support, "is_discrete", False):
                raise ValueError(
                    f"site {name!r} is discrete; gibbsebm.sample(model, ...) samples continuous "
                    "latent sites only (marginalize discrete ones, e.g. with enumeration)"
                )
            value = site["value"]
            t = biject_to(fn.support)
            u = t.inv(value)
            self.site_names.append(name)
            self.site_shapes[name] = tuple(value.shape)
            self._transforms[name] = t
            self._ushapes[name] = tuple(u.shape)
            self._batch_dims[name] = len(fn.batch_shape)
            dtype = dtype or value.dtype
        if not self.site_names:
            raise ValueError("the model has no latent sample sites")
        self.max_plate_nesting = nest
        self.dtype = dtype
        self.dim = sum(max(1, math.prod(s)) for s in self._ushapes.values())

    # ------------------------------------------------------------------ unpacking
    def _split(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = tuple(u.shape[:-1])
        out, off = {}, 0
        for name in self.site_names:
            shp = self._ushapes[name]
            n = max(1, math.prod(shp))
            out[name] = u[..., off : off + n].reshape(lead + shp)
            off += n
        return out

    def constrain(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Constrained site values of unconstrained vectors ``(..., D)``: ``(..., *shape)``."""
        return {n: self._transforms[n](v) for n, v in self._split(u).items()}

    def unconstrain(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`constrain`: site values ``(C, *shape)`` to ``(C, D)``."""
        parts = []
        for n in self.site_names:
            v = torch.as_tensor(values[n], dtype=self.dtype)
            uv = self._transforms[n].inv(v)
            parts.append(uv.reshape(uv.shape[: uv.dim() - len(self._ushapes[n])] + (-1,)))
        return torch.cat(parts, -1)

    # ------------------------------------------------------------------ density
    def trace_chains(self, u: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Run the model for ``C`` chains at once: (trace with log probs, log |Jacobian| (C,))."""
        c = u.shape[0]
        nest = self.max_plate_nesting
        values, ladj = {}, torch.zeros(c, dtype=u.dtype, device=u.device)
        for name, us in self._split(u).items():
            t = self._transforms[name]
            x = t(us)
            j = t.log_abs_det_jacobian(us, x)
            ladj = ladj + j.reshape(c, -1).sum(-1)
            shape = self.site_shapes[name]
            pad = nest - self._batch_dims[name]
            if pad < 0:
                raise ValueError(
                    f"site {name!r} has more batch dimensions than the model's plates: declare "
                    "event dimensions with .to_event() so that the model can be vectorized"
                )
            values[name] = x.reshape((c,) + (1,) * pad + shape)
        try:
            with poutine.block(), pyro.plate(_CHAINS, c, dim=-(nest + 1)):
                tr = poutine.trace(poutine.condition(self.model, data=values)).get_trace(
                    *self.model_args, **self.model_kwargs
                )
        except DoublyIntractableError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ValueError(
                "the Pyro model cannot be vectorized over a chains plate (every sample "
                "statement must broadcast over a new leftmost batch dimension: use pyro.plate "
                f"for batch dims, .to_event() for event dims, no control flow on values): {exc}"
            ) from exc
        return tr, ladj

    def log_joint_terms(self, u: torch.Tensor, skip: tuple[str, ...] = ()) -> torch.Tensor:
        """Log joint (C,) of the chains at unconstrained ``u`` (C, D), without sites ``skip``."""
        tr, total = self.trace_chains(u)
        c = u.shape[0]
        d = -(self.max_plate_nesting + 1)
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or name in skip or site_is_subsample(site):
                continue
            try:
                lp = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
            except DoublyIntractableError:
                raise
            except (RuntimeError, ValueError, IndexError) as exc:
                raise ValueError(
                    f"site {name!r}: the Pyro model cannot be vectorized over chains: {exc}"
                ) from exc
            if not isinstance(lp, torch.Tensor):
                lp = torch.as_tensor(lp, dtype=u.dtype)
            if lp.dim() > -d:
                raise ValueError(
                    f"site {name!r}: its log density has shape {tuple(lp.shape)}, more batch "
                    f"dimensions than the chains plate and the model's {-d - 1} plate(s); a "
                    "value broadcast against another site's chain dimension (the model cannot "
                    "be vectorized as written: align batch dimensions from the right)"
                )
            if lp.dim() < -d or lp.shape[d] != c:
                if lp.numel() == 1:  # a site outside every batch dimension (e.g. a factor)
                    total = total + lp.reshape(())
                    continue
                raise ValueError(
                    f"site {name!r}: its log density of shape {tuple(lp.shape)} has no chains "
                    f"dimension at dim {d}; the model cannot be vectorized over chains"
                )
            total = total + lp.movedim(d, 0).reshape(c, -1).sum(-1)
        return total

    def trace_one(self, u: torch.Tensor, skip: tuple[str, ...] = ()) -> tuple[Any, torch.Tensor]:
        """Run the model at one unconstrained vector ``u`` (D,): (trace, log joint without the
        sites ``skip``, Jacobians included)."""
        values, total = {}, torch.zeros((), dtype=u.dtype, device=u.device)
        for name, us in self._split(u).items():
            t = self._transforms[name]
            x = t(us)
            total = total + t.log_abs_det_jacobian(us, x).sum()
            values[name] = x
        with poutine.block():
            tr = poutine.trace(poutine.condition(self.model, data=values)).get_trace(
                *self.model_args, **self.model_kwargs
            )
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or name in skip or site_is_subsample(site):
                continue
            lp = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
            total = total + torch.as_tensor(lp).sum()
        return tr, total

    def logdensity(self, u: torch.Tensor) -> torch.Tensor:
        """Log density of the unconstrained parameters, ``(C, D) -> (C,)`` (NaN -> -inf)."""
        if u.dim() == 1:
            return self.logdensity(u[None])[0]
        lead = u.shape[:-1]
        lp = self.log_joint_terms(u.reshape(-1, u.shape[-1]))
        lp = torch.where(torch.isnan(lp), torch.full_like(lp, -math.inf), lp)
        return lp.reshape(lead)

    def init(self, num_chains: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stan's default start: uniform on (-2, 2) in the unconstrained space, ``(C, D)``."""
        return 4 * torch.rand(num_chains, self.dim, generator=generator, dtype=self.dtype) - 2

    def as_gibbs(self) -> Gibbs:
        """A :class:`Gibbs` on ``R^D`` with :math:`-E = ` :meth:`logdensity` at beta 1."""

        def energy(u: torch.Tensor) -> torch.Tensor:
            return -self.logdensity(u)

        energy.__name__ = getattr(self.model, "__name__", "pyro_model")
        return Gibbs(energy, torch.tensor(1.0, dtype=self.dtype), event_shape=(self.dim,))


def sites_inference_data(samples: Any):
    """An :class:`arviz.InferenceData` whose posterior holds ``samples.sites`` by name."""
    import arviz as az

    from .arviz import to_inference_data

    idata = to_inference_data(samples, var_name="_unconstrained")
    post = {k: v.detach().cpu().numpy() for k, v in samples.sites.items()}
    new = az.from_dict(posterior=post, attrs=dict(idata.posterior.attrs))
    if "sample_stats" in idata.groups():
        new.add_groups(sample_stats=idata.sample_stats)
    return new
