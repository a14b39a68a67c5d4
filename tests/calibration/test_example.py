"""The digits example runs end to end with --smoke and writes the report it announces."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_example():
    spec = importlib.util.spec_from_file_location(
        "calibration_digits", ROOT / "examples" / "calibration_digits.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calibration_digits_smoke(tmp_path, capsys, monkeypatch):
    # run in-process (the modules it needs are already imported by the test session), with
    # examples/ on sys.path as for `python examples/calibration_digits.py` (for _common.py)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    out = tmp_path / "digits"
    returned = _load_example().main(["--smoke", "--output-dir", str(out)])
    stdout = capsys.readouterr().out
    assert returned == out
    assert f"report written to {out.resolve()}" in stdout
    data = json.loads((out / "report.json").read_text())
    systems = data["systems"]
    # one over-confident (beta < 1) and one under-confident (beta > 1) system
    assert systems["linear"]["beta_fit"]["beta"] < 1 < systems["mlp"]["beta_fit"]["beta"]
    for s in systems.values():
        assert s["after"]["nll"]["value"] < s["before"]["nll"]["value"]
    rows = {r["name"]: r for r in data["combination"]["rows"]}
    assert rows["product of experts"]["nll"]["value"] < rows["raw sum"]["nll"]["value"]
    assert (out / "report.html").stat().st_size > 10_000
