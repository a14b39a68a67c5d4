"""Multimodal log Z benchmark (issue 13): every estimator, and peers, on Gaussian mixtures with
exact log Z and on a product double well (non-Gaussian modes, exact by 1-D quadrature).

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/multimodal_benchmark.py --quick --label after
    PYTHONPATH=<old checkout> python benchmarks/multimodal_benchmark.py --quick --label before
    python benchmarks/multimodal_benchmark.py --table benchmarks/results/multimodal_*.json

Each cell: error (estimate - truth), stated stderr, trusted flag, wall time. ``--peers`` adds
BlackJAX adaptive tempered SMC (CPU JAX), dynesty and UltraNest where importable (box prior
[-L, L]^d, log volume added back).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from typing import NamedTuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


# ------------------------------------------------------------------------------- targets
def _mixture(d, seed, num, spread, scales, weights, narrow_near=None):
    from gibbsebm.energies import GaussianMixture

    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(num, d, generator=g, dtype=torch.float64)
    if narrow_near is not None:
        means[-1] = 0.3 * means[narrow_near] + 0.2
    return GaussianMixture(
        means, torch.tensor(scales, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
    )


def mixture_log_z(gm, beta):
    if beta == 1.0:
        return 0.0
    mu, s, w = gm.means, gm.scales[:, 0], gm.weights
    d = mu.shape[1]
    v = s[:, None] ** 2 + s[None, :] ** 2
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    ln = -0.5 * d2 / v - 0.5 * d * torch.log(2 * math.pi * v)
    return float(torch.logsumexp((w.log()[:, None] + w.log()[None] + ln).reshape(-1), 0))


def double_well(y):
    return 2.0 * ((y**2 - 1.0) ** 2).sum(-1)


def double_well_log_z(beta, dim):
    from scipy import integrate

    val, _ = integrate.quad(
        lambda x: math.exp(-beta * 2.0 * (x * x - 1.0) ** 2), -10, 10, epsrel=1e-13, limit=200
    )
    return dim * math.log(val)


def targets(quick):
    import gibbsebm

    out = []
    easy = _mixture(8, 1, 5, 5.0, [1.0, 0.9, 1.1, 0.8, 1.0], [0.3, 0.25, 0.2, 0.15, 0.1])
    hidden = _mixture(10, 0, 4, 4.0, [1.0, 1.2, 0.8, 0.1], [0.4, 0.3, 0.16, 0.14], narrow_near=0)
    hidden20 = _mixture(20, 2, 3, 4.0, [1.0, 0.7, 0.1], [0.5, 0.35, 0.15], narrow_near=0)
    for name, gm in (("findable-8d-5modes", easy), ("hidden-10d-4modes", hidden)) + (
        () if quick else (("hidden-20d-3modes", hidden20),)
    ):
        for beta in (1.0, 2.0):
            out.append(
                (f"{name} b={beta:g}", gibbsebm.Gibbs(gm, beta=beta), mixture_log_z(gm, beta), 8.0)
            )
    dim = 4
    out.append(
        (
            "double-well-4d-16modes b=1.5",
            gibbsebm.Gibbs(double_well, beta=1.5, event_shape=(dim,)),
            double_well_log_z(1.5, dim),
            4.0,
        )
    )
    return out


# ------------------------------------------------------------------------------- runners
def run_gibbsebm(dist, method, seed):
    import gibbsebm

    opts = {"progress": False, "on_untrusted": "ignore", "seed": seed}
    if method == "bdmc":
        opts.update(num_chains=64, num_steps=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = gibbsebm.log_partition(dist, method=method, **opts)
    return {
        "log_z": est.log_z,
        "stderr": est.stderr,
        "trusted": est.trusted,
        "num_modes": (est.diagnostics.get("modes") or {}).get("num_modes"),
        "problems": est.problems,
    }


def _np_loglike(dist):
    import numpy as np

    def f(x):
        with torch.no_grad():
            x = torch.as_tensor(np.atleast_2d(x), dtype=torch.float64)
            return dist.logdensity(x).numpy()

    return f


class _Cap(NamedTuple):
    """Per-run budget of a peer: likelihood calls and wall seconds (``None``: no cap)."""

    max_calls: int | None = None
    max_wall_s: float | None = None


NO_CAP = _Cap()


def _capped_note(tool, what):
    return (
        f"{tool} stopped by the benchmark's {what} cap before its own convergence criterion: "
        "the estimate and its stated error bar are not trustworthy"
    )


def run_dynesty(dist, half_width, seed, cap=NO_CAP):
    import dynesty
    import numpy as np

    d = dist.event_shape[0]
    ll = _np_loglike(dist)
    dlogz = 0.1
    sampler = dynesty.NestedSampler(
        lambda x: float(ll(x)[0]),
        lambda u: (2 * u - 1) * half_width,
        d,
        nlive=500,
        bound="multi",
        sample="rwalk",
        rstate=np.random.default_rng(seed),
    )
    # run_nested's loop written out, so that a wall-time cap can stop it between iterations
    t0 = time.perf_counter()
    capped = None
    delta_logz = float("inf")
    maxcall = cap.max_calls if cap.max_calls is not None else sys.maxsize
    for res in sampler.sample(dlogz=dlogz, maxcall=maxcall):
        delta_logz = float(res.delta_logz)
        if cap.max_wall_s is not None and time.perf_counter() - t0 > cap.max_wall_s:
            capped = "wall-time"
            break
    # dynesty stops itself once ncall > maxcall or delta_logz < dlogz; the last value yielded
    # is the one before that check, so a converged run shows delta_logz just above dlogz here
    if capped is None and cap.max_calls is not None and sampler.ncall > cap.max_calls:
        capped = "likelihood-call"
    for _ in sampler.add_live_points():
        pass
    r = sampler.results
    lv = d * math.log(2 * half_width)
    out = {
        "log_z": float(r.logz[-1]) + lv,
        "stderr": float(r.logzerr[-1]),
        "trusted": None,
        "ncall": int(np.sum(r.ncall)),
        "capped": capped,
        "remaining_dlogz": delta_logz,  # at the last iteration seen
    }
    if capped:
        out["problems"] = [_capped_note("dynesty", capped)]
    return out


def run_ultranest(dist, half_width, seed, cap=NO_CAP):
    import numpy as np
    import ultranest
    import ultranest.stepsampler

    d = dist.event_shape[0]
    ll = _np_loglike(dist)
    names = [f"y{i}" for i in range(d)]
    np.random.seed(seed)  # noqa: NPY002 (UltraNest draws from the global NumPy state)
    t0 = time.perf_counter()
    state = {"capped": None, "ncall": 0, "sampler": None}
    # UltraNest has no wall-time option: past the cap, make its call budget read as spent, so it
    # stops at its next check and still reports from the points it has (true count kept here)
    max_ncalls = cap.max_calls if cap.max_calls is not None else 10**15

    def loglike(x):
        state["ncall"] += len(x)
        past = cap.max_wall_s is not None and time.perf_counter() - t0 > cap.max_wall_s
        if past and state["sampler"] is not None:
            state["capped"] = "wall-time"
            state["sampler"].ncall = max(state["sampler"].ncall, max_ncalls)
        return ll(x)

    sampler = ultranest.ReactiveNestedSampler(
        names, loglike, lambda u: (2 * u - 1) * half_width, vectorized=True
    )
    state["sampler"] = sampler
    sampler.stepsampler = ultranest.stepsampler.SliceSampler(
        nsteps=2 * d, generate_direction=ultranest.stepsampler.generate_mixture_random_direction
    )
    r = sampler.run(
        min_num_live_points=400,
        show_status=False,
        viz_callback=False,
        max_ncalls=max_ncalls,
    )
    capped = state["capped"]
    if capped is None and cap.max_calls is not None and state["ncall"] >= cap.max_calls:
        capped = "likelihood-call"
    lv = d * math.log(2 * half_width)
    out = {
        "log_z": float(r["logz"]) + lv,
        "stderr": float(r["logzerr"]),
        "trusted": None,
        "ncall": state["ncall"],
        "capped": capped,
    }
    if capped:
        out["problems"] = [_capped_note("UltraNest", capped)]
    return out


def run_blackjax(dist, half_width, seed, cap=NO_CAP):
    import blackjax
    import blackjax.smc.resampling as resampling
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    d = dist.event_shape[0]
    energy = dist.energy
    beta = float(dist.beta)
    if hasattr(energy, "means"):
        mu = jnp.asarray(energy.means.numpy())
        s2 = jnp.asarray((energy.scales[:, 0] ** 2).numpy())
        lw = jnp.log(jnp.asarray(energy.weights.numpy()))

        def loglik(x):
            comp = lw - 0.5 * ((x - mu) ** 2).sum(-1) / s2 - 0.5 * d * jnp.log(2 * jnp.pi * s2)
            return beta * jax.scipy.special.logsumexp(comp)
    else:

        def loglik(x):
            return -beta * 2.0 * ((x**2 - 1.0) ** 2).sum()

    # prior N(0, half_width^2/9 I) (normalized), so log Z = log of the tempered evidence
    sd = half_width / 3.0

    def logprior(x):
        return -0.5 * (x**2).sum() / sd**2 - 0.5 * d * jnp.log(2 * jnp.pi * sd**2)

    def loglik_corrected(x):
        return loglik(x) - logprior(x)

    n = 4000
    hmc_params = {
        "step_size": jnp.array([0.05]),  # shared across particles: leading axis of 1
        "inverse_mass_matrix": jnp.ones((1, d)),
        "num_integration_steps": jnp.array([10]),
    }
    smc = blackjax.adaptive_tempered_smc(
        logprior,
        loglik_corrected,
        blackjax.hmc.build_kernel(),
        blackjax.hmc.init,
        hmc_params,
        resampling.systematic,
        0.5,
        num_mcmc_steps=10,
    )
    key = jax.random.PRNGKey(seed)
    x0 = sd * jax.random.normal(key, (n, d))
    state = smc.init(x0)
    log_z = 0.0

    @jax.jit
    def one(state, k):
        return smc.step(k, state)

    steps = 0
    t0 = time.perf_counter()
    capped = None
    while float(state.tempering_param) < 1.0:
        if steps >= 500:
            capped = "step"
            break
        if cap.max_wall_s is not None and time.perf_counter() - t0 > cap.max_wall_s:
            capped = "wall-time"
            break
        key, sub = jax.random.split(key)
        state, info = one(state, sub)
        log_z += float(info.log_likelihood_increment)
        steps += 1
    out = {
        "log_z": float(np.asarray(log_z)) if capped is None else float("nan"),
        "stderr": float("nan"),
        "trusted": None,
        "capped": capped,
        "num_tempering_steps": steps,
    }
    if capped:
        out["problems"] = [f"BlackJAX SMC stopped by the benchmark's {capped} cap before beta = 1"]
    return out


PEERS = {"blackjax-atsmc": run_blackjax, "dynesty": run_dynesty, "ultranest": run_ultranest}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--label", default="after")
    ap.add_argument("--methods", default=None, help="comma-separated; 'none': peers only")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--peer-list", default=",".join(PEERS), help="comma-separated peer names")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--targets", default=None, help="comma-separated substrings of target names")
    ap.add_argument(
        "--max-calls", type=int, default=None, help="per-run likelihood-call cap (peers)"
    )
    ap.add_argument("--max-wall-s", type=float, default=None, help="per-run wall cap, s (peers)")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="update the label's results file in place: replace rows with the same "
        "(target, method, seed), keep the others",
    )
    ap.add_argument("--table", nargs="*", default=None)
    args = ap.parse_args()
    if args.table is not None:
        print_table(args.table)
        return
    torch.set_num_threads(1)
    import gibbsebm
    from gibbsebm.partition.api import METHODS

    methods = (
        [m for m in args.methods.split(",") if m != "none"]
        if args.methods
        else [m for m in ("importance", "ais", "ti", "bridge", "bdmc", "smc") if m in METHODS]
    )
    seeds = range(args.seed_start, args.seed_start + (args.seeds or (1 if args.quick else 3)))
    cap = _Cap(args.max_calls, args.max_wall_s)
    rows = []
    for name, dist, truth, half_width in targets(args.quick):
        if args.targets and not any(t in name for t in args.targets.split(",")):
            continue
        runners = [(m, lambda dist, s, m=m: run_gibbsebm(dist, m, s)) for m in methods]
        if args.peers:
            runners += [
                (p, lambda dist, s, f=f, hw=half_width: f(dist, hw, s, cap))
                for p, f in PEERS.items()
                if p in args.peer_list.split(",")
            ]
        for method, fn in runners:
            for seed in seeds:
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    r = fn(dist, seed)
                except Exception as err:  # a peer that cannot run here is reported, not hidden
                    r = {
                        "log_z": float("nan"),
                        "stderr": float("nan"),
                        "trusted": None,
                        "error": f"{type(err).__name__}: {err}"[:200],
                    }
                r.update(
                    target=name,
                    method=method,
                    seed=seed,
                    truth=truth,
                    error_nat=r["log_z"] - truth,
                    wall_s=time.perf_counter() - t0,
                    cpu_s=time.process_time() - c0,
                    label=args.label,
                )
                if method in PEERS:
                    r.update(max_calls=cap.max_calls, max_wall_s=cap.max_wall_s)
                rows.append(r)
                print(
                    f"{args.label:6s} {name:32s} {method:15s} seed {seed} err {r['error_nat']:+9.3f} "
                    f"se {r['stderr']:.3g} trusted {r['trusted']} {r['wall_s']:.1f}s "
                    f"cpu {r['cpu_s']:.1f}s capped {r.get('capped')}",
                    flush=True,
                )
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    path = os.path.join(RESULTS, f"multimodal_{args.label}{suffix}.json")
    doc = {"gibbsebm": gibbsebm.__file__, "rows": rows}
    if args.merge and os.path.exists(path):
        with open(path) as fh:
            doc = json.load(fh)
        new = {(r["target"], r["method"], r["seed"]) for r in rows}
        doc["rows"] = [r for r in doc["rows"] if (r["target"], r["method"], r["seed"]) not in new]
        doc["rows"] += rows
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1, default=str)
    print("wrote", path)


def print_table(paths):
    rows = []
    for p in paths:
        with open(p) as fh:
            rows += json.load(fh)["rows"]
    print("| target | method | run | error (nat) | stated stderr | trusted | wall (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["target"], r["method"], r["label"], r["seed"])):
        tr = {True: "yes", False: "**no**", None: "n/a"}[r["trusted"]]
        err = r["error_nat"]
        errs = "failed" if not isinstance(err, float) or math.isnan(err) else f"{err:+.3f}"
        se = r["stderr"]
        ses = "none" if not isinstance(se, float) or math.isnan(se) else f"{se:.3g}"
        print(
            f"| {r['target']} | {r['method']} | {r['label']} s{r['seed']} | {errs} | {ses} | "
            f"{tr} | {r['wall_s']:.1f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
