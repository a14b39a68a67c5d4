"""A Bayesian workflow with Pyro and gibbsebm: prior predictive, fit, diagnostics, posterior
predictive, calibration of beta.

A three-class energy-based classifier :math:`E(x, k) = -(x^\\top W + b)_k` on synthetic 2-d
data, written as an ordinary Pyro model, is sampled with gibbsebm's batched ``hmc`` (all
chains in one model call, ``gibbsebm.sample(model, ...)``). The script

1. draws from the prior predictive (``pyro.infer.Predictive``) and reports the spread of
   the class frequencies it implies;
2. fits the posterior with ``gibbsebm.sample(model, "hmc", model_args=..., num_chains=...)``;
3. checks the run (R-hat and bulk ESS from arviz, by site name);
4. runs a posterior predictive check (replicated accuracy against the observed labels);
5. calibrates the inverse temperature of the posterior-mean energies on held-out data with
   ``gibbsebm.calibration.fit_beta`` (beta near 1 means the Bayesian predictive is calibrated).

Run:  python examples/bayesian_workflow.py --output-dir out/workflow   (--smoke: seconds)
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402
from pyro.infer import Predictive  # noqa: E402

import gibbsebm  # noqa: E402
from gibbsebm.calibration import fit_beta  # noqa: E402

DT = torch.float64
K = 3


def make_data(n, generator):
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=DT)
    y = torch.randint(K, (n,), generator=generator)
    x = centers[y] + 1.2 * torch.randn(n, 2, generator=generator, dtype=DT)
    return x, y


# --8<-- [start:model]
def model(x, y=None):
    """Energies E(x, k) = -(x W + b)_k; labels ~ softmax(-E). Vectorizable over chains:
    W (..., 2, 3) and b (..., 3) broadcast on the left, the labels are one event."""
    w = pyro.sample("w", dist.Normal(torch.zeros(2, K, dtype=DT), 1.0).to_event(2))
    b = pyro.sample("b", dist.Normal(torch.zeros(K, dtype=DT), 1.0).to_event(1))
    logits = x @ w + b[..., None, :]  # (..., N, K) = -E(x, k)
    return pyro.sample("y", dist.Categorical(logits=logits).to_event(1), obs=y)
# --8<-- [end:model]


def main(argv=None):
    parser = example_parser(__doc__, "workflow")
    args, out = parse_example_args(parser, argv)
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    n = 60 if args.smoke else 300
    x, y = make_data(n, g)
    x_test, y_test = make_data(n, g)

    # --8<-- [start:prior]
    pyro.set_rng_seed(args.seed)
    prior = Predictive(model, num_samples=100)(x)
    prior_freq = torch.stack([(prior["y"] == k).double().mean(-1) for k in range(K)], -1)
    # --8<-- [end:prior]

    # --8<-- [start:fit]
    s = gibbsebm.sample(
        model, "hmc", model_args=(x, y),
        num_chains=8 if args.smoke else 64,
        num_samples=50 if args.smoke else 500,
        num_warmup=50 if args.smoke else 500,
        seed=args.seed, progress=False,
    )  # fmt: skip
    idata = s.to_inference_data()  # posterior variables "w" and "b"
    # --8<-- [end:fit]

    # --8<-- [start:diagnostics]
    summ = az.summary(idata, var_names=["w", "b"])
    max_rhat, min_ess = float(summ["r_hat"].max()), float(summ["ess_bulk"].min())
    # --8<-- [end:diagnostics]

    # --8<-- [start:ppc]
    flat = {k: v.reshape((-1,) + tuple(v.shape[2:])) for k, v in s.sites.items()}
    rep = Predictive(model, posterior_samples=flat, return_sites=["y"])(x)["y"]  # (S, N)
    rep_acc = (rep == y).double().mean(-1)  # agreement of replicated and observed labels
    # --8<-- [end:ppc]

    # --8<-- [start:calibration]
    w_mean, b_mean = flat["w"].mean(0), flat["b"].mean(0)
    energies = -(x_test @ w_mean + b_mean)  # held-out E(x, k) at the posterior mean
    fit = fit_beta(energies, y_test)
    # --8<-- [end:calibration]

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    axes[0].hist(prior_freq[:, 0].numpy(), bins=20)
    axes[0].set_title("prior predictive: frequency of class 0")
    axes[1].hist(rep_acc.numpy(), bins=20)
    axes[1].set_title("posterior predictive agreement")
    axes[2].hist(flat["b"][:, 0].numpy(), bins=30)
    axes[2].set_title("posterior of b_0")
    fig.tight_layout()
    fig.savefig(out / "bayesian_workflow.png", dpi=80)
    plt.close(fig)

    result = {
        "n": n,
        "prior_class0_freq_mean": float(prior_freq[:, 0].mean()),
        "prior_class0_freq_sd": float(prior_freq[:, 0].std()),
        "max_rhat": max_rhat,
        "min_ess_bulk": min_ess,
        "ppc_agreement_mean": float(rep_acc.mean()),
        "ppc_agreement_sd": float(rep_acc.std()),
        "beta_hat": float(fit.beta),
        "beta_hat_stderr": float(fit.stderr),
        "num_chains": s.draws.shape[0],
        "num_samples": s.draws.shape[1],
        "wall_time_s": time.perf_counter() - t0,
    }
    write_results(out, result)
    for k, v in result.items():
        print(f"{k:24s} {v:.4g}")
    return result


if __name__ == "__main__":
    main()
