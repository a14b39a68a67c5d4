"""Outside audit: log Z and sampling moments on targets with EXACT answers, none of them
written by the library (plain functions / modules, truths by closed form, 1-D quadrature or
enumeration).

For every (case, method, settings, seed) it records estimate, stderr, trusted, problems,
z = (estimate - truth) / stderr and wall time, saves ``benchmarks/results/audit_cases.json``
and prints the failures: trusted with |z| > 3 (the defect the project's rule forbids),
untrusted-but-right (fine), crashes.

Run: ``PYTHONPATH=$PWD python benchmarks/audit_cases.py [--quick] [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import integrate, special
from torch.distributions import constraints

import gibbsebm
from gibbsebm.constraints import spin

torch.set_num_threads(1)
OUT = Path(__file__).parent / "results" / "audit_cases.json"
LOGZ_METHODS = ["default", "exact", "importance", "ais", "bdmc", "ti", "bridge", "smc"]


# ------------------------------------------------------------------------------ cases
def rotated_gaussian(d=10, cond=1e4, beta=1.0, dtype=torch.float64, seed=123):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    ev = torch.logspace(-0.5 * math.log10(cond), 0.5 * math.log10(cond), d, dtype=torch.float64)
    prec = (q * ev) @ q.T
    prec = 0.5 * (prec + prec.T)
    mu = torch.linspace(-1, 1, d, dtype=torch.float64)
    p_t, mu_t = prec.to(dtype), mu.to(dtype)

    def energy(y):
        r = y - mu_t
        return 0.5 * ((r @ p_t) * r).sum(-1)

    # the truth of the energy as evaluated: the precision rounded to dtype, in float64
    prec_r = p_t.double()
    logz = 0.5 * d * math.log(2 * math.pi / beta) - 0.5 * float(torch.logdet(prec_r))
    cov = torch.linalg.inv(prec_r) / beta
    dist = gibbsebm.Gibbs(energy, beta=torch.tensor(beta, dtype=dtype), event_shape=(d,))
    return dist, logz, {"mean": mu.numpy(), "var": cov.diagonal().numpy()}


def ring(R=5.0, s=0.3, beta=1.0):
    def energy(y):
        r = y.pow(2).sum(-1).sqrt()
        return 0.5 * (r - R) ** 2 / s**2

    z, _ = integrate.quad(
        lambda r: 2 * math.pi * r * math.exp(-beta * 0.5 * (r - R) ** 2 / s**2),
        0,
        R + 40 * s / math.sqrt(beta),
        limit=200,
        points=[R],
    )
    er2, _ = integrate.quad(
        lambda r: 2 * math.pi * r**3 * math.exp(-beta * 0.5 * (r - R) ** 2 / s**2),
        0,
        R + 40 * s / math.sqrt(beta),
        limit=200,
        points=[R],
    )
    var = er2 / z / 2
    dist = gibbsebm.Gibbs(energy, beta=beta, event_shape=(2,))
    return dist, math.log(z), {"mean": np.zeros(2), "var": np.full(2, var)}


def far_mixture(d=5, sep=10.0):
    m = torch.zeros(2, d, dtype=torch.float64)
    m[0, 0], m[1, 0] = -sep, sep

    def energy(y):
        d2 = ((y.unsqueeze(-2) - m) ** 2).sum(-1)
        return -torch.logsumexp(-0.5 * d2, -1)

    logz = math.log(2) + 0.5 * d * math.log(2 * math.pi)
    var = np.ones(d)
    var[0] = 1 + sep**2
    dist = gibbsebm.Gibbs(energy, beta=1.0, event_shape=(d,))
    return dist, logz, {"mean": np.zeros(d), "var": var}


def width_mixture(beta=1.0, s1=0.1, s2=2.0, w1=0.5, c=4.0, f64=False):
    """Equal-weight 2-D mixture, narrow (sd s1) at (-c, 0) and wide (sd s2) at (c, 0);
    E = -log density; Z_beta = int p^beta by composite Gauss-Legendre on a 2-D grid."""

    def logp_np(x, y):
        l1 = math.log(w1) - math.log(2 * math.pi * s1**2) - 0.5 * ((x + c) ** 2 + y**2) / s1**2
        l2 = math.log(1 - w1) - math.log(2 * math.pi * s2**2) - 0.5 * ((x - c) ** 2 + y**2) / s2**2
        return np.logaddexp(l1, l2)

    nodes, weights = np.polynomial.legendre.leggauss(8)
    edges = np.arange(-30, 30.0001, 0.05)
    a, b = edges[:-1], edges[1:]
    xs = (0.5 * (b - a)[:, None] * nodes + 0.5 * (a + b)[:, None]).ravel()
    ws = (0.5 * (b - a)[:, None] * weights).ravel()
    tot = -np.inf
    for i in range(0, len(xs), 200):
        lx = logp_np(xs[i : i + 200, None], xs[None, :]) * beta
        tot = np.logaddexp(
            tot, special.logsumexp(lx + np.log(ws[i : i + 200, None]) + np.log(ws[None, :]))
        )
    cm = torch.tensor([[-c, 0.0], [c, 0.0]], dtype=torch.float64)
    sd = torch.tensor([s1, s2], dtype=torch.float64)
    lw = torch.tensor([math.log(w1), math.log(1 - w1)], dtype=torch.float64)

    def energy(y):
        d2 = ((y.unsqueeze(-2) - cm) ** 2).sum(-1)
        return -torch.logsumexp(lw - torch.log(2 * math.pi * sd**2) - 0.5 * d2 / sd**2, -1)

    # a float beta makes the distribution float32 (the energy still returns float64);
    # f64=True gives the same target in float64 (control for the quadrature's node rounding)
    b = torch.tensor(beta, dtype=torch.float64) if f64 else beta
    dist = gibbsebm.Gibbs(energy, beta=b, event_shape=(2,))
    return dist, float(tot), None


def double_wells(d=6, a=4.0, tilt=0.3, beta=1.0):
    def e1(x):
        return a * (x * x - 1) ** 2 + tilt * x

    z1, _ = integrate.quad(lambda x: math.exp(-beta * e1(x)), -6, 6, limit=200, points=[-1, 1])
    m1, _ = integrate.quad(lambda x: x * math.exp(-beta * e1(x)), -6, 6, limit=200, points=[-1, 1])
    s1, _ = integrate.quad(
        lambda x: x * x * math.exp(-beta * e1(x)), -6, 6, limit=200, points=[-1, 1]
    )
    mean = m1 / z1

    def energy(y):
        return e1(y).sum(-1)

    dist = gibbsebm.Gibbs(energy, beta=beta, event_shape=(d,))
    return dist, d * math.log(z1), {"mean": np.full(d, mean), "var": np.full(d, s1 / z1 - mean**2)}


def student_t(d=3, nu=2.5):
    def energy(y):
        return 0.5 * (nu + d) * torch.log1p(y.pow(2).sum(-1) / nu)

    logz = (
        special.gammaln(nu / 2) + 0.5 * d * math.log(nu * math.pi) - special.gammaln((nu + d) / 2)
    )
    dist = gibbsebm.Gibbs(energy, beta=1.0, event_shape=(d,))
    return dist, float(logz), {"mean": np.zeros(d), "var": np.full(d, nu / (nu - 2))}


def positive_exponential(d=4, beta=2.0, rate=1.5):
    def energy(y):
        return rate * y.sum(-1)

    dist = gibbsebm.Gibbs(
        energy,
        beta=beta,
        event_shape=(d,),
        support=constraints.independent(constraints.positive, 1),
    )
    lam = beta * rate
    return dist, -d * math.log(lam), {"mean": np.full(d, 1 / lam), "var": np.full(d, 1 / lam**2)}


def ising_custom(L=4, beta=0.44, h=0.1):
    idx = torch.arange(L * L).reshape(L, L)
    right = torch.roll(idx, -1, 1).reshape(-1)
    down = torch.roll(idx, -1, 0).reshape(-1)

    def energy(s):
        return -(s * s[..., right]).sum(-1) - (s * s[..., down]).sum(-1) - h * s.sum(-1)

    n = L * L
    states = ((torch.arange(2**n).unsqueeze(-1) >> torch.arange(n)) & 1).double() * 2 - 1
    logz = float(torch.logsumexp(-beta * energy(states), 0))
    dist = gibbsebm.Gibbs(
        energy, beta=beta, event_shape=(n,), support=constraints.independent(spin, 1)
    )
    return dist, logz, None


def boltzmann_binary(n=12, beta=1.0, seed=7, f64=True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.7
    W = 0.5 * (W + W.T)
    W.fill_diagonal_(0)
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.5

    def energy(s):
        return -0.5 * ((s @ W) * s).sum(-1) - s @ b

    states = ((torch.arange(2**n).unsqueeze(-1) >> torch.arange(n)) & 1).double()
    logz = float(torch.logsumexp(-beta * energy(states), 0))
    # float64 beta: states are made in beta's dtype (a float beta gives float32 states and
    # the float64 matmul fails with an unclear dtype error, recorded by boltzmann12_f32beta)
    dist = gibbsebm.Gibbs(
        energy,
        beta=torch.tensor(beta, dtype=torch.float64) if f64 else beta,
        event_shape=(n,),
        support=constraints.independent(constraints.boolean, 1),
    )
    return dist, logz, None


def conditional_batch(beta=1.0):
    x = torch.tensor([[0.5], [1.0], [2.0], [4.0]], dtype=torch.float64)

    def energy(xc, y):
        s = xc[..., 0]
        return 0.5 * s * ((y - xc) ** 2).sum(-1)

    logz = [0.5 * math.log(2 * math.pi / (beta * float(s))) for s in x[:, 0]]
    dist = gibbsebm.Gibbs(energy, beta=beta, condition=x, event_shape=(1,))
    return dist, logz, None


def conditional_one(beta=1.0):
    x = torch.tensor([[3.0]], dtype=torch.float64)

    def energy(xc, y):
        s = xc[..., 0]
        return 0.5 * s * ((y - xc) ** 2).sum(-1)

    dist = gibbsebm.Gibbs(energy, beta=beta, condition=x, event_shape=(1,))
    return dist, 0.5 * math.log(2 * math.pi / (beta * 3.0)), None


class QuadModule(torch.nn.Module):
    def __init__(self, d=4):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.L = torch.nn.Parameter(
            torch.eye(d, dtype=torch.float64)
            + 0.3 * torch.randn(d, d, generator=g, dtype=torch.float64).tril(-1)
        )
        self.event_shape = torch.Size([d])

    def forward(self, y):
        return 0.5 * (y @ self.L).pow(2).sum(-1)


def module_energy(beta=1.0):
    m = QuadModule()
    d = m.L.shape[0]
    prec = (m.L @ m.L.T).detach()
    logz = 0.5 * d * math.log(2 * math.pi / beta) - 0.5 * float(torch.logdet(prec))
    cov = torch.linalg.inv(prec) / beta
    return gibbsebm.Gibbs(m, beta=beta), logz, {"mean": np.zeros(d), "var": cov.diagonal().numpy()}


CASES = {
    "rotgauss10_cond1e4_b1_f64": lambda: rotated_gaussian(beta=1.0),
    "rotgauss10_cond1e4_b5_f32": lambda: rotated_gaussian(beta=5.0, dtype=torch.float32),
    "rotgauss10_cond1e2_b1_f32": lambda: rotated_gaussian(cond=1e2, dtype=torch.float32),
    "ring2d_R5_s0.3": lambda: ring(),
    "ring2d_R5_s0.3_b4": lambda: ring(beta=4.0),
    "farmix5d_pm10": lambda: far_mixture(),
    "widthmix2d_b0.5": lambda: width_mixture(beta=0.5),
    "widthmix2d_b3": lambda: width_mixture(beta=3.0),
    "widthmix2d_b3_f64beta": lambda: width_mixture(beta=3.0, f64=True),
    "doublewell6d_a4_tilt0.3": lambda: double_wells(),
    "doublewell6d_a4_tilt0.3_b2": lambda: double_wells(beta=2.0),
    "student_t3d_nu2.5": lambda: student_t(),
    "student_t3d_nu1.5": lambda: student_t(nu=1.5),
    "positive_exp4d_b2": lambda: positive_exponential(),
    "ising4x4_custom_b0.44_h0.1": lambda: ising_custom(),
    "boltzmann12_binary": lambda: boltzmann_binary(),
    "boltzmann12_f32beta": lambda: boltzmann_binary(f64=False),
    "conditional_batch4": lambda: conditional_batch(),
    "conditional_one": lambda: conditional_one(),
    "module_quad4d_b2": lambda: module_energy(beta=2.0),
}
DISCRETE = {"ising4x4_custom_b0.44_h0.1", "boltzmann12_binary"}

# non-default settings a user would try, per method
EXTRA = {
    "importance": [{"num_samples": 20000}],
    "ais": [{"num_chains": 64, "num_steps": 200}],
    "smc": [{"num_particles": 64}],
}
SAMPLE_CASES = [
    "rotgauss10_cond1e4_b1_f64",
    "rotgauss10_cond1e4_b5_f32",
    "ring2d_R5_s0.3",
    "farmix5d_pm10",
    "doublewell6d_a4_tilt0.3",
    "student_t3d_nu2.5",
    "positive_exp4d_b2",
    "module_quad4d_b2",
]
SAMPLE_METHODS = ["hmc", "mala", "pt"]
NUTS_CASES = {"module_quad4d_b2"}  # nuts took 100 s on the 2-D ring (16 x 300 draws)


def _z(est, truth, se):
    if se is None or not np.isfinite(est):
        return float("nan")
    if se == 0:  # "exact": anything beyond float64 round-off of the truth is an error
        return 0.0 if abs(est - truth) <= 1e-12 * max(1, abs(truth)) else float("inf")
    return (est - truth) / se


def run_logz(name, dist, truth, method, opts, seed):
    rec = {
        "kind": "logz",
        "case": name,
        "method": method,
        "options": opts,
        "seed": seed,
        "truth": truth,
    }
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            if method == "default":
                est = gibbsebm.log_partition(dist, seed=seed, progress=False, **opts)
            else:
                est = gibbsebm.log_partition(dist, method=method, seed=seed, progress=False, **opts)
        rec["warnings"] = [f"{type(x.message).__name__}: {str(x.message)[:300]}" for x in w]
        lz, se = est.log_z, est.stderr
        if isinstance(truth, list):  # batched: worst coordinate
            lz_t = torch.as_tensor(lz).reshape(-1).tolist()
            se_t = torch.as_tensor(se).reshape(-1).tolist()
            zs = [_z(a, t, s) for a, t, s in zip(lz_t, truth, se_t)]
            rec.update(estimate=lz_t, stderr=se_t, z=max(zs, key=abs))
        else:
            rec.update(estimate=float(lz), stderr=float(se), z=_z(float(lz), truth, float(se)))
        rec.update(
            trusted=bool(est.trusted),
            problems=[str(p)[:300] for p in est.problems],
            method_used=est.method,
            defaults=str(est.diagnostics.get("defaults", ""))[:300],
            lower=est.lower,
            upper=est.upper,
        )
    except Exception as exc:  # noqa: BLE001
        rec.update(
            error=f"{type(exc).__name__}: {str(exc)[:400]}",
            where=traceback.format_exc().splitlines()[-3][:200],
        )
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


def run_sample(name, dist, moments, method, seed, quick):
    from gibbsebm import diagnostics as dg  # noqa: F401

    rec = {"kind": "sample", "case": name, "method": method, "seed": seed}
    t0 = time.perf_counter()
    n = 300 if quick else 500
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            s = gibbsebm.sample(
                dist,
                method=method,
                num_chains=16,
                num_samples=n,
                num_warmup=n,
                seed=seed,
                progress=False,
            )
        rec["warnings"] = [f"{type(x.message).__name__}: {str(x.message)[:300]}" for x in w]
        summ = s.summary(round_to="none")
        draws = s.draws.double().reshape(s.draws.shape[0], s.draws.shape[1], -1)
        mean = summ["mean"].to_numpy()
        mcse = summ["mcse_mean"].to_numpy()
        zm = (mean - moments["mean"]) / np.maximum(mcse, 1e-12)
        # variance: MCSE of the mean of (y - mu)^2 with the library's own MCSE
        from gibbsebm.samples import Samples

        sq = (draws - torch.as_tensor(moments["mean"])) ** 2
        s2 = Samples(draws=sq, stats={}, event_shape=(sq.shape[-1],))
        summ2 = s2.summary(round_to="none")
        zv = (summ2["mean"].to_numpy() - moments["var"]) / np.maximum(
            summ2["mcse_mean"].to_numpy(), 1e-12
        )
        rec.update(
            mean=mean.tolist(),
            mcse_mean=mcse.tolist(),
            z_mean=zm.tolist(),
            var=summ2["mean"].tolist(),
            mcse_var=summ2["mcse_mean"].tolist(),
            z_var=zv.tolist(),
            z=float(np.max(np.abs(np.r_[zm, zv]))),
            rhat_max=float(summ["r_hat"].max()),
            ess_min=float(summ["ess_bulk"].min()),
            sampling_warning=any("SamplingWarning" in x for x in rec["warnings"]),
        )
        rec["trusted"] = not rec["sampling_warning"]
    except Exception as exc:  # noqa: BLE001
        rec.update(
            error=f"{type(exc).__name__}: {str(exc)[:400]}",
            where=traceback.format_exc().splitlines()[-3][:200],
        )
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--methods", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--no-logz", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--report", nargs="*", help="only print the failure table of these JSON files")
    args = ap.parse_args()
    if args.report is not None:
        recs = [
            r for f in args.report or [args.out] for r in json.loads(Path(f).read_text())["records"]
        ]
        report(recs)
        return
    records = []
    if Path(args.out).exists() and args.only:
        records = [
            r
            for r in json.loads(Path(args.out).read_text())["records"]
            if r["case"] not in args.only
        ]
    for name, make in CASES.items():
        if args.only and name not in args.only:
            continue
        dist, truth, moments = make()
        if not args.no_logz:
            for method in args.methods or LOGZ_METHODS:
                settings = [{}] + ([] if args.quick else EXTRA.get(method, []))
                for opts in settings:
                    for seed in args.seeds:
                        r = run_logz(name, dist, truth, method, opts, seed)
                        records.append(r)
                        print(
                            f"{name:28s} {method:10s} {str(opts):34s} s{seed} "
                            f"est={r.get('estimate')} se={r.get('stderr')} z={r.get('z')} "
                            f"trusted={r.get('trusted')} t={r['wall_s']}s "
                            f"{r.get('error', '')[:120]}",
                            flush=True,
                        )
        if moments is not None and name in SAMPLE_CASES and not args.no_sample:
            for method in SAMPLE_METHODS + (["nuts"] if name in NUTS_CASES else []):
                for seed in args.seeds:
                    r = run_sample(name, dist, moments, method, seed, args.quick)
                    records.append(r)
                    print(
                        f"{name:28s} sample:{method:6s} s{seed} z={r.get('z')} "
                        f"warned={r.get('sampling_warning')} t={r['wall_s']}s "
                        f"{r.get('error', '')[:120]}",
                        flush=True,
                    )
        Path(args.out).parent.mkdir(exist_ok=True)
        Path(args.out).write_text(json.dumps({"records": records}, indent=1, default=str))
    report(records)


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def report(records):
    bad = [
        r
        for r in records
        if r.get("trusted")
        and _finite(r.get("z"))
        and abs(r["z"]) > 3
        or (r.get("trusted") and isinstance(r.get("z"), float) and math.isinf(r["z"]))
    ]
    fine = [
        r for r in records if r.get("trusted") is False and _finite(r.get("z")) and abs(r["z"]) <= 3
    ]
    crash = [r for r in records if "error" in r]
    print(f"\n== TRUSTED AND WRONG (|z|>3, or stderr 0 and not exact): {len(bad)}")
    for r in bad:
        print(
            f"  {r['case']} {r['kind']}:{r['method']} {r.get('options', '')} seed={r['seed']} "
            f"est={r.get('estimate', r.get('mean'))} truth={r.get('truth')} "
            f"se={r.get('stderr', r.get('mcse_mean'))} z={r['z']:.2f}"
        )
    print(f"== untrusted but right: {len(fine)}")
    for r in fine:
        print(f"  {r['case']} {r['kind']}:{r['method']} seed={r['seed']} z={r['z']:.2f}")
    print(f"== crashes: {len(crash)}")
    for r in crash:
        print(
            f"  {r['case']} {r['kind']}:{r['method']} {r.get('options', '')} seed={r['seed']}: "
            f"{r['error'][:200]}"
        )


if __name__ == "__main__":
    main()
