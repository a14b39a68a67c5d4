"""Cases whose results are pinned (``tests/data/pinned.json``) so that refactors provably keep
draws and estimates identical for the same seeds.

``python tests/pinned_cases.py`` regenerates the file; run it only when a change of results is
intended, and say so in the commit message.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings

import torch

import gibbsebm
from gibbsebm.energies import RBM, Gaussian
from gibbsebm.energies.ising import Ising2D
from gibbsebm.executors import LocalExecutor

PATH = os.path.join(os.path.dirname(__file__), "data", "pinned.json")


def _targets():
    gauss = gibbsebm.Gibbs(
        Gaussian(torch.tensor([1.0, -2.0]), covariance=torch.tensor([1.0, 4.0])), beta=1.0
    )
    ising = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    g = torch.Generator().manual_seed(3)
    rbm = gibbsebm.Gibbs(
        RBM(
            0.5 * torch.randn(6, 3, generator=g),
            0.1 * torch.randn(6, generator=g),
            0.1 * torch.randn(3, generator=g),
        ),
        beta=1.0,
    )
    return gauss, ising, rbm


def _summ(t: torch.Tensor) -> list[float]:
    t = t.detach().to("cpu", torch.float64)
    return [float(t.sum()), float((t * t).sum()), float(t.reshape(-1)[-1])]


SAMPLE_CASES = [
    # (name, target index, method, options)
    ("hmc", 0, "hmc", {}),
    ("hmc_dense", 0, "hmc", {"dense_mass": True}),
    ("mala", 0, "mala", {}),
    ("ula", 0, "ula", {"step_size": 0.1}),
    ("pt_mala", 0, "pt", {"kernel": "mala"}),
    ("gwg", 1, "gwg", {}),
    ("dmala", 1, "dmala", {}),
    ("metropolis", 1, "metropolis", {}),
    ("block_gibbs", 2, "block_gibbs", {}),
    ("pt_gwg", 1, "pt", {"kernel": "gwg"}),
]

LOGZ_CASES = [
    # (name, target index, method, options, num_shards or None for in-process)
    ("importance", 0, "importance", {"num_samples": 2000}, None),
    ("ais", 0, "ais", {"num_chains": 32, "num_steps": 50}, None),
    ("ais_default", 1, "ais", {}, None),
    ("bdmc", 0, "bdmc", {"num_chains": 32, "num_steps": 50}, None),
    ("ti", 0, "ti", {"num_chains": 16}, None),
    ("bridge", 1, "bridge", {"num_chains": 16}, None),
    ("ais_rbm", 2, "ais", {"num_chains": 32, "num_steps": 60}, None),
    ("importance_k2", 0, "importance", {"num_samples": 2000}, 2),
    ("ais_k1", 0, "ais", {"num_chains": 32, "num_steps": 50}, 1),
    ("ais_k3", 0, "ais", {"num_chains": 32, "num_steps": 50}, 3),
    ("ti_k2", 0, "ti", {"num_chains": 16}, 2),
    ("bridge_k2", 1, "bridge", {"num_chains": 16}, 2),
]


def run_sample_case(name: str) -> dict:
    targets = _targets()
    _, ti, method, opts = next(c for c in SAMPLE_CASES if c[0] == name)
    s = gibbsebm.sample(
        targets[ti],
        method,
        num_chains=4,
        num_samples=30,
        num_warmup=40,
        seed=11,
        progress=False,
        **opts,
    )
    out = {"draws": _summ(s.draws), "logdensity": _summ(s.stats["logdensity"])}
    return out


def run_logz_case(name: str) -> dict:
    targets = _targets()
    _, ti, method, opts, shards = next(c for c in LOGZ_CASES if c[0] == name)
    ex = None if shards is None else LocalExecutor(num_shards=shards)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = gibbsebm.log_partition(
            targets[ti],
            method,
            seed=5,
            progress=False,
            on_untrusted="ignore",
            executor=ex,
            **opts,
        )
    return {"log_z": est.log_z, "stderr": est.stderr, "evals": est.num_energy_evals}


def close(a, b, rtol: float = 1e-9) -> bool:
    """Equal within rounding (the pinned numbers are sums over many float32 values)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) and (math.isnan(a) or math.isinf(a)):
        return str(a) == str(b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


if __name__ == "__main__":
    torch.set_num_threads(1)
    data = {
        "sample": {c[0]: run_sample_case(c[0]) for c in SAMPLE_CASES},
        "log_partition": {c[0]: run_logz_case(c[0]) for c in LOGZ_CASES},
    }
    with open(PATH, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    print(f"wrote {PATH}", file=sys.stderr)
