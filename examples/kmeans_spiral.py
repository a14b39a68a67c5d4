"""k-means as a latent-variable energy-based model, on points along a spiral.

The energy of a point y and a one-hot latent z is E(y, z) = ||y - W z||^2 (the columns of W
are the centroids). Summing z out at inverse temperature beta gives the free energy

    F_beta(y) = -1/beta log sum_k exp(-beta ||y - c_k||^2),

which is the soft-assignment energy at small beta and the k-means distortion
min_k ||y - c_k||^2 at beta -> infinity. This script

1. fits k-means (beta = inf, Lloyd) and follows deterministic annealing: EM on the free energy
   while beta rises, each fit starting from the previous centroids;
2. sweeps beta at the k-means centroids: the mean free energy rises monotonically to the
   distortion and stays within the bounds  min E - log K / beta <= F_beta <= min E;
   the entropy of the soft assignments p_beta(z | y) falls from log K to 0;
3. plots the energy surface F_beta(y) at a small and an infinite beta, the soft assignments at
   small beta against the hard k-means assignments, and F_beta against beta.

Run:  python examples/kmeans_spiral.py --output-dir out/kmeans     (--smoke: a few seconds)
"""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402

from gibbsebm.energies.kmeans import KMeansEnergy, fit_kmeans  # noqa: E402
from gibbsebm.latent import free_energy  # noqa: E402


def spiral(n: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` points along an Archimedean spiral r = t (1.5 turns), with Gaussian noise."""
    t = 1.0 + 3.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / 3.0
    return pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "kmeans_spiral")
    parser.add_argument("--clusters", type=int, default=8)
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    n = 200 if args.smoke else 600
    K = args.clusters
    data = spiral(n, 0.15, g)

    # 1. k-means (beta = inf) and deterministic annealing
    hard = fit_kmeans(data, K, generator=g)
    km = KMeansEnergy(hard.centroids)
    betas = torch.logspace(-2, 2, 9 if args.smoke else 25, dtype=torch.float64)
    annealed = []
    cents = data.mean(0, keepdim=True) + 0.01 * torch.randn(K, 2, generator=g, dtype=torch.float64)
    for b in betas.tolist():
        # a small perturbation lets coinciding centroids split at the phase transitions of
        # deterministic annealing (Rose 1998)
        jitter = 1e-2 * torch.randn(K, 2, generator=g, dtype=torch.float64)
        fit = fit_kmeans(data, K, beta=b, init=cents + jitter, num_iters=200)
        cents = fit.centroids
        annealed.append(float(fit.objective[-1]))
    final_annealed = fit_kmeans(data, K, init=cents)

    # 2. the free energy along beta at the k-means centroids
    distortion = float(km.squared_distances(data).min(-1).values.mean())
    latent = torch.eye(K, dtype=torch.float64)
    mean_f, lower, entropy = [], [], []
    for b in betas.tolist():
        f = free_energy(km, data, b, latent=latent).value
        mean_f.append(float(f.mean()))
        lower.append(distortion - math.log(K) / b)
        r = km.soft_assignments(data, b)
        entropy.append(float(-(r * torch.log(r.clamp_min(1e-300))).sum(-1).mean()))
    f_inf = free_energy(km, data, math.inf, latent=latent)
    monotone = all(a <= b_ + 1e-12 for a, b_ in zip(mean_f, mean_f[1:]))
    within_bounds = all(lo - 1e-9 <= f <= distortion + 1e-9 for f, lo in zip(mean_f, lower))

    # 3. figures
    grid = torch.linspace(-4.0, 4.0, 120 if args.smoke else 200, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    b_small = 1.0
    surfaces = {
        f"beta = {b_small:g}": free_energy(km, pts, b_small, latent=latent).value,
        "beta = inf (k-means distortion)": free_energy(km, pts, math.inf, latent=latent).value,
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (title, f) in zip(axes, surfaces.items()):
        top = float(torch.quantile(f, 0.9))
        levels = torch.linspace(float(f.min()), top, 30).tolist()
        cs = ax.contourf(gx, gy, f.reshape(gx.shape).clamp(max=top), levels=levels, cmap="viridis")
        ax.scatter(data[:, 0], data[:, 1], s=3, c="w", alpha=0.5)
        ax.scatter(km.centroids[:, 0], km.centroids[:, 1], c="r", marker="x", s=60)
        ax.set_title(f"free energy F_beta(y), {title}")
        ax.set_aspect("equal")
        fig.colorbar(cs, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "energy_surface.png", dpi=70)
    plt.close(fig)

    colors = plt.get_cmap("tab10")(torch.arange(K) % 10)[:, :3]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, b in zip(axes[:2], [0.3, math.inf]):
        r = km.soft_assignments(data, b)
        ax.scatter(data[:, 0], data[:, 1], s=6, c=(r.numpy() @ colors).clip(0, 1))
        ax.scatter(km.centroids[:, 0], km.centroids[:, 1], c="k", marker="x", s=50)
        ax.set_title("soft assignments, beta = 0.3" if math.isfinite(b) else "k-means (beta = inf)")
        ax.set_aspect("equal")
    ax = axes[2]
    ax.semilogx(betas, mean_f, "o-", ms=3, label="mean F_beta(y)")
    ax.axhline(distortion, color="k", ls="--", lw=1, label="k-means distortion (beta = inf)")
    ax.semilogx(betas, lower, ":", color="gray", label="distortion - log K / beta")
    ax.set_ylim(distortion - 4.0, distortion + 0.5)
    ax.set_xlabel("beta")
    ax.legend(loc="lower right", fontsize=8)
    ax2 = ax.twinx()
    ax2.semilogx(betas, entropy, color="C3", lw=1)
    ax2.set_ylabel("entropy of p(z|y)", color="C3")
    ax.set_title("free energy and assignment entropy vs beta")
    fig.tight_layout()
    fig.savefig(out / "free_energy_vs_beta.png", dpi=70)
    plt.close(fig)

    result = {
        "num_points": n,
        "num_clusters": K,
        "kmeans_distortion": distortion,
        "kmeans_converged": bool(hard.converged),
        "annealed_distortion": float(final_annealed.objective[-1]),
        "betas": betas.tolist(),
        "mean_free_energy": mean_f,
        "lower_bound": lower,
        "assignment_entropy": entropy,
        "log_K": math.log(K),
        "free_energy_at_inf": float(f_inf.value.mean()),
        "monotone_in_beta": monotone,
        "within_bounds": within_bounds,
        "annealing_objective": annealed,
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["energy_surface.png", "free_energy_vs_beta.png"],
    }
    write_results(out, result)
    print(
        f"k-means distortion {distortion:.4f} (annealed {result['annealed_distortion']:.4f}); "
        f"F_beta monotone: {monotone}, within bounds: {within_bounds}; wrote {out}"
    )
    if not (monotone and within_bounds):
        raise SystemExit("free energy violated its monotonicity or bounds")
    return result


if __name__ == "__main__":
    main()
