"""The learning examples run with --smoke in a fresh interpreter and write their numbers.

One subprocess runs the three scripts in turn (``runpy``, as ``python examples/<name>.py
--smoke --output-dir DIR``), so the imports are paid once; ``tests/test_examples.py`` also
runs every example in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("rbm_learning", "spiral_ebm", "jem_digits")

RUNNER = """
import runpy, sys
import matplotlib
matplotlib.use("Agg")
root, out = sys.argv[1], sys.argv[2]
for name in sys.argv[3:]:
    sys.argv = [f"{root}/examples/{name}.py", "--smoke", "--output-dir", f"{out}/{name}"]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_learning_examples_smoke(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), str(tmp_path), *SCRIPTS],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rbm = json.loads((tmp_path / "rbm_learning" / "rbm_learning.json").read_text())
    assert {"cd", "pcd", "sklearn_best"} <= set(rbm["final"])
    assert all(r["ais_ll_stderr"] > 0 for r in rbm["ais_check"])
    spiral = json.loads((tmp_path / "spiral_ebm" / "spiral_ebm.json").read_text())
    assert {"pcd", "dsm", "kde"} <= set(spiral["mmd"])
    assert spiral["pcd_effective_beta"] > 0
    jem = json.loads((tmp_path / "jem_digits" / "jem_digits.json").read_text())
    assert set(jem["report"]) == {"cross-entropy only", "JEM (CE + PCD)"}
    for name in SCRIPTS:
        assert list((tmp_path / name).glob("*.png")), f"{name} wrote no figure"
