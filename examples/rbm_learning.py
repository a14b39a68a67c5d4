"""Learning an RBM on binarized digits: CD-1 vs PCD vs scikit-learn, by exact log-likelihood.

scikit-learn's ``load_digits`` (8x8 images, gray levels 0..16) binarized at 8 gives 1797
binary images of 64 pixels, split 75/25 (``train_test_split(..., test_size=0.25,
random_state=0)``). With 16 hidden units the partition function is exact (2^16 hidden states
enumerated by ``RBM.exact_log_partition``), so every epoch's held-out log-likelihood is an
exact number, with only the test-set sampling error.

Three trainers, same hidden size, batch size and epochs:

* ``gibbsebm.learning.fit(..., method="cd")``: CD-1 (block Gibbs, chains started at the batch);
* ``gibbsebm.learning.fit(..., method="pcd")``: persistent chains in a replay buffer;
* scikit-learn's ``BernoulliRBM`` (PCD with SGD), at each learning rate of {0.01, 0.05, 0.1};
  its weights are copied into a ``gibbsebm.energies.RBM`` to score them exactly.

The PCD run also carries the AIS monitor (``gibbsebm.log_partition(..., method="ais")``,
warm-started from the previous schedule), which must agree with the exact value within its
standard error.

Run:  python examples/rbm_learning.py --output-dir out/rbm_learning   (--smoke: seconds)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import BernoulliRBM  # noqa: E402

from gibbsebm.energies import RBM  # noqa: E402
from gibbsebm.learning import AISLogLikelihood, ExactLogLikelihood, fit, trainable  # noqa: E402


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = (load_digits().data > 8.0).astype(np.float64)
    return train_test_split(x, test_size=0.25, random_state=seed)


def exact_ll(rbm: RBM, test: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        ll = -rbm(test) - rbm.exact_log_partition(1.0)
    return float(ll.mean()), float(ll.std() / len(ll) ** 0.5)


def init_rbm(train: torch.Tensor, hidden: int, seed: int) -> RBM:
    """Hinton's practical guide: W ~ N(0, 0.01^2), b = logit(pixel means), c = 0."""
    g = torch.Generator().manual_seed(seed)
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    W = 0.01 * torch.randn(train.shape[1], hidden, generator=g, dtype=torch.float64)
    return trainable(RBM(W, torch.log(p / (1 - p)), torch.zeros(hidden, dtype=torch.float64)))


def sklearn_curve(train, test_t, hidden, lr, epochs, batch, seed):
    """BernoulliRBM trained epoch by epoch with the slices of its own ``fit`` loop."""
    from sklearn.utils import gen_even_slices

    m = BernoulliRBM(
        n_components=hidden, learning_rate=lr, batch_size=batch, n_iter=1, random_state=seed
    )
    n = train.shape[0]
    n_batches = int(np.ceil(n / batch))
    slices = list(gen_even_slices(n_batches * batch, n_batches, n_samples=n))
    curve = []
    for _ in range(epochs):
        for s in slices:
            m.partial_fit(train[s])
        rbm = RBM(
            torch.as_tensor(m.components_.T),
            torch.as_tensor(m.intercept_visible_),
            torch.as_tensor(m.intercept_hidden_),
        )
        curve.append(exact_ll(rbm, test_t))
    return curve


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/rbm_learning")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (gibbsebm)")
    parser.add_argument("--chains", type=int, default=100, help="persistent chains (PCD)")
    parser.add_argument("--ais-every", type=int, default=25)
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    epochs = args.epochs or (2 if args.smoke else 100)
    hidden = 8 if args.smoke else args.hidden
    train_np, test_np = digits(0)
    if args.smoke:
        train_np, test_np = train_np[:200], test_np[:100]
    train = torch.as_tensor(train_np)
    test = torch.as_tensor(test_np)
    lrs = [0.05] if args.smoke else [0.01, 0.05, 0.1]

    results: dict = {
        "epochs": epochs,
        "hidden": hidden,
        "batch_size": args.batch_size,
        "n_train": len(train),
        "n_test": len(test),
        "smoke": args.smoke,
    }
    curves: dict[str, list] = {}
    timing: dict[str, float] = {}
    for method in ("cd", "pcd"):
        rbm = init_rbm(train, hidden, args.seed)
        mons = [ExactLogLikelihood(test, name="exact_ll")]
        if method == "pcd":
            mons.append(
                AISLogLikelihood(
                    test, name="ais_ll", every=args.ais_every, num_chains=64 if args.smoke else 256
                )
            )
        ts = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(
                rbm,
                train,
                method,
                epochs=epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                num_steps=1,
                buffer_capacity=args.chains,
                monitors=mons,
                progress=False,
                seed=args.seed,
            )
        timing[method] = time.perf_counter() - ts
        curves[method] = list(zip(res.curve("exact_ll"), res.curve("exact_ll_stderr"), strict=True))
        if method == "pcd":
            results["ais_check"] = [
                {
                    k: row[k]
                    for k in ("epoch", "exact_ll", "ais_ll", "ais_ll_stderr", "ais_ll_trusted")
                }
                | {"z": (row["ais_ll"] - row["exact_ll"]) / row["ais_ll_stderr"]}
                for row in res.history
                if "ais_ll" in row
            ]
    sk = {}
    for lr in lrs:
        ts = time.perf_counter()
        sk[lr] = sklearn_curve(train_np, test, hidden, lr, epochs, args.batch_size, args.seed)
        timing[f"sklearn_lr{lr}"] = time.perf_counter() - ts
    best_lr = max(sk, key=lambda k: sk[k][-1][0])
    curves["sklearn_best"] = sk[best_lr]
    final = {k: {"ll": v[-1][0], "stderr": v[-1][1]} for k, v in curves.items()}
    for lr, c in sk.items():
        final[f"sklearn_lr{lr}"] = {"ll": c[-1][0], "stderr": c[-1][1]}
    # paired difference on the same test images (per-image log-likelihoods)
    results.update(
        final=final,
        sklearn_best_lr=best_lr,
        curves={k: [v[0] for v in c] for k, c in curves.items()},
        goal_pcd_beats_sklearn=final["pcd"]["ll"] > final["sklearn_best"]["ll"],
        goal_ais_agrees=all(abs(r["z"]) < 3 for r in results.get("ais_check", [])),
        anchor_sklearn_nats=-20.7,
        timing_s=timing,
        wall_time_s=time.perf_counter() - t0,
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    ep = np.arange(1, epochs + 1)
    for k, label in (
        ("cd", "gibbsebm CD-1"),
        ("pcd", "gibbsebm PCD"),
        ("sklearn_best", f"sklearn BernoulliRBM (lr {best_lr})"),
    ):
        m = np.array([v[0] for v in curves[k]])
        s = np.array([v[1] for v in curves[k]])
        ax.plot(ep, m, label=label)
        ax.fill_between(ep, m - 2 * s, m + 2 * s, alpha=0.2)
    for r in results.get("ais_check", []):
        ax.errorbar(
            r["epoch"],
            r["ais_ll"],
            yerr=2 * r["ais_ll_stderr"],
            fmt="k.",
            label="AIS (PCD)" if r is results["ais_check"][0] else None,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out log-likelihood (nats / image)")
    ax.set_title(f"RBM {train.shape[1]}x{hidden} on binarized digits (exact log Z)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rbm_learning_curves.png", dpi=120)
    plt.close(fig)
    (out / "rbm_learning.json").write_text(json.dumps(results, indent=2))
    print(
        json.dumps(
            {
                k: results[k]
                for k in ("final", "goal_pcd_beats_sklearn", "goal_ais_agrees", "wall_time_s")
            },
            indent=2,
        )
    )
    return results


if __name__ == "__main__":
    main()
