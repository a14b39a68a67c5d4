"""``method=`` names of :func:`gibbsebm.sample` and the modules that implement them.

Every module listed here exports ``make_spec(dist, **options) -> SamplerSpec`` (see
:mod:`gibbsebm.samplers.base`). A plain dict, no registration side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import SamplerSpec

__all__ = ["METHODS", "get_spec"]

#: method name -> module under ``gibbsebm.samplers``
METHODS: dict[str, str] = {
    "ula": "ula",
    "mala": "mala",
    "hmc": "hmc",
    "nuts": "nuts",
    "pt": "tempering",
    "gwg": "gwg",
    "dmala": "dmala",
    "metropolis": "metropolis",
    "block_gibbs": "block_gibbs",
}


def get_spec(method: str, dist: Any, **options: Any) -> SamplerSpec:
    """Build the :class:`SamplerSpec` of ``method`` for ``dist``.

    Raises
    ------
    ValueError
        If ``method`` is not a known name.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    module = importlib.import_module(f"gibbsebm.samplers.{METHODS[method]}")
    return module.make_spec(dist, **options)
