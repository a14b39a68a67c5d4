"""Annealing paths from a base distribution to the target, and their schedules.

A path is a sequence of unnormalized log-densities :math:`\\log \\pi_0 = \\log q, \\dots,
\\log \\pi_K = \\log \\gamma` indexed by a schedule :math:`0 = s_0 < s_1 < \\dots < s_K = 1`:

* ``geometric`` (energies whose log-density is linear in beta):
  :math:`\\log \\pi_s = (1 - s) \\log q + s\\, \\ell_\\beta`, with
  :math:`\\ell_\\beta = \\log b - \\beta E`. For a uniform base on a finite support this *is*
  the temperature path :math:`\\pi_s \\propto e^{-s \\beta E}` (``log q`` is constant), so
  kernels that need an inverse temperature get :math:`s\\beta`.
* ``temperature`` (latent-marginal energies with ``tempered_energy``, e.g. the RBM):
  :math:`\\log \\pi_s = \\ell_{s\\beta}` for :math:`s > 0`, the marginal of the joint
  :math:`e^{-s \\beta E(v, h)}` (Salakhutdinov & Murray 2008), with :math:`\\pi_0 = q`
  uniform; block Gibbs at :math:`s\\beta` leaves each :math:`\\pi_s` invariant.

Continuous y is annealed in whitened coordinates :math:`y = \\mu + L z` from the base's
overall mean and covariance (the Jacobian :math:`\\log|L|` is added to every
:math:`\\log \\pi_s`, so every :math:`Z_s` is unchanged and the kernels see a problem of unit
scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..distribution import Gibbs
from ._common import EvalCounter, GaussianMixtureBase, UniformBase

__all__ = [
    "AnnealingPath",
    "make_schedule",
    "SCHEDULES",
    "conditional_ess_fraction",
    "PHASE_THRESHOLDS",
]

SCHEDULES = ("linear", "geometric", "sigmoidal", "adaptive")

#: Sharpness of the sigmoidal schedule (Grosse, Maddison & Salakhutdinov 2013, NeurIPS,
#: "Annealing between distributions by averaging moments", section 5 uses delta = 4).
SIGMOID_DELTA = 4.0
#: First nonzero point of the geometric schedule (Neal 2001 anneals over several decades).
GEOMETRIC_START = 1e-4


#: Thresholds of the phase checks: :func:`~gibbsebm.partition._rungs.phase_checks` of the
#: ladder estimators and the final-particle check of AIS (a first-order transition along the
#: path).
#:
#: * ``separation_sd``: the up (hot-start) and down (cold-start) passes put the integrand at
#:   one rung more than 2 pooled standard deviations of the draws apart. Chains that lag
#:   behind the ladder shift a pass's mean by a fraction of its spread; chains in two
#:   different phases (a metastable branch followed through a first-order transition) sit
#:   whole distributions apart. The difference must also exceed 4 standard errors (chain
#:   means; a false alarm under 1 in 10^4 per rung).
#: * ``split_rhat``: within one pass, the chains at a rung disagree: the potential scale
#:   reduction of the integrand across chains (Gelman & Rubin 1992) exceeds 2.2. Chains that
#:   are correlated within a rung but share one basin give at most about
#:   :math:`\\sqrt{(D-1)/D + \\tau}` with :math:`\\tau` the integrated autocorrelation over the
#:   ``D`` draws (below 2.2 for the defaults, D = 4 draws after 4 burn-in steps); chains split
#:   between basins separated by ``g`` spreads give about ``g/2``. Measured on mean-field
#:   p-spin (p = 4, N = 40) and Curie-Weiss (p = 2, with and without a field) ladders, 16
#:   cells, 4 seeds, 32 and 128 chains, ti and bridge: single-phase cells reach at most 1.69
#:   (Curie-Weiss at its critical point); a bridge 6 stderr low at p = 4, beta = 0.6 had
#:   2.2003 (the old threshold 3 missed it). The same threshold serves AIS's final particles.
#: * ``heat_capacity_ratio``: thermodynamic consistency between neighbouring rungs. On a path
#:   whose log-density is linear in ``s`` (the geometric path, or the temperature path of an
#:   energy linear in beta) the TI integrand :math:`m(s)` has :math:`m'(s) = \\mathrm{Var}_s`
#:   (the heat capacity), so the rise between rungs ``k, k+1`` should be the trapezoid of the
#:   rungs' variances. A rise 3 times larger (and 4 standard errors above it) means the
#:   variance peaks between the rungs: a heat-capacity spike the ladder does not resolve. The
#:   integrand is then monotone, so the interval's quadrature error is bounded by
#:   :math:`\\Delta s\\,(m_{k+1} - m_k)/2`; that bound is added to the standard error.
PHASE_THRESHOLDS: dict[str, float] = {
    "separation_sd": 2.0,
    "separation_z": 4.0,
    "split_rhat": 2.2,
    "heat_capacity_ratio": 3.0,
    "heat_capacity_z": 4.0,
}


def _rhat(x: torch.Tensor) -> float:
    """Potential scale reduction of ``x`` shaped ``(C, D)`` (not split; inf for frozen chains
    that disagree, 1 for identical constant chains)."""
    d = x.shape[1]
    w = float(x.var(1).mean())
    b = float(x.mean(1).var())
    if w <= 0.0:
        return 1.0 if b <= 0.0 else math.inf
    return math.sqrt(((d - 1) / d * w + b) / w)


def make_schedule(
    kind: str, num_steps: int, *, dtype=torch.float64, device=None, **kw: Any
) -> torch.Tensor:
    """Fixed schedule ``s_0 = 0 < ... < s_K = 1`` with ``K = num_steps``.

    ``linear``: :math:`s_k = k/K`; ``geometric``: :math:`s_k = s_1^{(K-k)/(K-1)}` from
    :data:`GEOMETRIC_START`; ``sigmoidal``: :math:`\\tilde s_k = \\sigma(\\delta (2k/K - 1))`
    rescaled to [0, 1] (Grosse et al. 2013).
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    k = torch.arange(num_steps + 1, dtype=dtype, device=device)
    if kind == "linear":
        s = k / num_steps
    elif kind == "geometric":
        start = float(kw.get("start", GEOMETRIC_START))
        if num_steps == 1:
            s = k.clone()
        else:
            s = torch.cat(
                [
                    torch.zeros(1, dtype=dtype, device=device),
                    torch.logspace(math.log10(start), 0.0, num_steps, dtype=dtype, device=device),
                ]
            )
    elif kind == "sigmoidal":
        delta = float(kw.get("delta", SIGMOID_DELTA))
        raw = torch.sigmoid(delta * (2 * k / num_steps - 1))
        s = (raw - raw[0]) / (raw[-1] - raw[0])
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")
    s[0], s[-1] = 0.0, 1.0
    return s


def conditional_ess_fraction(log_w: torch.Tensor, incr: torch.Tensor) -> torch.Tensor:
    """Conditional ESS fraction of Zhou, Johansen & Aston (2016, JCGS 25(3)), eq. (3.16).

    .. math::

        \\mathrm{CESS}/n = \\frac{(\\sum_i W_i v_i)^2}{\\sum_i W_i v_i^2},

    with normalized current weights :math:`W_i` and incremental weights :math:`v_i`.
    """
    W = torch.softmax(log_w, 0)
    m = incr.max()
    v = torch.exp(incr - m)
    return (W * v).sum() ** 2 / (W * v * v).sum()


class AnnealingPath:
    """The path between a base ``q`` and a Gibbs target (see the module docstring).

    Parameters
    ----------
    dist : Gibbs
        Target.
    base : UniformBase or GaussianMixtureBase
        Base distribution (normalized).
    counter : EvalCounter
        Counts energy evaluations.
    """

    def __init__(
        self,
        dist: Gibbs,
        base: UniformBase | GaussianMixtureBase,
        counter: EvalCounter,
    ) -> None:
        self.dist = dist
        self.base = base
        self.counter = counter
        self.beta = dist.beta
        energy = dist.energy
        self.kind = (
            "temperature"
            if (dist.latent is not None or getattr(energy, "tempered_energy", None) is not None)
            else "geometric"
        )
        if self.kind == "temperature" and not isinstance(base, UniformBase):
            raise ValueError(
                "latent-variable (tempered) energies are annealed along the temperature path, "
                "which starts from a uniform base on a finite support"
            )
        self.event_shape = dist.event_shape
        self.event_dim = len(self.event_shape)
        ev_numel = math.prod(self.event_shape)
        if isinstance(base, GaussianMixtureBase):
            mu, L = base.whiten()
            self.mu, self.L = mu, L
            self.logdet = float(torch.log(torch.diagonal(L)).sum())
            self.whitened = True
            # one Gaussian component: in whitened coordinates the base is exactly N(0, I)
            self.standard_base = base.num_components == 1
        else:
            self.mu = self.L = None
            self.logdet = 0.0
            self.whitened = False
            self.standard_base = False
        self.d = ev_numel
        self._ld = counter.wrap(dist.logdensity, self.event_dim)

    # ------------------------------------------------------------------ coordinates
    def to_y(self, z: torch.Tensor) -> torch.Tensor:
        """Map sampler coordinates to y."""
        if not self.whitened:
            return z
        zf = z.reshape(z.shape[0], self.d)
        return (self.mu + zf @ self.L.T).reshape(z.shape[:1] + self.event_shape)

    def to_z(self, y: torch.Tensor) -> torch.Tensor:
        """Map y to sampler coordinates."""
        if not self.whitened:
            return y
        yf = y.reshape(y.shape[0], self.d) - self.mu
        zf = torch.linalg.solve_triangular(self.L, yf.T, upper=False).T
        return zf.reshape(y.shape[:1] + self.event_shape)

    def sample_base(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws of the base in sampler coordinates."""
        return self.to_z(self.base.sample(n, generator))

    # ------------------------------------------------------------------ densities
    def target_logdensity(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\gamma` in sampler coordinates (Jacobian included)."""
        return self._ld(self.to_y(z)) + self.logdet

    def base_logdensity(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log q` in sampler coordinates (Jacobian included)."""
        if self.standard_base:
            zf = z.reshape(z.shape[0], self.d)
            return -0.5 * (zf * zf).sum(-1) - 0.5 * self.d * math.log(2 * math.pi)
        return self.base.log_prob(self.to_y(z)) + self.logdet

    def logdensity_at_beta(self, y: torch.Tensor, b: float) -> torch.Tensor:
        """:math:`\\ell_b(y)` for the temperature path (counted)."""
        self.counter.n += y.shape[0]
        energy = self.dist.energy
        if self.dist.latent is None and self.dist.x is None and self.dist.base is None:
            bt = torch.full((y.shape[0],), b, dtype=self.beta.dtype, device=y.device)
            return -bt * energy.tempered_energy(y, bt)
        return self.dist.at(b).logdensity(y)

    def logdensity_fn(self, s: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """:math:`\\log \\pi_s` as a function of sampler coordinates."""
        if s <= 0.0:
            return self.base_logdensity
        if self.kind == "temperature":
            b = s * float(self.beta)
            return lambda z: self.logdensity_at_beta(z, b)
        if s >= 1.0:
            return self.target_logdensity

        def f(z: torch.Tensor) -> torch.Tensor:
            return (1.0 - s) * self.base_logdensity(z) + s * self.target_logdensity(z)

        return f

    def parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log q(z), log gamma(z))`` for the geometric path (one energy evaluation)."""
        return self.base_logdensity(z), self.target_logdensity(z)

    @staticmethod
    def combine(s: float, parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """:math:`\\log \\pi_s` of the geometric path from :meth:`parts`."""
        if s <= 0.0:
            return parts[0]
        if s >= 1.0:
            return parts[1]
        return (1.0 - s) * parts[0] + s * parts[1]

    def increment(self, s_from: float, s_to: float, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\pi_{s_{to}}(z) - \\log \\pi_{s_{from}}(z)` in float64."""
        a = self.logdensity_fn(s_to)(z).to(torch.float64)
        b = self.logdensity_fn(s_from)(z).to(torch.float64)
        return a - b

    def effective_beta(self, s: float) -> float:
        """Inverse temperature of :math:`\\pi_s` for kernels that need one (discrete y)."""
        return s * float(self.beta)

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.kind,
            "whitened": self.whitened,
            "base": self.base.describe(),
        }
