"""The falling pen: one input, two outcomes, and why regression to the mean fails.

A pen stands on its tip; x in [-1, 1] is how much it leans to the right before it is let go,
y is where its end lands (the pen has length 1, so y is near -1 or +1, never near 0). A
latent angle z in [-pi/2, pi/2] (the direction in which it falls) explains the two outcomes:

    E(x, y, z) = (y - sin z)^2 / (2 s^2) + k cos^2 z - a x sin z,

a term that ties y to the angle plus a latent energy that is low for a fallen pen
(|z| = pi/2) and tilted by the lean x. Summing z out gives the free energy

    F_beta(x, y) = -1/beta log integral exp(-beta E(x, y, z)) dz,

(Gauss-Legendre quadrature over z, ``gibbsebm.free_energy``) and the conditional Gibbs
distribution p_beta(y | x) proportional to exp(-beta F_beta(x, y)). At beta = 1 it is exactly the
distribution the data below are simulated from.

The script fits a least-squares regression of y on x (a cubic), which predicts the
conditional *mean*: for an upright pen (x = 0) it predicts y = 0, a place where the pen never
lands. The energy-based model instead keeps both basins: its zero-temperature prediction
argmin_y F(x, y) is a real outcome, its samples at several beta (parallel tempering through
``gibbsebm.sample``) follow the exact conditional density, and its test log-likelihood is far
better than that of the Gaussian regression model.

Run:  python examples/falling_pen.py --output-dir out/pen      (--smoke: a few seconds)
"""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import example_parser, parse_example_args, write_results  # noqa: E402

import gibbsebm  # noqa: E402
from gibbsebm import Gibbs  # noqa: E402
from gibbsebm.energies import EnergyModel  # noqa: E402
from gibbsebm.latent import BoxLatent, free_energy  # noqa: E402

S = 0.1  # spread of the landing point around sin z
K = 2.0  # how strongly an upright pen (z = 0) is disfavoured
A = 2.0  # how much the lean x tilts the fall
LATENT = BoxLatent(torch.tensor([-math.pi / 2]), torch.tensor([math.pi / 2]), order=96)


def pen_energy(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """E(x, y, z) for x, y, z shaped (M, 1); returns (M,)."""
    sz = torch.sin(z[:, 0])
    return (y[:, 0] - sz) ** 2 / (2 * S**2) + K * torch.cos(z[:, 0]) ** 2 - A * x[:, 0] * sz


class PenAtInput(EnergyModel):
    """F_beta(x, y) for one fixed x, as an energy of y (the sampler's hot path).

    The same Gauss-Legendre rule as ``LATENT``, with nodes computed once (``free_energy``
    builds its rule on every call); the script checks that both agree.
    """

    event_shape = torch.Size([1])

    def __init__(self, x: float, order: int = 96) -> None:
        super().__init__()
        nodes, weights = np.polynomial.legendre.leggauss(order)
        half = math.pi / 2
        self.x = x
        self.register_buffer("z", torch.as_tensor(nodes * half, dtype=torch.float64))
        self.register_buffer("log_w", torch.log(torch.as_tensor(weights * half)))

    def tempered_energy(self, y: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
        n, q = y.shape[0], self.z.shape[0]
        e = pen_energy(
            torch.full((n * q, 1), self.x, dtype=y.dtype),
            y.repeat_interleave(q, 0),
            self.z.repeat(n)[:, None],
        ).reshape(n, q)
        b = torch.as_tensor(beta, dtype=y.dtype).reshape(-1, 1)
        return -torch.logsumexp(-b * e + self.log_w, -1) / b[:, 0]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.tempered_energy(y, 1.0)


def simulate(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) pairs from the generative story: z ~ exp(-(k cos^2 z - a x sin z)), y = sin z + s eps."""
    x = 2 * torch.rand(n, generator=g, dtype=torch.float64) - 1
    grid = torch.linspace(-math.pi / 2, math.pi / 2, 4001, dtype=torch.float64)
    logp = -(K * torch.cos(grid) ** 2)[None, :] + A * x[:, None] * torch.sin(grid)[None, :]
    idx = torch.multinomial(torch.softmax(logp, -1), 1, generator=g)[:, 0]
    y = torch.sin(grid[idx]) + S * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def free_energy_grid(x: float, ys: torch.Tensor, beta: float) -> torch.Tensor:
    xs = torch.full((ys.shape[0], 1), x, dtype=torch.float64)
    return free_energy(pen_energy, ys[:, None], beta, x=xs, latent=LATENT).value


def conditional_density(x: float, ys: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact p_beta(y | x) on a grid of y (normalised by the trapezoid rule)."""
    logp = -beta * free_energy_grid(x, ys, beta)
    p = torch.exp(logp - logp.max())
    return p / torch.trapezoid(p, ys)


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "falling_pen")
    args, out = parse_example_args(parser, argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    n = 200 if args.smoke else 600
    x_train, y_train = simulate(n, g)
    x_test, y_test = simulate(n, g)

    # least-squares cubic regression of y on x: the conditional mean
    def design(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.ones_like(x), x, x**2, x**3], -1)

    coef = torch.linalg.lstsq(design(x_train), y_train[:, None]).solution[:, 0]
    resid = y_train - design(x_train) @ coef
    s2 = float(resid.var())
    pred_test = design(x_test) @ coef
    nll_regression = float(
        (0.5 * math.log(2 * math.pi * s2) + (y_test - pred_test) ** 2 / (2 * s2)).mean()
    )

    # the EBM's exact conditional log-likelihood at beta = 1 (normalised over a y grid)
    ys = torch.linspace(-2.0, 2.0, 801, dtype=torch.float64)
    n_eval = 30 if args.smoke else 200
    m = ys.shape[0]
    xe, ye = x_test[:n_eval], y_test[:n_eval]
    yy = torch.cat([ys.repeat(n_eval), ye])[:, None]  # grids for every point, then the points
    xx = torch.cat([xe.repeat_interleave(m), xe])[:, None]
    f = free_energy(pen_energy, yy, 1.0, x=xx, latent=LATENT).value
    log_z = torch.logsumexp(-f[: n_eval * m].reshape(n_eval, m), -1) + math.log(
        float(ys[1] - ys[0])
    )
    ll = (-f[n_eval * m :] - log_z).tolist()
    nll_ebm = -float(np.mean(ll))
    nll_regression_same = float(
        (
            0.5 * math.log(2 * math.pi * s2)
            + (y_test[:n_eval] - pred_test[:n_eval]) ** 2 / (2 * s2)
        ).mean()
    )

    # predictions for an upright and a leaning pen
    probe = [0.0, 0.3]
    preds = {}
    for xv in probe:
        reg = float(design(torch.tensor([xv], dtype=torch.float64)) @ coef)
        f_inf = free_energy_grid(xv, ys, math.inf)
        dens = conditional_density(xv, ys, 1.0)
        at_reg = float(np.interp(reg, ys.numpy(), dens.numpy()))
        preds[xv] = {
            "regression_prediction": reg,
            "ebm_prediction_argmin_F_inf": float(ys[int(f_inf.argmin())]),
            "density_at_regression_prediction": at_reg,
            "density_at_mode": float(dens.max()),
            "probability_y_within_0.25_of_regression": float(
                torch.trapezoid(dens * ((ys - reg).abs() < 0.25), ys)
            ),
        }

    # the sampler's energy (nodes computed once) equals gibbsebm.free_energy (relative error)
    check = 0.0
    for xv in probe:
        for b in (0.5, 4.0):
            ref = free_energy_grid(xv, ys, b)
            diff = (PenAtInput(xv).tempered_energy(ys[:, None], b) - ref).abs().max()
            check = max(check, float(diff / ref.abs().max().clamp_min(1.0)))
    if check > 1e-8:
        raise SystemExit(f"PenAtInput disagrees with gibbsebm.free_energy by {check:.3g}")

    # samples of p_beta(y | x) at several beta, by parallel tempering
    betas = [0.5, 4.0] if args.smoke else [0.25, 1.0, 4.0]
    num_chains, num_samples, num_warmup = (8, 60, 60) if args.smoke else (16, 400, 300)
    sampled = {}
    for xv in probe:
        for beta in betas:
            # one input at a time (parallel tempering needs an unbatched target), so x is
            # fixed inside the energy E(y, z) = E(x, y, z)
            dist = Gibbs(PenAtInput(xv), beta)
            s = gibbsebm.sample(
                dist,
                method="pt",
                num_chains=num_chains,
                num_samples=num_samples,
                num_warmup=num_warmup,
                seed=args.seed,
                progress=False,
                kernel="mala",
                betas=[beta * f for f in (1.0, 0.5, 0.25, 0.125)],
            )
            draws = s.draws.reshape(-1).numpy()
            dens = conditional_density(xv, ys, beta).numpy()
            right_exact = float(np.trapezoid(dens * (ys.numpy() > 0), ys.numpy()))
            sampled[(xv, beta)] = (draws, dens)
            preds.setdefault(f"samples_x={xv}", {})[f"beta={beta}"] = {
                "fraction_right": float((draws > 0).mean()),
                "exact_fraction_right": right_exact,
            }

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    xg = torch.linspace(-1, 1, 61, dtype=torch.float64)
    yg = torch.linspace(-1.6, 1.6, 81, dtype=torch.float64)
    gx, gy = torch.meshgrid(xg, yg, indexing="xy")  # (len(yg), len(xg))
    fmap = free_energy(
        pen_energy, gy.reshape(-1, 1), 1.0, x=gx.reshape(-1, 1), latent=LATENT
    ).value.reshape(gx.shape)
    fmap = fmap - fmap.min(0, keepdim=True).values
    cs = axes[0].contourf(xg, yg, fmap.clamp(max=12.0), levels=24, cmap="viridis")
    fig.colorbar(cs, ax=axes[0], shrink=0.8)
    axes[0].scatter(x_train, y_train, s=3, c="w", alpha=0.5)
    axes[0].plot(xg, design(xg) @ coef, "r-", lw=2, label="least-squares regression")
    axes[0].set_xlabel("x (lean)")
    axes[0].set_ylabel("y (landing point)")
    axes[0].set_title("free energy F_1(x, y) - min_y F_1, data")
    axes[0].legend(loc="lower right", fontsize=8)
    for ax, xv in zip(axes[1:], probe):
        for i, beta in enumerate(betas):
            draws, dens = sampled[(xv, beta)]
            color = f"C{i}"
            ax.hist(draws, bins=60, range=(-1.6, 1.6), density=True, alpha=0.35, color=color)
            ax.plot(ys, dens, color=color, lw=1.3, label=f"beta = {beta:g}")
        ax.axvline(preds[xv]["regression_prediction"], color="r", ls="--", label="regression")
        ax.set_xlim(-1.6, 1.6)
        ax.set_xlabel("y")
        ax.set_title(f"p_beta(y | x = {xv:g}): samples (pt) and exact")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "falling_pen.png", dpi=70)
    plt.close(fig)

    result = {
        "model": "E(x,y,z) = (y - sin z)^2/(2 s^2) + k cos^2 z - a x sin z",
        "s": S,
        "k": K,
        "a": A,
        "num_train": n,
        "regression_coefficients": coef.tolist(),
        "test_nll_regression": nll_regression,
        "test_nll_regression_same_points": nll_regression_same,
        "test_nll_ebm": nll_ebm,
        "num_test_points_ebm": n_eval,
        "max_abs_difference_sampler_energy_vs_free_energy": check,
        "predictions": {str(k): v for k, v in preds.items()},
        "wall_time_s": time.perf_counter() - t0,
        "figures": ["falling_pen.png"],
    }
    write_results(out, result)
    p0 = preds[0.0]
    print(
        f"upright pen: regression predicts y = {p0['regression_prediction']:+.2f} "
        f"(density {p0['density_at_regression_prediction']:.3g} vs {p0['density_at_mode']:.3g} "
        f"at the mode); EBM argmin_y F = {p0['ebm_prediction_argmin_F_inf']:+.2f}; test NLL "
        f"{nll_ebm:.2f} (EBM) vs {nll_regression_same:.2f} (Gaussian regression); wrote {out}"
    )
    return result


if __name__ == "__main__":
    main()
