"""The ``gibbsebm`` command line: help, one-line user errors, small runs, resume, the demo.

Commands run in-process through :func:`gibbsebm.cli.main` (a subprocess costs seconds of
imports each); one test checks that ``python -m gibbsebm`` is wired up.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

import gibbsebm
from gibbsebm.cli import BUILTIN_ENERGIES, main, make_energy

COMMANDS = ["demo", "sample", "logz", "calibrate"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help and its own errors
        code = exc.code if isinstance(exc.code, int) else 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(command, capsys):
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "example" in out.lower()
    assert f"gibbsebm {command}" in out


def test_top_level_help_lists_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in COMMANDS:
        assert command in out


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gibbsebm: error:")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["sample", "--energy", "no_such_energy"], ["unknown energy", "no_such_energy"]),
        (["sample", "--energy", "ising", "--param", "K=3"], ["no parameter 'K'", "L, J"]),
        (["sample", "--energy", "ising", "--param", "L=eight"], ["L of ising", "integer"]),
        (["sample", "--energy", "ising", "--param", "L"], ["NAME=VALUE"]),
        (["sample", "--energy", "gaussian", "--beta", "0"], ["beta", "> 0"]),
        (["logz", "--energy", "gaussian", "--beta", "-2"], ["beta", "> 0"]),
        (["sample", "--energy", "gaussian", "--beta", "nan"], ["beta"]),
        (["sample", "--energy", "gaussian", "--param", "dim=0"], ["dim"]),
        (["sample", "--energy", "no_such_module_xyz:Energy"], ["no_such_module_xyz"]),
        (["sample", "--energy", "math:no_such_attr"], ["no attribute"]),
        (["sample", "--energy", "/nonexistent/energy.py:E"], ["cannot read"]),
        (["sample", "--config", "/nonexistent/run.toml"], ["cannot read config", "run.toml"]),
        (["sample", "--energy", "gaussian", "--num-chains", "0"], ["num-chains"]),
        (["sample", "--energy", "gaussian", "--method", "no_such_method"], ["no_such_method"]),
        (["sample", "--energy", "gaussian", "--no-such-flag"], ["unrecognized"]),
        (["sample"], ["no energy"]),
        (["sample", "--resume", "--output-dir", "/nonexistent/run"], ["resume"]),
    ],
)
def test_user_errors_are_one_line(argv, needles, capsys, tmp_path):
    if "--output-dir" not in argv and argv[0] in ("sample", "logz"):
        argv = [*argv, "--output-dir", str(tmp_path / "run")]
    code, _, err = run(argv, capsys)
    _assert_one_line_error(code, err, *needles)


def test_bad_toml_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("energy = \n")
    code, _, err = run(["sample", "--config", str(bad)], capsys)
    _assert_one_line_error(code, err, "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('energy = "gaussian"\nnum_chainz = 4\n')
    code, _, err = run(["sample", "--config", str(unknown)], capsys)
    _assert_one_line_error(code, err, "num_chainz")


def test_non_empty_run_folder_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "something.txt").write_text("x")
    code, _, err = run(["sample", "--energy", "gaussian", "--output-dir", str(run_dir)], capsys)
    _assert_one_line_error(code, err, "not empty")
    assert sorted(p.name for p in run_dir.iterdir()) == ["something.txt"]


def test_every_builtin_energy_builds_with_defaults():
    for name, spec in BUILTIN_ENERGIES.items():
        energy = make_energy(name, {})
        y_shape = tuple(energy.event_shape)
        assert len(y_shape) >= 1, name
        assert spec.default_method


@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")  # short CLI run
def test_sample_writes_netcdf_summary_and_plots(tmp_path, capsys):
    import arviz as az

    out = tmp_path / "gauss"
    argv = ["sample", "--energy", "gaussian", "--param", "dim=2", "--param", "sd=2.0"]
    argv += ["--method", "mala", "--num-chains", "4", "--num-samples", "100", "--num-warmup", "100"]
    argv += ["--seed", "3", "--output-dir", str(out), "--no-progress"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert str(out) in stdout
    for name in ("samples.nc", "summary.json", "config.json", "samples.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "mala" and summary["num_chains"] == 4
    assert len(summary["summary"]) == 2
    assert summary["max_r_hat"] < 1.2
    # the sample mean is within 5 MCSE of the exact mean 0 (sd 2 at beta 1)
    assert summary["exact"]["max_abs_z"] < 5
    idata = az.from_netcdf(str(out / "samples.nc"))
    assert idata.posterior["y"].shape == (4, 100, 2)
    assert abs(float(idata.posterior["y"].std()) - 2.0) < 0.5


@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")  # short CLI run
def test_sample_options_from_toml_and_cli_override(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        textwrap.dedent(
            """
            energy = "ising"
            beta = 0.3
            method = "metropolis"
            num_chains = 4
            num_samples = 30
            num_warmup = 10
            seed = 5
            [params]
            L = 3
            """
        )
    )
    out = tmp_path / "ising"
    code, _, err = run(
        ["sample", "--config", str(cfg), "--num-samples", "20", "--output-dir", str(out)],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "metropolis"
    assert summary["num_samples"] == 20  # the command line wins over the file
    assert summary["beta"] == 0.3
    assert len(summary["summary"]) == 9  # 3 x 3 spins


@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")  # short CLI run
def test_user_energy_from_file(tmp_path, capsys):
    mod = tmp_path / "my_energy.py"
    mod.write_text(
        textwrap.dedent(
            """
            import torch

            def quartic(y):
                return (y ** 4).sum(-1) / 4

            class Quad(torch.nn.Module):
                def __init__(self, dim=2, scale=1.0):
                    super().__init__()
                    self.event_shape = torch.Size([dim])
                    self.scale = scale

                def forward(self, y):
                    return 0.5 * (y ** 2).sum(-1) / self.scale ** 2

            from gibbsebm import Gibbs
            from gibbsebm.energies import Gaussian

            DIST = Gibbs(Gaussian(torch.zeros(2, dtype=torch.float64)), beta=4.0)
            """
        )
    )
    code, _, err = run(
        ["sample", "--energy", f"{mod}:quartic", "--output-dir", str(tmp_path / "a")], capsys
    )
    _assert_one_line_error(code, err, "--event-shape")
    argv = ["sample", "--energy", f"{mod}:Quad", "--param", "dim=3", "--param", "scale=0.5"]
    argv += ["--num-chains", "2", "--num-samples", "50", "--num-warmup", "50"]
    code, _, err = run([*argv, "--output-dir", str(tmp_path / "b")], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert len(summary["summary"]) == 3
    # a ready Gibbs distribution keeps its own beta unless --beta is given
    for extra, beta in (([], 4.0), (["--beta", "0.5"], 0.5)):
        out = tmp_path / f"z{beta}"
        argv = ["logz", "--energy", f"{mod}:DIST", "--method", "exact", "--output-dir", str(out)]
        code, _, err = run([*argv, *extra], capsys)
        assert code == 0, err
        rec = json.loads((out / "logz.json").read_text())
        assert rec["beta"] == beta
        assert rec["estimate"]["log_z"] == pytest.approx(math.log(2 * math.pi / beta), rel=1e-9)


def test_logz_against_exact(tmp_path, capsys):
    out = tmp_path / "logz"
    argv = ["logz", "--energy", "ising", "--param", "L=3", "--beta", "0.4", "--method", "ais"]
    argv += ["--seed", "1", "--output-dir", str(out), "--no-progress"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    rec = json.loads((out / "logz.json").read_text())["estimate"]
    exact = float(make_energy("ising", {"L": 3}).exact_log_partition(0.4))
    assert rec["exact_log_z"] == pytest.approx(exact, rel=1e-12)
    assert rec["stderr"] > 0
    assert abs(rec["log_z"] - exact) < 5 * rec["stderr"]
    lo, hi = rec["ci"]
    assert lo < rec["log_z"] < hi
    assert "exact" in stdout


def test_logz_curve_over_betas(tmp_path, capsys):
    out = tmp_path / "curve"
    argv = ["logz", "--energy", "ising", "--param", "L=3", "--betas", "0.2,0.4,0.6"]
    argv += ["--option", "num_chains=256", "--seed", "2", "--output-dir", str(out)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads((out / "logz.json").read_text())
    assert res["betas"] == pytest.approx([0.2, 0.4, 0.6])
    energy = make_energy("ising", {"L": 3}, dtype=torch.float64)
    for b, lz, se, ex in zip(res["betas"], res["log_z"], res["log_z_stderr"], res["exact_log_z"]):
        assert ex == pytest.approx(float(energy.exact_log_partition(b)), rel=1e-12)
        assert abs(lz - ex) < 5 * se
    assert (out / "logz_curve.png").is_file()
    code, _, err = run([*argv[:-1], str(tmp_path / "c"), "--method", "ti"], capsys)
    _assert_one_line_error(code, err, "--betas")


def test_calibrate_is_mounted(tmp_path, capsys):
    import numpy as np

    from gibbsebm.cli.demo import synthetic_classifier

    e_fit, y_fit = synthetic_classifier(400, 4, overconfidence=2.0, seed=0)
    e, y = synthetic_classifier(400, 4, overconfidence=2.0, seed=1)
    data = tmp_path / "sys.npz"
    np.savez(
        data,
        energies=e.numpy(),
        labels=y.numpy(),
        fit_energies=e_fit.numpy(),
        fit_labels=y_fit.numpy(),
    )
    out = tmp_path / "calib"
    code, _, err = run(["calibrate", "--energies", str(data), "--output-dir", str(out)], capsys)
    assert code == 0, err
    for name in ("report.html", "report.json", "report.md"):
        assert (out / name).is_file()
    code, _, err = run(
        [
            "calibrate",
            "--energies",
            str(tmp_path / "missing.npz"),
            "--output-dir",
            str(tmp_path / "c2"),
        ],
        capsys,
    )
    _assert_one_line_error(code, err, "missing.npz")


INTERRUPTING_ENERGY = """
import os
import torch

import gibbsebm
from gibbsebm.energies import Gaussian

CALLS = [0]


class Interrupting(Gaussian):
    '''A Gaussian whose evaluation raises KeyboardInterrupt after a set number of calls.'''

    def __init__(self):
        super().__init__(torch.zeros(2))

    def forward(self, y):
        CALLS[0] += 1
        stop = int(os.environ.get("GIBBSEBM_TEST_STOP_AFTER", "0"))
        if stop and CALLS[0] > stop:
            raise KeyboardInterrupt
        return super().forward(y)
"""


@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")  # short CLI run
def test_resume_gives_the_draws_of_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    import arviz as az

    mod = tmp_path / "interrupting.py"
    mod.write_text(INTERRUPTING_ENERGY)
    argv = ["sample", "--energy", f"{mod}:Interrupting", "--method", "mala"]
    argv += ["--option", "step_size=0.5", "--num-chains", "3", "--num-samples", "60"]
    argv += ["--num-warmup", "0", "--checkpoint-every", "10", "--seed", "11", "--no-plots"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    code, _, err = run([*argv, "--output-dir", str(ref)], capsys)
    assert code == 0, err
    monkeypatch.setenv("GIBBSEBM_TEST_STOP_AFTER", "35")
    code, _, err = run([*argv, "--output-dir", str(cut)], capsys)
    assert code == 130
    assert "--resume" in err
    assert (cut / "checkpoint.pt").is_file() and not (cut / "summary.json").exists()
    monkeypatch.delenv("GIBBSEBM_TEST_STOP_AFTER")
    code, _, err = run(["sample", "--resume", "--output-dir", str(cut)], capsys)
    assert code == 0, err
    a = az.from_netcdf(str(ref / "samples.nc")).posterior["y"].values
    b = az.from_netcdf(str(cut / "samples.nc")).posterior["y"].values
    assert a.shape == (3, 60, 2)
    assert (a == b).all()
    assert json.loads((cut / "summary.json").read_text())["resumed"] is True
    # a finished run cannot be resumed again
    code, _, err = run(["sample", "--resume", "--output-dir", str(cut)], capsys)
    _assert_one_line_error(code, err, "already complete")


@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")
@pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning")
def test_ctrl_c_in_warmup_is_resumable_and_links_are_refused(tmp_path, capsys, monkeypatch):
    """Issue 12: an interrupted warmup was a dead end; --resume followed a symlinked file."""
    import arviz as az

    mod = tmp_path / "interrupting.py"
    mod.write_text(INTERRUPTING_ENERGY)
    argv = ["sample", "--energy", f"{mod}:Interrupting", "--method", "mala"]
    argv += ["--num-chains", "2", "--num-samples", "5", "--num-warmup", "15"]
    argv += ["--seed", "4", "--no-plots"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    code, _, err = run([*argv, "--output-dir", str(ref)], capsys)
    assert code == 0, err
    monkeypatch.setenv("GIBBSEBM_TEST_STOP_AFTER", "6")  # inside the adaptive warmup
    code, _, err = run([*argv, "--output-dir", str(cut)], capsys)
    monkeypatch.delenv("GIBBSEBM_TEST_STOP_AFTER")
    assert code == 130 and (cut / "checkpoint.pt").is_file()
    # a checkpoint replaced by a link to a file outside the folder is refused, untouched
    outside = tmp_path / "outside.pt"
    (cut / "checkpoint.pt").rename(outside)
    before = outside.read_bytes()
    (cut / "checkpoint.pt").symlink_to(outside)
    code, _, err = run(["sample", "--resume", "--output-dir", str(cut)], capsys)
    _assert_one_line_error(code, err, "symbolic link")
    assert outside.read_bytes() == before
    (cut / "checkpoint.pt").unlink()
    outside.rename(cut / "checkpoint.pt")
    with pytest.warns(UserWarning, match="restarts from its beginning"):
        code, _, err = run(["sample", "--resume", "--output-dir", str(cut)], capsys)
    assert code == 0, err
    a = az.from_netcdf(str(ref / "samples.nc")).posterior["y"].values
    b = az.from_netcdf(str(cut / "samples.nc")).posterior["y"].values
    assert (a == b).all()


@pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning")
@pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning")
def test_resume_without_a_checkpoint_starts_again(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sample", "--energy", "gaussian", "--method", "ula", "--option", "step_size=0.1"]
    argv += ["--num-chains", "2", "--num-samples", "5", "--num-warmup", "2", "--no-plots"]
    code, _, err = run([*argv, "--output-dir", str(out)], capsys)
    assert code == 0, err
    (out / "summary.json").unlink()  # as if interrupted before the first checkpoint
    code, _, err = run(["sample", "--resume", "--output-dir", str(out)], capsys)
    assert code == 0 and "starting the run again" in err
    config = out / "config.json"
    config.write_text(config.read_text().replace('"seed": 0', '"seed": 1'))
    (out / "summary.json").unlink()
    code, _, err = run(["sample", "--resume", "--output-dir", str(out)], capsys)
    _assert_one_line_error(code, err, "checksum")


def test_bad_option_creates_no_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sample", "--energy", "gaussian", "--method", "hmc", "--option", "bogus=1"]
    code, _, err = run([*argv, "--output-dir", str(out)], capsys)
    _assert_one_line_error(code, err, "bogus")
    assert not out.exists()
    argv = [*argv[:5], "--num-samples", "3", "--num-warmup", "5", "--num-chains", "2", "--no-plots"]
    code, _, err = run([*argv, "--output-dir", str(out)], capsys)
    assert code == 0, err  # the same folder is still free for the corrected command


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run(["demo", "--quick", "--output-dir", str(out)], capsys)
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == str(out)
    result = json.loads((out / "demo.json").read_text())
    s, z = result["sampling"], result["logz"]
    assert (out / "sampling" / "samples.nc").is_file()
    assert s["max_r_hat"] < 1.1
    assert s["max_abs_z"] < 5  # means and variances within 5 MCSE of the exact ones
    assert math.isfinite(z["log_z"]) and z["stderr"] > 0
    assert abs(z["error"]) < 5 * z["stderr"]
    assert (out / "calibration" / "report.html").is_file()
    c = result["calibration"]
    # the classifier's energies are 3x the true ones: its best beta is 1/3
    assert abs(c["fitted_beta"] - 1 / 3) < 4 * c["fitted_beta_stderr"]
    assert c["metrics"]["after"]["ece"]["value"] < c["metrics"]["before"]["ece"]["value"]
    assert (out / "README.md").is_file()


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "gibbsebm", "sample", "--energy", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("gibbsebm: error: unknown energy 'nope'")
    assert "Traceback" not in proc.stderr


def test_make_energy_builds_on_requested_dtype():
    e = make_energy("gaussian", {"dim": 3}, dtype=torch.float64)
    assert e.mean.dtype == torch.float64
    assert e(torch.zeros(1, 3, dtype=torch.float64)).shape == (1,)


HEAVY_MODULES = ("torch", "pyro", "matplotlib", "arviz")

HELP_PROBE = """
import sys
from gibbsebm.cli import main
for argv in ([], ["sample"], ["logz"], ["calibrate"], ["demo"]):
    try:
        main([*argv, "--help"])
    except SystemExit:
        pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_help_does_not_import_torch():
    # every help in a fresh interpreter (this one has torch loaded already): the command
    # line must answer --help without loading torch, pyro, matplotlib or arviz (seconds)
    proc = subprocess.run(
        [sys.executable, "-c", HELP_PROBE.format(heavy=HEAVY_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=", proc.stdout[-300:]


def _imports(path) -> set[str]:
    """Absolute names of the gibbsebm modules that ``path`` imports (at any level)."""
    import ast
    from pathlib import Path

    root = Path(gibbsebm.__file__).parent
    parts = ["gibbsebm", *path.relative_to(root).with_suffix("").parts]
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == "gibbsebm"}


def test_import_direction_of_the_command_line():
    from pathlib import Path

    root = Path(gibbsebm.__file__).parent
    commands = {f"gibbsebm.cli.{c}" for c in ("sample", "logz", "calibrate", "demo")}
    for lower in ("_common", "_energies", "_records"):
        bad = _imports(root / "cli" / f"{lower}.py") & (commands | {"gibbsebm.demo"})
        assert not bad, f"gibbsebm/cli/{lower}.py imports a command module: {bad}"
    for path in (root / "cli").glob("*.py"):
        assert "gibbsebm.demo" not in _imports(path), path  # gibbsebm.demo re-exports cli.demo
    faces = {root / "__main__.py", root / "demo.py"}
    for path in root.rglob("*.py"):
        if path.parent.name == "cli" or path in faces:
            continue
        bad = {m for m in _imports(path) if m == "gibbsebm.cli" or m.startswith("gibbsebm.cli.")}
        assert not bad, f"{path.relative_to(root)} imports the command line: {bad}"
    assert not {m for m in _imports(root / "interop" / "arviz.py") if m.startswith("gibbsebm.run")}


def test_sample_prints_and_saves_the_warnings_once_and_writes_a_report(tmp_path, capsys):
    from html import escape

    """A deliberately short run fails the diagnostics: the CLI prints the warning lines on
    stderr, saves them in summary.json and report.html/md, and gibbsebm.sample itself issues
    no SamplingWarning (``filterwarnings = error`` would turn one into a failure here)."""
    out = tmp_path / "short"
    argv = ["sample", "--energy", "gaussian", "--param", "dim=3", "--method", "mala"]
    argv += ["--num-chains", "4", "--num-samples", "60", "--num-warmup", "20", "--seed", "1"]
    argv += ["--output-dir", str(out), "--no-progress"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    problems = summary["problems"]
    assert problems and {"check", "figure", "threshold", "message"} <= set(problems[0])
    assert summary["warnings"] == [p["message"] for p in problems]
    assert "sampling diagnostics found" in err
    for p in problems:
        assert err.count(p["message"]) == 1  # printed once
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert html.index('id="verdict"') < html.index("<h2>Warnings</h2>")
    assert "Do not trust these draws" in html and "Do not trust these draws" in md
    for p in problems:
        assert escape(p["message"]) in html  # the same line, as text
    assert "r_hat" in html and "ess_bulk" in html and "mcse_mean" in html
    assert 'src="data:image/png;base64,' in html
    for f in ("figures/trace.png", "figures/rank.png"):
        assert (out / f).read_bytes().startswith(b"\x89PNG") and f in summary["files"]


def test_run_report_of_a_good_run_says_so(tmp_path):
    import torch

    import gibbsebm
    from gibbsebm.energies import Gaussian
    from gibbsebm.workflow.run_report import worst_coordinates, write_run_report

    torch.set_num_threads(1)
    s = gibbsebm.sample(gibbsebm.Gibbs(Gaussian(torch.zeros(2))), "hmc", num_chains=4,
                        num_samples=600, num_warmup=200, seed=0)  # fmt: skip
    assert s.diagnose() == []  # a good run: no warning (and none raised above)
    files = write_run_report(tmp_path, s, title="<b>good</b>", plots=False)
    html = files["html"].read_text()
    assert "passed every check" in html and "<b>good</b>" not in html
    assert "None: every check passed." in files["markdown"].read_text()
    recs = [{"r_hat": 1.0}, {"r_hat": float("nan")}, {"r_hat": 1.2}, {"r_hat": None}]
    assert worst_coordinates(recs, 3) == [1, 3, 2]
