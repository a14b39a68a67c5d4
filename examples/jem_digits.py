"""A JEM-style classifier on digits: cross-entropy plus PCD on the marginal energy.

Joint energy models (Grathwohl et al. 2020) read a classifier's logits f(x)_k as negative
energies, E(x, k) = -f(x)_k, so that the inputs get a marginal energy
E(x) = -logsumexp_k f(x)_k (the free energy). The JEM network is trained with
cross-entropy on the labels *plus* persistent contrastive divergence on E(x): negatives from
a replay buffer (10% reinitialisation, uniform on [-1, 1]^64) moved by SGLD steps with
decoupled step and noise (their effective inverse temperature is reported). The same
network trained with cross-entropy only is the baseline.

The report (``gibbsebm.calibration``): accuracy, ECE (15 bins) and NLL on the test split
with 95% bootstrap intervals, and out-of-distribution detection by the free energy
(AUROC with its DeLong standard error) against uniform-noise images and pixel-shuffled
digits.

Run:  python examples/jem_digits.py --output-dir out/jem_digits   (--smoke: seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from gibbsebm.calibration import (  # noqa: E402
    auroc,
    expected_calibration_error,
    free_energy_score,
    negative_log_likelihood,
)
from gibbsebm.learning import NonFiniteLossError, fit  # noqa: E402


class Classifier(torch.nn.Module):
    def __init__(self, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, 10),
        )
        with torch.no_grad():  # explicit-generator initialisation
            for p in self.net.parameters():
                bound = 1.0 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.05
                p.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MarginalEnergy(torch.nn.Module):
    """E(x) = -logsumexp_k f(x)_k: the free energy of the classifier's label energies."""

    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.clf(x), -1)


def train_ce(clf, x, y, epochs, batch, lr, seed):
    """Cross-entropy only, with the same optimizer, batches and shuffling generator."""
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    g = torch.Generator(device=x.device).manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g, device=x.device)
        for s in range(0, len(x), batch):
            idx = perm[s : s + batch]
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def report(clf, x_test, y_test, ood: dict, seed: int) -> dict:
    with torch.no_grad():
        logits = clf(x_test).double().cpu()
        probs = torch.softmax(logits, -1)
        f_in = free_energy_score(-logits)
    y_test = y_test.cpu()
    ece = expected_calibration_error(probs, y_test, n_bootstrap=500, seed=seed)
    nll = negative_log_likelihood(probs, y_test, n_bootstrap=500, seed=seed)
    out = {
        "accuracy": float((probs.argmax(-1) == y_test).double().mean()),
        "ece": {"value": ece.value, "ci": [ece.ci_low, ece.ci_high], "stderr": ece.stderr},
        "nll": {"value": nll.value, "ci": [nll.ci_low, nll.ci_high], "stderr": nll.stderr},
        "ood_auroc": {},
    }
    for name, x_ood in ood.items():
        with torch.no_grad():
            f_out = free_energy_score(-clf(x_ood).double().cpu())
        scores = torch.cat([-f_in, -f_out])  # low free energy = in distribution
        pos = torch.cat(
            [torch.ones(len(f_in), dtype=torch.bool), torch.zeros(len(f_out), dtype=torch.bool)]
        )
        a = auroc(scores, pos)
        out["ood_auroc"][name] = {"value": a.value, "stderr": a.stderr, "ci": [a.ci_low, a.ci_high]}
    out["_free_energy_in"] = f_in.tolist()
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/jem_digits")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--sgld-steps", type=int, default=20)
    parser.add_argument("--sgld-step", type=float, default=1.0)
    parser.add_argument("--sgld-noise", type=float, default=0.01)
    parser.add_argument("--device", default="cpu", help="e.g. cuda (everything follows it)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    d = load_digits()
    x = (d.data / 8.0 - 1.0).astype(np.float32)  # [-1, 1]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, d.target, test_size=0.25, random_state=0, stratify=d.target
    )
    if args.smoke:
        x_tr, y_tr, x_te, y_te = x_tr[:256], y_tr[:256], x_te[:128], y_te[:128]
    dev = torch.device(args.device)
    x_tr, x_te = torch.as_tensor(x_tr, device=dev), torch.as_tensor(x_te, device=dev)
    y_tr, y_te = torch.as_tensor(y_tr, device=dev), torch.as_tensor(y_te, device=dev)
    epochs = args.epochs or (1 if args.smoke else 40)
    width = 32 if args.smoke else 128
    batch, lr = 64, 1e-3
    g = torch.Generator().manual_seed(args.seed + 7)
    ood = {
        "uniform noise": (2 * torch.rand(len(x_te), 64, generator=g) - 1).to(dev),
        "shuffled pixels": x_te[:, torch.randperm(64, generator=g).to(dev)],
    }

    base = Classifier(width, torch.Generator().manual_seed(args.seed)).to(dev)
    ts = time.perf_counter()
    train_ce(base, x_tr, y_tr, epochs, batch, lr, args.seed)
    t_base = time.perf_counter() - ts

    jem = Classifier(width, torch.Generator().manual_seed(args.seed)).to(dev)
    energy = MarginalEnergy(jem)

    def ce(xb, idx):
        return F.cross_entropy(jem(xb), y_tr[idx])

    def init_fn(n, gen):
        return 2 * torch.rand(n, 64, generator=gen, device=gen.device) - 1

    ts = time.perf_counter()
    status = "ok"
    try:
        res = fit(
            energy,
            x_tr,
            "pcd",
            epochs=epochs,
            batch_size=batch,
            lr=lr,
            sampler="ula",
            sampler_options={"step_size": args.sgld_step, "noise_scale": args.sgld_noise},
            num_steps=3 if args.smoke else args.sgld_steps,
            init_fn=init_fn,
            reinit_prob=0.1,
            l2_weight=0.1,
            extra_loss=ce,
            progress=False,
            seed=args.seed,
        )
        eff_beta = res.history[-1]["effective_beta"]
        jem_losses = res.curve("loss")
    except NonFiniteLossError as exc:  # JEM training is known to diverge (Grathwohl 2020)
        status = f"diverged: {exc}"
        eff_beta, jem_losses = float("nan"), []
    t_jem = time.perf_counter() - ts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = {
            "cross-entropy only": report(base, x_te, y_te, ood, args.seed),
            "JEM (CE + PCD)": report(jem, x_te, y_te, ood, args.seed),
        }
    results = {
        "epochs": epochs,
        "n_train": len(x_tr),
        "n_test": len(x_te),
        "smoke": args.smoke,
        "jem_status": status,
        "sgld_effective_beta": eff_beta,
        "train_time_s": {"ce": t_base, "jem": t_jem},
        "jem_loss_curve": jem_losses,
        "report": {
            k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in rep.items()
        },
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = list(rep)
    for i, key in enumerate(("ece", "nll")):
        vals = [rep[n][key]["value"] for n in names]
        lo = [rep[n][key]["value"] - rep[n][key]["ci"][0] for n in names]
        hi = [rep[n][key]["ci"][1] - rep[n][key]["value"] for n in names]
        axes[0].errorbar(np.arange(2) + 0.1 * i, vals, yerr=[lo, hi], fmt="o", label=key.upper())
    axes[0].set_xticks(range(2), names)
    axes[0].set_title("test ECE and NLL (95% bootstrap CI)")
    axes[0].legend()
    for n in names:
        axes[1].hist(rep[n]["_free_energy_in"], bins=30, alpha=0.5, label=f"{n}: test digits")
    axes[1].set_xlabel("free energy F(x) = -logsumexp f(x)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "jem_digits.png", dpi=110)
    plt.close(fig)
    results["wall_time_s"] = time.perf_counter() - t0
    (out / "jem_digits.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results["report"], indent=2))
    return results


if __name__ == "__main__":
    main()
