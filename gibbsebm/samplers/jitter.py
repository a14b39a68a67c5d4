"""Quasi-random trajectory jitter: the base-2 Halton (van der Corput) sequence.

A kernel-level shared block: :func:`gibbsebm.samplers.hmc.step` draws its jittered number of
leapfrog steps from it, and the ChEES warmup (:mod:`gibbsebm.samplers.adaptation.chees`,
which re-exports :func:`halton`) uses the same sequence. It lives here, below both, so that
the kernels import nothing from the adaptation layer.

References
----------
.. [1] M. D. Hoffman, A. Radul and P. Sountsov, "An adaptive-MCMC scheme for setting
   trajectory lengths in Hamiltonian Monte Carlo", AISTATS 2021 (quasi-random jitter).
"""

from __future__ import annotations

__all__ = ["halton"]


def halton(i: int, base: int = 2) -> float:
    """The ``i``-th element (``i >= 1``) of the van der Corput sequence in ``base``.

    Examples
    --------
    >>> [halton(i) for i in range(1, 5)]
    [0.5, 0.25, 0.75, 0.125]
    """
    if i < 1:
        raise ValueError(f"the Halton index starts at 1, got {i}")
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r
