"""What ``sample`` and ``demo`` both write about a sampling run: summary records and plots.

A lower module of :mod:`gibbsebm.cli`: it imports no command module, so the commands share
it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["summary_records", "plot_samples"]


def summary_records(samples: Any) -> list[dict[str, Any]]:
    """One dict per coordinate: arviz's summary (mean, sd, MCSE, ESS, R-hat), unrounded."""
    import numpy as np

    # a coordinate that never moved has undefined ESS/R-hat: arviz divides by zero and
    # returns inf/NaN, which the JSON records as null (and the summary line as n/a)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = samples.summary(round_to="none")
    df = df.reset_index().rename(columns={"index": "coordinate"})
    return df.to_dict(orient="records")


def plot_samples(run: Path, samples: Any, dist: Any) -> list[str]:
    """Write ``samples.png`` (traces and marginals, or lattice states) and, when the sampler
    recorded an energy, ``energy_trace.png`` into ``run``; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import torch

    files = []
    draws = samples.draws.detach().cpu().double()
    C, D = draws.shape[:2]
    flat = draws.reshape(C, D, -1)
    k = min(flat.shape[-1], 4)
    if dist.is_discrete and draws.dim() == 4:
        # lattice states (e.g. Ising): the last state of a few chains, and the per-site mean
        fig, axes = plt.subplots(1, min(C, 4) + 1, figsize=(3 * (min(C, 4) + 1), 3))
        for i in range(min(C, 4)):
            axes[i].imshow(draws[i, -1].numpy(), cmap="gray", interpolation="nearest")
            axes[i].set_title(f"chain {i}, last draw")
            axes[i].axis("off")
        axes[-1].imshow(draws.mean((0, 1)).numpy(), cmap="coolwarm", interpolation="nearest")
        axes[-1].set_title("mean over draws")
        axes[-1].axis("off")
    else:
        fig, axes = plt.subplots(k, 2, figsize=(9, 2.2 * k), squeeze=False)
        for j in range(k):
            for c in range(min(C, 8)):
                axes[j, 0].plot(flat[c, :, j].numpy(), lw=0.5, alpha=0.7)
            axes[j, 0].set_ylabel(f"y[{j}]")
            axes[j, 1].hist(flat[:, :, j].reshape(-1).numpy(), bins=50, density=True, alpha=0.7)
        axes[0, 0].set_title("trace (up to 8 chains)")
        axes[0, 1].set_title("marginal (all chains)")
    fig.tight_layout()
    fig.savefig(run / "samples.png", dpi=80)
    plt.close(fig)
    files.append("samples.png")
    energy = None
    stats = dict(samples.stats)
    for key in ("energy", "potential_energy"):
        if isinstance(stats.get(key), torch.Tensor) and stats[key].dim() == 2:
            energy = stats[key].detach().cpu().double()
            break
    if energy is not None:
        fig, ax = plt.subplots(figsize=(6, 3))
        for c in range(min(C, 8)):
            ax.plot(energy[c].numpy(), lw=0.5)
        ax.set_xlabel("draw")
        ax.set_ylabel("energy")
        ax.set_title("energy trace (up to 8 chains)")
        fig.tight_layout()
        fig.savefig(run / "energy_trace.png", dpi=80)
        plt.close(fig)
        files.append("energy_trace.png")
    return files
