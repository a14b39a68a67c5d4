"""Every script in examples/ runs with --smoke and writes its figures and numbers.

The scripts run in-process (``runpy``, as ``__main__`` with a patched ``sys.argv`` and the
examples folder first on ``sys.path``, exactly as ``python examples/<name>.py --smoke
--output-dir DIR`` would run them: their shared ``_common.py`` is found the same way), which
saves the seconds of imports that a subprocess per script costs.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import matplotlib
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_examples_are_found():
    names = {p.stem for p in SCRIPTS}
    expected = {
        "kmeans_spiral",
        "falling_pen",
        "double_well",
        "ising_phase_transition",
        "rbm_digits",
        "bayesian_logistic",
        "gibbs_posterior_calibration",
        "calibration_digits",
    }
    assert expected <= names


# --smoke budgets are deliberately tiny (seconds), so their runs fail the convergence checks;
# the warning is meant for the examples' full runs
@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_smoke(script, tmp_path, monkeypatch):
    out = tmp_path / script.stem
    monkeypatch.setattr(sys, "argv", [str(script), "--smoke", "--output-dir", str(out)])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    matplotlib.use("Agg", force=True)
    runpy.run_path(str(script), run_name="__main__")
    files = [p for p in out.rglob("*") if p.is_file()]
    pngs = [p for p in files if p.suffix == ".png"]
    jsons = [p for p in files if p.suffix == ".json"]
    assert pngs, f"{script.name} wrote no PNG figure"
    assert jsons, f"{script.name} wrote no JSON numbers"
    for p in jsons:
        json.loads(p.read_text())  # valid JSON
    for p in pngs:
        assert p.stat().st_size > 1000, p
