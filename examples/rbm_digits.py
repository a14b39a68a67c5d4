"""An RBM trained briefly on binarized digits: AIS log Z against the exact value, samples.

scikit-learn's ``load_digits`` gives 8x8 images with gray levels 0..16; pixels above 8 become
1. A restricted Boltzmann machine with 64 visible and a few hidden units,
E(v, h) = -v'Wh - b'v - c'h, is fitted by contrastive divergence (CD-1). The energy of an
image v is its free energy with h summed out, and

    log Z = log sum_v sum_h exp(-E(v, h))

is exact by enumerating the hidden layer (2^num_hidden states). The script estimates log Z
by annealed importance sampling (``gibbsebm.log_partition(..., method="ais")``, block-Gibbs
transitions from the uniform base), compares it with the exact value, reports the test-set
log-likelihood with both, and draws images from the model by block Gibbs sampling.

Run:  python examples/rbm_digits.py --output-dir out/rbm      (--smoke: a few seconds)
"""

from __future__ import annotations

import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import gibbsebm  # noqa: E402
from gibbsebm import Gibbs  # noqa: E402
from gibbsebm.energies import train_rbm_cd  # noqa: E402


def binarized_digits(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binarized digits split 80/20 into train and test (float64 in {0, 1})."""
    x = torch.as_tensor(load_digits().data > 8.0, dtype=torch.float64)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x = x[perm]
    n_train = int(0.8 * x.shape[0])
    return x[:n_train], x[n_train:]


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "rbm_digits")
    parser.add_argument("--hidden", type=int, default=None, help="hidden units (<= 20)")
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    train, test = binarized_digits(args.seed)
    num_hidden = args.hidden or (8 if args.smoke else 16)
    epochs = 3 if args.smoke else 30

    rbm = train_rbm_cd(train, num_hidden, epochs=epochs, lr=0.05, k=1, batch_size=32, generator=g)
    dist = Gibbs(rbm, beta=1.0)
    exact = float(rbm.exact_log_partition(1.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = gibbsebm.log_partition(
            dist,
            method="ais",
            seed=args.seed,
            progress=False,
            **({"num_chains": 256, "num_steps": 200} if args.smoke else {}),
        )
    lo, hi = est.ci(0.95)
    err = float(est.log_z) - exact
    # average test log-likelihood  -F(v) - log Z  with the exact and the estimated log Z
    free = rbm(test).mean()
    ll_exact = float(-free - exact)
    ll_ais = float(-free - est.log_z)
    print(
        f"RBM 64x{num_hidden}, CD-1 for {epochs} epochs: log Z = {est.log_z:.3f} +/- "
        f"{est.stderr:.3f} (AIS), exact {exact:.3f}, error {err:+.3f} = "
        f"{err / est.stderr:+.1f} stderr; test log-likelihood {ll_exact:.3f} nats per image"
    )

    num_chains = 16
    samples = gibbsebm.sample(
        dist,
        method="block_gibbs",
        num_chains=num_chains,
        num_samples=20 if args.smoke else 100,
        num_warmup=50 if args.smoke else 500,
        seed=args.seed,
        progress=False,
    )
    last = samples.draws[:, -1].reshape(num_chains, 8, 8)
    fig, axes = plt.subplots(2, 16, figsize=(12, 1.9), gridspec_kw={"wspace": 0.05, "hspace": 0.35})
    for i in range(16):
        axes[0, i].imshow(test[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[1, i].imshow(last[i], cmap="gray_r", vmin=0, vmax=1)
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    fig.text(0.12, 0.93, "test images", fontsize=9)
    fig.text(0.12, 0.48, "RBM samples (block Gibbs, last draw of 16 chains)", fontsize=9)
    fig.savefig(out / "rbm_samples.png", dpi=70, bbox_inches="tight")
    plt.close(fig)

    diag = est.diagnostics
    result = {
        "num_visible": 64,
        "num_hidden": num_hidden,
        "epochs": epochs,
        "exact_log_z": exact,
        "ais_log_z": float(est.log_z),
        "ais_stderr": float(est.stderr),
        "ais_ci95": [float(lo), float(hi)],
        "error": err,
        "error_in_stderr": err / float(est.stderr),
        "covered_by_ci95": bool(lo <= exact <= hi),
        "ais_num_energy_evals": int(est.num_energy_evals),
        "ais_ess": float(diag["ess"]) if "ess" in diag else None,
        "ais_kernel": str(diag.get("kernel")),
        "test_log_likelihood_exact": ll_exact,
        "test_log_likelihood_ais": ll_ais,
        "warnings": [str(w.message) for w in caught],
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["rbm_samples.png"],
    }
    write_results(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
