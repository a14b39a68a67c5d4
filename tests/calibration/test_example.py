"""The digits example runs end to end with --smoke and writes the report it announces."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_calibration_digits_smoke(tmp_path):
    out = tmp_path / "digits"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "calibration_digits.py"),
            "--smoke",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"report written to {out.resolve()}" in proc.stdout
    data = json.loads((out / "report.json").read_text())
    systems = data["systems"]
    # one over-confident (beta < 1) and one under-confident (beta > 1) system
    assert systems["linear"]["beta_fit"]["beta"] < 1 < systems["mlp"]["beta_fit"]["beta"]
    for s in systems.values():
        assert s["after"]["nll"]["value"] < s["before"]["nll"]["value"]
    rows = {r["name"]: r for r in data["combination"]["rows"]}
    assert rows["product of experts"]["nll"]["value"] < rows["raw sum"]["nll"]["value"]
    assert (out / "report.html").stat().st_size > 10_000
