"""``gibbsebm sample``: draw from exp(-beta E) with a batched sampler into a run folder."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from .._json import to_jsonable
from ._common import (
    _COMMON_DEFAULTS,
    EXIT_INTERRUPTED,
    UsageError,
    _add_energy_options,
    _add_run_options,
    _check_beta,
    _check_positive,
    _fmt,
    _Formatter,
    _kernel_options,
    _resolve,
    _run_dir,
    _torch_setup,
    write_json,
)
from ._energies import _default_method, _dist_beta, _make_dist, _print_energies
from ._records import plot_samples, summary_records

__all__ = ["add_parser"]

_DEFAULTS: dict[str, Any] = {
    **_COMMON_DEFAULTS,
    "method": None,
    "num_chains": 16,
    "num_samples": 1000,
    "num_warmup": 500,
    "thin": 1,
    "checkpoint_every": 100,
}

_SAMPLE_EPILOG = """\
examples:
  gibbsebm sample --energy gaussian --param dim=10 --method hmc --num-chains 64
  gibbsebm sample --energy ising --param L=8 --beta 0.4407 --method gwg --output-dir runs/ising
  gibbsebm sample --resume --output-dir runs/ising          # continue an interrupted run
  gibbsebm sample --energy mymodels.energies:MyEnergy --param width=32 --event-shape 2
  gibbsebm sample --config run.toml --seed 3                # options from TOML, CLI wins

writes: samples.nc (arviz netCDF), summary.json (with the diagnostics' warnings), config.json,
report.html and report.md (verdict, R-hat/ESS/MCSE table, warnings, trace and rank plots of the
coordinates with the largest R-hat), samples.png, energy_trace.png
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sample`` command to the ``gibbsebm`` subparsers."""
    p = subparsers.add_parser(
        "sample",
        help="draw samples from exp(-beta E) with a batched sampler",
        description="Sample a Gibbs distribution exp(-beta E(y)) / Z with batched chains; "
        "writes arviz netCDF, a JSON summary with diagnostics and plots.",
        epilog=_SAMPLE_EPILOG,
        formatter_class=_Formatter,
    )
    _add_energy_options(p)
    g = p.add_argument_group("sampler")
    g.add_argument(
        "--method",
        help="ula, mala, hmc, nuts, pt, gwg, dmala, metropolis, block_gibbs "
        "(default: per energy, hmc for continuous y, gwg for discrete y)",
    )
    g.add_argument("--num-chains", type=int, help="chains run together (default 16)")
    g.add_argument("--num-samples", type=int, help="draws kept per chain (default 1000)")
    g.add_argument("--num-warmup", type=int, help="warmup/adaptation steps (default 500)")
    g.add_argument("--thin", type=int, help="keep every n-th draw (default 1)")
    g.add_argument("--checkpoint-every", type=int, help="draws between checkpoints (default 100)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --output-dir from its checkpoint",
    )
    _add_run_options(p)
    p.set_defaults(_run=_cmd_sample)
    return p


def _stats_overview(samples: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for key, value in dict(samples.stats).items():
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            continue
        v = value.detach().to("cpu")
        if v.dtype == torch.bool:
            out[f"{key}_count"] = int(v.sum())
        elif v.dtype.is_floating_point:
            out[f"{key}_mean"] = float(v.double().mean())
    return out


def _exact_comparison(dist: Any, samples: Any, summary: list[dict[str, Any]]) -> dict[str, Any]:
    """Posterior means vs. the energy's exact mean, in units of MCSE, where it is known."""
    energy = dist.energy
    if not hasattr(energy, "exact_mean"):
        return {}
    try:
        exact = energy.exact_mean(dist.beta).reshape(-1).cpu().double()
    except (NotImplementedError, ValueError, TypeError, RuntimeError):
        return {}
    draws = samples.draws.detach().cpu().double()
    mean = draws.reshape(draws.shape[0] * draws.shape[1], -1).mean(0)
    mcse = [r.get("mcse_mean") for r in summary]
    if len(mcse) != mean.numel() or any(m is None for m in mcse):
        return {"exact_mean": exact, "sample_mean": mean}
    import torch

    z = (mean - exact) / torch.as_tensor(mcse, dtype=torch.float64).clamp_min(1e-300)
    return {
        "exact_mean": exact,
        "sample_mean": mean,
        "z_mean": z,
        "max_abs_z": float(z.abs().max()),
    }


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    import gibbsebm

    from ..runtime.files import load_json, save_json, symlinks_in

    if args.list_energies:
        _print_energies()
        return 0
    resume = bool(args.resume)
    if resume:
        if not args.output_dir:
            raise UsageError("--resume needs --output-dir, the run folder to continue")
        run = Path(args.output_dir)
        links = symlinks_in(run)
        if links:
            raise UsageError(
                f"cannot resume: {', '.join(links[:3])} is a symbolic link; gibbsebm does not "
                "follow links in a run folder (replace them by the files or start a new run)"
            )
        saved = run / "config.json"
        if not saved.is_file():
            raise UsageError(f"cannot resume: {str(saved)!r} not found (is this a run folder?)")
        try:
            cfg = load_json(saved, kind="cli-config", what="gibbsebm run configuration")
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot resume: {exc}") from None
        if (run / "summary.json").is_file():
            raise UsageError(f"run in {str(run)!r} is already complete (summary.json exists)")
        if not (run / "checkpoint.pt").is_file():
            print(
                f"gibbsebm: no checkpoint in {run} yet (interrupted before the warmup began); "
                "starting the run again from its beginning",
                file=sys.stderr,
            )
        if args.progress is not None:
            cfg["progress"] = args.progress
    else:
        cfg = _resolve("sample", args, _DEFAULTS)
        _check_positive(cfg, "num_chains", "num_samples", "thin", "checkpoint_every")
        if cfg["num_warmup"] is None or int(cfg["num_warmup"]) < 0:
            raise UsageError(f"--num-warmup must be >= 0, got {cfg['num_warmup']!r}")
    beta = None if cfg["beta"] is None else _check_beta(cfg["beta"])
    device, dtype = _torch_setup(cfg)
    dist = _make_dist(cfg, device, dtype, beta)
    beta = _dist_beta(dist, beta)
    method = cfg["method"] or _default_method(cfg["energy"], dist)
    cfg["method"] = method
    options = _kernel_options(cfg)
    # every input is checked before the run folder exists: an unknown method or option is a
    # one-line error, not a folder that a rerun then refuses as not empty
    from ..samplers.registry import get_spec

    get_spec(method, dist, **options)
    if not resume:
        run = _run_dir(cfg, "sample")
        save_json(to_jsonable(cfg), run / "config.json", kind="cli-config")
    print(f"gibbsebm sample: {cfg['energy']} at beta={beta} with {method}; run folder {run}")
    t0 = time.perf_counter()
    try:
        samples = gibbsebm.sample(
            dist,
            method=method,
            num_chains=int(cfg["num_chains"]),
            num_samples=int(cfg["num_samples"]),
            num_warmup=int(cfg["num_warmup"]),
            thin=int(cfg["thin"]),
            seed=int(cfg["seed"]),
            progress=bool(cfg["progress"]) if cfg["progress"] is not None else sys.stderr.isatty(),
            checkpoint=str(run / "checkpoint.pt"),
            checkpoint_every=int(cfg["checkpoint_every"]),
            warn=False,  # the problems are printed and saved below, once
            **options,
        )
    except KeyboardInterrupt:
        print(
            f"gibbsebm: interrupted; the last completed step is in {run / 'checkpoint.pt'}; "
            f"continue with: gibbsebm sample --resume --output-dir {run}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    wall = time.perf_counter() - t0
    idata = samples.to_inference_data()
    idata.to_netcdf(str(run / "samples.nc"))
    records = summary_records(samples)
    rhat = [r.get("r_hat") for r in records if r.get("r_hat") is not None]
    ess = [r.get("ess_bulk") for r in records if r.get("ess_bulk") is not None]
    finite_rhat = [x for x in rhat if math.isfinite(x)]
    finite_ess = [x for x in ess if math.isfinite(x)]
    from ..diagnostics import format_problems

    problems = samples.diagnose()
    result: dict[str, Any] = {
        "command": "sample",
        "energy": cfg["energy"],
        "params": cfg["params"],
        "beta": beta,
        "method": method,
        "num_chains": int(cfg["num_chains"]),
        "num_samples": int(cfg["num_samples"]),
        "num_warmup": int(cfg["num_warmup"]),
        "seed": int(cfg["seed"]),
        "device": str(device),
        "dtype": cfg["dtype"],
        "resumed": resume,
        "wall_time_s": wall,
        "max_r_hat": max(finite_rhat) if finite_rhat else None,
        "min_ess_bulk": min(finite_ess) if finite_ess else None,
        "stats": _stats_overview(samples),
        "exact": _exact_comparison(dist, samples, records),
        "problems": [p.to_dict() for p in problems],
        "warnings": [p.message for p in problems],
        "summary": records,
        "files": ["samples.nc", "summary.json", "config.json", "report.html", "report.md"],
        "versions": {"gibbsebm": gibbsebm.__version__, "torch": torch.__version__},
    }
    plots = bool(cfg.get("plots", True))
    if plots:
        result["files"] += plot_samples(run, samples, dist)
    from ..workflow.run_report import write_run_report

    written = write_run_report(
        run,
        samples,
        records=records,
        problems=problems,
        title=f"gibbsebm sample: {cfg['energy']} with {method}",
        settings={
            "energy": cfg["energy"],
            "params": cfg["params"],
            "beta": beta,
            "method": method,
            "chains x draws": f"{result['num_chains']} x {result['num_samples']}",
            "warmup": result["num_warmup"],
            "seed": result["seed"],
            "wall time": f"{wall:.1f} s",
        },
        plots=plots,
    )
    result["files"] += [f"figures/{k}.png" for k in ("trace", "rank") if k in written]
    write_json(run / "summary.json", result)
    if (run / "checkpoint.pt").exists():
        (run / "checkpoint.pt").unlink()
    print(
        f"  {result['num_chains']} chains x {result['num_samples']} draws in {wall:.1f} s; "
        f"max R-hat {_fmt(result['max_r_hat'])}, min bulk ESS {_fmt(result['min_ess_bulk'])}"
    )
    if problems:
        # the lines of the SamplingWarning gibbsebm.sample would have issued
        print(f"gibbsebm: warning: {format_problems(problems)}", file=sys.stderr)
    print(f"  wrote {run / 'samples.nc'}, {run / 'summary.json'} and {run / 'report.html'}")
    print(run)
    return 0
