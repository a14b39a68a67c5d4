"""The energy protocol and the base class of the built-in energies.

An *energy* is any callable (a function or a :class:`torch.nn.Module`) that maps a batch
``y`` shaped ``(N, *event_shape)`` to energies shaped ``(N,)``; a conditional energy takes
``(x, y)`` with ``x`` shaped ``(N, *condition_shape)``. Lower energy means more compatible.

Built-in energies subclass :class:`EnergyModel`, which adds what the rest of the library can
use when it is there:

* ``event_shape`` and ``support`` (a :mod:`torch.distributions.constraints` constraint);
* ``exact_log_partition(beta)``: the exact
  :math:`\\log Z(\\beta) = \\log \\int \\exp(-\\beta E(y))\\,dy` (or a sum for discrete y)
  in float64, for any :math:`\\beta > 0`;
* ``exact_sample(beta, sample_shape, generator)``: exact i.i.d. draws where a closed form
  exists;
* ``tempered_energy(y, beta)``: for energies with a latent variable summed out, the
  temperature-dependent marginal energy
  :math:`F_\\beta(y) = -\\beta^{-1} \\log \\sum_z \\exp(-\\beta E(y, z))`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import constraints

__all__ = ["EnergyModel"]


class EnergyModel(torch.nn.Module):
    """Base class of built-in energies: ``forward(y) -> (N,)`` plus optional exact facts.

    Subclasses set ``event_shape`` and ``support`` and may override
    :meth:`exact_log_partition`, :meth:`exact_sample` and :meth:`tempered_energy`.

    Examples
    --------
    >>> import torch
    >>> class Quadratic(EnergyModel):
    ...     event_shape = torch.Size([2])
    ...     def forward(self, y):
    ...         return 0.5 * (y ** 2).sum(-1)
    >>> Quadratic()(torch.zeros(3, 2)).shape
    torch.Size([3])
    """

    event_shape: torch.Size = torch.Size()
    support: constraints.Constraint = constraints.real

    @property
    def has_exact_log_partition(self) -> bool:
        """Whether :meth:`exact_log_partition` is implemented."""
        return type(self).exact_log_partition is not EnergyModel.exact_log_partition

    @property
    def has_exact_sample(self) -> bool:
        """Whether :meth:`exact_sample` is implemented."""
        return type(self).exact_sample is not EnergyModel.exact_sample

    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        """Exact :math:`\\log Z(\\beta)` in float64 (same shape as ``beta``)."""
        raise NotImplementedError(f"{type(self).__name__} has no exact log partition function")

    def exact_sample(
        self,
        beta: Any,
        sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Exact draws from :math:`p_\\beta(y) \\propto \\exp(-\\beta E(y))`."""
        raise NotImplementedError(f"{type(self).__name__} has no exact sampler")

    def _ref(self) -> torch.Tensor:
        """A tensor carrying this energy's device and dtype."""
        for t in self.buffers():
            if t.dtype.is_floating_point:
                return t
        for t in self.parameters():
            return t
        return torch.empty(0)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"
