"""``gibbsebm logz``: log Z(beta) with an error bar, or a curve over a beta ladder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._common import (
    _COMMON_DEFAULTS,
    UsageError,
    _add_energy_options,
    _add_run_options,
    _check_beta,
    _fmt,
    _Formatter,
    _kernel_options,
    _parse_value,
    _resolve,
    _run_dir,
    _torch_setup,
    write_json,
)
from ._energies import _dist_beta, _make_dist, _print_energies

__all__ = ["add_parser"]

_DEFAULTS: dict[str, Any] = {**_COMMON_DEFAULTS, "method": "ais", "betas": None, "level": 0.95}

_LOGZ_EPILOG = """\
examples:
  gibbsebm logz --energy ising --param L=8 --beta 0.4407 --method ais
  gibbsebm logz --energy gaussian --param dim=10 --method importance --option num_samples=20000
  gibbsebm logz --energy ising --param L=6 --betas 0.1:0.8:8      # a curve, by AIS

writes: logz.json (estimate, stderr, CI, exact value and error when known), logz_curve.png
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``logz`` command to the ``gibbsebm`` subparsers."""
    p = subparsers.add_parser(
        "logz",
        help="estimate log Z(beta) with an error bar",
        description="Estimate the log partition function log Z(beta) with a standard error "
        "(or a curve over a beta ladder with mean energy and heat capacity); compares with the "
        "exact value when the energy has one.",
        epilog=_LOGZ_EPILOG,
        formatter_class=_Formatter,
    )
    _add_energy_options(p)
    g = p.add_argument_group("estimator")
    g.add_argument("--method", help="exact, importance, ais, bdmc, ti, bridge (default ais)")
    g.add_argument(
        "--betas",
        metavar="LIST",
        help="a curve over betas: 0.1,0.2,0.4 or START:STOP:COUNT",
    )
    g.add_argument("--level", type=float, help="confidence level of the interval (default 0.95)")
    _add_run_options(p)
    p.set_defaults(_run=_cmd_logz)
    return p


def _parse_betas(text: Any) -> list[float]:
    """``"0.1,0.2,0.5"`` or ``"0.1:1.0:10"`` (start:stop:count, linear) -> list of betas."""
    if isinstance(text, list | tuple):
        vals = [_check_beta(v, "--betas") for v in text]
    else:
        s = str(text)
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 3:
                raise UsageError(f"--betas range must be START:STOP:COUNT, got {s!r}")
            lo, hi = _check_beta(parts[0], "--betas"), _check_beta(parts[1], "--betas")
            n = _parse_value(parts[2], int, "--betas COUNT")
            if n < 2:
                raise UsageError("--betas COUNT must be >= 2")
            vals = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        else:
            vals = [_check_beta(v, "--betas") for v in s.split(",") if v.strip()]
    if not vals:
        raise UsageError("--betas is empty")
    return vals


def _estimate_record(est: Any, level: float) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "method": getattr(est, "method", None),
        "log_z": getattr(est, "log_z", None),
        "stderr": getattr(est, "stderr", None),
        "num_energy_evals": getattr(est, "num_energy_evals", None),
    }
    try:
        lo, hi = est.ci(level)
        rec["ci"] = [lo, hi]
        rec["ci_level"] = level
    except (AttributeError, TypeError, ValueError):
        pass
    for k in ("lower", "upper"):
        if getattr(est, k, None) is not None:
            rec[k] = getattr(est, k)
    diag = getattr(est, "diagnostics", None)
    if isinstance(diag, dict):
        rec["diagnostics"] = {
            k: v for k, v in diag.items() if not hasattr(v, "numel") or v.numel() <= 64
        }
    return rec


def _exact_log_z(dist: Any, beta: float | None = None) -> float | None:
    """The exact log Z where one is known (float64 at the exact ``beta``), else ``None``."""
    import torch

    energy = dist.energy
    plain = dist.base is None and dist.x is None and dist.latent is None
    if plain and getattr(energy, "has_exact_log_partition", False) and beta is not None:
        return float(energy.exact_log_partition(torch.tensor(beta, dtype=torch.float64)))
    try:
        if dist.normalized:
            return float(dist.log_partition().reshape(-1)[0].double())
    except (ValueError, NotImplementedError, RuntimeError):
        return None
    return None


def _cmd_logz(args: argparse.Namespace) -> int:
    import warnings

    import gibbsebm

    if args.list_energies:
        _print_energies()
        return 0
    cfg = _resolve("logz", args, _DEFAULTS)
    beta = None if cfg["beta"] is None else _check_beta(cfg["beta"])
    level = float(cfg["level"])
    if not 0 < level < 1:
        raise UsageError(f"--level must lie in (0, 1), got {level}")
    device, dtype = _torch_setup(cfg)
    dist = _make_dist(cfg, device, dtype, beta)
    beta = _dist_beta(dist, beta)
    options = _kernel_options(cfg)
    run = _run_dir(cfg, "logz")
    write_json(run / "config.json", cfg)
    method = cfg["method"]
    progress = bool(cfg["progress"]) if cfg["progress"] is not None else sys.stderr.isatty()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cfg["betas"] is None:
            print(f"gibbsebm logz: {cfg['energy']} at beta={beta} with {method}; run folder {run}")
            est = gibbsebm.log_partition(
                dist, method=method, seed=int(cfg["seed"]), progress=progress, **options
            )
            rec = _estimate_record(est, level)
            exact = _exact_log_z(dist, beta)
            rec.update(_versus_exact(rec, exact))
            result = {"command": "logz", "energy": cfg["energy"], "params": cfg["params"]}
            result.update({"beta": beta, "estimate": rec, "files": ["logz.json", "config.json"]})
            line = f"  log Z = {rec['log_z']:.6g} +/- {_fmt(rec['stderr'])} ({method})"
            if exact is not None:
                line += f"; exact {exact:.6g}, error {rec['error']:.3g} = {_fmt(rec['z'])} stderr"
        else:
            betas = _parse_betas(cfg["betas"])
            print(f"gibbsebm logz: {cfg['energy']} over {len(betas)} betas; run folder {run}")
            if method != "ais":
                raise UsageError(
                    f"--betas estimates a curve by annealed importance sampling; drop --method "
                    f"{method} (or use --beta for one value)"
                )
            curve = gibbsebm.log_partition_curve(
                dist, betas, seed=int(cfg["seed"]), progress=progress, **options
            )
            result = {"command": "logz", "energy": cfg["energy"], "params": cfg["params"]}
            result.update(_curve_record(curve, dist, betas))
            result["files"] = ["logz.json", "config.json"]
            if cfg.get("plots", True):
                result["files"].append(_plot_curve(run, result))
            line = f"  {len(betas)} betas, log Z from {result['log_z'][0]:.4g} to {result['log_z'][-1]:.4g}"
    result["wall_time_s"] = time.perf_counter() - t0
    result["warnings"] = [str(w.message) for w in caught]
    write_json(run / "logz.json", result)
    print(line)
    for w in result["warnings"]:
        print(f"  warning: {w}")
    print(f"  wrote {run / 'logz.json'}")
    print(run)
    return 0


def _versus_exact(rec: dict[str, Any], exact: float | None) -> dict[str, Any]:
    if exact is None or rec.get("log_z") is None:
        return {"exact_log_z": exact}
    err = float(rec["log_z"]) - exact
    se = rec.get("stderr")
    z = err / float(se) if se else None
    return {"exact_log_z": exact, "error": err, "z": z}


def _curve_record(curve: Any, dist: Any, betas: list[float]) -> dict[str, Any]:
    import torch

    def get(name: str) -> Any:
        v = curve[name] if isinstance(curve, dict) else getattr(curve, name, None)
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().double().tolist()
        return v

    out: dict[str, Any] = {"betas": get("betas") or betas}
    betas = out["betas"]
    for name in (
        "log_z",
        "log_z_stderr",
        "mean_energy",
        "mean_energy_stderr",
        "heat_capacity",
        "heat_capacity_stderr",
    ):
        out[name] = get(name)
    exact = []
    for b in betas:
        exact.append(_exact_log_z(dist.at(b), b))
    out["exact_log_z"] = exact if any(e is not None for e in exact) else None
    return out


def _plot_curve(run: Path, result: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    b = result["betas"]
    se = result.get("log_z_stderr") or [0.0] * len(b)
    ax.errorbar(
        b,
        result["log_z"],
        yerr=[2 * (s or 0.0) for s in se],
        fmt="o",
        ms=3,
        label="estimate +/- 2 stderr",
    )
    if result.get("exact_log_z"):
        ax.plot(b, result["exact_log_z"], "k-", lw=1, label="exact")
    ax.set_xlabel("beta")
    ax.set_ylabel("log Z(beta)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run / "logz_curve.png", dpi=80)
    plt.close(fig)
    return "logz_curve.png"
