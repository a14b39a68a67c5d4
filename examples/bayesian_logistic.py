"""Bayesian logistic regression on breast_cancer: gibbsebm hmc vs Pyro NUTS, and tempering.

The posterior of a logistic regression with a N(0, 1) prior on the 31 coefficients
(intercept + 30 standardized features of scikit-learn's breast_cancer data) is a Gibbs
distribution over theta: its energy is the log loss sum_i l(theta; x_i, y_i), its base
measure the prior, and beta = 1 gives the Bayesian posterior. Other beta give tempered
(generalized-Bayes) posteriors pi(theta) exp(-beta sum_i l): beta < 1 discounts the data,
beta > 1 trusts it more.

The script

1. samples the posterior with gibbsebm's batched ``hmc`` (``gibbsebm.workflow.gibbs_posterior``)
   and with Pyro's NUTS on the same loss written as a Pyro model
   (``gibbsebm.workflow.gibbs_posterior_model``, built on ``gibbsebm.energy_factor``), and puts
   the two arviz summaries side by side, with every posterior mean compared in units of the
   combined Monte Carlo standard error;
2. runs a posterior predictive check with arviz (the number of malignant cases in replicated
   data sets against the observed one);
3. samples the tempered posteriors at beta in {0.25, 1, 4} and shows how the posterior
   standard deviations shrink with beta.

Run:  python examples/bayesian_logistic.py --output-dir out/logistic   (--smoke: seconds)
"""

from __future__ import annotations

import time
import warnings

import matplotlib

matplotlib.use("Agg")
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402
from pyro.infer import MCMC, NUTS  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

import gibbsebm  # noqa: E402
from gibbsebm.workflow import gibbs_posterior, gibbs_posterior_model  # noqa: E402


def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Standardized features with an intercept column, and 0/1 labels (float64)."""
    data = load_breast_cancer()
    x = torch.as_tensor(data.data, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0)
    x = torch.cat([torch.ones(x.shape[0], 1, dtype=torch.float64), x], 1)
    return x, torch.as_tensor(data.target, dtype=torch.float64)


def log_loss(theta: torch.Tensor, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-observation logistic loss, theta (C, d) -> (C, n)."""
    x, y = data
    logits = theta @ x.T
    return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none")


def markdown_table(df) -> str:
    """A pandas DataFrame as a markdown table (3 significant decimals)."""
    cols = ["", *df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, row in df.iterrows():
        lines.append("| " + " | ".join([str(name), *(f"{v:.3f}" for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "bayesian_logistic")
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x, y = load_data()
    data = (x, y)
    d = x.shape[1]
    prior = dist.Normal(torch.zeros(d, dtype=torch.float64), 1.0).to_event(1)
    # pooled adaptation: 32 chains estimate a dense 31 x 31 metric well (8 chains do not)
    num_chains, num_samples, num_warmup = (4, 40, 60) if args.smoke else (32, 300, 400)
    nuts_samples, nuts_warmup = (10, 10) if args.smoke else (100, 100)

    # 1. gibbsebm hmc on the Gibbs posterior, beta = 1
    t = time.perf_counter()
    post = gibbs_posterior(log_loss, data, prior, beta=1.0)
    s = gibbsebm.sample(
        post,
        method="hmc",
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        seed=args.seed,
        progress=False,
        dense_mass=True,  # the posterior is strongly correlated
    )
    t_hmc = time.perf_counter() - t
    sum_hmc = s.summary(round_to="none")

    # ... and Pyro NUTS on the same loss as a Pyro model (energy_factor on pyro.factor)
    t = time.perf_counter()
    pyro.set_rng_seed(args.seed)  # Pyro's NUTS draws from the global RNG
    model = gibbs_posterior_model(log_loss, prior, beta=1.0, name="theta")
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.8),
        num_samples=nuts_samples,
        warmup_steps=nuts_warmup,
        disable_progbar=True,
    )
    mcmc.run(data)
    t_nuts = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata_nuts = az.from_pyro(mcmc)
        sum_nuts = az.summary(idata_nuts, var_names=["theta"], round_to="none")
    m_h, m_n = sum_hmc["mean"].to_numpy(), sum_nuts["mean"].to_numpy()
    se = np.sqrt(sum_hmc["mcse_mean"].to_numpy() ** 2 + sum_nuts["mcse_mean"].to_numpy() ** 2)
    z = (m_h - m_n) / se
    side = sum_hmc[["mean", "sd", "mcse_mean", "ess_bulk", "r_hat"]].add_suffix(" (hmc)")
    side.index = [f"theta[{i}]" for i in range(d)]
    nuts_cols = sum_nuts[["mean", "sd", "mcse_mean", "ess_bulk", "r_hat"]].add_suffix(" (nuts)")
    nuts_cols.index = side.index
    side = side.join(nuts_cols)
    side["z"] = z
    (out / "hmc_vs_nuts.md").write_text(markdown_table(side))
    ess_per_s = {
        "hmc": float(sum_hmc["ess_bulk"].min()) / t_hmc,
        "nuts": float(sum_nuts["ess_bulk"].min()) / t_nuts,
    }
    print(side.round(3).head(8).to_string())
    print(
        f"hmc vs NUTS: max |difference of means| = {np.abs(z).max():.2f} combined MCSE; "
        f"min bulk ESS/s: hmc {ess_per_s['hmc']:.1f}, Pyro NUTS {ess_per_s['nuts']:.2f}"
    )

    # 2. posterior predictive check: number of positives in replicated data sets
    g = torch.Generator().manual_seed(args.seed + 1)
    draws = s.draws.reshape(-1, d)
    probs = torch.sigmoid(draws @ x.T)
    y_rep = torch.bernoulli(probs, generator=g)
    idata = s.to_inference_data()
    ppc = az.from_dict(
        posterior_predictive={"y": y_rep.reshape(num_chains, num_samples, -1).numpy()},
        observed_data={"y": y.numpy()},
    )
    idata.extend(ppc)
    count_rep = y_rep.sum(-1).numpy()
    ppc_p = float((count_rep >= float(y.sum())).mean())
    acc = float(((probs.mean(0) > 0.5).double() == y).double().mean())

    # 3. tempered posteriors
    betas = [1.0, 4.0] if args.smoke else [0.25, 1.0, 4.0]
    tempered = {}
    for beta in betas:
        if beta == 1.0:
            ts = s
        else:
            ts = gibbsebm.sample(
                post.at(beta),
                method="hmc",
                num_chains=num_chains,
                num_samples=num_samples,
                num_warmup=num_warmup,
                seed=args.seed,
                progress=False,
                dense_mass=True,
            )
        summ = ts.summary(round_to="none")
        tempered[beta] = {
            "draws": ts.draws.reshape(-1, d),
            "sd": summ["sd"].to_numpy(),
            "max_r_hat": float(summ["r_hat"].max()),
        }
    sd_ratio = {f"{b}": float(np.median(tempered[b]["sd"] / tempered[1.0]["sd"])) for b in betas}

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.errorbar(range(d), m_h, yerr=2 * sum_hmc["sd"].to_numpy(), fmt="o", ms=3, label="hmc")
    ax.errorbar(
        np.arange(d) + 0.3,
        m_n,
        yerr=2 * sum_nuts["sd"].to_numpy(),
        fmt="s",
        ms=3,
        label="Pyro NUTS",
    )
    ax.set_xlabel("coefficient")
    ax.set_title("posterior mean +/- 2 sd, beta = 1")
    ax.legend(loc="lower left", fontsize=8)
    ax = axes[1]
    edges = np.arange(count_rep.min(), count_rep.max() + 2) - 0.5  # one bin per count
    ax.hist(count_rep, bins=edges, alpha=0.7, label="replicated data sets")
    ax.axvline(float(y.sum()), color="k", lw=2, label="observed")
    ax.set_title(f"posterior predictive: number of benign cases (p = {ppc_p:.2f})")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    j, k = 1, 2
    for i, beta in enumerate(betas):
        dr = tempered[beta]["draws"]
        ax.scatter(dr[:, j], dr[:, k], s=2, alpha=0.3, color=f"C{i}", label=f"beta = {beta:g}")
    ax.set_xlabel(f"theta[{j}]")
    ax.set_ylabel(f"theta[{k}]")
    ax.set_title("tempered posteriors pi(theta) exp(-beta loss)")
    ax.legend(loc="lower right", markerscale=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bayesian_logistic.png", dpi=70)
    plt.close(fig)
    idata.to_netcdf(str(out / "posterior_hmc.nc"))

    result = {
        "num_parameters": d,
        "num_observations": int(x.shape[0]),
        "hmc": {
            "num_chains": num_chains,
            "num_samples": num_samples,
            "num_warmup": num_warmup,
            "wall_time_s": t_hmc,
            "max_r_hat": float(sum_hmc["r_hat"].max()),
            "min_ess_bulk": float(sum_hmc["ess_bulk"].min()),
        },
        "pyro_nuts": {
            "num_chains": 1,
            "num_samples": nuts_samples,
            "num_warmup": nuts_warmup,
            "wall_time_s": t_nuts,
            "min_ess_bulk": float(sum_nuts["ess_bulk"].min()),
        },
        "min_ess_per_second": ess_per_s,
        "mean_difference_in_mcse": z.tolist(),
        "max_abs_mean_difference_in_mcse": float(np.abs(z).max()),
        "fraction_within_3_mcse": float((np.abs(z) < 3).mean()),
        "posterior_predictive_p_value_num_positive": ppc_p,
        "posterior_mean_accuracy": acc,
        "tempered_median_sd_ratio_to_beta_1": sd_ratio,
        "tempered_max_r_hat": {f"{b}": tempered[b]["max_r_hat"] for b in betas},
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["bayesian_logistic.png"],
        "tables": ["hmc_vs_nuts.md"],
    }
    write_results(out, result)
    print(
        f"tempering: median posterior sd relative to beta = 1: {sd_ratio} "
        f"(1/sqrt(beta) = {[round(b**-0.5, 2) for b in betas]} if the data dominated the "
        f"untempered N(0, 1) prior in every direction); wrote {out}"
    )
    return result


if __name__ == "__main__":
    main()
