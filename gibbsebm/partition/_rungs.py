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

from .._json import to_jsonable
from ..runtime.plan import Shard
from ._common import progress_bar
from ._path import PHASE_THRESHOLDS, AnnealingPath, _rhat
from ._plan import LogZPlan
from ._stats import log_mean_exp, pool_log_mean_exp
from .result import LogZEstimate

__all__ = [
    "RungData",
    "LadderPlan",
    "sequential_rungs",
    "pt_rungs",
    "stitch_rungs",
    "NUM_JACKKNIFE_GROUPS",
    "COLD_START_S",
    "phase_checks",
    "PHASE_THRESHOLDS",
]

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
    cold_start: float | None = None,
) -> RungData:
    """Move ``num_chains`` chains up the ladder ``s``; ``burn`` kernel steps then ``draws``
    recorded steps at every rung ``k >= 1``. With ``hysteresis``, the chains then walk back
    down the ladder (same protocol) and ``.down`` holds that pass: chains that lag behind
    the ladder bias the two passes in opposite directions.

    With ``cold_start = S > 1`` (finite supports only, where :math:`\\pi_S` is the target at
    ``S`` times its beta), the chains are first quenched: ``burn + draws`` steps at ``s = S``,
    then as many at ``s = 1``, before the down pass. The down pass is then a heating run
    from the cold phase, so a phase the up pass never entered (a first-order transition
    whose metastable branch the chains followed) shows as a disagreement of the passes."""
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
        "linear_in_s": path.kind == "geometric",
    }
    out = RungData(s.to("cpu", torch.float64), first, first_se, first_ess, fwd, bwd, der, info)
    if hysteresis:
        if cold_start is not None and cold_start > 1.0:
            z = _quench(trans, z, generator, cold_start, burn + draws)
        # the same chains walk back down: their lag has the opposite sign
        f_d, b_d, d_d, _ = _sweep(
            path, trans, s_vals, range(r, 0, -1), z, generator, burn=burn, draws=draws, bar=bar
        )
        out.down = RungData(out.s, first, first_se, first_ess, f_d, b_d, d_d, dict(info))
        out.info["passes"] = "up and down"
        if cold_start is not None and cold_start > 1.0:
            out.info["passes"] = f"up, quench at s={cold_start:g}, down (heating from cold)"
    return out


def _quench(trans: Any, z: torch.Tensor, generator: torch.Generator, s_cold: float, n: int) -> Any:
    """``n`` kernel steps at ``s_cold``, then ``n`` at ``s = 1``; returns the positions."""
    for s_val in (s_cold, 1.0):
        state = trans.init(z, s_val)
        for _ in range(n):
            state, _ = trans.step(generator, state, s_val)
        z = state.position
    return z


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
    info = {
        "draws_from": "parallel tempering (Samples.extra)",
        "num_chains": c,
        "draws": d,
        "linear_in_s": getattr(dist.energy, "tempered_energy", None) is None
        and dist.latent is None,
    }
    return RungData(s, first[0], first[1], first[2], fwd, bwd, der, info)


#: Defaults of the ladder estimators: kernel steps discarded and recorded at every rung.
#: Four burn-in steps let chains carried from the previous rung (whose distribution differs
#: by one conditional-ESS step of 1 %) relax; four recorded draws per chain and rung.
DEFAULT_BURN, DEFAULT_DRAWS = 4, 4
DEFAULT_LADDER_CHAINS = 128
#: Cold start of the down pass on finite supports: the chains are quenched at ``s = 4``
#: (four times the target's beta) before they heat back down the ladder. A first-order
#: transition between the base and the target shows as up/down hysteresis only when the two
#: passes start in different phases; four times beta puts the energy term well above the
#: entropy term (the free-energy barrier of a mean-field model scales like 1/beta).
COLD_START_S = 16.0


class LadderPlan(LogZPlan):
    """The ladder estimators (``ti``, ``bridge``) as plans.

    Setup: base, kernel and conditional-ESS ladder, once. Each shard moves its chains up the
    whole ladder (rung ``k`` starts from rung ``k - 1``) and, with ``hysteresis``, back down;
    :meth:`merge` stitches the shards' rungs along the chain dimension, so every rung's mean
    and MCSE, the per-chain integrals, the jackknife over chain groups and the quadrature
    error use every chain; the first interval's importance-sampling estimate is pooled exactly
    from the shards' sums of weights. With ``samples=`` (a finished parallel-tempering run)
    there is nothing to split: the plan runs as one shard.

    Subclasses set ``method`` and implement :meth:`reduce` (rung data -> log Z, stderr,
    diagnostics).
    """

    unit = "chains"

    def __init__(
        self,
        dist: Any,
        generator: torch.Generator,
        *,
        seed: int | None = None,
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
    ) -> None:
        from ._common import EvalCounter, UniformBase, make_base
        from ._transitions import make_transition
        from .ais import PILOT_CESS, PILOT_NUM_CHAINS, _resample_schedule, pilot_schedule

        options = {
            "num_chains": num_chains,
            "num_rungs": num_rungs,
            "burn": burn,
            "draws": draws,
            "kernel": kernel,
            "steps_per_stage": steps_per_stage,
            "kernel_options": kernel_options,
            "base": base,
            "base_scale": base_scale,
            "cess": cess,
            "hysteresis": hysteresis,
        }
        super().__init__(dist, seed, options)
        self.defaults: dict[str, Any] = {}
        self.counter = EvalCounter()
        self.samples = samples
        self.base_option = base
        if samples is not None:
            self.shardable = False
            self.num_items = 1
            self._finish_setup(generator)
            return
        if num_chains is None:
            num_chains = DEFAULT_LADDER_CHAINS
            self.defaults["num_chains"] = num_chains
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
            raise ValueError(f"num_chains must be an int >= 2, got {num_chains!r}")
        if burn < 0 or draws < 2:
            raise ValueError(f"need burn >= 0 and draws >= 2, got burn={burn}, draws={draws}")
        if base is None:
            self.defaults["base"] = "uniform" if dist.is_discrete else "laplace"
        q = make_base(dist, base, generator, base_scale=base_scale)
        self.path = AnnealingPath(dist, q, self.counter)
        self.trans = make_transition(
            self.path,
            kernel,
            generator,
            num_substeps=steps_per_stage,
            kernel_options=kernel_options,
        )
        if kernel is None:
            self.defaults["kernel"] = self.trans.name
        if cess is None:
            cess = PILOT_CESS
            self.defaults["ladder"] = f"conditional-ESS pilot, CESS fraction {cess} per rung"
        pilot, _, self.pilot_info = pilot_schedule(
            self.path,
            self.trans,
            generator,
            num_chains=min(PILOT_NUM_CHAINS, num_chains),
            cess=cess,
        )
        if num_rungs is None:
            s = pilot
            self.defaults["num_rungs"] = s.numel() - 1
        else:
            if isinstance(num_rungs, bool) or not isinstance(num_rungs, int) or num_rungs < 2:
                raise ValueError(f"num_rungs must be an int >= 2, got {num_rungs!r}")
            s = _resample_schedule(pilot, num_rungs)
        if s.numel() < 3:
            s = _resample_schedule(s, 2)
        self.schedule = s
        self.burn, self.draws, self.hysteresis = burn, draws, bool(hysteresis)
        # the cold start needs pi_s proper for s > 1: true on a finite support (uniform base)
        self.cold_start = COLD_START_S if isinstance(q, UniformBase) else None
        self.num_items = num_chains
        self.steps_per_item = (2 if self.hysteresis else 1) * (s.numel() - 1)
        self.setup_evals = self.counter.n
        self._finish_setup(generator)

    @classmethod
    def refuse_sharding(cls, options: dict[str, Any]) -> str | None:
        if options.get("samples") is not None:
            return (
                "samples= reuses a finished parallel-tempering run, so there is nothing to "
                "shard; drop executor= (or drop samples= to shard the ladder's chains)"
            )
        return None

    def reduce(self, rungs: RungData) -> tuple[float, float, dict[str, Any]]:
        """log Z, its standard error and diagnostics from the (stitched) rung data."""
        raise NotImplementedError

    def schedule_digest(self) -> str | None:
        from ._plan import tensor_digest

        return tensor_digest(getattr(self, "schedule", None))

    def work(self, shard: Shard) -> int:
        return shard.size * self.steps_per_item

    def transport_parts(self) -> dict[str, Any]:
        parts = super().transport_parts()
        if self.samples is None:
            parts["the ladder path (distribution and base)"] = self.path
            parts["the ladder kernel"] = self.trans
        return parts

    def run_shard(self, shard: Shard, *, progress: bool | str = False) -> Any:
        from ..runtime.transport import isolated_copy

        g = self.shard_generator(shard)
        if self.samples is not None:
            return self._from_samples(g, bool(progress))
        path, trans = isolated_copy(
            (self.path, self.trans), (self.dist, self.dist.energy, self.counter)
        )
        before = path.counter.n
        bar = progress_bar(self.steps_per_item, self.method, bool(progress))
        rungs = sequential_rungs(
            path,
            trans,
            self.schedule,
            shard.size,
            g,
            burn=self.burn,
            draws=self.draws,
            bar=bar,
            hysteresis=self.hysteresis,
            cold_start=self.cold_start,
        )
        bar.close()
        cpu = torch.device("cpu")

        def host(d: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
            return {int(k): v.detach().to(cpu, torch.float64) for k, v in d.items()}

        down = rungs.down
        return {
            "first": [float(rungs.first_log_z), float(rungs.first_stderr), float(rungs.first_ess)],
            "fwd": host(rungs.fwd),
            "bwd": host(rungs.bwd),
            "deriv": host(rungs.deriv),
            "down": None
            if down is None
            else {"fwd": host(down.fwd), "bwd": host(down.bwd), "deriv": host(down.deriv)},
            "info": to_jsonable(rungs.info, nonfinite="keep"),
            "num_energy_evals": int(path.counter.n - before),
            "kernel": to_jsonable(trans.describe(), nonfinite="keep"),
        }

    def _from_samples(self, generator: torch.Generator, progress: bool) -> LogZEstimate:
        from ..samplers.tempering import replica_draws
        from .importance import importance_log_partition

        dist = self.dist
        betas, _, _ = replica_draws(self.samples)
        b_min = float(betas.min())
        first = importance_log_partition(
            dist.at(b_min), generator, progress=progress, base=self.base_option
        )
        self.counter.n += first.num_energy_evals
        rungs = pt_rungs(dist, self.samples, (first.log_z, first.stderr, first.diagnostics["ess"]))
        rungs.info["first_interval"] = f"importance sampling at beta_min={b_min:.4g}"
        log_z, se, diag = self.reduce(rungs)
        se = _with_roundoff(dist, log_z, se, diag)
        diag["path"] = "temperature (PT ladder)"
        diag["defaults"] = self.defaults
        return LogZEstimate(
            log_z=log_z,
            stderr=se,
            method=self.method,
            num_energy_evals=self.counter.n,
            diagnostics=diag,
        )

    def merge(self, results: list[Any], run_info: dict[str, Any] | None = None) -> LogZEstimate:
        if self.samples is not None:
            (est,) = results
            return est
        rungs = stitch_rungs(results, self.schedule)
        rungs.info.update(self.pilot_info)
        rungs.info["first_interval"] = "importance sampling from the base to the first rung"
        log_z, se, diag = self.reduce(rungs)
        se = _with_roundoff(self.dist, log_z, se, diag)
        diag.update({**self.path.describe(), "kernel": results[0]["kernel"]})
        diag["defaults"] = self.defaults
        if run_info is not None:
            diag["shards"] = {
                **self.shard_record(run_info, results),
                "shard_kernels": [r["kernel"] for r in results],
            }
        return LogZEstimate(
            log_z=log_z,
            stderr=se,
            method=self.method,
            num_energy_evals=self.setup_evals + sum(r["num_energy_evals"] for r in results),
            diagnostics=diag,
        )


def _with_roundoff(dist: Any, log_z: float, se: float, diag: dict[str, Any]) -> float:
    """``se`` with the floating-point floor (:func:`~._common.roundoff_stderr`) added."""
    from ._common import roundoff_stderr

    floor = roundoff_stderr(dist, log_z)
    diag["roundoff_stderr"] = floor
    return math.hypot(se, floor) if math.isfinite(se) else se


def stitch_rungs(results: list[dict[str, Any]], schedule: torch.Tensor) -> RungData:
    """One :class:`RungData` from the shards' rungs, joined along the chain dimension."""
    sizes = [int(next(iter(r["deriv"].values())).shape[0]) for r in results]
    if len(results) == 1:
        first = tuple(results[0]["first"])
    else:
        first = pool_log_mean_exp(
            [r["first"][0] for r in results], [r["first"][1] for r in results], sizes
        )

    def cat(parts: list[dict[int, torch.Tensor]]) -> dict[int, torch.Tensor]:
        return {k: torch.cat([p[k] for p in parts], 0) for k in parts[0]}

    info = dict(results[0]["info"])
    info["num_chains"] = sum(sizes)
    s = schedule.to("cpu", torch.float64)
    rungs = RungData(
        s,
        first[0],
        first[1],
        first[2],
        cat([r["fwd"] for r in results]),
        cat([r["bwd"] for r in results]),
        cat([r["deriv"] for r in results]),
        info,
    )
    if results[0]["down"] is not None:
        # the same chains walked back down the ladder: stitch that pass the same way
        downs = [r["down"] for r in results]
        rungs.down = RungData(
            s,
            first[0],
            first[1],
            first[2],
            cat([d["fwd"] for d in downs]),
            cat([d["bwd"] for d in downs]),
            cat([d["deriv"] for d in downs]),
            dict(info),
        )
        rungs.info["passes"] = "up and down"
    return rungs


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


def phase_checks(rungs: RungData) -> tuple[dict[str, Any], list[str], float]:
    """Checks of the ladder for a phase transition (mode switching along the path).

    Reads the TI integrand's draws ``deriv`` of both passes (see :data:`PHASE_THRESHOLDS`):
    up/down separation (hysteresis between a hot start and a cold start), chains split
    between basins at one rung (per-rung R-hat across chains), and an unresolved heat-
    capacity spike between neighbouring rungs.

    Parameters
    ----------
    rungs : RungData
        The ladder's draws, with ``.down`` when the chains also walked down.

    Returns
    -------
    diagnostics : dict
        ``rung_rhat`` (per rung, up pass), ``rung_separation_sd`` (per rung, up vs down),
        ``heat_capacity_rise_ratio`` (per interval), ``unresolved_quadrature_bound``.
    problems : list of str
        Findings that make the estimate untrusted.
    extra_stderr : float
        A systematic term to add (in quadrature) to the standard error: the monotone
        quadrature bound of the intervals with an unresolved spike.
    """
    th = PHASE_THRESHOLDS
    r = rungs.num_rungs
    s = rungs.s[1:]
    passes = [rungs] + ([rungs.down] if rungs.down is not None else [])
    problems: list[str] = []
    c = rungs.num_chains
    # (b) chains split between basins at a rung, in either pass
    rhats = [[_rhat(p.deriv[k]) for k in range(1, r + 1)] for p in passes]
    split = [k for k in range(r) if max(rh[k] for rh in rhats) > th["split_rhat"]]
    if split:
        worst = max(max(rh[k] for rh in rhats) for k in split)
        problems.append(
            f"chains split between basins at {len(split)} of {r} rungs (s = "
            f"{float(s[split[0]]):.3g} to {float(s[split[-1]]):.3g}; energy R-hat across "
            f"chains up to {worst:.3g} > {th['split_rhat']:g}): a phase transition or modes "
            "the chains do not cross; the estimate rests on chains that did not mix"
        )
    # (a) hot-start (up) and cold-start (down) passes in different distributions
    sep: list[float] = []
    if rungs.down is not None:
        bad = []
        for k in range(1, r + 1):
            u, dn = rungs.deriv[k], rungs.down.deriv[k]
            diff = abs(float(u.mean() - dn.mean()))
            sd = math.sqrt(0.5 * (float(u.var()) + float(dn.var())))
            se = math.sqrt(float(u.mean(1).var() + dn.mean(1).var()) / c)
            ratio = diff / sd if sd > 0 else (math.inf if diff > 0 else 0.0)
            sep.append(ratio)
            z = diff / se if se > 0 else (math.inf if diff > 0 else 0.0)
            if ratio > th["separation_sd"] and z > th["separation_z"]:
                bad.append(k - 1)
        if bad:
            problems.append(
                f"the up pass (hot start) and down pass (cold start) disagree at {len(bad)} "
                f"of {r} rungs (s = {float(s[bad[0]]):.3g} to {float(s[bad[-1]]):.3g}; "
                f"separation up to {max(sep):.3g} sd of the draws): hysteresis of a "
                "first-order phase transition along the ladder; the chains of one pass "
                "followed a metastable branch"
            )
    # (c) unresolved heat-capacity spike between neighbouring rungs
    ratios: list[float] = []
    bound = 0.0
    if rungs.info.get("linear_in_s", False) and r > 1:
        means = torch.stack(
            [torch.cat([p.deriv[k] for p in passes], 1).mean() for k in range(1, r + 1)]
        )
        var = torch.stack(
            [torch.cat([p.deriv[k] for p in passes], 1).var() for k in range(1, r + 1)]
        )
        cm = [torch.cat([p.deriv[k].mean(1) for p in passes]) for k in range(1, r + 1)]
        bad = []
        for k in range(r - 1):
            ds = float(s[k + 1] - s[k])
            rise = float(means[k + 1] - means[k])
            pred = ds * 0.5 * float(var[k] + var[k + 1])
            se = math.sqrt(float(cm[k].var() / cm[k].numel() + cm[k + 1].var() / cm[k + 1].numel()))
            ratio = rise / pred if pred > 0 else (math.inf if rise > 0 else 0.0)
            ratios.append(ratio)
            if ratio > th["heat_capacity_ratio"] and rise - pred > th["heat_capacity_z"] * se:
                bad.append(k)
                bound += 0.5 * ds * rise
        if bad:
            problems.append(
                f"the integrand rises {max(ratios[k] for k in bad):.3g} times more between "
                f"rungs than their heat capacity explains at {len(bad)} interval(s) (s = "
                f"{float(s[bad[0]]):.3g} to {float(s[bad[-1] + 1]):.3g}): a heat-capacity spike "
                "the ladder does not resolve (a phase transition); the monotone quadrature "
                f"bound {bound:.3g} nat is added to the stderr; use more rungs"
            )
    diag = {
        "rung_rhat": rhats[0],
        "rung_separation_sd": sep,
        "heat_capacity_rise_ratio": ratios,
        "unresolved_quadrature_bound": bound,
    }
    if len(rhats) > 1:
        diag["rung_rhat_down"] = rhats[1]
    return diag, problems, bound
