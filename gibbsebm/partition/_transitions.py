"""MCMC transitions used inside the annealing estimators (AIS, reverse AIS, TI, bridge).

Each transition leaves one intermediate :math:`\\pi_s` of an :class:`AnnealingPath`
invariant. Continuous y and generic discrete y use the sampler kernels of
:mod:`gibbsebm.samplers` (``hmc``/``mala``, ``metropolis``/``gwg``) through their
``init``/``step`` protocol; two structured updates are added here because annealing needs many
cheap sweeps:

* ``colored_gibbs``: for two-valued sites and energies that expose
  ``energy_change_of_flip(y)`` (the exact energy change of every single flip at once, e.g.
  :class:`gibbsebm.energies.Ising2D`). The sites are split into independent sets by probing
  which flips change which other sites' flip energies, then coloring that interaction graph
  greedily (a checkerboard for the Ising lattice); a sweep redraws every site of a color
  class at once from its exact conditional (heat bath), which is a valid block Gibbs update
  because the sites of a class do not interact.
* ``block_gibbs``: for RBM-like energies with ``sample_hidden(v, beta, generator)`` and
  ``sample_visible(h, beta, generator)``: :math:`h \\sim p_{s\\beta}(h\\mid v)`,
  :math:`v \\sim p_{s\\beta}(v \\mid h)` leaves the tempered marginal invariant.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, NamedTuple

import torch

from ..constraints import support_values
from ._path import AnnealingPath

__all__ = ["make_transition", "flip_coloring", "TRANSITIONS"]

TRANSITIONS = ("hmc", "mala", "colored_gibbs", "block_gibbs", "metropolis", "gwg")

#: Target acceptance of the per-stage step-size adaptation of HMC/MALA (Beskos et al. 2013
#: give 0.651 as the optimum for HMC in high dimension; Roberts & Rosenthal 1998 give 0.574
#: for MALA). AIS kernels with few leapfrog steps are run a little more conservatively.
TARGET_ACCEPT = {"hmc": 0.75, "mala": 0.6}


class SimpleState(NamedTuple):
    position: torch.Tensor
    logdensity: torch.Tensor


def flip_coloring(
    dist: Any, generator: torch.Generator, *, num_probes: int = 2, chunk: int = 4096
) -> list[torch.Tensor] | None:
    """Independent sets of sites for parallel heat-bath flips, or ``None``.

    Sites ``i`` and ``j`` interact when flipping ``i`` changes the flip energy of ``j`` at one
    of ``num_probes`` random configurations (exact for pairwise energies; the probe is
    repeated so that accidental zeros are unlikely). The interaction graph is colored
    greedily in site order.

    Returns
    -------
    list of Tensor or None
        Boolean masks shaped like one y, one per color; ``None`` when the energy has no
        ``energy_change_of_flip``, the support is not two-valued, or the log-density is not
        ``-beta E`` (a base measure, condition or latent variable).
    """
    energy = dist.energy
    ecf = getattr(energy, "energy_change_of_flip", None)
    vals = support_values(dist.support, dtype=dist.beta.dtype, device=dist.beta.device)
    if (
        not callable(ecf)
        or vals is None
        or vals.numel() != 2
        or dist.base is not None
        or dist.x is not None
        or dist.latent is not None
        or getattr(energy, "tempered_energy", None) is not None
    ):
        return None
    ev = dist.event_shape
    n = math.prod(ev)
    nbrs: list[set[int]] = [set() for _ in range(n)]
    with torch.no_grad():
        for _ in range(num_probes):
            idx = torch.randint(0, 2, (1, n), generator=generator, device=vals.device)
            y0 = vals[idx]  # (1, n)
            d0 = ecf(y0.reshape((1,) + ev)).reshape(n)
            tol = 1e-5 * (float(d0.abs().max()) + 1.0)
            for start in range(0, n, chunk):
                rows = torch.arange(start, min(start + chunk, n), device=vals.device)
                ys = y0.repeat(rows.numel(), 1)
                ys[torch.arange(rows.numel()), rows] = (
                    vals.sum() - ys[torch.arange(rows.numel()), rows]
                )
                d = ecf(ys.reshape((rows.numel(),) + ev)).reshape(rows.numel(), n)
                changed = (d - d0).abs() > tol
                changed[torch.arange(rows.numel()), rows] = False
                for r, j in changed.nonzero().tolist():
                    i = start + r
                    nbrs[i].add(j)
                    nbrs[j].add(i)
    color = [-1] * n
    for i in range(n):
        used = {color[j] for j in nbrs[i] if color[j] >= 0}
        c = 0
        while c in used:
            c += 1
        color[i] = c
    col = torch.tensor(color, device=vals.device)
    return [(col == c).reshape(ev) for c in range(int(col.max()) + 1)]


class _Base:
    name = ""
    discrete = False

    def __init__(self, path: AnnealingPath) -> None:
        self.path = path
        self._cache: tuple[torch.Tensor, Any] | None = None

    def _logdensity(self, z: torch.Tensor, s: float) -> torch.Tensor:
        """log pi_s(z); on the geometric path the two parts are cached per position, so moving
        to the next s costs no energy evaluation."""
        if self.path.kind != "geometric":
            return self.path.logdensity_fn(s)(z)
        if self._cache is None or self._cache[0] is not z:
            self._cache = (z, self.path.parts(z))
        return self.path.combine(s, self._cache[1])

    def init(self, z: torch.Tensor, s: float) -> Any:
        with torch.no_grad():
            ld = self._logdensity(z, s)
        return SimpleState(z, ld)

    def describe(self) -> dict[str, Any]:
        return {"kernel": self.name}


class ColoredGibbs(_Base):
    """Heat-bath sweep over independent sets of two-valued sites (see the module docstring)."""

    name = "colored_gibbs"
    discrete = True

    def __init__(self, path: AnnealingPath, colors: list[torch.Tensor], sweeps: int = 1) -> None:
        super().__init__(path)
        self.colors = colors
        self.sweeps = sweeps
        self.ecf = path.dist.energy.energy_change_of_flip
        vals = support_values(path.dist.support, dtype=path.beta.dtype, device=path.beta.device)
        self.flip_sum = vals.sum()

    def step(self, generator: torch.Generator, state: Any, s: float):
        y = state.position
        b = self.path.effective_beta(s)
        c = y.shape[0]
        flipped = torch.zeros((), dtype=y.dtype, device=y.device)
        with torch.no_grad():
            for _ in range(self.sweeps):
                # one uniform per site and sweep: the color classes are disjoint
                u = torch.rand(y.shape, generator=generator, dtype=y.dtype, device=y.device)
                for mask in self.colors:
                    de = self.ecf(y).to(y.dtype)
                    self.path.counter.n += c
                    flip = (u < torch.sigmoid(-b * de)) & mask
                    y = torch.where(flip, self.flip_sum - y, y)
                    flipped = flipped + flip.to(y.dtype).sum()
            ld = self._logdensity(y, s)
        n_sites = math.prod(y.shape[1:]) * self.sweeps
        return SimpleState(y, ld), flipped / (c * n_sites)

    def describe(self) -> dict[str, Any]:
        return {"kernel": self.name, "num_colors": len(self.colors), "sweeps_per_step": self.sweeps}


class BlockGibbs(_Base):
    """Block Gibbs ``h | v`` then ``v | h`` at the stage's inverse temperature."""

    name = "block_gibbs"
    discrete = True

    def __init__(self, path: AnnealingPath, sweeps: int = 1) -> None:
        super().__init__(path)
        if path.kind != "temperature":
            raise ValueError("block_gibbs needs the temperature path of a latent-variable energy")
        self.energy = path.dist.energy
        self.sweeps = sweeps

    def step(self, generator: torch.Generator, state: Any, s: float):
        v = state.position
        b = self.path.effective_beta(s)
        with torch.no_grad():
            for _ in range(self.sweeps):
                h = self.energy.sample_hidden(v, b, generator)
                v_new = self.energy.sample_visible(h, b, generator).to(v.dtype)
                self.path.counter.n += v.shape[0]
                changed = (v_new != v).any(-1).to(v.dtype)
                v = v_new
            ld = self._logdensity(v, s)
        return SimpleState(v, ld), changed.mean()

    def describe(self) -> dict[str, Any]:
        return {"kernel": self.name, "sweeps_per_step": self.sweeps}


class KernelAdapter(_Base):
    """A :mod:`gibbsebm.samplers` kernel (``init``/``step``) run on :math:`\\pi_s`.

    For ``hmc``/``mala`` the step size is a 0-dim tensor adapted between stages towards
    :data:`TARGET_ACCEPT` (multiplicative Robbins-Monro update of its logarithm, with no host
    synchronisation); the kernel at each stage is still an exact MCMC kernel for
    :math:`\\pi_s`.
    """

    def __init__(
        self,
        path: AnnealingPath,
        name: str,
        num_substeps: int = 1,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(path)
        self.name = name
        self.module = importlib.import_module(f"gibbsebm.samplers.{name}")
        self.num_substeps = num_substeps
        self.params = dict(params or {})
        self.discrete = name in ("metropolis", "gwg", "dmala")
        if self.discrete:
            from ..samplers.metropolis import DiscreteSpace

            self.params.setdefault("space", DiscreteSpace.of(path.dist))
        self.adapt = name in TARGET_ACCEPT
        if self.adapt:
            d = path.d
            # In whitened coordinates the target is close to N(0, I): start from the
            # high-dimensional scaling of the optimal leapfrog step, O(d^{-1/4}).
            eps = float(self.params.pop("step_size", 1.0 * d ** (-0.25)))
            self.log_eps = torch.tensor(
                math.log(eps), dtype=path.beta.dtype, device=path.beta.device
            )
            self.target = float(self.params.pop("target_accept", TARGET_ACCEPT[name]))
            if name == "hmc":
                self.params.setdefault("num_steps", 5)

    def _fn(self, s: float):
        return self.path.logdensity_fn(s)

    def init(self, z: torch.Tensor, s: float) -> Any:
        return self.module.init(z, self._fn(s))

    def step(self, generator: torch.Generator, state: Any, s: float):
        fn = self._fn(s)
        acc_total = None
        for _ in range(self.num_substeps):
            if self.adapt:
                state, info = self.module.step(
                    generator, state, fn, step_size=self.log_eps.exp(), **self.params
                )
                acc = info.acceptance_prob.to(self.log_eps.dtype).mean()
                self.log_eps = (self.log_eps + (acc - self.target)).clamp(-12.0, 3.0)
            else:
                state, info = self.module.step(generator, state, fn, **self.params)
                acc = info.acceptance_prob.mean()
            acc_total = acc if acc_total is None else acc_total + acc
        return state, acc_total / self.num_substeps

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kernel": self.name, "steps_per_stage": self.num_substeps}
        if self.adapt:
            out["final_step_size"] = float(self.log_eps.exp())
            out["target_accept"] = self.target
        for k, v in self.params.items():
            if isinstance(v, (int, float, str)):
                out[k] = v
        return out


def default_kernel(path: AnnealingPath) -> str:
    """The default transition for a path's target (recorded in the diagnostics)."""
    dist = path.dist
    if not dist.is_discrete:
        return "hmc"
    energy = dist.energy
    if (
        path.kind == "temperature"
        and callable(getattr(energy, "sample_hidden", None))
        and callable(getattr(energy, "sample_visible", None))
        and dist.latent is None
        and dist.x is None
        and dist.base is None
    ):
        return "block_gibbs"
    if callable(getattr(energy, "energy_change_of_flip", None)) and path.kind == "geometric":
        return "colored_gibbs"
    return "metropolis"


def make_transition(
    path: AnnealingPath,
    kernel: str | None,
    generator: torch.Generator,
    *,
    num_substeps: int = 1,
    kernel_options: dict[str, Any] | None = None,
) -> _Base:
    """Build the transition named ``kernel`` (``None``: :func:`default_kernel`)."""
    kernel = kernel or default_kernel(path)
    opts = dict(kernel_options or {})
    if kernel not in TRANSITIONS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {TRANSITIONS}")
    if path.dist.is_discrete and kernel in ("hmc", "mala"):
        raise ValueError(f"kernel={kernel!r} is for continuous y; the target is discrete")
    if not path.dist.is_discrete and kernel not in ("hmc", "mala"):
        raise ValueError(f"kernel={kernel!r} is for discrete y; use 'hmc' or 'mala'")
    if kernel == "colored_gibbs":
        colors = flip_coloring(path.dist, generator)
        if colors is None:
            raise ValueError(
                "kernel='colored_gibbs' needs two-valued sites, an energy with "
                "energy_change_of_flip and a log-density -beta*E (no base, condition, latent)"
            )
        return ColoredGibbs(path, colors, sweeps=num_substeps)
    if kernel == "block_gibbs":
        return BlockGibbs(path, sweeps=num_substeps)
    return KernelAdapter(path, kernel, num_substeps=num_substeps, params=opts)
