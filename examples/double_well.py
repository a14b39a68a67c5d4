"""A tilted double well sampled at several inverse temperatures, against the exact density.

E(y) = a (y^2 - 1)^2 + c y has wells at y = -1 and y = +1 separated by a barrier of height
about a; the tilt c > 0 makes the left well deeper. At small beta the Gibbs density
exp(-beta E) / Z is broad and the barrier is irrelevant; as beta grows the mass concentrates
in the wells and, with a tilt, moves into the deeper one, while the barrier beta * a that a
local sampler must cross grows.

For each beta the script runs batched HMC (chains started uniformly on (-2, 2)), compares
the sample mean and the left-well probability with the exact values (one-dimensional
quadrature) in units of their Monte Carlo standard error, and overlays the histogram on the
exact density. At the coldest beta it also runs parallel tempering (``method="pt"``), which
moves chains between the wells through hotter replicas.

Run:  python examples/double_well.py --output-dir out/double_well      (--smoke: seconds)
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402

import gibbsebm  # noqa: E402
from gibbsebm import Gibbs  # noqa: E402
from gibbsebm.energies import DoubleWell  # noqa: E402


def left_well_probability(energy: DoubleWell, beta: float) -> float:
    """P(y < 0) under the exact density (trapezoid rule on a fine grid)."""
    grid = np.linspace(-4.0, 0.0, 20001)
    dens = energy.density(grid, beta).numpy()
    return float(np.trapezoid(dens, grid))


def check(draws: torch.Tensor, energy: DoubleWell, beta: float) -> dict:
    """Sample mean and P(y < 0) against the exact values, in MCSE units (arviz ESS)."""
    x = draws.detach().double().reshape(draws.shape[0], draws.shape[1]).numpy()  # (C, D)
    exact_mean = float(energy.exact_moments(beta)[0])
    exact_left = left_well_probability(energy, beta)
    out = {"beta": beta, "exact_mean": exact_mean, "exact_left": exact_left}
    for name, f, exact in (("mean", x, exact_mean), ("left", (x < 0).astype(float), exact_left)):
        est = float(f.mean())
        mcse = float(az.mcse(f, method="mean"))
        ess = float(az.ess(f, method="bulk"))
        out[name] = est
        out[f"{name}_mcse"] = mcse
        out[f"{name}_ess"] = ess
        out[f"{name}_z"] = (est - exact) / mcse if mcse > 0 else float("inf")
    out["r_hat"] = float(az.rhat(x))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "double_well")
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    energy = DoubleWell(dim=1, a=2.0, c=0.25, dtype=torch.float64)
    betas = [0.5, 4.0] if args.smoke else [0.25, 1.0, 2.0, 4.0]
    num_chains, num_samples, num_warmup = (8, 150, 150) if args.smoke else (32, 500, 300)

    results, hists = [], {}
    for beta in betas:
        s = gibbsebm.sample(
            Gibbs(energy, beta),
            method="hmc",
            num_chains=num_chains,
            num_samples=num_samples,
            num_warmup=num_warmup,
            seed=args.seed,
            progress=False,
        )
        r = check(s.draws, energy, beta)
        r["method"] = "hmc"
        results.append(r)
        hists[("hmc", beta)] = s.draws.reshape(-1).numpy()
        print(
            f"beta={beta:<5g} hmc: mean {r['mean']:+.3f} (exact {r['exact_mean']:+.3f}, "
            f"{r['mean_z']:+.1f} MCSE), P(left) {r['left']:.3f} (exact {r['exact_left']:.3f}, "
            f"{r['left_z']:+.1f} MCSE), R-hat {r['r_hat']:.3f}"
        )
    beta = betas[-1]
    s = gibbsebm.sample(
        Gibbs(energy, beta),
        method="pt",
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        seed=args.seed,
        progress=False,
        kernel="mala",
        betas=[beta * f for f in (1.0, 0.5, 0.25, 0.125, 0.0625)],
    )
    r = check(s.draws, energy, beta)
    r["method"] = "pt"
    results.append(r)
    hists[("pt", beta)] = s.draws.reshape(-1).numpy()
    print(
        f"beta={beta:<5g} pt : mean {r['mean']:+.3f} ({r['mean_z']:+.1f} MCSE), P(left) "
        f"{r['left']:.3f} ({r['left_z']:+.1f} MCSE), R-hat {r['r_hat']:.3f}"
    )

    panels = list(hists)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), sharey=False)
    grid = np.linspace(-2.2, 2.2, 400)
    for ax, (method, b) in zip(np.atleast_1d(axes), panels):
        ax.hist(hists[(method, b)], bins=60, range=(-2.2, 2.2), density=True, alpha=0.6)
        ax.plot(grid, energy.density(grid, b).numpy(), "k-", lw=1.2, label="exact")
        ax.set_title(f"{method}, beta = {b:g}")
        ax.set_xlabel("y")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "double_well_histograms.png", dpi=70)
    plt.close(fig)

    result = {
        "energy": "a (y^2 - 1)^2 + c y with a = 2, c = 0.25",
        "num_chains": num_chains,
        "num_samples": num_samples,
        "num_warmup": num_warmup,
        "results": results,
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["double_well_histograms.png"],
    }
    write_results(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
