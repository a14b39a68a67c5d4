"""Supports that torch does not name: Ising spins in {-1, +1}.

Finite discrete supports are what make exact enumeration possible; :func:`support_values`
lists the values one coordinate takes.
"""

from __future__ import annotations

import torch
from torch.distributions import constraints

__all__ = ["spin", "support_values", "is_finite_discrete"]


class _Spin(constraints.Constraint):
    """Each coordinate is -1 or +1."""

    is_discrete = True
    event_dim = 0

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value == 1) | (value == -1)

    def __repr__(self) -> str:
        return "spin"


spin = _Spin()


def support_values(
    support: constraints.Constraint,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Values a single coordinate takes under a finite discrete ``support`` (else ``None``)."""
    dtype = dtype or torch.get_default_dtype()
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    # type checks, not identity: a pickled or deep-copied distribution carries copies of
    # torch's constraint singletons
    if isinstance(support, type(constraints.boolean)):
        return torch.tensor([0.0, 1.0], dtype=dtype, device=device)
    if isinstance(support, _Spin):
        return torch.tensor([-1.0, 1.0], dtype=dtype, device=device)
    if isinstance(support, constraints.integer_interval):
        lo, hi = int(support.lower_bound), int(support.upper_bound)
        return torch.arange(lo, hi + 1, dtype=dtype, device=device)
    return None


def is_finite_discrete(support: constraints.Constraint) -> bool:
    """Whether ``support`` has finitely many values per coordinate."""
    return support_values(support) is not None
