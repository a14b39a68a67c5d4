"""log Z, mean energy and heat capacity over a ladder of inverse temperatures.

For every :math:`\\beta_j` of the ladder:

.. math::

    \\log Z(\\beta_j), \\qquad
    \\langle E \\rangle_{\\beta_j} = -\\partial_\\beta \\log Z, \\qquad
    C(\\beta_j) = \\beta_j^2 \\operatorname{Var}_{\\beta_j}(E) = \\beta_j^2\\, \\partial^2_\\beta \\log Z,

each with a standard error. Discrete targets with a uniform base (and latent-variable
energies on their temperature path) are annealed **once** from the base to the largest
beta, through every requested beta: at each one the AIS weights so far estimate
:math:`\\log Z(\\beta_j)`, and ``draws_per_beta`` kernel steps (which leave the weights
valid) give weighted energy moments. Continuous targets get one AIS run per beta (their
path starts from a Laplace base fitted at that beta). For energies that depend on beta
(latent variables summed out), :math:`E` is replaced by the identities
:math:`\\langle E\\rangle = -E_p[\\ell'_\\beta]` and
:math:`\\operatorname{Var}(E) = \\operatorname{Var}_p(\\ell'_\\beta) + E_p[\\ell''_\\beta]`
with :math:`\\ell_\\beta = \\log p_\\beta` unnormalized (derivatives by autograd).
Standard errors of the moments are delete-one-group jackknife errors over independent
chains.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..distribution import Gibbs
from ._common import check_dist, make_generator, progress_bar, roundoff_stderr
from ._plan import check_options, keyword_options
from ._rungs import jackknife_stderr
from ._stats import batch_homogeneity, summarize_log_weights
from .ais import DEFAULT_NUM_BATCHES, anneal, prepare_annealing
from .result import TRUST_THRESHOLDS, LogZWarning, UntrustedLogZError, _jsonable

__all__ = ["log_partition_curve", "LogZCurve", "DEFAULT_DRAWS_PER_BETA"]

#: Kernel steps at each requested beta whose energies are averaged (per chain).
DEFAULT_DRAWS_PER_BETA = 8


@dataclass
class LogZCurve:
    """log Z, mean energy and heat capacity along a beta ladder (all arrays ``(n,)``, float64,
    in increasing beta).

    Attributes
    ----------
    betas, log_z, log_z_stderr, mean_energy, mean_energy_stderr, heat_capacity,
    heat_capacity_stderr : Tensor
    method : str
    diagnostics : dict
        Per-beta ``ess`` and ``khat`` of the weights, ``roundoff_stderr`` (the floating-point
        floor added in quadrature to ``log_z_stderr``), the schedule, defaults.
    problems : list of str
    """

    betas: torch.Tensor
    log_z: torch.Tensor
    log_z_stderr: torch.Tensor
    mean_energy: torch.Tensor
    mean_energy_stderr: torch.Tensor
    heat_capacity: torch.Tensor
    heat_capacity_stderr: torch.Tensor
    method: str = "ais"
    diagnostics: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return _jsonable(
            {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "diagnostics"}
            | {"diagnostics": self.diagnostics}
        )


def _energy_derivs(dist: Gibbs, y: torch.Tensor, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`\\ell'_b(y)` and :math:`\\ell''_b(y)` (float64), with :math:`\\ell_b` the
    unnormalized log-density at inverse temperature ``b``."""
    tempered = getattr(dist.energy, "tempered_energy", None)
    if tempered is None and dist.latent is None:
        e = dist.at(b).energy_of(y).to(torch.float64)
        return -e, torch.zeros_like(e)
    if dist.latent is not None or dist.x is not None:
        raise ValueError("log_partition_curve supports energies with tempered_energy, not latent=")
    with torch.enable_grad():
        bt = torch.full((y.shape[0],), b, dtype=dist.beta.dtype, device=y.device)
        bt.requires_grad_(True)
        ld = -bt * tempered(y, bt)
        (g1,) = torch.autograd.grad(ld.sum(), bt, create_graph=True)
        (g2,) = torch.autograd.grad(g1.sum(), bt)
    return g1.detach().to(torch.float64), g2.detach().to(torch.float64)


def _moments(log_w, g1, g1sq, g2, keep=None):
    """Weighted <E> and Var(E) from per-chain averages (``keep``: chains to use)."""
    if keep is not None:
        log_w, g1, g1sq, g2 = log_w[keep], g1[keep], g1sq[keep], g2[keep]
    w = torch.softmax(torch.nan_to_num(log_w, nan=-math.inf), 0)
    m1 = (w * g1).sum()
    var = (w * g1sq).sum() - m1**2 + (w * g2).sum()
    return -m1, var


def _point(dist_b: Gibbs, b: float, log_w, positions_fn, steps, num_batches):
    """Statistics at one beta: log Z from the weights, moments from ``steps`` draws."""
    c = log_w.shape[0]
    g1 = torch.zeros(c, dtype=torch.float64)
    g1sq = torch.zeros(c, dtype=torch.float64)
    g2 = torch.zeros(c, dtype=torch.float64)
    for _ in range(steps):
        y = positions_fn()
        a, bb = _energy_derivs(dist_b, y, b)
        g1 += a.cpu()
        g1sq += (a * a).cpu()
        g2 += bb.cpu()
    g1, g1sq, g2 = g1 / steps, g1sq / steps, g2 / steps
    lw = log_w.detach().cpu()
    summ = summarize_log_weights(lw)
    se = summ["stderr"]
    batches = batch_homogeneity(lw, num_batches)
    if batches.get("batch_based_stderr") is not None and math.isfinite(se):
        se = max(se, float(batches["batch_based_stderr"]))
    # floating-point floor, as for method="ais" (a nearly exact base leaves only round-off)
    floor = roundoff_stderr(dist_b, summ["log_mean"])
    if math.isfinite(se):
        se = math.hypot(se, floor)
    mean_e, var_e = _moments(lw, g1, g1sq, g2)
    se_e, _ = jackknife_stderr(lambda k: _moments(lw, g1, g1sq, g2, k)[0], c)
    se_v, _ = jackknife_stderr(lambda k: _moments(lw, g1, g1sq, g2, k)[1], c)
    return {
        "log_z": summ["log_mean"],
        "log_z_stderr": se,
        "roundoff_stderr": floor,
        "mean_energy": float(mean_e),
        "mean_energy_stderr": se_e,
        "heat_capacity": b * b * float(var_e),
        "heat_capacity_stderr": b * b * se_v,
        "ess": summ["ess"],
        "khat": summ["khat"],
        "batch_pvalue": batches.get("batch_pvalue"),
    }


def log_partition_curve(
    dist: Gibbs,
    betas: Any,
    *,
    seed: int | None = None,
    progress: bool = True,
    on_untrusted: str = "warn",
    draws_per_beta: int = DEFAULT_DRAWS_PER_BETA,
    num_batches: int = DEFAULT_NUM_BATCHES,
    **options: Any,
) -> LogZCurve:
    """log Z, mean energy and heat capacity with error bars over a ladder of betas.

    Parameters
    ----------
    dist : Gibbs
        The distribution (its own beta is ignored; ``dist.at(b)`` is used for each ``b``).
    betas : sequence of float or Tensor
        Positive inverse temperatures (sorted internally; results are in increasing beta).
    seed : int, optional
        Seed of the generator.
    progress : bool
        Progress bar on a terminal.
    on_untrusted : {"warn", "raise", "ignore"}
        As in :func:`gibbsebm.log_partition`, applied to every beta's weights
        (``UntrustedLogZError.estimate`` is then the curve).
    draws_per_beta : int
        Kernel steps at each beta whose energies are averaged.
    num_batches : int
        Batches for the batch-based log Z error.
    **options
        AIS options (``num_chains``, ``num_steps``, ``kernel``, ``base``, ...), see
        :func:`~gibbsebm.partition.ais.ais_log_partition`.

    Returns
    -------
    LogZCurve

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Gaussian
    >>> d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)))
    >>> curve = gibbsebm.log_partition_curve(d, [0.5, 1.0], seed=0, progress=False)
    >>> curve.heat_capacity.shape  # about d/2 = 1 for a Gaussian, +- heat_capacity_stderr
    torch.Size([2])
    """
    if not isinstance(dist, Gibbs):
        raise ValueError(f"log_partition_curve needs a gibbsebm.Gibbs, got {type(dist).__name__}")
    b = torch.as_tensor(betas, dtype=torch.float64).reshape(-1)
    if b.numel() < 1 or not bool(torch.isfinite(b).all()) or bool((b <= 0).any()):
        raise ValueError("betas must be finite positive numbers")
    b = torch.unique(b)  # sorted, unique
    if not isinstance(draws_per_beta, int) or draws_per_beta < 1:
        raise ValueError(f"draws_per_beta must be a positive int, got {draws_per_beta!r}")
    if on_untrusted not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_untrusted must be 'warn', 'raise' or 'ignore', got {on_untrusted!r}")
    check_options("curve", options, keyword_options(prepare_annealing))
    t0 = time.perf_counter()
    gen = make_generator(seed, dist.beta.device)
    b_max = float(b[-1])
    top = check_dist(dist.at(b_max), "curve")
    dist = top  # a single-condition distribution keeps batch shape () at every beta
    points: list[dict[str, Any]] = []
    diag: dict[str, Any] = {"seed": gen.initial_seed()}
    one_run = top.is_discrete
    if one_run:
        setup = prepare_annealing(top, gen, **options)
        path, trans = setup.path, setup.trans
        req = (b / b_max).tolist()
        s_all = torch.unique(torch.cat([setup.s, torch.tensor(req, dtype=torch.float64)]))
        diag.update(setup.diag)
        diag["defaults"] = setup.defaults
        diag["num_steps"] = s_all.numel() - 1
        diag["mode"] = "one annealing run through every beta"
        bar = progress_bar(s_all.numel() - 1, "curve", progress)
        z = path.sample_base(setup.num_chains, gen)
        log_w = torch.zeros(setup.num_chains, dtype=torch.float64, device=z.device)
        prev = 0
        s_list = s_all.tolist()
        for sj, bj in zip(req, b.tolist()):
            idx = min(range(len(s_list)), key=lambda i: abs(s_list[i] - sj))
            run = anneal(path, trans, s_all[prev : idx + 1], z, gen, bar=bar)
            log_w = log_w + run.log_w
            state = run.state
            holder = {"state": state}

            def positions(holder=holder, sj=sj):
                holder["state"], _ = trans.step(gen, holder["state"], sj)
                return path.to_y(holder["state"].position)

            pt = _point(dist.at(bj), bj, log_w, positions, draws_per_beta, num_batches)
            if path.kind == "geometric":
                # pi_s = q^(1-s) gamma^s with q uniform (constant): Z_s = q^(1-s) Z(s beta)
                pt["log_z"] += (1.0 - sj) * path.base.log_norm
            points.append(pt)
            z = holder["state"].position
            prev = idx
        bar.close()
    else:
        diag["mode"] = "one AIS run per beta"
        for bj in b.tolist():
            setup = prepare_annealing(dist.at(bj), gen, **options)
            path, trans = setup.path, setup.trans
            z0 = path.sample_base(setup.num_chains, gen)
            run = anneal(path, trans, setup.s, z0, gen, move_at_last=False)
            holder = {"state": run.state}

            def positions(holder=holder, trans=trans, path=path):
                holder["state"], _ = trans.step(gen, holder["state"], 1.0)
                return path.to_y(holder["state"].position)

            points.append(
                _point(dist.at(bj), bj, run.log_w, positions, draws_per_beta, num_batches)
            )
            diag.setdefault("num_steps_per_beta", []).append(setup.s.numel() - 1)
            diag["defaults"] = setup.defaults

    def col(key: str) -> torch.Tensor:
        return torch.tensor([p[key] for p in points], dtype=torch.float64)

    diag["ess"] = col("ess").tolist()
    diag["khat"] = col("khat").tolist()
    diag["roundoff_stderr"] = col("roundoff_stderr").tolist()
    diag["batch_pvalue"] = [p["batch_pvalue"] for p in points]
    diag["draws_per_beta"] = draws_per_beta
    diag["wall_time_s"] = time.perf_counter() - t0
    curve = LogZCurve(
        betas=b,
        log_z=col("log_z"),
        log_z_stderr=col("log_z_stderr"),
        mean_energy=col("mean_energy"),
        mean_energy_stderr=col("mean_energy_stderr"),
        heat_capacity=col("heat_capacity"),
        heat_capacity_stderr=col("heat_capacity_stderr"),
        method="ais",
        diagnostics=diag,
    )
    problems = []
    for p, bj in zip(points, b.tolist()):
        if math.isfinite(p["khat"]) and p["khat"] > TRUST_THRESHOLDS["khat"]:
            problems.append(f"beta={bj:.4g}: Pareto k-hat {p['khat']:.2f}")
        if p["ess"] < TRUST_THRESHOLDS["min_ess"]:
            problems.append(f"beta={bj:.4g}: ESS {p['ess']:.1f}")
    curve.problems = problems
    if problems and on_untrusted != "ignore":
        msg = "log Z curve cannot be trusted at: " + "; ".join(problems)
        if on_untrusted == "raise":
            raise UntrustedLogZError(msg, curve)  # type: ignore[arg-type]
        warnings.warn(msg, LogZWarning, stacklevel=2)
    return curve
