"""Calibrating the learning rate of a Gibbs posterior: coverage before and after.

Data: a line y = a + b x + noise with heavy-tailed noise (Student t, 5 degrees of freedom,
standard deviation 2). The squared loss l = (y - a - b x)^2 / 2 with a N(0, 10^2) prior gives
the Gibbs posterior  pi(theta) exp(-w sum_i l(theta; x_i, y_i)). Nothing in the loss says
how large w should be. With w = 1 the loss acts like a Gaussian likelihood with unit
variance, so the 95% credible regions are about half as wide as they should be and cover the
true (a, b) far less often than 95% of the time; the right rate here is 1 / sigma^2 = 0.25.

Part A (one data set): ``gibbsebm.workflow.calibrate_learning_rate``

* ``method="gpc"``: generalized posterior calibration (Syring & Martin 2019): bootstrap the
  data, sample the Gibbs posterior of every resample at once with batched ``hmc``, and move w
  until the regions cover the full-data estimate in 95% of the resamples;
* ``method="llb"``: the learning rate that matches the loss-likelihood bootstrap's information
  (Lyddon, Holmes & Walker 2019), tr(J I^-1 J) / tr(J), no sampling.

Part B (many data sets): the frequentist coverage of the 95% credible region of the true
(a, b) over independent simulated data sets, at w = 1 and at each data set's own calibrated
w (``llb``), and at the rate ``gpc`` found in part A (the data sets come from one process).
The Gibbs posterior of a squared loss with a Gaussian prior is Gaussian, with precision
w X'X + I / 100, so each region is computed in closed form (no Monte Carlo error besides the
binomial error over data sets).

Run:  python examples/gibbs_posterior_calibration.py --output-dir out/gpc   (--smoke: seconds)
"""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402

from gibbsebm.workflow import calibrate_learning_rate  # noqa: E402

SIGMA = 2.0  # noise standard deviation
DF = 5  # Student-t degrees of freedom of the noise (an integer: see simulate)
THETA_TRUE = torch.tensor([1.0, -0.5], dtype=torch.float64)
PRIOR_SD = 10.0
CHI2_2_95 = -2.0 * math.log(0.05)  # 95% quantile of chi^2 with 2 degrees of freedom


def simulate(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = 2 * torch.rand(n, generator=g, dtype=torch.float64) - 1
    # Student t = normal / sqrt(chi^2_df / df), with chi^2_df a sum of df squared normals
    z = torch.randn(n, generator=g, dtype=torch.float64)
    chi2 = (torch.randn(n, int(DF), generator=g, dtype=torch.float64) ** 2).sum(-1)
    noise = z / torch.sqrt(chi2 / DF) * SIGMA / math.sqrt(DF / (DF - 2))
    return x, THETA_TRUE[0] + THETA_TRUE[1] * x + noise


def squared_loss(theta: torch.Tensor, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(C, 2) -> (C, n): 0.5 (y - a - b x)^2."""
    x, y = data
    pred = theta[:, :1] + theta[:, 1:] * x[None, :]
    return 0.5 * (y[None, :] - pred) ** 2


def region_covers(data, w: float, theta: torch.Tensor) -> bool:
    """Whether theta lies in the 95% region of the (Gaussian) Gibbs posterior at rate w."""
    x, y = data
    X = torch.stack([torch.ones_like(x), x], -1)
    prec = w * X.T @ X + torch.eye(2, dtype=torch.float64) / PRIOR_SD**2
    mean = torch.linalg.solve(prec, w * X.T @ y)
    r = theta - mean
    return bool(r @ prec @ r <= CHI2_2_95)


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "gibbs_posterior_calibration")
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    n = 100
    prior = dist.Normal(torch.zeros(2, dtype=torch.float64), PRIOR_SD).to_event(1)
    theta0 = torch.zeros(2, dtype=torch.float64)
    sampler_options = (
        {"num_chains": 2, "num_samples": 60, "num_warmup": 60}
        if args.smoke
        else {"num_chains": 4, "num_samples": 200, "num_warmup": 150}
    )
    num_bootstrap = 30 if args.smoke else 100

    # Part A: one data set
    data = simulate(n, g)
    t = time.perf_counter()
    gpc = calibrate_learning_rate(
        squared_loss,
        data,
        prior=prior,
        theta_init=theta0,
        method="gpc",
        num_bootstrap=num_bootstrap,
        max_iter=2 if args.smoke else 8,
        beta_init=1.0,  # start from the uncalibrated rate, to show the search
        sampler_options=sampler_options,
        seed=args.seed,
    )
    t_gpc = time.perf_counter() - t
    llb = calibrate_learning_rate(squared_loss, data, prior=prior, theta_init=theta0, method="llb")
    resid = data[1] - gpc.theta_hat[0] - gpc.theta_hat[1] * data[0]
    print(
        f"one data set: w_gpc = {gpc.beta:.3f} (bootstrap coverage {gpc.coverage:.3f} +/- "
        f"{gpc.coverage_stderr:.3f}, {len(gpc.history)} evaluations, {t_gpc:.0f} s), "
        f"w_llb = {llb.beta:.3f}, 1/residual variance = {1 / float(resid.var()):.3f}, "
        f"1/sigma^2 = {1 / SIGMA**2:.3f}"
    )

    # Part B: coverage over independent data sets
    num_sets = 40 if args.smoke else 400
    cover = {"w = 1": [], "llb (per data set)": [], "gpc rate of part A": []}
    w_llb = []
    for _ in range(num_sets):
        dm = simulate(n, g)
        cover["w = 1"].append(region_covers(dm, 1.0, THETA_TRUE))
        wl = calibrate_learning_rate(
            squared_loss, dm, prior=prior, theta_init=theta0, method="llb"
        ).beta
        w_llb.append(wl)
        cover["llb (per data set)"].append(region_covers(dm, wl, THETA_TRUE))
        # the data sets come from one process, so the rate calibrated on one of them applies
        cover["gpc rate of part A"].append(region_covers(dm, gpc.beta, THETA_TRUE))
    coverage = {}
    for k, v in cover.items():
        c = sum(v) / len(v)
        coverage[k] = {
            "coverage": c,
            "stderr": math.sqrt(max(c * (1 - c), 1e-12) / len(v)),
            "num_data_sets": len(v),
        }
    for k, v in coverage.items():
        print(
            f"coverage of the 95% region, {k:18s}: {v['coverage']:.3f} +/- {v['stderr']:.3f} "
            f"over {v['num_data_sets']} data sets"
        )

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    hb = sorted(gpc.history)
    ax.semilogx([h[0] for h in hb], [h[1] for h in hb], "o-", label="bootstrap coverage (gpc)")
    ax.axhline(0.95, color="k", ls="--", lw=1, label="nominal 0.95")
    ax.axvline(1 / SIGMA**2, color="C2", ls=":", label="1 / sigma^2")
    ax.axvline(gpc.beta, color="C0", lw=1, label=f"w_gpc = {gpc.beta:.3f}")
    ax.axvline(llb.beta, color="C1", lw=1, label=f"w_llb = {llb.beta:.3f}")
    ax.set_xlim(0.5 * min(h[0] for h in hb + [(gpc.beta, 0), (llb.beta, 0)]), 1.5)
    ax.set_xlabel("learning rate w")
    ax.set_ylabel("estimated coverage")
    ax.set_title("generalized posterior calibration, one data set")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    names = list(coverage)
    vals = [coverage[k]["coverage"] for k in names]
    errs = [2 * coverage[k]["stderr"] for k in names]
    labels = [k.replace(" (", "\n(").replace(" of ", "\nof ") for k in names]
    ax.bar(labels, vals, yerr=errs, color=["C3", "C1", "C0"], alpha=0.8, capsize=4)
    ax.axhline(0.95, color="k", ls="--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_title(f"coverage of the true (a, b) over {num_sets} data sets (+/- 2 se)")
    fig.tight_layout()
    fig.savefig(out / "coverage.png", dpi=70)
    plt.close(fig)

    result = {
        "noise": f"Student t, {DF:g} degrees of freedom, sd {SIGMA}",
        "n": n,
        "optimal_rate": 1 / SIGMA**2,
        "one_data_set": {
            "gpc_beta": gpc.beta,
            "gpc_coverage": gpc.coverage,
            "gpc_coverage_stderr": gpc.coverage_stderr,
            "gpc_history": gpc.history,
            "gpc_converged": gpc.diagnostics.get("converged"),
            "gpc_wall_time_s": t_gpc,
            "llb_beta": llb.beta,
            "inverse_residual_variance": 1 / float(resid.var()),
        },
        "coverage": coverage,
        "llb_beta_mean": sum(w_llb) / len(w_llb),
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["coverage.png"],
    }
    write_results(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
