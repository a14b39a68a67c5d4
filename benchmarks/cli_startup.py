"""Start-up time of the command line: ``python -m gibbsebm ... --help`` in a fresh process.

Each command's help is run ``--repeats`` times (after one unmeasured warm-up run that fills the
file-system cache) in a new interpreter with ``PYTHONPATH`` set to this checkout, so the
measured time is what a user waits for: interpreter start, the imports the help needs, and the
parser. The median is the reported number (robust to the odd slow run on a busy machine); the
minimum and maximum show the spread. A run also records which heavy libraries the process had
imported when it exited (``-X importtime`` would give more detail; this is the yes/no that
matters: the help must not load torch, pyro, matplotlib or arviz).

Writes ``benchmarks/results/cli_startup.json`` and prints a Markdown table.

Run:  python benchmarks/cli_startup.py [--repeats 5] [--label after]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cli_startup.json"
COMMANDS = [[], ["sample"], ["logz"], ["calibrate"], ["demo"]]
HEAVY = ("torch", "pyro", "matplotlib", "arviz")
#: The goal of the architecture issue: every help answers in under half a second.
GOAL_S = 0.5

# Runs the command line's help in-process and reports which heavy modules got imported, so
# one subprocess per measurement gives both the time and the import check.
_PROBE = """
import sys
from gibbsebm.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
sys.stderr.write("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules) + "\\n")
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def time_help(argv: list[str], repeats: int) -> dict:
    """Wall times of ``python -m gibbsebm *argv --help`` and the heavy modules it imported."""
    cmd = [sys.executable, "-m", "gibbsebm", *argv, "--help"]
    env = _env()
    subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    probe = _PROBE.format(argv=[*argv, "--help"], heavy=HEAVY)
    err = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True
    ).stderr
    heavy = next((ln[6:] for ln in err.splitlines() if ln.startswith("HEAVY=")), "?")
    return {
        "command": " ".join(["gibbsebm", *argv, "--help"]),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
        "heavy_imports": [m for m in heavy.split(",") if m],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="measured runs per command")
    ap.add_argument("--label", default="current", help="name of this measurement in the JSON")
    ap.add_argument("--output", type=Path, default=RESULTS, help="JSON file to update")
    args = ap.parse_args(argv)
    rows = [time_help(c, args.repeats) for c in COMMANDS]
    data = json.loads(args.output.read_text()) if args.output.is_file() else {}
    data[args.label] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "goal_s": GOAL_S,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    print(f"| command ({args.label}) | median s | min s | max s | heavy imports |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r in rows:
        heavy = ", ".join(r["heavy_imports"]) or "none"
        print(
            f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} "
            f"| {heavy} |"
        )
    return data


if __name__ == "__main__":
    main()
