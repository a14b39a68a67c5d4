"""Wall time of the convergence diagnostics: gibbsebm.diagnostics (torch) against arviz.

For draws shaped (chains x draws x dims) = (64 x 100 x 10), (16 x 1000 x 100),
(1024 x 100 x 100) and (4096 x 50 x 100) (AR(1) chains with coefficient 0.5, float64) it times the four diagnostics a
run summary needs, rank-normalised split R-hat, bulk ESS, tail ESS and the MCSE of the mean:
``gibbsebm.diagnostics.rhat/ess/mcse`` on the chosen device against ``arviz.rhat``,
``arviz.ess(method="bulk"/"tail")`` and ``arviz.mcse`` on the CPU, checks that both give the
same numbers (largest relative difference), and writes ``benchmarks/results/diagnostics.json``
and a table. gibbsebm's time is the best of ``--repeat`` runs after one warm-up (on CUDA
synchronised before the clock stops); arviz's is one run. Both are also timed in process CPU
time (``time.process_time``, one torch thread): on a shared machine the wall times swing with
the load, the CPU times much less, and the ratio ``speedup_cpu`` is the figure to compare.

The issue's goal, "diagnostics <= 5 % of the sampling wall time at 65536 chains x 100
coordinates", is a GPU figure: run with ``--device cuda --sizes 65536x50x100`` on a GPU and
compare with the sampling benchmark's wall time there.

Usage::

    python benchmarks/diagnostics_benchmark.py                     # CPU, the three sizes
    python benchmarks/diagnostics_benchmark.py --device cuda --sizes 65536x50x100 --no-arviz
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gibbsebm import diagnostics as D

ROOT = Path(__file__).resolve().parent.parent
JSON_PATH = ROOT / "benchmarks" / "results" / "diagnostics.json"
SIZES = ((64, 100, 10), (16, 1000, 100), (1024, 100, 100), (4096, 50, 100))


def ar1(c: int, n: int, d: int, phi: float, seed: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed)
    e = torch.randn(c, n, d, generator=g, device=device, dtype=torch.float64)
    x = torch.empty_like(e)
    x[:, 0] = e[:, 0] / (1 - phi**2) ** 0.5
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "rhat": D.rhat(x),
        "ess_bulk": D.ess(x, "bulk"),
        "ess_tail": D.ess(x, "tail"),
        "mcse": D.mcse(x),
    }


def theirs(x: np.ndarray) -> dict[str, np.ndarray]:
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = az.convert_to_dataset({"x": x})
        return {
            "rhat": az.rhat(ds, method="rank")["x"].values,
            "ess_bulk": az.ess(ds, method="bulk")["x"].values,
            "ess_tail": az.ess(ds, method="tail")["x"].values,
            "mcse": az.mcse(ds, method="mean")["x"].values,
        }


def run(size: tuple, device: torch.device, repeat: int, with_arviz: bool) -> dict:
    c, n, d = size
    x = ar1(c, n, d, 0.5, seed=c + n + d, device=device)
    ours(x)  # warm-up (allocator, FFT plans, CUDA context)
    _sync(device)
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        mine = ours(x)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    row = {
        "chains": c,
        "draws": n,
        "dims": d,
        "device": str(device),
        "gibbsebm_s": min(times),
        "gibbsebm_all_s": times,
        "gibbsebm_cpu_s": min(cpu),
    }
    if with_arviz:
        xn = x.cpu().numpy()
        t0, c0 = time.perf_counter(), time.process_time()
        ref = theirs(xn)
        row["arviz_s"] = time.perf_counter() - t0
        row["arviz_cpu_s"] = time.process_time() - c0
        row["speedup"] = row["arviz_s"] / row["gibbsebm_s"]
        row["speedup_cpu"] = row["arviz_cpu_s"] / row["gibbsebm_cpu_s"]
        row["max_rel_diff"] = {
            k: float(np.nanmax(np.abs(mine[k].cpu().numpy() - ref[k]) / np.abs(ref[k])))
            for k in ref
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default=",".join("x".join(map(str, s)) for s in SIZES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--no-arviz", action="store_true")
    ap.add_argument("--output", default=str(JSON_PATH))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    load_before = list(os.getloadavg())
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rows = []
    print(
        f"{'chains x draws x dims':>24} {'gibbsebm s':>11} {'arviz s':>9} {'arviz/gibbsebm':>15} "
        f"{'CPU s ours':>11} {'CPU s arviz':>12} {'CPU ratio':>10} {'max rel diff':>13}"
    )
    for size in sizes:
        row = run(size, device, args.repeat, not args.no_arviz)
        rows.append(row)
        diff = max(row["max_rel_diff"].values()) if "max_rel_diff" in row else float("nan")
        print(
            f"{'x'.join(map(str, size)):>24} {row['gibbsebm_s']:>11.4f} {row.get('arviz_s', float('nan')):>9.3f} "
            f"{row.get('speedup', float('nan')):>15.1f} {row['gibbsebm_cpu_s']:>11.3f} "
            f"{row.get('arviz_cpu_s', float('nan')):>12.3f} {row.get('speedup_cpu', float('nan')):>10.2f} "
            f"{diff:>13.1e}",
            flush=True,
        )
    out = {
        "what": "rhat + ess(bulk) + ess(tail) + mcse(mean), AR(1) phi=0.5 float64 draws",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "numpy": np.__version__,
            "date": started,
            "load_average_before": load_before,
            "load_average_after": list(os.getloadavg()),
        },
        "rows": rows,
    }
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
