"""An MLP energy on the 2-D spiral, trained by PCD + SGLD and by denoising score matching.

Points along an Archimedean spiral (the lecture's k-means example) are split into training
and held-out sets. A small MLP energy E(y) is fitted twice with ``gibbsebm.learning.fit``:

* ``method="pcd"``: negatives from a replay buffer (reinitialisation 5%, uniform on the data's
  box) moved by unadjusted Langevin steps (``sampler="ula"``); the step and noise are set
  independently and the effective inverse temperature they imply is reported;
* ``method="dsm"``: denoising score matching at a noise level sigma.

Model samples come from MALA chains (exact for exp(-E) up to the chain's convergence) started
uniformly on the box. The unbiased MMD^2 between model samples and held-out points
(``gibbsebm.learning.mmd``, with its jackknife standard error) is compared with two
references: a Gaussian kernel density estimate of the training points (Scott's bandwidth,
the baseline) and fresh spiral points (the floor: what a perfect model would score).

Run:  python examples/spiral_ebm.py --output-dir out/spiral_ebm   (--smoke: seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gibbsebm.learning import draw_negatives, fit, mmd  # noqa: E402


def spiral(n: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` points along an Archimedean spiral r = t (1.5 turns), with Gaussian noise."""
    t = 1.0 + 3.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / 3.0
    return pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)


class MLPEnergy(torch.nn.Module):
    """E(y) = MLP(y) with smooth (SiLU) activations, so its score is differentiable."""

    def __init__(self, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, 1),
        ).double()
        with torch.no_grad():  # explicit-generator initialisation (no global seeding)
            for p in self.net.parameters():
                bound = 1.0 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.1
                p.uniform_(-bound, bound, generator=generator)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y).squeeze(-1)


def kde_sample(train: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draws from a Gaussian KDE of ``train`` with Scott's bandwidth n^(-1/(d+4)) * std."""
    h = train.shape[0] ** (-1.0 / 6.0) * train.std(0)
    idx = torch.randint(train.shape[0], (n,), generator=generator, device=train.device)
    eps = torch.randn(n, 2, generator=generator, dtype=train.dtype, device=train.device)
    return train[idx] + h * eps


def model_samples(energy, n, box, steps, step_size, generator):
    lo, hi = box
    start = lo + (hi - lo) * torch.rand(
        n, 2, generator=generator, dtype=torch.float64, device=generator.device
    )
    neg = draw_negatives(
        energy,
        start,
        num_steps=steps,
        generator=generator,
        sampler="mala",
        sampler_options={"step_size": step_size},
    )
    return neg.samples, neg.acceptance


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/spiral_ebm")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--noise", type=float, default=0.05, help="spiral noise")
    parser.add_argument("--sgld-step", type=float, default=0.005)
    parser.add_argument("--sgld-noise", type=float, default=0.1)
    parser.add_argument("--sgld-steps", type=int, default=30)
    parser.add_argument("--dsm-sigma", type=float, default=0.05)
    parser.add_argument("--fine-bandwidth", type=float, default=0.2)
    parser.add_argument("--device", default="cpu", help="e.g. cuda (everything follows it)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    n_train, n_held = (256, 200) if args.smoke else (2000, 1000)
    epochs = args.epochs or (2 if args.smoke else 150)
    dev = torch.device(args.device)
    train = spiral(n_train, args.noise, g).to(dev)
    held = spiral(n_held, args.noise, g).to(dev)
    lo, hi = float(train.min()) - 0.3, float(train.max()) + 0.3

    def init_fn(n, gen):
        return lo + (hi - lo) * torch.rand(
            n, 2, generator=gen, dtype=torch.float64, device=gen.device
        )

    eval_steps = 50 if args.smoke else 1000
    results: dict = {"epochs": epochs, "n_train": n_train, "n_heldout": n_held, "smoke": args.smoke}
    energies = {}
    for method in ("pcd", "dsm"):
        energy = MLPEnergy(16 if args.smoke else 64, torch.Generator().manual_seed(args.seed))
        energy = energy.to(dev)
        kw = dict(epochs=epochs, batch_size=128, lr=1e-3, progress=False, seed=args.seed)
        ts = time.perf_counter()
        if method == "pcd":
            res = fit(
                energy,
                train,
                "pcd",
                sampler="ula",
                init_fn=init_fn,
                reinit_prob=0.05,
                num_steps=args.sgld_steps,
                l2_weight=0.1,
                sampler_options={"step_size": args.sgld_step, "noise_scale": args.sgld_noise},
                **kw,
            )
            results["pcd_effective_beta"] = res.history[-1]["effective_beta"]
        else:
            res = fit(energy, train, "dsm", noise_std=args.dsm_sigma, **kw)
        results[f"{method}_train_time_s"] = time.perf_counter() - ts
        results[f"{method}_final_loss"] = res.history[-1]["loss"]
        energies[method] = energy
    gs = torch.Generator(device=dev).manual_seed(args.seed + 1)
    scores = {}
    samples = {}
    for method, energy in energies.items():
        s, acc = model_samples(energy, n_held, (lo, hi), eval_steps, 1e-3, gs)
        samples[method] = s
        results[f"{method}_mala_acceptance"] = acc
    samples["kde"] = kde_sample(train, n_held, gs)
    samples["fresh spiral (floor)"] = spiral(
        n_held, args.noise, torch.Generator().manual_seed(args.seed + 2)
    ).to(dev)
    bw = mmd(held, train).bandwidth  # one bandwidth for every comparison
    fine = {}
    for k, s in samples.items():
        r = mmd(s, held, bw)
        scores[k] = {"mmd2": r.value, "stderr": r.stderr}
        # the median heuristic (~ the spiral's diameter) is blind to the arm width: a
        # bandwidth of the order of the gap between the arms sees the structure
        r = mmd(s, held, args.fine_bandwidth)
        fine[k] = {"mmd2": r.value, "stderr": r.stderr}
    results["mmd_fine_bandwidth"] = args.fine_bandwidth
    results["mmd_fine"] = fine
    results.update(
        mmd_bandwidth=bw,
        mmd=scores,
        goal_pcd_beats_kde=fine["pcd"]["mmd2"] + 2 * fine["pcd"]["stderr"] < fine["kde"]["mmd2"],
        goal_dsm_beats_kde=fine["dsm"]["mmd2"] + 2 * fine["dsm"]["stderr"] < fine["kde"]["mmd2"],
        wall_time_s=time.perf_counter() - t0,
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    grid = torch.linspace(lo, hi, 120, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1).to(dev)
    for ax, method in zip(axes[:2], ("pcd", "dsm"), strict=True):
        with torch.no_grad():
            e = energies[method](pts).reshape(120, 120).cpu()
        ax.contourf(xx, yy, -(e - e.min()), levels=30, cmap="viridis")
        s = samples[method].cpu()
        ax.scatter(s[:, 0], s[:, 1], s=2, c="w", alpha=0.6)
        ax.set_title(
            f"{method.upper()}: -E and MALA samples\nMMD$^2$ = "
            f"{scores[method]['mmd2']:.4f} ± {scores[method]['stderr']:.4f}"
        )
        ax.set_aspect("equal")
    ax = axes[2]
    hc, kc = held.cpu(), samples["kde"].cpu()
    ax.scatter(hc[:, 0], hc[:, 1], s=2, label="held-out")
    ax.scatter(kc[:, 0], kc[:, 1], s=2, alpha=0.5, label="KDE samples")
    ax.set_title(
        f"KDE baseline: MMD$^2$ = {scores['kde']['mmd2']:.4f} ± {scores['kde']['stderr']:.4f}"
    )
    ax.legend(markerscale=4)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "spiral_ebm.png", dpi=110)
    plt.close(fig)
    (out / "spiral_ebm.json").write_text(json.dumps(results, indent=2))
    print(
        json.dumps(
            {
                k: results[k]
                for k in ("mmd", "goal_pcd_beats_kde", "goal_dsm_beats_kde", "wall_time_s")
            },
            indent=2,
        )
    )
    return results


if __name__ == "__main__":
    main()
