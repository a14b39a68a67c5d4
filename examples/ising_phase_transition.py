"""The 2-D Ising model across its phase transition: log Z, mean energy and heat capacity.

Spins s in {-1, +1} on an L x L torus with E(s) = -J sum (s_ij s_i+1,j + s_ij s_i,j+1). The
log partition function is a generating function of the energy:

    d log Z / d beta = -<E>_beta,      C(beta) = beta^2 Var_beta(E) = beta^2 d^2 log Z / d beta^2,

and the heat capacity peaks near the critical point beta_c = log(1 + sqrt 2) / 2 = 0.4407
(sharper as L grows). ``gibbsebm.log_partition_curve`` anneals once from the uniform
distribution through a ladder of beta (annealed importance sampling with the Ising model's
colored Gibbs sweeps), giving log Z(beta) with its standard error and the weighted mean and
variance of the energy at each beta with jackknife errors. The script compares all three
with the exact finite-lattice curves (Kaufman 1949), per site, and reports each error in
units of its standard error.

Run:  python examples/ising_phase_transition.py --output-dir out/ising   (--smoke: seconds)
"""

from __future__ import annotations

import math
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402

import gibbsebm  # noqa: E402
from gibbsebm import Gibbs  # noqa: E402
from gibbsebm.energies import BETA_CRITICAL, Ising2D  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "ising_phase_transition")
    parser.add_argument("--L", type=int, default=None, help="lattice side (default 8)")
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    L = args.L or (4 if args.smoke else 8)
    energy = Ising2D(L, dtype=torch.float64)
    n_sites = L * L
    num = 5 if args.smoke else 17
    betas = torch.linspace(0.1, 0.8, num, dtype=torch.float64)
    options = {"num_chains": 256, "num_steps": 200} if args.smoke else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curve = gibbsebm.log_partition_curve(
            Gibbs(energy, 1.0), betas, seed=args.seed, progress=False, **options
        )
    b = curve.betas
    exact = {
        "log_z": energy.exact_log_partition(b),
        "mean_energy": energy.exact_mean_energy(b),
        "heat_capacity": energy.exact_heat_capacity(b),
    }
    est = {
        "log_z": (curve.log_z, curve.log_z_stderr),
        "mean_energy": (curve.mean_energy, curve.mean_energy_stderr),
        "heat_capacity": (curve.heat_capacity, curve.heat_capacity_stderr),
    }
    z_scores, covered = {}, {}
    for k, (v, se) in est.items():
        z = (v - exact[k]) / se
        z_scores[k] = z.tolist()
        covered[k] = float((z.abs() <= 1.959963984540054).double().mean())
        print(
            f"{k:14s}: max |error| / stderr = {float(z.abs().max()):.2f}; "
            f"95% intervals cover the exact value at {covered[k]:.0%} of the betas"
        )

    fine = torch.linspace(0.05, 0.85, 200, dtype=torch.float64)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    titles = {
        "log_z": "log Z / N",
        "mean_energy": "<E> / N",
        "heat_capacity": "C / N = beta^2 Var(E) / N",
    }
    exact_fine = {
        "log_z": energy.exact_log_partition(fine),
        "mean_energy": energy.exact_mean_energy(fine),
        "heat_capacity": energy.exact_heat_capacity(fine),
    }
    for ax, k in zip(axes, titles):
        v, se = est[k]
        ax.plot(fine, exact_fine[k] / n_sites, "k-", lw=1, label="exact (Kaufman)")
        ax.errorbar(b, v / n_sites, yerr=2 * se / n_sites, fmt="o", ms=3, label="AIS +/- 2 se")
        ax.axvline(BETA_CRITICAL, color="gray", ls=":", lw=1)
        ax.set_xlabel("beta")
        ax.set_title(titles[k])
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"2-D Ising model, {L} x {L} torus (dotted: beta_c = {BETA_CRITICAL:.4f})")
    fig.tight_layout()
    fig.savefig(out / "ising_curves.png", dpi=70)
    plt.close(fig)

    result = {
        "L": L,
        "betas": b.tolist(),
        "log_z": curve.log_z.tolist(),
        "log_z_stderr": curve.log_z_stderr.tolist(),
        "mean_energy": curve.mean_energy.tolist(),
        "mean_energy_stderr": curve.mean_energy_stderr.tolist(),
        "heat_capacity": curve.heat_capacity.tolist(),
        "heat_capacity_stderr": curve.heat_capacity_stderr.tolist(),
        "exact": {k: v.tolist() for k, v in exact.items()},
        "z_scores": z_scores,
        "fraction_covered_by_95_interval": covered,
        "beta_of_max_heat_capacity_exact": float(fine[int(exact_fine["heat_capacity"].argmax())]),
        "beta_critical_infinite_lattice": BETA_CRITICAL,
        "warnings": [str(w.message) for w in caught],
        "problems": list(curve.problems),
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["ising_curves.png"],
    }
    if not all(math.isfinite(x) for x in result["log_z"]):
        raise SystemExit("non-finite log Z")
    write_results(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
