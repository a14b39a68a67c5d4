"""Coverage of the stated standard errors over seeds, for every log Z method (issue 13).

For each cell (a target with an exact log Z) and method, over ``--seeds`` seeds: the
fraction of *trusted* estimates whose +-1.96 stderr interval covers the truth, the mean and
sd of z = (estimate - truth) / stderr over trusted estimates, and the fraction trusted. Goal:
coverage >= 0.90 on trusted estimates.

Cells: Gaussians (2-D isotropic, 10-D anisotropic at beta 2), the 4 x 4 Ising model at
beta 0.44 (Kaufman), the pinned 6 x 3 RBM (enumeration), a heavy-tailed 2-D Student-t energy
(nu = 3, closed form) with the default Laplace (Gaussian) base, and the findable 8-D
5-mode mixture at beta 1 with its mode list accepted (``max_modes=5``).

    python benchmarks/coverage_benchmark.py --quick --label after
    python benchmarks/coverage_benchmark.py --table benchmarks/results/coverage_after_quick.json

Writes ``benchmarks/results/coverage_<label>[_quick].json``. Two worker processes (one
torch thread each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from multiprocessing import Pool

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)

METHODS = ("ais", "importance", "bdmc", "ti", "bridge", "smc")
#: Method options (cheap enough for many seeds on 2 cores; the defaults otherwise).
OPTIONS = {
    "bdmc": {"num_chains": 64, "num_steps": 200},
    "ti": {"num_chains": 64},
    "bridge": {"num_chains": 64},
}


def student_t_energy(nu: float, d: int):
    def energy(y):
        return 0.5 * (nu + d) * torch.log1p((y * y).sum(-1) / nu)

    log_z = math.lgamma(nu / 2) + 0.5 * d * math.log(nu * math.pi) - math.lgamma((nu + d) / 2)
    return energy, log_z


def cells():
    """``name -> (dist, exact log Z, extra log_partition options)``."""
    from multimodal_benchmark import _mixture, mixture_log_z

    import gibbsebm
    from gibbsebm.energies import Gaussian
    from gibbsebm.energies.ising import Ising2D

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from partition.test_exact_importance_ais import aniso_gaussian
    from pinned_cases import _targets

    out = {}
    g2 = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)), beta=1.0)
    out["gaussian-2d"] = (g2, float(g2.log_partition()), {})
    g10 = aniso_gaussian(10)
    out["gaussian-10d-aniso b=2"] = (g10, float(g10.log_partition()), {})
    ising = gibbsebm.Gibbs(Ising2D(4), beta=0.44)
    out["ising-4x4 b=0.44"] = (ising, float(ising.log_partition()), {})
    rbm = _targets()[2]
    out["rbm-6x3 (pinned)"] = (rbm, float(gibbsebm.log_partition(rbm, method="exact").log_z), {})
    e, lz = student_t_energy(3.0, 2)
    out["student-t nu=3 2-d"] = (
        gibbsebm.Gibbs(e, beta=1.0, event_shape=(2,)),
        lz,
        {},
    )
    easy = _mixture(8, 1, 5, 5.0, [1.0, 0.9, 1.1, 0.8, 1.0], [0.3, 0.25, 0.2, 0.15, 0.1])
    out["mixture-8d-5modes b=1 (accepted)"] = (
        gibbsebm.Gibbs(easy, beta=1.0),
        mixture_log_z(easy, 1.0),
        {"trust_thresholds": {"max_modes": 5}},
    )
    return out


def _one(job):
    torch.set_num_threads(1)
    import gibbsebm

    cell, method, seed = job
    dist, truth, extra = cells()[cell]
    opts = {"progress": False, "on_untrusted": "ignore", "seed": 1000 + seed}
    opts.update(OPTIONS.get(method, {}))
    opts.update(extra)
    if gibbsebm.Gibbs is None:  # pragma: no cover
        return None
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = gibbsebm.log_partition(dist, method=method, **opts)
    except Exception as exc:  # a failure is recorded, not hidden
        return {"cell": cell, "method": method, "seed": seed, "error": repr(exc)}
    return {
        "cell": cell,
        "method": method,
        "seed": seed,
        "log_z": est.log_z,
        "stderr": est.stderr,
        "truth": truth,
        "trusted": est.trusted,
        "problems": est.problems,
        "wall_s": time.perf_counter() - t0,
    }


def summarize(runs):
    out = {}
    for r in runs:
        out.setdefault((r["cell"], r["method"]), []).append(r)
    rows = []
    for (cell, method), rs in sorted(out.items()):
        ok = [r for r in rs if "error" not in r]
        tr = [r for r in ok if r["trusted"]]
        zs = [(r["log_z"] - r["truth"]) / r["stderr"] if r["stderr"] > 0 else math.inf for r in tr]
        cover = sum(abs(z) < 1.96 for z in zs) / len(zs) if zs else None
        fin = [z for z in zs if math.isfinite(z)]
        rows.append(
            {
                "cell": cell,
                "method": method,
                "runs": len(rs),
                "failed": len(rs) - len(ok),
                "trusted_fraction": len(tr) / len(rs),
                "coverage_trusted": cover,
                "mean_z": sum(fin) / len(fin) if fin else None,
                "sd_z": (
                    math.sqrt(sum((z - sum(fin) / len(fin)) ** 2 for z in fin) / (len(fin) - 1))
                    if len(fin) > 1
                    else None
                ),
                "low_misses": sum(z <= -1.96 for z in zs),
                "high_misses": sum(z >= 1.96 for z in zs),
                "mean_wall_s": sum(r.get("wall_s", 0) for r in ok) / max(len(ok), 1),
            }
        )
    return rows


def table(rows):
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        "| cell | method | runs | trusted | coverage (trusted) | mean z | sd z | misses low/high |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cov = r["coverage_trusted"]
        flag = "**" if cov is not None and cov < 0.9 else ""
        lines.append(
            f"| {r['cell']} | {r['method']} | {r['runs']} | {r['trusted_fraction']:.2f} | "
            f"{flag}{f(cov, '.2f')}{flag} | {f(r['mean_z'], '+.2f')} | {f(r['sd_z'], '.2f')} | "
            f"{r['low_misses']}/{r['high_misses']} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="12 seeds instead of 40")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--label", default="run")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cells", default=None, help="comma-separated substrings of cell names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--table", nargs="*", help="print the table of result files and exit")
    a = ap.parse_args()
    if a.table:
        for p in a.table:
            print(f"### {os.path.basename(p)}\n")
            print(table(json.load(open(p))["summary"]))
        return
    seeds = a.seeds or (12 if a.quick else 40)
    names = list(cells())
    if a.cells:
        names = [n for n in names if any(s in n for s in a.cells.split(","))]
    jobs = [(c, m, s) for c in names for m in a.methods.split(",") for s in range(seeds)]
    t0 = time.perf_counter()
    with Pool(a.workers) as pool:
        runs = pool.map(_one, jobs, chunksize=1)
    rows = summarize(runs)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"coverage_{a.label}{'_quick' if a.quick else ''}.json")
    with open(path, "w") as fh:
        json.dump(
            {"seeds": seeds, "wall_s": time.perf_counter() - t0, "summary": rows, "runs": runs},
            fh,
            indent=1,
        )
    print(table(rows))
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
