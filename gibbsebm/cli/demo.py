"""``gibbsebm demo``: a tour of sampling, log Z and calibration on built-in energies.

Three sections, each written into a subfolder of the run folder:

1. ``sampling/``: a correlated, ill-conditioned Gaussian sampled with batched ``hmc``; the
   arviz summary (mean, sd, MCSE, ESS, R-hat) and every mean and variance compared with the
   exact ones in units of their Monte Carlo standard error; arviz netCDF and a trace plot.
2. ``logz/``: :math:`\\log Z` of the 2-D Ising model at the critical coupling
   :math:`\\beta_c = \\tfrac12 \\log(1 + \\sqrt 2)` by annealed importance sampling, with its
   standard error, against Kaufman's exact value.
3. ``calibration/``: an over-confident energy-based classifier (its energies are those of
   the true model times 3, so its best inverse temperature is 1/3): a calibration report
   with the temperature fitted on held-out data.

``demo.json`` holds every number and ``README.md`` says what was done. Torch and the rest of
the library are imported inside the functions, so ``gibbsebm demo --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._common import _Formatter, _run_dir, write_json
from ._records import plot_samples, summary_records

if TYPE_CHECKING:
    import torch

__all__ = ["run_demo", "BETA_C", "synthetic_classifier", "add_parser"]

#: Critical inverse temperature of the square-lattice Ising model, log(1 + sqrt 2) / 2
#: (Kramers & Wannier 1941; Onsager 1944).
BETA_C = 0.5 * math.log1p(math.sqrt(2.0))


def _say(out: TextIO | None, text: str) -> None:
    if out is not None:
        print(text, file=out, flush=True)


def _gaussian_target(dim: int) -> Any:
    """A correlated Gaussian with standard deviations log-spaced over two decades."""
    import torch

    from ..energies import Gaussian

    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    sd = torch.logspace(-1, 1, dim, dtype=torch.float64)
    cov = q @ torch.diag(sd**2) @ q.T
    mean = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64)
    return Gaussian(mean.float(), covariance=0.5 * (cov + cov.T))


def demo_sampling(
    run: Path, *, seed: int, quick: bool, progress: bool, out: TextIO | None
) -> dict[str, Any]:
    """Section 1: batched HMC on an ill-conditioned Gaussian against its exact moments."""
    import torch

    import gibbsebm
    from gibbsebm import Gibbs

    run.mkdir(parents=True, exist_ok=True)
    dim = 5
    energy = _gaussian_target(dim)
    dist = Gibbs(energy, beta=1.0)
    num_chains, num_samples, num_warmup = (8, 200, 300) if quick else (16, 500, 400)
    t0 = time.perf_counter()
    samples = gibbsebm.sample(
        dist,
        method="hmc",
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        seed=seed,
        progress=progress,
        dense_mass=True,  # the target is rotated: a diagonal metric cannot precondition it
    )
    wall = time.perf_counter() - t0
    samples.to_inference_data().to_netcdf(str(run / "samples.nc"))
    records = summary_records(samples)
    draws = samples.draws.detach().double().reshape(-1, dim)
    exact_mean = energy.exact_mean().cpu()
    exact_var = torch.diagonal(energy.exact_covariance()).cpu()
    mean = draws.mean(0).cpu()
    mcse = torch.tensor([r["mcse_mean"] for r in records], dtype=torch.float64)
    z_mean = (mean - exact_mean) / mcse
    # variance = sd^2, so its MCSE is 2 sd MCSE(sd) (delta method; arviz gives MCSE(sd))
    sd = torch.tensor([r["sd"] for r in records], dtype=torch.float64)
    mcse_sd = torch.tensor([r["mcse_sd"] for r in records], dtype=torch.float64)
    var = ((draws - mean) ** 2).mean(0)
    mcse_var = 2.0 * sd * mcse_sd
    z_var = (var - exact_var) / mcse_var
    figures = plot_samples(run, samples, dist)
    result = {
        "target": f"{dim}-D Gaussian, standard deviations log-spaced from 0.1 to 10, rotated",
        "method": "hmc (dense mass matrix)",
        "num_chains": num_chains,
        "num_samples": num_samples,
        "num_warmup": num_warmup,
        "wall_time_s": wall,
        "summary": records,
        "exact_mean": exact_mean.tolist(),
        "exact_variance": exact_var.tolist(),
        "z_mean": z_mean.tolist(),
        "z_variance": z_var.tolist(),
        "max_abs_z": float(torch.cat([z_mean, z_var]).abs().max()),
        "max_r_hat": max(r["r_hat"] for r in records),
        "min_ess_bulk": min(r["ess_bulk"] for r in records),
        "files": ["samples.nc", *figures],
    }
    _say(out, f"1. sampling: {dim}-D ill-conditioned Gaussian, hmc, {num_chains} chains")
    _say(out, samples.summary().round(3).to_string())
    _say(
        out,
        f"   means and variances vs exact: max |error|/MCSE = {result['max_abs_z']:.2f}; "
        f"max R-hat {result['max_r_hat']:.3f}, min bulk ESS {result['min_ess_bulk']:.0f} "
        f"({wall:.1f} s)",
    )
    return result


def demo_logz(
    run: Path, *, seed: int, quick: bool, progress: bool, out: TextIO | None
) -> dict[str, Any]:
    """Section 2: AIS estimate of the Ising log Z at the critical point vs Kaufman's formula."""
    import gibbsebm
    from gibbsebm import Gibbs
    from gibbsebm.energies import Ising2D

    run.mkdir(parents=True, exist_ok=True)
    L = 4 if quick else 8
    dist = Gibbs(Ising2D(L), beta=BETA_C)
    exact = float(dist.log_partition())
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = gibbsebm.log_partition(dist, method="ais", seed=seed, progress=progress)
    wall = time.perf_counter() - t0
    lo, hi = est.ci(0.95)
    err = float(est.log_z) - exact
    result = {
        "target": f"Ising2D L={L} on a torus at beta_c = {BETA_C:.6f}",
        "method": est.method,
        "log_z": float(est.log_z),
        "stderr": float(est.stderr),
        "ci95": [float(lo), float(hi)],
        "exact_log_z": exact,
        "error": err,
        "error_in_stderr": err / float(est.stderr) if est.stderr > 0 else None,
        "covered_by_ci95": bool(lo <= exact <= hi),
        "num_energy_evals": int(est.num_energy_evals),
        "wall_time_s": wall,
        "warnings": [str(w.message) for w in caught],
    }
    write_json(run / "logz.json", result)
    _say(out, f"2. log Z: Ising {L}x{L} at beta_c = {BETA_C:.4f}, annealed importance sampling")
    _say(
        out,
        f"   log Z = {result['log_z']:.4f} +/- {result['stderr']:.4f} (95% CI "
        f"[{lo:.4f}, {hi:.4f}]); exact (Kaufman) {exact:.4f}; error {err:+.4f} "
        f"({wall:.1f} s)",
    )
    for w in result["warnings"]:
        _say(out, f"   warning: {w}")
    return result


def synthetic_classifier(
    num: int, num_classes: int, *, overconfidence: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies of a mis-calibrated classifier and labels drawn from the true model.

    True model: :math:`p(y \\mid x) = \\mathrm{softmax}(-E(x, \\cdot))` with Gaussian energies
    :math:`E(x, k) \\sim \\mathcal N(0, 2^2)`; the classifier reports ``overconfidence * E``,
    so its best inverse temperature is ``1 / overconfidence``.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    e_true = 2.0 * torch.randn(num, num_classes, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(-e_true, -1), 1, generator=g).squeeze(-1)
    return overconfidence * e_true, labels


def demo_calibration(run: Path, *, seed: int, quick: bool, out: TextIO | None) -> dict[str, Any]:
    """Section 3: a calibration report for an over-confident classifier."""
    from gibbsebm import calibration

    n = 1000 if quick else 2000
    fit_e, fit_y = synthetic_classifier(n, 5, overconfidence=3.0, seed=seed + 1)
    test_e, test_y = synthetic_classifier(n, 5, overconfidence=3.0, seed=seed + 2)
    t0 = time.perf_counter()
    calibration.report(test_e, test_y, output_dir=run, fit_energies=fit_e, fit_labels=fit_y)
    wall = time.perf_counter() - t0
    data = json.loads((run / "report.json").read_text())
    system = next(iter(data["systems"].values()))
    fit = system["beta_fit"]
    metrics = {
        when: {k: system[when][k] for k in ("ece", "nll") if k in system[when]}
        for when in ("before", "after")
    }
    result = {
        "data": f"synthetic 5-class classifier, energies 3x those of the true model, {n} "
        f"held-out points to fit beta on, {n} test points",
        "expected_beta": 1.0 / 3.0,
        "fitted_beta": fit["beta"],
        "fitted_beta_stderr": fit["stderr"],
        "metrics": metrics,
        "files": sorted(p.name for p in run.iterdir()),
        "wall_time_s": wall,
    }
    _say(out, "3. calibration: over-confident classifier (its best beta is 1/3)")
    _say(out, f"   fitted beta = {fit['beta']:.3f} +/- {fit['stderr']:.3f}")
    for name in ("ece", "nll"):
        if name in metrics["before"] and name in metrics["after"]:
            b0, b1 = metrics["before"][name], metrics["after"][name]
            _say(
                out,
                f"   {name.upper()}: {b0['value']:.3f} [{b0['ci_low']:.3f}, {b0['ci_high']:.3f}] "
                f"before, {b1['value']:.3f} [{b1['ci_low']:.3f}, {b1['ci_high']:.3f}] after",
            )
    _say(out, f"   report: {run / 'report.html'} ({wall:.1f} s)")
    return result


def run_demo(
    run_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = False,
    out: TextIO | None = sys.stdout,
) -> dict[str, Any]:
    """Run the tour and write it into ``run_dir``.

    Parameters
    ----------
    run_dir : str or Path
        Run folder (created if needed).
    seed : int
        Seed of every random step.
    quick : bool
        Smaller runs (for tests; a few seconds).
    progress : bool
        Show progress bars.
    out : text stream or None
        Where the running commentary goes.

    Returns
    -------
    dict
        Every number of the tour (also written to ``demo.json``).

    Examples
    --------
    >>> from gibbsebm.cli.demo import run_demo
    >>> result = run_demo("runs/tour", quick=True)  # doctest: +SKIP
    """
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"seed": seed, "quick": quick}
    result["sampling"] = demo_sampling(
        run / "sampling", seed=seed, quick=quick, progress=progress, out=out
    )
    result["logz"] = demo_logz(run / "logz", seed=seed, quick=quick, progress=progress, out=out)
    result["calibration"] = demo_calibration(run / "calibration", seed=seed, quick=quick, out=out)
    result["wall_time_s"] = time.perf_counter() - t0
    write_json(run / "demo.json", result)
    (run / "README.md").write_text(_readme(result))
    _say(out, f"done in {result['wall_time_s']:.1f} s; everything is in {run}")
    return result


def _readme(r: dict[str, Any]) -> str:
    s, z, c = r["sampling"], r["logz"], r["calibration"]
    lines = [
        "# gibbsebm demo",
        "",
        "## 1. Sampling (`sampling/`)",
        f"{s['target']}; `{s['method']}` with {s['num_chains']} chains x {s['num_samples']} "
        f"draws after {s['num_warmup']} warmup steps ({s['wall_time_s']:.1f} s).",
        f"Largest |error| of a mean or variance: {s['max_abs_z']:.2f} Monte Carlo standard "
        f"errors; max R-hat {s['max_r_hat']:.3f}; min bulk ESS {s['min_ess_bulk']:.0f}.",
        "Draws: `sampling/samples.nc` (arviz: `az.from_netcdf`). Plot: `sampling/samples.png`.",
        "",
        "## 2. Partition function (`logz/`)",
        f"{z['target']}; `{z['method']}`: log Z = {z['log_z']:.4f} +/- {z['stderr']:.4f}; "
        f"exact {z['exact_log_z']:.4f} (error {z['error']:+.4f}, "
        f"{'inside' if z['covered_by_ci95'] else 'outside'} the 95% interval).",
        "",
        "## 3. Calibration (`calibration/`)",
        f"{c['data']}.",
        f"Fitted beta {c['fitted_beta']:.3f} +/- {c['fitted_beta_stderr']:.3f} (expected 1/3).",
        "Report: `calibration/report.html` (also `report.md`, `report.json`).",
        "",
    ]
    return "\n".join(lines)


_DEMO_EPILOG = """\
example:
  gibbsebm demo                       # about a minute on 2 CPU cores
  gibbsebm demo --quick --output-dir runs/tour

writes into the run folder: samples (arviz netCDF + summary), log Z estimate vs exact,
a calibration report (HTML, JSON, Markdown), figures, and demo.json/README.md.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` command to the ``gibbsebm`` subparsers."""
    p = subparsers.add_parser(
        "demo",
        help="a tour on built-in energies, written to a run folder",
        description="A tour: samples with diagnostics, a log Z with error bar against the exact "
        "value, and a calibration report, written to a run folder whose path is printed.",
        epilog=_DEMO_EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("--output-dir", metavar="DIR", help="run folder (default runs/demo-<time>)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true", help="smaller runs (a few seconds)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="progress bars (default off)",
    )
    p.set_defaults(_run=_cmd_demo)
    return p


def _cmd_demo(args: argparse.Namespace) -> int:
    run = _run_dir({"output_dir": args.output_dir}, "demo")
    run_demo(run, seed=args.seed, quick=args.quick, progress=args.progress, out=sys.stdout)
    print(run)
    return 0
