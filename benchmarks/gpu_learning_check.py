"""The learning examples 2 and 3 (spiral EBM, JEM digits) on a GPU, next to ``gpu_check.py``.

    python benchmarks/gpu_learning_check.py --device cuda          (about a minute)
    python benchmarks/gpu_learning_check.py --device cpu --smoke   (seconds: the code path)

Runs ``examples/spiral_ebm.py`` and ``examples/jem_digits.py`` with ``--device`` (everything
follows the energy's parameters: data, replay buffer, generator, kernels), checks that they
finish and that their numbers are finite, and writes the examples' JSON plus wall times to
``benchmarks/results/gpu_learning_check.json``. Without a GPU, ``--device cuda`` exits with a
message and status 0 (nothing to check).
"""

from __future__ import annotations

import argparse
import json
import math
import runpy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, args: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    argv = sys.argv
    sys.argv = [str(ROOT / "examples" / script), *args]
    try:
        ns = runpy.run_path(sys.argv[0], run_name="learning_check")
        result = ns["main"](args)
    finally:
        sys.argv = argv
    return result, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true")
    p.add_argument(
        "--output", default=str(ROOT / "benchmarks" / "results" / "gpu_learning_check.json")
    )
    a = p.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return {}
    out_dir = Path(a.output).parent / "gpu_learning_check"
    common = ["--device", a.device] + (["--smoke"] if a.smoke else [])
    report: dict = {"device": a.device, "smoke": a.smoke}
    spiral, t_spiral = _run("spiral_ebm.py", common + ["--output-dir", str(out_dir / "spiral")])
    jem, t_jem = _run("jem_digits.py", common + ["--output-dir", str(out_dir / "jem")])
    report["spiral"] = {"wall_s": t_spiral, "mmd": spiral["mmd"]}
    report["jem"] = {"wall_s": t_jem, "status": jem["jem_status"], "report": jem["report"]}
    finite = all(math.isfinite(v["mmd2"]) for v in spiral["mmd"].values()) and all(
        math.isfinite(r["nll"]["value"]) for r in jem["report"].values()
    )
    report["ok"] = bool(finite and jem["jem_status"] == "ok")
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(report, indent=2))
    print(json.dumps({"ok": report["ok"], "spiral_s": t_spiral, "jem_s": t_jem}))
    return report


if __name__ == "__main__":
    main()
