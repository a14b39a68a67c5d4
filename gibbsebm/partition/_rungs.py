"""Draws on a ladder of intermediate distributions, reduced to what TI and bridge need.

For a ladder :math:`0 = s_0 < s_1 < \\dots < s_R = 1` of an :class:`AnnealingPath`, rung
``k >= 1`` holds ``(C, D)`` arrays over chains and draws of

* ``fwd[k]`` :math:`= \\log\\pi_{k+1}(y) - \\log\\pi_k(y)` (for ``k < R``),
* ``bwd[k]`` :math:`= \\log\\pi_{k-1}(y) - \\log\\pi_k(y)` (for ``k > 1``),
* ``deriv[k]`` :math:`= \\partial_s \\log\\pi_s(y)` at :math:`s_k`,

with :math:`y \\sim \\pi_{s_k}`; the first interval :math:`[0, s_1]` is bridged by plain
importance sampling from the base. Draws come either from chains moved up the ladder
(``sequential_rungs``) or from a parallel-tempering run (``pt_rungs``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._path import AnnealingPath
from ._stats import log_mean_exp

__all__ = ["RungData", "sequential_rungs", "pt_rungs", "NUM_JACKKNIFE_GROUPS"]

#: Groups of chains for jackknife standard errors (delete-one-group jackknife; each group's
#: chains are independent of the others', so draws correlated within a chain stay together).
NUM_JACKKNIFE_GROUPS = 8


class RungData:
    """Per-rung arrays (see the module docstring) and the first-interval IS estimate."""

    def __init__(self, s, first_log_z, first_stderr, first_ess, fwd, bwd, deriv, info) -> None:
        self.s = s  # (R + 1,) float64 on CPU
        self.first_log_z = first_log_z
        self.first_stderr = first_stderr
        self.first_ess = first_ess
        self.fwd = fwd  # dict k -> (C, D) float64
        self.bwd = bwd
        self.deriv = deriv
        self.info = info
        #: Rung data of the same chains moved back down the ladder (hysteresis check), or None.
        self.down: RungData | None = None

    @property
    def num_rungs(self) -> int:
        return self.s.numel() - 1

    @property
    def num_chains(self) -> int:
        return next(iter(self.deriv.values())).shape[0]


def _deriv(path: AnnealingPath, z: torch.Tensor, s: float, parts: Any) -> torch.Tensor:
    """:math:`\\partial_s \\log \\pi_s(z)` (float64)."""
    if path.kind == "geometric":
        return (parts[1] - parts[0]).to(torch.float64)
    beta = float(path.beta)
    b = s * beta
    energy = path.dist.energy
    if path.dist.latent is None and path.dist.x is None and path.dist.base is None:
        with torch.enable_grad():
            bt = torch.full((z.shape[0],), b, dtype=path.beta.dtype, device=z.device)
            bt.requires_grad_(True)
            ld = -bt * energy.tempered_energy(z, bt)
            (g,) = torch.autograd.grad(ld.sum(), bt)
        path.counter.n += z.shape[0]
        return beta * g.detach().to(torch.float64)
    # central difference in beta (3-point rule, error O(h^2))
    h = 1e-3 * b
    hi = path.logdensity_at_beta(z, b + h).to(torch.float64)
    lo = path.logdensity_at_beta(z, b - h).to(torch.float64)
    return beta * (hi - lo) / (2 * h)


def _sweep(
    path: AnnealingPath,
    trans: Any,
    s_vals: list[float],
    ks: Any,
    z: torch.Tensor,
    generator: torch.Generator,
    *,
    burn: int,
    draws: int,
    bar: Any = None,
) -> tuple[dict, dict, dict, torch.Tensor]:
    """Visit rungs ``ks`` in order with chains ``z``; record fwd/bwd/deriv at each."""
    r = len(s_vals) - 1
    fwd: dict[int, torch.Tensor] = {}
    bwd: dict[int, torch.Tensor] = {}
    der: dict[int, torch.Tensor] = {}
    for k in ks:
        sk = s_vals[k]
        state = trans.init(z, sk)
        for _ in range(burn):
            state, _ = trans.step(generator, state, sk)
        f_k, b_k, d_k = [], [], []
        for _ in range(draws):
            state, _ = trans.step(generator, state, sk)
            y = state.position
            with torch.no_grad():
                if path.kind == "geometric":
                    parts = path.parts(y)
                    cur = path.combine(sk, parts).to(torch.float64)
                    nxt = path.combine(s_vals[k + 1], parts) if k < r else None
                    prv = path.combine(s_vals[k - 1], parts) if k > 1 else None
                else:
                    parts = None
                    cur = state.logdensity.to(torch.float64)
                    nxt = path.logdensity_fn(s_vals[k + 1])(y) if k < r else None
                    prv = path.logdensity_fn(s_vals[k - 1])(y) if k > 1 else None
            if nxt is not None:
                f_k.append(nxt.to(torch.float64) - cur)
            if prv is not None:
                b_k.append(prv.to(torch.float64) - cur)
            d_k.append(_deriv(path, y, sk, parts))
        if f_k:
            fwd[k] = torch.stack(f_k, 1)
        if b_k:
            bwd[k] = torch.stack(b_k, 1)
        der[k] = torch.stack(d_k, 1)
        z = state.position
        if bar is not None:
            bar.update(1)
    return fwd, bwd, der, z


def sequential_rungs(
    path: AnnealingPath,
    trans: Any,
    s: torch.Tensor,
    num_chains: int,
    generator: torch.Generator,
    *,
    burn: int,
    draws: int,
    bar: Any = None,
    hysteresis: bool = False,
) -> RungData:
    """Move ``num_chains`` chains up the ladder ``s``; ``burn`` kernel steps then ``draws``
    recorded steps at every rung ``k >= 1``. With ``hysteresis``, the chains then walk back
    down the ladder (same protocol) and ``.down`` holds that pass: chains that lag behind
    the ladder bias the two passes in opposite directions."""
    s_vals = [float(v) for v in s.tolist()]
    r = len(s_vals) - 1
    z = path.sample_base(num_chains, generator)
    with torch.no_grad():
        lw0 = path.logdensity_fn(s_vals[1])(z).to(torch.float64) - path.logdensity_fn(0.0)(z).to(
            torch.float64
        )
    first, first_se = log_mean_exp(lw0)
    w = torch.softmax(torch.nan_to_num(lw0, nan=-math.inf), 0)
    first_ess = float(1.0 / (w * w).sum())
    fwd, bwd, der, z = _sweep(
        path, trans, s_vals, range(1, r + 1), z, generator, burn=burn, draws=draws, bar=bar
    )
    info = {
        "draws_from": "chains moved up the ladder (sequential)",
        "burn_per_rung": burn,
        "draws_per_rung": draws,
        "num_chains": num_chains,
    }
    out = RungData(s.to("cpu", torch.float64), first, first_se, first_ess, fwd, bwd, der, info)
    if hysteresis:
        # the same chains walk back down: their lag has the opposite sign
        f_d, b_d, d_d, _ = _sweep(
            path, trans, s_vals, range(r, 0, -1), z, generator, burn=burn, draws=draws, bar=bar
        )
        out.down = RungData(out.s, first, first_se, first_ess, f_d, b_d, d_d, dict(info))
        out.info["passes"] = "up and down"
    return out


def pt_rungs(dist: Any, samples: Any, first: tuple[float, float, float]) -> RungData:
    """Rung data from a parallel-tempering run (``gibbsebm.sample(dist, "pt", ...)``).

    The ladder is the run's betas in increasing order, :math:`s = \\beta_r/\\beta`; the
    log-densities at neighbouring betas are re-evaluated on the stored replicas. ``first`` is
    ``(log Z(beta_min), stderr, ess)`` from importance sampling at the hottest beta.
    """
    from ..samplers.tempering import replica_draws

    betas, reps, energies = replica_draws(samples)
    betas = betas.to(torch.float64)
    order = torch.argsort(betas)
    betas = betas[order]
    reps = reps[:, :, order]
    energies = energies[:, :, order]
    beta = float(dist.beta)
    if abs(float(betas[-1]) - beta) > 1e-6 * beta:
        raise ValueError(
            f"the PT ladder ends at beta={float(betas[-1])}, not at the target's beta={beta}"
        )
    c, d, r = reps.shape[:3]
    ev = tuple(reps.shape[3:])
    ld_cache: dict[tuple[int, int], torch.Tensor] = {}

    def ld(rung: int, at: int) -> torch.Tensor:
        key = (rung, at)
        if key not in ld_cache:
            y = reps[:, :, rung].reshape((c * d,) + ev).to(dist.beta.device)
            with torch.no_grad():
                v = dist.at(float(betas[at])).logdensity(y).to(torch.float64)
            ld_cache[key] = v.reshape(c, d).cpu()
        return ld_cache[key]

    fwd, bwd, der = {}, {}, {}
    for k in range(1, r + 1):
        i = k - 1
        cur = ld(i, i)
        if k < r:
            fwd[k] = ld(i, i + 1) - cur
        if k > 1:
            bwd[k] = ld(i, i - 1) - cur
        # d/ds log pi_s = beta * d/db log p_b: -beta * E for energies linear in beta, by
        # autograd through tempered_energy(y, b) otherwise
        b = float(betas[i])
        y = reps[:, :, i].reshape((c * d,) + ev).to(dist.beta.device)
        tempered = getattr(dist.energy, "tempered_energy", None)
        if tempered is None and dist.latent is None:
            der[k] = (-beta * energies[:, :, i].to(torch.float64)).cpu()
        elif dist.latent is None and dist.x is None and dist.base is None:
            with torch.enable_grad():
                bt = torch.full((y.shape[0],), b, dtype=dist.beta.dtype, device=y.device)
                bt.requires_grad_(True)
                (g,) = torch.autograd.grad((-bt * tempered(y, bt)).sum(), bt)
            der[k] = (beta * g.detach().to(torch.float64)).reshape(c, d).cpu()
        else:
            raise ValueError("PT draws of a latent= energy are not supported; use draws=None")
    s = torch.cat([torch.zeros(1, dtype=torch.float64), betas.cpu() / beta])
    info = {"draws_from": "parallel tempering (Samples.extra)", "num_chains": c, "draws": d}
    return RungData(s, first[0], first[1], first[2], fwd, bwd, der, info)


#: Defaults of the ladder estimators: kernel steps discarded and recorded at every rung.
#: Four burn-in steps let chains carried from the previous rung (whose distribution differs
#: by one conditional-ESS step of 1 %) relax; four recorded draws per chain and rung.
DEFAULT_BURN, DEFAULT_DRAWS = 4, 4
DEFAULT_LADDER_CHAINS = 128


def ladder_rungs(
    dist: Any,
    generator: torch.Generator,
    method: str,
    *,
    progress: bool = True,
    samples: Any = None,
    num_chains: int | None = None,
    num_rungs: int | None = None,
    burn: int = DEFAULT_BURN,
    draws: int = DEFAULT_DRAWS,
    kernel: str | None = None,
    steps_per_stage: int = 1,
    kernel_options: dict[str, Any] | None = None,
    base: Any = None,
    base_scale: float = 1.0,
    cess: float | None = None,
    hysteresis: bool = True,
) -> tuple[RungData, dict[str, Any], Any, dict[str, Any]]:
    """Rung data for ``ti``/``bridge``: from PT ``samples`` or from sequential chains.

    Returns ``(rungs, defaults, counter, description)``.
    """
    from ._common import EvalCounter, make_base, progress_bar
    from ._transitions import make_transition
    from .ais import PILOT_CESS, PILOT_NUM_CHAINS, _resample_schedule, pilot_schedule
    from .importance import importance_log_partition

    defaults: dict[str, Any] = {}
    counter = EvalCounter()
    if samples is not None:
        from ..samplers.tempering import replica_draws

        betas, _, _ = replica_draws(samples)
        b_min = float(betas.min())
        first = importance_log_partition(dist.at(b_min), generator, progress=progress, base=base)
        counter.n += first.num_energy_evals
        rungs = pt_rungs(dist, samples, (first.log_z, first.stderr, first.diagnostics["ess"]))
        rungs.info["first_interval"] = f"importance sampling at beta_min={b_min:.4g}"
        return rungs, defaults, counter, {"path": "temperature (PT ladder)"}
    if num_chains is None:
        num_chains = DEFAULT_LADDER_CHAINS
        defaults["num_chains"] = num_chains
    if burn < 0 or draws < 2:
        raise ValueError(f"need burn >= 0 and draws >= 2, got burn={burn}, draws={draws}")
    if base is None:
        defaults["base"] = "uniform" if dist.is_discrete else "laplace"
    q = make_base(dist, base, generator, base_scale=base_scale)
    path = AnnealingPath(dist, q, counter)
    trans = make_transition(
        path, kernel, generator, num_substeps=steps_per_stage, kernel_options=kernel_options
    )
    if kernel is None:
        defaults["kernel"] = trans.name
    if cess is None:
        cess = PILOT_CESS
        defaults["ladder"] = f"conditional-ESS pilot, CESS fraction {cess} per rung"
    pilot, _, pdiag = pilot_schedule(
        path, trans, generator, num_chains=min(PILOT_NUM_CHAINS, num_chains), cess=cess
    )
    if num_rungs is None:
        s = pilot
        defaults["num_rungs"] = s.numel() - 1
    else:
        if not isinstance(num_rungs, int) or num_rungs < 2:
            raise ValueError(f"num_rungs must be an int >= 2, got {num_rungs!r}")
        s = _resample_schedule(pilot, num_rungs)
    if s.numel() < 3:
        s = _resample_schedule(s, 2)
    bar = progress_bar((2 if hysteresis else 1) * (s.numel() - 1), method, progress)
    rungs = sequential_rungs(
        path,
        trans,
        s,
        num_chains,
        generator,
        burn=burn,
        draws=draws,
        bar=bar,
        hysteresis=hysteresis,
    )
    bar.close()
    rungs.info.update(pdiag)
    rungs.info["first_interval"] = "importance sampling from the base to the first rung"
    desc = {**path.describe(), "kernel": trans.describe()}
    return rungs, defaults, counter, desc


def chain_groups(num_chains: int, num_groups: int = NUM_JACKKNIFE_GROUPS) -> list[torch.Tensor]:
    """Contiguous groups of chain indices for the delete-one-group jackknife."""
    g = max(2, min(num_groups, num_chains))
    return [idx for idx in torch.arange(num_chains).tensor_split(g) if idx.numel()]


def jackknife_stderr(fn: Any, num_chains: int) -> tuple[float, list[float]]:
    """Delete-one-group jackknife standard error of ``fn(keep_mask)``.

    .. math:: \\widehat{\\mathrm{Var}} = \\frac{G-1}{G} \\sum_g (\\theta_{-g} - \\bar\\theta)^2
    """
    groups = chain_groups(num_chains)
    vals = []
    for idx in groups:
        keep = torch.ones(num_chains, dtype=torch.bool)
        keep[idx] = False
        vals.append(float(fn(keep)))
    t = torch.tensor(vals, dtype=torch.float64)
    g = len(groups)
    return float(math.sqrt((g - 1) / g * ((t - t.mean()) ** 2).sum())), vals
