"""Exact log Z: the energy's closed form, enumeration of a finite support, or quadrature.

``method="exact"`` tries, in order:

1. the energy's own ``exact_log_partition(beta)`` (closed forms such as the Gaussian, or
   Kaufman's formula for the Ising model), when no base, condition or latent is set;
2. chunked enumeration of a finite discrete support with at most
   :data:`gibbsebm.distribution.MAX_ENUMERATION` states (:meth:`Gibbs.log_partition`);
3. tensor-product trapezoid quadrature for continuous y of dimension <= 3 on a box that
   contains the modes of the Laplace approximation, refined and widened until the integrand
   at the box's faces and the change on halving the grid spacing are negligible.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..distribution import MAX_ENUMERATION, Gibbs
from ..runtime.plan import Shard
from ._common import EvalCounter, is_real_support, laplace_base, make_generator, roundoff_stderr
from ._plan import LogZPlan
from .result import LogZEstimate

__all__ = ["exact_log_partition", "quadrature_log_partition"]

#: Largest continuous dimension handled by quadrature.
MAX_QUADRATURE_DIM = 3
# Grid points per dimension by dimension (at the finest level): 2**14, 2**10, 2**7 points,
# so the finest grid has at most 2**21 nodes.
_MAX_POINTS = {1: 2**14, 2: 2**10, 3: 2**7}
_START_POINTS = {1: 2**9, 2: 2**7, 3: 2**5}
# Face values below max - 40 nats (e^-40 ~ 4e-18 relative) cannot change log Z in float64.
_FACE_MARGIN = 40.0
_CHUNK = 2**16


def _log_trapezoid(dist: Gibbs, lo: torch.Tensor, hi: torch.Tensor, n: int, counter: EvalCounter):
    """log of the trapezoid rule on an ``n``-point-per-dimension grid, and the face maximum."""
    d = lo.numel()
    dtype, device = dist.beta.dtype, dist.beta.device
    # The nodes are placed in float64 and rounded to the energy's dtype; the trapezoid weights
    # are those of the rounded nodes (a non-uniform rule), so the rule integrates the function
    # at the points where it was evaluated. Weights of the float64 grid with float32 nodes
    # were off by the nodes' rounding (2.4e-7 at |y| = 4): 5.5e-6 nat on a mode of sd 0.1.
    axes = [
        torch.linspace(float(lo[i]), float(hi[i]), n, dtype=torch.float64, device=device).to(dtype)
        for i in range(d)
    ]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)
    wts = []
    for i in range(d):
        x = axes[i].to(torch.float64)
        gaps = x[1:] - x[:-1]
        w = torch.zeros(n, dtype=torch.float64, device=device)
        w[:-1] += 0.5 * gaps
        w[1:] += 0.5 * gaps
        wts.append(w.log())
    logw = wts[0]
    for w in wts[1:]:  # meshgrid "ij": the first axis varies slowest
        logw = (logw[:, None] + w[None, :]).reshape(-1)
    ev = dist.event_shape
    lps = []
    with torch.no_grad():
        for s in range(0, mesh.shape[0], _CHUNK):
            chunk = mesh[s : s + _CHUNK]
            counter.n += chunk.shape[0]
            lps.append(dist.unnormalized_log_prob(chunk.reshape((chunk.shape[0],) + ev)))
    lp = torch.cat(lps).to(torch.float64)
    grid_lp = lp.reshape((n,) * d)
    faces = []
    for i in range(d):
        faces.append(grid_lp.select(i, 0).max())
        faces.append(grid_lp.select(i, n - 1).max())
    return torch.logsumexp(lp + logw, 0), torch.stack(faces).max(), lp.max()


def quadrature_log_partition(
    dist: Gibbs,
    *,
    seed: int | None = 0,
    tol: float = 1e-9,
    counter: EvalCounter | None = None,
) -> tuple[float, float, dict[str, Any]]:
    """log Z of a continuous Gibbs distribution in dimension <= 3 by trapezoid quadrature.

    The trapezoid rule converges faster than any power of the spacing for smooth integrands
    that vanish at the box's faces (Trefethen & Weideman 2014, SIAM Review 56(3)), so the
    change between the rules on ``n`` and ``2n - 1`` points is a conservative error estimate.

    Returns
    -------
    tuple
        ``(log_z, error_estimate, diagnostics)``.
    """
    d = math.prod(dist.event_shape)
    if d > MAX_QUADRATURE_DIM:
        raise ValueError(f"quadrature is limited to dimension <= {MAX_QUADRATURE_DIM}, got {d}")
    if not is_real_support(dist.support):
        raise ValueError(f"quadrature needs an unconstrained real support, got {dist.support}")
    counter = counter or EvalCounter()
    gen = make_generator(seed, dist.beta.device)
    base = laplace_base(dist, gen, num_starts=32, init_scale=2.0)
    sd = torch.sqrt(
        torch.diagonal(base.scale_trils @ base.scale_trils.transpose(-1, -2), 0, -2, -1)
    )
    lo = (base.means - 12.0 * sd).min(0).values.to(torch.float64)
    hi = (base.means + 12.0 * sd).max(0).values.to(torch.float64)
    n = _START_POINTS[d]
    prev = None
    widenings = 0
    err = float("inf")
    while True:
        val, face, top = _log_trapezoid(dist, lo, hi, n, counter)
        if float(face) > float(top) - _FACE_MARGIN:
            # mass reaches the faces: widen the box by half its width on each side
            width = hi - lo
            lo, hi = lo - 0.5 * width, hi + 0.5 * width
            widenings += 1
            prev = None
            if widenings > 20:
                raise ValueError(
                    "quadrature failed: the density does not decay within a box of "
                    f"width {float((hi - lo).max()):.3g} (is exp(-beta E) integrable?)"
                )
            continue
        if prev is not None:
            err = abs(float(val) - float(prev))
            if err < tol or 2 * n - 1 > _MAX_POINTS[d]:
                break
        prev = val
        n = 2 * n - 1
    # the energy is evaluated in its own dtype: its rounding (eps * |log-density|, systematic
    # across nodes) bounds what the grid comparison can resolve; in float32 the comparison of
    # two grids was itself rounding noise (ring, beta 4: 4.7e-8 off, stated 7.8e-9)
    floor = roundoff_stderr(dist, float(val))
    err = math.hypot(err, floor)
    diag = {
        "source": "trapezoid quadrature",
        "roundoff_stderr": floor,
        "box_low": lo.tolist(),
        "box_high": hi.tolist(),
        "points_per_dim": n,
        "quadrature_error": err,
    }
    return float(val), err, diag


def exact_log_partition(dist: Gibbs, *, seed: int | None = None, **options: Any) -> LogZEstimate:
    """``method="exact"``: closed form, enumeration or quadrature (see the module docstring).

    Parameters
    ----------
    dist : Gibbs
        Scalar-batch Gibbs distribution.
    seed : int, optional
        Seed of the Laplace starts used to place the quadrature box.
    **options
        ``tol`` (quadrature tolerance in nats, default 1e-9).

    Returns
    -------
    LogZEstimate
        ``stderr`` is 0 for closed forms and float64 enumeration, the round-off floor for
        enumeration in a lower precision (:func:`~gibbsebm.partition._common.roundoff_stderr`),
        and the quadrature error estimate (with its round-off floor) otherwise; ``diagnostics["source"]`` says which route was taken.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm import Gibbs
    >>> from gibbsebm.energies import Gaussian
    >>> est = exact_log_partition(Gibbs(Gaussian(torch.zeros(2)), beta=1.0))
    >>> round(est.log_z, 6)  # log(2 pi)
    1.837877
    """
    tol = options.pop("tol", 1e-9)
    if options:
        raise ValueError(f"unknown options for method='exact': {sorted(options)}")
    energy = dist.energy
    if (
        dist.base is None
        and dist.x is None
        and dist.latent is None
        and getattr(energy, "has_exact_log_partition", False)
    ):
        lz = energy.exact_log_partition(dist.beta)
        return LogZEstimate(
            log_z=float(lz),
            stderr=0.0,
            method="exact",
            num_energy_evals=0,
            diagnostics={"source": f"closed form ({type(energy).__name__}.exact_log_partition)"},
        )
    if dist.is_discrete:
        if dist.has_enumerate_support:
            lz = dist.log_partition()
            diag = {"source": "enumeration", "num_states": int(dist.num_states)}
            se = 0.0
            if dist.beta.dtype != torch.float64:
                # energies and their log-sum-exp in float32 round at eps * |log Z| per state
                # sum (Ising 4x4 at beta 0.44 in float32: 3.4e-7 off the float64 value, which
                # stderr 0 called exact); float64 sums stay "exact" (stderr 0)
                se = roundoff_stderr(dist, float(lz))
                diag["roundoff_stderr"] = se
            return LogZEstimate(
                log_z=float(lz),
                stderr=se,
                method="exact",
                num_energy_evals=int(dist.num_states),
                diagnostics=diag,
            )
        raise ValueError(
            f"method='exact' cannot enumerate {dist.num_states} states (limit "
            f"{MAX_ENUMERATION}) and the energy has no exact_log_partition; use method='ais'"
        )
    counter = EvalCounter()
    val, err, diag = quadrature_log_partition(
        dist, seed=0 if seed is None else seed, tol=tol, counter=counter
    )
    return LogZEstimate(
        log_z=val,
        stderr=err,
        method="exact",
        num_energy_evals=counter.n,
        diagnostics=diag,
    )


class ExactPlan(LogZPlan):
    """``method="exact"`` as a (one-shard) plan: nothing random to split. Its ``seed`` is the
    caller's own (``None`` places the quadrature box from seed 0)."""

    method = "exact"
    shardable = False
    uses_generator = False

    def __init__(
        self, dist: Gibbs, generator: torch.Generator, *, seed: int | None = None, **options: Any
    ) -> None:
        super().__init__(dist, seed, options)
        self._finish_setup(generator)

    def run_shard(self, shard: Shard, *, progress: bool | str = False) -> LogZEstimate:
        return exact_log_partition(self.dist, seed=self.seed, **self.options)

    def merge(
        self, results: list[LogZEstimate], run_info: dict[str, Any] | None = None
    ) -> LogZEstimate:
        (est,) = results
        return est
