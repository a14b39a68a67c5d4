"""The Gibbs distribution of an energy at inverse temperature beta.

.. math::

    p_\\beta(y \\mid x) = \\frac{b(y)\\, \\exp(-\\beta E(x, y))}{Z_\\beta(x)},
    \\qquad Z_\\beta(x) = \\int b(y) \\exp(-\\beta E(x, y))\\, dy,

with base measure :math:`b` (Lebesgue measure for continuous y and counting measure for
discrete y unless a ``base`` distribution is given). :class:`Gibbs` is a
:class:`pyro.distributions.TorchDistribution`, so it can stand at a ``pyro.sample`` site.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from ._approximate import (
    _WARM_CACHE,  # noqa: F401  (tests clear it through this module)
    APPROX_COLD_STEPS,
    APPROX_WARM_STEPS,
    ApproximateSampleWarning,
    approximate_sample,
    mala_chain,
    metropolis_sweeps,
)
from ._validation import (
    as_beta_tensor,
    check_energy_output,
    check_finite,
    check_same_device,
    module_device_dtype,
)
from .constraints import support_values

__all__ = [
    "Gibbs",
    "UnnormalizedLogProbWarning",
    "ApproximateSampleWarning",
    "DoublyIntractableError",
    "APPROX_COLD_STEPS",
    "APPROX_WARM_STEPS",
    "energy_factor",
    "MAX_ENUMERATION",
]

#: Largest number of states that :class:`Gibbs` enumerates for exact ``log_prob``/``sample``
#: (2**22 states, evaluated in chunks so memory stays bounded).
MAX_ENUMERATION = 2**22
_CHUNK = 2**16


class UnnormalizedLogProbWarning(UserWarning):
    """``Gibbs.log_prob`` returned an unnormalized value because no log Z is known."""


class DoublyIntractableError(ValueError):
    """An unnormalized ``log_prob`` would drop a log Z that depends on other random sites."""


def _grad_dependent_tensors(obj: Any, seen: set[int] | None = None, depth: int = 0) -> bool:
    """Whether ``obj`` (an energy: module or closure) holds a tensor that requires grad and
    is not an ``nn.Parameter`` (i.e. a value traced from another random site)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 4:
        return False
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return bool(obj.requires_grad) and not isinstance(obj, torch.nn.Parameter)
    if isinstance(obj, torch.nn.Module):
        if any(_grad_dependent_tensors(b, seen, depth + 1) for b in obj.buffers()):
            return True
        return any(
            _grad_dependent_tensors(v, seen, depth + 1)
            for k, v in vars(obj).items()
            if isinstance(v, (torch.Tensor, torch.nn.Module)) and k != "_parameters"
        )
    if isinstance(obj, (list, tuple)):
        return any(_grad_dependent_tensors(v, seen, depth + 1) for v in obj)
    if callable(obj):
        target = getattr(obj, "__self__", None)
        if target is not None and _grad_dependent_tensors(target, seen, depth + 1):
            return True
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                v = cell.cell_contents
            except ValueError:
                continue
            if _grad_dependent_tensors(v, seen, depth + 1):
                return True
    return False


def _finite_support_count(support: constraints.Constraint, event_shape: torch.Size) -> int | None:
    vals = support_values(support)
    if vals is None:
        return None
    n = 1
    for s in event_shape:
        n *= s
    return len(vals) ** n


class Gibbs(TorchDistribution):
    """Gibbs distribution :math:`b(y) e^{-\\beta E(x, y)} / Z_\\beta(x)` of an energy.

    Parameters
    ----------
    energy : callable or torch.nn.Module
        ``energy(y)`` (or ``energy(x, y)`` when ``condition`` is given) maps
        ``(N, *event_shape)`` to ``(N,)``. Built-in energies (:mod:`gibbsebm.energies`)
        carry their ``event_shape``, ``support`` and exact log Z.
    beta : float or Tensor
        Inverse temperature, > 0. A tensor of betas (a temperature ladder) becomes the batch
        shape of the distribution.
    condition : Tensor, optional
        Input ``x`` of a conditional energy, shaped ``(B, *x_shape)``; ``B`` joins the batch
        shape.
    base : torch.distributions.Distribution, optional
        Base density :math:`b(y)`; ``None`` means Lebesgue (continuous) or counting
        (discrete) measure. With a base, the energy's own exact log Z no longer applies.
    support : Constraint, optional
        Support of y; defaults to ``energy.support`` or ``constraints.real_vector`` /
        ``constraints.real``.
    event_shape : tuple of int, optional
        Shape of one y; required when the energy does not carry ``event_shape``.
    latent : optional
        Latent specification for an energy ``E(y, z)`` (or ``E(x, y, z)``): the Gibbs
        distribution is then the marginal :math:`\\sum_z e^{-\\beta E}` and y's energy is the
        free energy of :func:`gibbsebm.free_energy`.
    log_partition : float, Tensor or LogZEstimate, optional
        A known :math:`\\log Z_\\beta` to attach (see :meth:`attach_log_partition`).

    Notes
    -----
    ``log_prob`` is normalized when a log Z is known: attached, the energy's exact one, or by
    enumeration of a finite support with at most :data:`MAX_ENUMERATION` states. Otherwise it
    returns the *unnormalized* value and emits :class:`UnnormalizedLogProbWarning`; use
    :meth:`unnormalized_log_prob` to ask for that value explicitly, and ``.normalized`` to
    check. ``sample()`` is exact (enumeration or the energy's closed form) where possible;
    otherwise it returns approximate draws of a short batched MCMC run (budget
    :data:`APPROX_COLD_STEPS` / :data:`APPROX_WARM_STEPS`, warm state cached per energy) and
    emits :class:`ApproximateSampleWarning`; for inference use :func:`gibbsebm.sample`.

    A temperature ladder is a batch shape: ``beta`` of shape ``(T,)`` gives batch ``(T,)``.
    With a condition ``x`` of batch ``B``, ``B`` is the *last* batch dimension, so a ladder
    over conditional inputs takes ``beta`` of shape ``(T, 1)`` (batch ``(T, B)``).

    **In Pyro models.** As a latent site, a Gibbs works with ``NUTS``/``HMC`` and their
    default ``init_to_uniform``, ``init_to_sample``, ``Predictive``, ``AutoNormal`` /
    ``AutoDelta`` guides and ``arviz.from_pyro`` (they call ``sample()``, approximate where
    no exact sampler exists). Its ``log_prob`` is unnormalized and warns when no log Z is
    known; that is harmless for inference over ``y`` as long as the energy, ``beta`` and ``x``
    do not depend on other random sites (log Z is then a constant): filter
    :class:`UnnormalizedLogProbWarning` or attach a log Z. When they do depend on other sites
    (tensors that require grad and are not ``nn.Parameter`` s, as Pyro's latents are) and no
    log Z is exact or enumerable, ``log_prob`` raises :class:`DoublyIntractableError`: log
    Z(theta) cannot be dropped; use ``gibbsebm.sample(model, "exchange")``. As a likelihood
    with ``obs=``: finite supports (class labels) are normalized by enumeration,
    differentiably, so the energy's parameters can be Pyro latents; inside ``pyro.plate``
    the data dimension must be the condition's batch ``B``. For a loss
    rather than a distribution (Gibbs posteriors), use :func:`energy_factor`.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm import Gibbs
    >>> from gibbsebm.energies import Gaussian
    >>> d = Gibbs(Gaussian(torch.zeros(2)), beta=2.0)
    >>> d.log_prob(torch.zeros(2))  # log N(0 | 0, I/2)
    tensor(-1.1447)
    >>> d.at(torch.tensor([0.5, 1.0, 2.0])).batch_shape
    torch.Size([3])
    """

    arg_constraints: dict = {}

    def __init__(
        self,
        energy: Callable,
        beta: float | torch.Tensor = 1.0,
        *,
        condition: torch.Tensor | None = None,
        base: torch.distributions.Distribution | None = None,
        support: constraints.Constraint | None = None,
        event_shape: tuple[int, ...] | torch.Size | None = None,
        latent: Any = None,
        log_partition: Any = None,
        validate_args: bool | None = None,
    ) -> None:
        if not callable(energy):
            raise ValueError(f"energy must be callable (a function or nn.Module), got {energy!r}")
        self.energy = energy
        # device and dtype follow the energy's parameters, else the data (condition, then a
        # beta tensor), else torch's defaults
        ref_device, ref_dtype = module_device_dtype(energy)
        for t in (condition, beta):
            if isinstance(t, torch.Tensor):
                ref_device = t.device if ref_device is None else ref_device
                if ref_dtype is None and t.dtype.is_floating_point:
                    ref_dtype = t.dtype
        if ref_dtype is None:
            ref_dtype = torch.get_default_dtype()
        self.beta = as_beta_tensor(beta, dtype=ref_dtype, device=ref_device)

        if event_shape is None:
            event_shape = getattr(energy, "event_shape", None)
        if event_shape is None:
            raise ValueError(
                "event_shape is required for an energy that does not carry one, "
                "e.g. Gibbs(fn, beta, event_shape=(2,))"
            )
        event_shape = torch.Size(event_shape)
        if support is None:
            support = getattr(energy, "support", None)
        if support is None:
            support = constraints.real_vector if len(event_shape) == 1 else constraints.real
        self._support = support
        self.base = base
        if base is not None and tuple(base.event_shape) != tuple(event_shape):
            raise ValueError(
                f"base has event_shape {tuple(base.event_shape)} but the energy's event_shape "
                f"is {tuple(event_shape)}"
            )
        self.latent = latent

        if condition is not None:
            if not isinstance(condition, torch.Tensor):
                raise ValueError("condition must be a tensor shaped (B, *x_shape)")
            if condition.dim() < 1:
                raise ValueError(
                    "condition must have a leading batch dimension, shape (B, *x_shape); "
                    "use x.unsqueeze(0) for a single input"
                )
            check_same_device(energy, condition, "condition")
            check_finite(condition, "condition") if condition.dtype.is_floating_point else None
            cond_batch = condition.shape[:1]
        else:
            cond_batch = torch.Size()
        self.x = condition
        try:
            batch_shape = torch.broadcast_shapes(self.beta.shape, cond_batch)
        except RuntimeError:
            raise ValueError(
                f"beta shape {tuple(self.beta.shape)} and condition batch {tuple(cond_batch)} "
                "do not broadcast"
            ) from None
        self._log_partition = None
        if log_partition is not None:
            self._log_partition = self._as_log_z(log_partition, batch_shape)
        super().__init__(
            batch_shape,
            event_shape,
            validate_args=False if validate_args is None else validate_args,
        )

    # ------------------------------------------------------------------ construction helpers
    def _kwargs(self) -> dict:
        return dict(
            condition=self.x,
            base=self.base,
            support=self._support,
            event_shape=self.event_shape,
            latent=self.latent,
        )

    def at(self, beta: float | torch.Tensor) -> Gibbs:
        """The same energy at another inverse temperature (attached log Z is dropped).

        Examples
        --------
        >>> import torch
        >>> from gibbsebm.energies import Gaussian
        >>> Gibbs(Gaussian(torch.zeros(1))).at(4.0).beta
        tensor(4.)
        """
        return self._keep_single_condition(Gibbs(self.energy, beta, **self._kwargs()))

    def _keep_single_condition(self, new: Gibbs) -> Gibbs:
        """Carry a single-condition scalar batch (see :meth:`_single_condition`) over to ``new``."""
        if self.x is not None and self.batch_shape == torch.Size() and new.beta.dim() == 0:
            return new._single_condition()
        return new

    def _single_condition(self) -> Gibbs:
        """This conditional distribution with a condition batch of one as batch shape ``()``.

        ``Gibbs(energy, condition=x[i:i+1])`` has batch shape ``(1,)`` (the condition's batch
        is the last batch dimension); a scalar-batch copy is the one conditional distribution
        :math:`p_\\beta(y \\mid x_i)`, which is what a single-value estimator such as
        :func:`gibbsebm.log_partition` needs. Returns ``self`` unless the batch shape is
        ``(1,)`` from a condition of batch one and a scalar ``beta``.
        """
        if (
            self.x is None
            or self.x.shape[0] != 1
            or self.beta.dim() != 0
            or self.batch_shape != torch.Size([1])
        ):
            return self
        new = Gibbs(self.energy, self.beta, **self._kwargs())
        new._batch_shape = torch.Size()
        if self._log_partition is not None:
            new._log_partition = self._log_partition.reshape(())
        return new

    def condition(self, x: torch.Tensor) -> Gibbs:
        """Fix the input ``x`` (shape ``(B, *x_shape)``) of a conditional energy."""
        kw = self._kwargs()
        kw["condition"] = x
        return Gibbs(self.energy, self.beta, **kw)

    def attach_log_partition(self, log_z: Any) -> Gibbs:
        """Return a copy whose ``log_prob`` is normalized by ``log_z``.

        ``log_z`` is a number, a tensor of the batch shape, or an estimate object with a
        ``log_z`` attribute (e.g. :class:`gibbsebm.partition.LogZEstimate`).
        """
        return self._keep_single_condition(
            Gibbs(self.energy, self.beta, log_partition=log_z, **self._kwargs())
        )

    def _as_log_z(self, log_z: Any, batch_shape: torch.Size) -> torch.Tensor:
        if hasattr(log_z, "log_z"):
            log_z = log_z.log_z
        t = torch.as_tensor(log_z, dtype=torch.float64, device=self.beta.device)
        check_finite(t, "log_partition")
        try:
            return t.expand(batch_shape) if t.dim() == 0 else t.reshape(batch_shape)
        except RuntimeError:
            raise ValueError(
                f"log_partition must be a scalar or have the batch shape {tuple(batch_shape)}, "
                f"got {tuple(t.shape)}"
            ) from None

    def expand(self, batch_shape, _instance=None) -> Gibbs:
        """Broadcast to a larger batch shape (what Pyro's plates do).

        The condition's batch ``B`` stays the last batch dimension, so a conditional Gibbs
        expands only to shapes ending in ``B`` (or anything, when ``B == 1``).
        """
        batch_shape = torch.Size(batch_shape)
        try:
            if torch.broadcast_shapes(batch_shape, self.batch_shape) != batch_shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"cannot expand a Gibbs distribution with batch shape {tuple(self.batch_shape)} "
                f"to {tuple(batch_shape)}"
                + (
                    f" (the condition's batch {self.x.shape[0]} is the last batch dimension)"
                    if self.x is not None
                    else ""
                )
            ) from None
        kw = self._kwargs()
        if self.x is not None and self.x.shape[0] == 1 and len(batch_shape) > 0:
            kw["condition"] = self.x.expand((batch_shape[-1],) + tuple(self.x.shape[1:]))
        # beta carries the full batch shape; the condition broadcasts against its last dim
        new = Gibbs(self.energy, self.beta.expand(batch_shape), **kw)
        if self._log_partition is not None:
            new._log_partition = self._log_partition.expand(batch_shape)
        return new

    # ------------------------------------------------------------------ properties
    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return self._support

    @property
    def is_discrete(self) -> bool:
        """Whether y is discrete."""
        return bool(getattr(self._support, "is_discrete", False))

    @property
    def num_states(self) -> int | None:
        """Number of states of a finite discrete support (``None`` if infinite)."""
        return _finite_support_count(self._support, self.event_shape)

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        n = self.num_states
        return n is not None and n <= MAX_ENUMERATION

    @property
    def depends_on_random_sites(self) -> bool:
        """Whether beta, the condition or the energy hold tensors that require grad and are
        not ``nn.Parameter`` s (values of other random sites, whose log Z would matter)."""
        if self.beta.requires_grad:
            return True
        if self.x is not None and self.x.requires_grad:
            return True
        return _grad_dependent_tensors(self.energy)

    @property
    def normalized(self) -> bool:
        """Whether :meth:`log_prob` is normalized (a log Z is known or computable)."""
        return self._known_log_partition() is not None or self.has_enumerate_support

    # ------------------------------------------------------------------ energies
    def _flatten(
        self, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Size]:
        """Flatten ``y`` shaped ``(*sample, *batch, *event)`` into a batch of ``M`` inputs."""
        ev = len(self.event_shape)
        if tuple(y.shape[y.dim() - ev :]) != tuple(self.event_shape) or y.dim() < ev:
            raise ValueError(
                f"y must end in the event shape {tuple(self.event_shape)}, got shape {tuple(y.shape)}"
            )
        lead = y.shape[: y.dim() - ev]
        try:
            lead = torch.broadcast_shapes(lead, self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"y's leading shape {tuple(y.shape[: y.dim() - ev])} does not broadcast with the "
                f"batch shape {tuple(self.batch_shape)}"
            ) from None
        y = y.expand(lead + self.event_shape)
        m = 1
        for s in lead:
            m *= s
        y_flat = y.reshape((m,) + self.event_shape)
        beta = self.beta.expand(lead).reshape(m)
        x_flat = None
        if self.x is not None:
            # the condition's batch (B,) is the last batch dimension of the distribution
            x_shape = tuple(self.x.shape[1:])
            # (a single-condition distribution has batch shape (): see _single_condition)
            xb = (
                self.x.reshape((1,) * (len(lead) - 1) + (self.x.shape[0],) + x_shape)
                if len(self.batch_shape)
                else self.x.reshape((1,) * len(lead) + x_shape)
            )
            x_flat = xb.expand(tuple(lead) + x_shape).reshape((m,) + x_shape)
        return y_flat, x_flat, beta, lead

    def _energy_flat(
        self, y_flat: torch.Tensor, x_flat: torch.Tensor | None, beta_flat: torch.Tensor
    ) -> torch.Tensor:
        """Energy (or free energy, for latent models) of a flat batch; no value checks.

        A dtype clash inside the energy (e.g. float32 states times a float64 matrix the
        energy closes over) is re-raised as a ``ValueError`` saying where the states' dtype
        comes from and how to change it.
        """
        try:
            return self._energy_flat_unchecked(y_flat, x_flat, beta_flat)
        except RuntimeError as err:
            if not _is_dtype_clash(err):
                raise
            raise ValueError(
                f"the energy failed on {y_flat.dtype} states with a dtype clash ({err}). The "
                "states' dtype follows the energy's parameters, else the condition, else a "
                "beta tensor, else torch's default dtype (a Python-float beta gives "
                f"{torch.get_default_dtype()}); for an energy that computes in float64 pass "
                "beta=torch.tensor(b, dtype=torch.float64), or cast inside the energy "
                "(y.to(W.dtype))"
            ) from err

    def _energy_flat_unchecked(
        self, y_flat: torch.Tensor, x_flat: torch.Tensor | None, beta_flat: torch.Tensor
    ) -> torch.Tensor:
        if self.latent is not None:
            from .latent import free_energy

            # value checks (NaN energies) are made by energy_of; this is the hot path
            f = free_energy(
                self.energy, y_flat, beta_flat, x=x_flat, latent=self.latent, validate=False
            )
            return f.value
        tempered = getattr(self.energy, "tempered_energy", None)
        if tempered is not None:
            return (
                tempered(y_flat, beta_flat)
                if x_flat is None
                else tempered(x_flat, y_flat, beta_flat)
            )
        return self.energy(y_flat) if x_flat is None else self.energy(x_flat, y_flat)

    def energy_of(self, y: torch.Tensor) -> torch.Tensor:
        """Energy of ``y`` (free energy for latent models), shape ``(*sample, *batch)``.

        Raises ``ValueError`` on wrong shapes, non-floating outputs and NaN energies.
        """
        y_flat, x_flat, beta, lead = self._flatten(y)
        check_same_device(self.energy, y_flat, "y") if y_flat.dtype.is_floating_point else None
        e = self._energy_flat(y_flat, x_flat, beta)
        check_energy_output(e, y_flat.shape[0])
        if torch.isnan(e).any():
            raise ValueError(
                f"energy returned NaN for {int(torch.isnan(e).sum())} of {e.numel()} inputs"
            )
        return e.reshape(lead)

    def logdensity(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\log b(y) - \\beta E(x, y)` without value checks (the samplers' hot path).

        NaN energies propagate as NaN; samplers treat them as rejected proposals.
        """
        y_flat, x_flat, beta, lead = self._flatten(y)
        e = self._energy_flat(y_flat, x_flat, beta)
        out = -(beta.to(e.dtype) * e)
        out = out.reshape(lead)
        if self.base is not None:
            out = out + self.base.log_prob(y)
        return out

    def unnormalized_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\log b(y) - \\beta E(x, y)`, checked: shape errors and NaN energies raise."""
        e = self.energy_of(y)
        out = (
            -(self.beta.to(e.dtype) * e)
            if self.beta.dim() == 0
            else -(self.beta.to(e.dtype).expand(e.shape) * e)
        )
        if self.base is not None:
            out = out + self.base.log_prob(y)
        return out

    # ------------------------------------------------------------------ normalization
    def _known_log_partition(self) -> torch.Tensor | None:
        if self._log_partition is not None:
            return self._log_partition
        if (
            self.base is None
            and self.x is None
            and self.latent is None
            and getattr(self.energy, "has_exact_log_partition", False)
        ):
            try:
                return self.energy.exact_log_partition(self.beta).expand(self.batch_shape)
            except NotImplementedError:
                # e.g. a mixture whose log Z is exact only at beta = 1 or in low dimension
                return None
        return None

    def _enumerate_event_values(self) -> torch.Tensor:
        """All states of a finite support, shape ``(S, *event_shape)``, lexicographic."""
        dtype = self.beta.dtype
        vals = support_values(self._support, dtype=dtype, device=self.beta.device)
        n = 1
        for s in self.event_shape:
            n *= s
        k = vals.numel()
        idx = torch.arange(k**n, device=self.beta.device)
        digits = (
            torch.stack([(idx // (k ** (n - 1 - i))) % k for i in range(n)], dim=-1)
            if n
            else idx[:, None][:, :0]
        )
        return vals[digits].reshape((k**n,) + self.event_shape)

    def _enumerated_log_partition(self) -> torch.Tensor:
        """Exact log Z by chunked enumeration, shape ``batch_shape``."""
        states = self._enumerate_event_values()
        batch_ones = (1,) * len(self.batch_shape)
        acc = None
        for start in range(0, states.shape[0], _CHUNK):
            chunk = states[start : start + _CHUNK]
            lp = self.unnormalized_log_prob(
                chunk.reshape((chunk.shape[0],) + batch_ones + self.event_shape)
            )
            lz = torch.logsumexp(lp.to(torch.float64), dim=0)
            acc = lz if acc is None else torch.logaddexp(acc, lz)
        return acc

    def log_partition(self) -> torch.Tensor:
        """The known or exactly computable :math:`\\log Z_\\beta(x)` (float64, batch shape).

        Raises ``ValueError`` when none is known; estimate one with
        :func:`gibbsebm.log_partition` and attach it with :meth:`attach_log_partition`.
        """
        lz = self._known_log_partition()
        if lz is not None:
            return lz
        if self.has_enumerate_support:
            return self._enumerated_log_partition()
        if self._single_condition().batch_shape == torch.Size():
            how = (
                "estimate it with gibbsebm.log_partition(dist, method='ais') and attach it with "
                "dist.attach_log_partition(estimate)"
            )
        elif self.x is not None and self.beta.dim() == 0:
            how = (
                "estimate one per input, est_i = gibbsebm.log_partition(dist.condition("
                "dist.x[i:i+1])), and attach them with dist.attach_log_partition(torch.tensor("
                "[est_i.log_z for each i]))"
            )
        else:
            how = (
                "estimate one per beta b with gibbsebm.log_partition(dist.at(b)) (or "
                "gibbsebm.log_partition_curve for a ladder) and attach a tensor of the batch "
                "shape with dist.attach_log_partition"
            )
        raise ValueError(
            f"no log Z is known for this distribution (batch shape {tuple(self.batch_shape)}): "
            + how
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Normalized log density when log Z is known; see the class notes otherwise.

        Values outside a finite discrete support get ``-inf`` (with ``validate_args=True``: a
        ``ValueError``, as torch's distributions do).
        """
        outside = self._outside_support(value)
        lp = self.unnormalized_log_prob(value)
        if outside is not None:
            lp = lp.masked_fill(outside.reshape(lp.shape), -math.inf)
        if self.normalized:
            return lp - self.log_partition().to(lp.dtype)
        if self.depends_on_random_sites:
            raise DoublyIntractableError(
                "Gibbs.log_prob: the energy, beta or condition depends on other random sites "
                "(tensors that require grad and are not nn.Parameters, e.g. Pyro latents), and "
                "no exact log Z(theta) is known nor enumerable; dropping it would give a wrong "
                "posterior (a doubly intractable likelihood). Sample such a model with "
                "gibbsebm.sample(model, 'exchange', ...), or use an energy with an exact log Z."
            )
        warnings.warn(
            "Gibbs.log_prob is unnormalized (log Z unknown): the value is log b(y) - beta*E(y). "
            "Attach an estimate with attach_log_partition() or call unnormalized_log_prob().",
            UnnormalizedLogProbWarning,
            stacklevel=2,
        )
        return lp

    def _outside_support(self, value: torch.Tensor) -> torch.Tensor | None:
        """Mask ``(*sample, *batch)`` of values outside a finite discrete support, else None."""
        vals = support_values(self._support, dtype=self.beta.dtype, device=self.beta.device)
        if vals is None or not isinstance(value, torch.Tensor):
            return None
        ne = len(self.event_shape)
        inside = (value[..., None] == vals.to(value.dtype)).any(-1)
        if ne:
            inside = inside.reshape(tuple(inside.shape[: inside.dim() - ne]) + (-1,)).all(-1)
        if bool(inside.all()):
            return None
        if self._validate_args:
            raise ValueError(
                f"log_prob: {int((~inside).sum())} value(s) outside the support "
                f"{self._support} (values {vals.tolist()})"
            )
        return ~inside

    # ------------------------------------------------------------------ enumeration & sampling
    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """All states, shape ``(S, *batch_shape, *event_shape)`` (or ``(S, 1, ..., *event)``)."""
        if not self.has_enumerate_support:
            raise ValueError(
                f"support {self._support} with event shape {tuple(self.event_shape)} has "
                f"{self.num_states} states; enumeration is limited to {MAX_ENUMERATION}"
            )
        states = self._enumerate_event_values()
        states = states.reshape(
            (states.shape[0],) + (1,) * len(self.batch_shape) + self.event_shape
        )
        if expand:
            states = states.expand((states.shape[0],) + self.batch_shape + self.event_shape)
        return states

    def sample(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draws: exact by enumeration or the energy's closed form, else approximate.

        Without an exact sampler, the draws come from a short batched MCMC run (see
        :func:`gibbsebm._approximate.approximate_sample`) and :class:`ApproximateSampleWarning` is emitted: good
        enough for Pyro's initialisation, guides' prototypes and predictive checks, not for
        inference (use :func:`gibbsebm.sample`).
        """
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            if self.has_enumerate_support:
                states = self._enumerate_event_values()
                batch_ones = (1,) * len(self.batch_shape)
                lp = []
                for start in range(0, states.shape[0], _CHUNK):
                    chunk = states[start : start + _CHUNK]
                    lp.append(
                        self.unnormalized_log_prob(
                            chunk.reshape((chunk.shape[0],) + batch_ones + self.event_shape)
                        )
                    )
                lp = torch.cat(lp, 0).to(torch.float64)  # (S, *batch)
                probs = torch.softmax(lp.reshape(lp.shape[0], -1).T, dim=-1)  # (B, S)
                n = max(1, sample_shape.numel())
                idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # (B, n)
                out = states[idx.T.reshape(-1)].reshape((n,) + self.batch_shape + self.event_shape)
                return out.reshape(sample_shape + self.batch_shape + self.event_shape)
            if (
                self.base is None
                and self.x is None
                and self.latent is None
                and getattr(self.energy, "has_exact_sample", False)
            ):
                return self.energy.exact_sample(self.beta, sample_shape, generator=generator)
        return approximate_sample(self, sample_shape, generator)

    def rsample(self, sample_shape=(), generator=None):  # noqa: D102
        raise NotImplementedError(
            "Gibbs has no reparameterized sampler; use sample() (exact or approximate draws)"
        )

    @property
    def has_exact_sampler(self) -> bool:
        """Whether :meth:`sample` is exact (enumeration or the energy's closed form)."""
        return self.has_enumerate_support or (
            self.base is None
            and self.x is None
            and self.latent is None
            and bool(getattr(self.energy, "has_exact_sample", False))
        )

    def mcmc_from(
        self, y0: torch.Tensor, steps: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Run the fallback sampler of :meth:`sample` for ``steps`` steps from ``y0``
        (shape ``(n, *batch, *event)``) and return the final state (no warning, no cache).

        MALA steps with a fixed step size adapted on the way for continuous y; sweeps of
        single-site Metropolis updates (each leaves the distribution invariant) for discrete y.
        """
        dtype, device = self.beta.dtype, self.beta.device
        with torch.no_grad():
            if self.is_discrete:
                return metropolis_sweeps(self, y0, tuple(y0.shape), steps, generator, dtype, device)
            return mala_chain(self, y0, None, tuple(y0.shape), steps, generator, dtype, device)[0]

    def __repr__(self) -> str:
        name = getattr(self.energy, "__name__", type(self.energy).__name__)
        return (
            f"Gibbs(energy={name}, beta={self.beta.tolist() if self.beta.dim() else float(self.beta)}, "
            f"event_shape={tuple(self.event_shape)}, batch_shape={tuple(self.batch_shape)})"
        )


def _is_dtype_clash(err: RuntimeError) -> bool:
    """Whether a torch ``RuntimeError`` is a mixed-dtype operation (``float != double`` ...)."""
    msg = str(err)
    return ("dtype" in msg or "scalar type" in msg) and any(
        a in msg for a in ("Double", "double", "Half", "BFloat16")
    )


def energy_factor(
    name: str,
    energy: torch.Tensor,
    beta: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Add a tempered energy term :math:`-\\beta E` to a Pyro model (Gibbs posteriors).

    A thin, checked layer over :func:`pyro.factor`: with a loss :math:`\\ell(\\theta, D)` it
    makes the generalized-Bayes posterior
    :math:`\\pi(\\theta \\mid D) \\propto \\pi(\\theta) \\exp(-\\beta\\,\\ell(\\theta, D))`.

    Parameters
    ----------
    name : str
        Pyro site name.
    energy : Tensor
        The energy or loss value(s); summed over all entries.
    beta : float or Tensor
        Learning rate / inverse temperature, > 0.

    Returns
    -------
    Tensor
        The log factor that was added, :math:`-\\beta \\sum E`.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(data):
    ...     theta = pyro.sample("theta", dist.Normal(0.0, 10.0))
    ...     energy_factor("loss", (data - theta).abs().sum(), beta=0.5)
    """
    as_beta_tensor(beta)
    if not isinstance(energy, torch.Tensor) or not energy.dtype.is_floating_point:
        raise ValueError("energy must be a floating-point tensor")
    if torch.isnan(energy).any():
        raise ValueError("energy has NaN values")
    beta_t = torch.as_tensor(beta, dtype=energy.dtype, device=energy.device)
    log_factor = -(beta_t * energy).sum()
    pyro.factor(name, log_factor)
    return log_factor
