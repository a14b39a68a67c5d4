"""Batched gibbsebm sampling of Pyro models vs Pyro's NUTS: ESS per second, one process.

Models: eight schools (non-centered) and a logistic regression on sklearn's breast cancer data
(standardized features, 30 coefficients + intercept). gibbsebm runs ``hmc`` with many chains
in one tensor through :class:`gibbsebm.interop.pyro.PyroModelPotential`; Pyro runs ``NUTS``
with one chain. ESS is arviz's bulk ESS, the minimum over all scalar parameters; time is
wall-clock including warmup. Writes JSON (``--out``) and prints a table.

Usage: ``python benchmarks/pyro_benchmark.py [--smoke] [--out results/pyro_benchmark.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

import gibbsebm

DT = torch.float64


def eight_schools():
    y = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12], dtype=DT)
    sigma = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=DT)

    def model(sigma, y=None):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=DT), 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(torch.tensor(5.0, dtype=DT)))
        with pyro.plate("J", 8):
            th = pyro.sample("theta_t", dist.Normal(torch.tensor(0.0, dtype=DT), 1.0))
            pyro.sample("obs", dist.Normal(mu + tau * th, sigma), obs=y)

    return model, (sigma,), {"y": y}


def logistic():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    x, y = torch.tensor(x, dtype=DT), torch.tensor(y, dtype=DT)

    def model(x, y):
        b = pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=DT), 2.5))
        w = pyro.sample(
            "w", dist.Normal(torch.zeros(x.shape[1], dtype=DT), 2.5).to_event(1)
        )
        logits = (w * x).sum(-1) + b  # w (C, 1, D) and b (C, 1) when batched on chains
        with pyro.plate("n", x.shape[0]):
            pyro.sample("obs", dist.Bernoulli(logits=logits), obs=y)

    return model, (x, y), {}


def _min_ess(sites: dict) -> float:
    vals = []
    for v in sites.values():
        a = np.asarray(v)
        a = a.reshape(a.shape[0], a.shape[1], -1)
        vals += [float(az.ess(a[..., j], method="bulk")) for j in range(a.shape[-1])]
    return min(vals)


def run(name, make, chains, samples, warmup, nuts_samples, nuts_warmup):
    model, args, kwargs = make()
    t0 = time.perf_counter()
    s = gibbsebm.sample(model, "hmc", model_args=args, model_kwargs=kwargs, num_chains=chains,
                        num_samples=samples, num_warmup=warmup, seed=0, progress=False)  # fmt: skip
    t_g = time.perf_counter() - t0
    ess_g = _min_ess({k: v.numpy() for k, v in s.sites.items()})
    pyro.set_rng_seed(0)
    t0 = time.perf_counter()
    mcmc = MCMC(NUTS(model), num_samples=nuts_samples, warmup_steps=nuts_warmup,
                disable_progbar=True)  # fmt: skip
    mcmc.run(*args, **kwargs)
    t_p = time.perf_counter() - t0
    ess_p = _min_ess({k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()})
    return {
        "model": name,
        "gibbsebm_hmc": {"chains": chains, "draws": samples, "warmup": warmup,
                         "seconds": t_g, "min_bulk_ess": ess_g, "ess_per_s": ess_g / t_g},
        "pyro_nuts": {"chains": 1, "draws": nuts_samples, "warmup": nuts_warmup,
                      "seconds": t_p, "min_bulk_ess": ess_p, "ess_per_s": ess_p / t_p},
        "ratio_ess_per_s": (ess_g / t_g) / (ess_p / t_p),
    }  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.smoke:
        cfg = dict(chains=8, samples=20, warmup=20, nuts_samples=20, nuts_warmup=20)
    else:
        cfg = dict(chains=128, samples=300, warmup=300, nuts_samples=500, nuts_warmup=300)
    rows = [run("eight_schools_noncentered", eight_schools, **cfg),
            run("logistic_breast_cancer", logistic, **cfg)]  # fmt: skip
    out = {"config": cfg, "machine": platform.platform(), "torch_threads": 1,
           "torch": torch.__version__, "pyro": pyro.__version__, "results": rows}  # fmt: skip
    print(f"{'model':28s} {'gibbsebm ESS/s':>15s} {'pyro NUTS ESS/s':>16s} {'ratio':>7s}")
    for r in rows:
        print(f"{r['model']:28s} {r['gibbsebm_hmc']['ess_per_s']:15.1f} "
              f"{r['pyro_nuts']['ess_per_s']:16.1f} {r['ratio_ess_per_s']:7.2f}")  # fmt: skip
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
