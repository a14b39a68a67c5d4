"""The report renders and holds every figure and number it promises; the CLI reads files."""

import argparse
import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gibbsebm.calibration import report
from gibbsebm.calibration.report import METRIC_NAMES, _fmt, _fmt_beta, _slug
from gibbsebm.cli.calibrate import add_parser, load_energies, load_labels, run_calibrate

PNG = b"\x89PNG\r\n\x1a\n"


def _systems(n, seed):
    g = torch.Generator().manual_seed(seed)
    true = 2 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(-true, 1), 1, generator=g).squeeze(1)
    over = 3 * (true + torch.randn(n, 4, generator=g, dtype=torch.float64))
    under = 0.3 * (true + torch.randn(n, 4, generator=g, dtype=torch.float64))
    return {"over": over, "under": under}, y


@pytest.fixture(scope="module")
def crossfit_report(tmp_path_factory):
    torch.set_num_threads(1)
    systems, y = _systems(240, 0)
    ood = {k: v[:60] + 6.0 for k, v in systems.items()}
    out = tmp_path_factory.mktemp("rep")
    return report(systems, y, output_dir=out, ood_energies=ood, n_bootstrap=30, n_folds=3)


def test_report_files_and_embedded_figures(crossfit_report):
    rep = crossfit_report
    html = rep.html_path.read_text()
    md = rep.markdown_path.read_text()
    data = json.loads(rep.json_path.read_text())
    promised = data["figures"]
    assert set(promised) == {
        f"reliability_{_slug('over')}",
        f"reliability_{_slug('under')}",
        f"energy_vs_probability_{_slug('over')}",
        f"energy_vs_probability_{_slug('under')}",
        "combination",
    }
    # self-contained HTML: every figure embedded as a decodable PNG, no external references
    embedded = re.findall(
        r'<figure id="([^"]+)"><img alt="[^"]+" src="data:image/png;base64,([^"]+)"', html
    )
    assert {k for k, _ in embedded} == set(promised)
    for _, b64 in embedded:
        assert base64.b64decode(b64).startswith(PNG)
    assert 'src="http' not in html and "<link" not in html
    for key, info in promised.items():
        assert (rep.output_dir / info["file"]).read_bytes().startswith(PNG)
        assert f"](figures/{key}.png)" in md
        assert info["caption"] in md


def test_report_states_the_data_and_cross_fitting(crossfit_report):
    rep = crossfit_report
    data = rep.data
    d = data["data"]
    assert d["cross_fitted"] and d["n_folds"] == 3 and d["n_eval"] == 240 and d["n_ood"] == 60
    for text in (rep.html_path.read_text(), rep.markdown_path.read_text()):
        assert "cross-fitted with 3 folds" in text
        assert d["eval_labels_sha256"] in text
    assert len(rep.systems["over"].fold_betas) == 3


def test_report_contains_every_number_it_promises(crossfit_report):
    rep = crossfit_report
    html = rep.html_path.read_text()
    md = rep.markdown_path.read_text()
    data = json.loads(rep.json_path.read_text())
    for name, s in data["systems"].items():
        sr = rep.systems[name]
        assert s["beta_fit"]["beta"] == sr.beta_fit.beta and s["beta_fit"]["stderr"] > 0
        shown = [_fmt_beta(sr.beta_fit)]
        for m in METRIC_NAMES:
            for when in ("before", "after"):
                j = s[when][m]
                assert j["n_bootstrap"] == 30 and j["ci_low"] is not None
                shown += [_fmt(j["value"]), _fmt(j["ci_low"]), _fmt(j["ci_high"])]
        for sc, a in s["scores"]["auroc"].items():
            shown.append(_fmt(a["value"]))
            shown.append(_fmt(s["scores"]["risk_coverage"][sc]["aurc"]))
        for sc, a in s["ood"]["auroc"].items():
            shown += [_fmt(a["value"]), _fmt(s["ood"]["fpr_at_95_tpr"][sc])]
        for text in (html, md):
            missing = [v for v in shown if v not in text]
            assert not missing, (name, missing)
    comb = data["combination"]
    assert comb["fitted_on"].startswith("3-fold cross-fit")
    names = [r["name"] for r in comb["rows"]]
    assert "product of experts" in names and "raw sum" in names and "fitted weights" in names
    for r in comb["rows"]:
        for m in ("nll", "ece", "brier", "accuracy"):
            assert _fmt(r[m]["value"]) in html and _fmt(r[m]["value"]) in md
    # calibration did its job on the over-confident system
    over = data["systems"]["over"]
    assert over["beta_fit"]["beta"] < 1
    assert over["after"]["nll"]["value"] < over["before"]["nll"]["value"]
    assert over["after"]["ece"]["value"] < over["before"]["ece"]["value"]


def test_report_with_separate_fit_data_and_bad_inputs(tmp_path):
    systems, y = _systems(300, 1)
    ev = {k: v[:150] for k, v in systems.items()}
    ft = {k: v[150:] for k, v in systems.items()}
    rep = report(
        ev["over"],
        y[:150],
        output_dir=tmp_path / "one",
        fit_energies=ft["over"],
        fit_labels=y[150:],
        n_bootstrap=0,
        data_description="synthetic test data",
    )
    assert rep.combination is None and "combination" not in rep.data["figures"]
    text = rep.markdown_path.read_text()
    assert "separate fit data (150 samples)" in text and "synthetic test data" in text
    assert rep.data["data"]["fit_labels_sha256"] in text
    with pytest.raises(ValueError, match="systems"):
        report(
            ev,
            y[:150],
            output_dir=tmp_path / "x",
            fit_energies={"over": ft["over"]},
            fit_labels=y[150:],
        )
    with pytest.raises(ValueError, match="both"):
        report(ev, y[:150], output_dir=tmp_path / "x", fit_energies=ft)
    with pytest.raises(ValueError, match="mismatched lengths"):
        report(ev, y[:149], output_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="n_folds"):
        report(ev, y[:150], output_dir=tmp_path / "x", n_folds=1)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="gibbsebm")
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_npz_and_errors(tmp_path, capsys):
    systems, y = _systems(90, 2)
    np.savez(tmp_path / "val.npz", energies_over=systems["over"].numpy(), labels=y.numpy())
    out = tmp_path / "rep"
    args = _parse(
        [
            "calibrate",
            "--energies",
            str(tmp_path / "val.npz"),
            "--output-dir",
            str(out),
            "--bootstrap",
            "0",
            "--folds",
            "3",
        ]
    )
    assert args._run is run_calibrate
    assert run_calibrate(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = json.loads((out / "report.json").read_text())
    assert data["data"]["systems"] == ["over"] and data["data"]["cross_fitted"]
    assert data["data"]["sources"]["energies"] == str(tmp_path / "val.npz")
    # user errors: one ValueError each, naming the problem
    np.save(tmp_path / "e.npy", systems["over"].numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    (tmp_path / "notes.txt").write_text("x")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    e, lab = str(tmp_path / "e.npy"), str(tmp_path / "y.npy")
    cases = [
        (["--energies", e], "no labels"),
        (["--energies", str(tmp_path / "missing.npy")], "does not exist"),
        (["--energies", e, "--labels", lab, "--n-bins", "0"], "n_bins"),
        (["--energies", e, "--labels", lab, "--output-dir", str(tmp_path)], "other files"),
        (["--energies", str(bad)], "unsupported file type"),
        (
            ["--energies", e, "--labels", str(tmp_path / "val.npz"), "--fit-labels", lab],
            "without --fit-energies",
        ),
    ]
    for extra, match in cases:
        with pytest.raises(ValueError, match=match):
            run_calibrate(_parse(["calibrate", *extra]))


def test_cli_file_formats(tmp_path):
    systems, y = _systems(20, 3)
    e1, e2 = systems["over"].numpy(), systems["under"].numpy()
    np.savez(
        tmp_path / "multi.npz",
        energies_a=e1,
        energies_b=e2,
        labels=y.numpy(),
        fit_energies_a=e1[:5],
        fit_energies_b=e2[:5],
        fit_labels=y.numpy()[:5],
    )
    d = load_energies(tmp_path / "multi.npz")
    assert sorted(d["energies"]) == ["a", "b"] and sorted(d["fit_energies"]) == ["a", "b"]
    assert np.array_equal(d["labels"], y.numpy()) and d["fit_labels"].shape == (5,)
    rows = ["c0,c1,c2,c3,label"] + [
        ",".join(f"{v:.17g}" for v in r) + f",{int(t)}" for r, t in zip(e1, y)
    ]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    d = load_energies(tmp_path / "s.csv")
    assert np.array_equal(d["energies"]["s"], e1) and np.array_equal(d["labels"], y.numpy())
    (tmp_path / "y.txt").write_text("\n".join(str(int(t)) for t in y))
    assert np.array_equal(load_labels(tmp_path / "y.txt"), y.numpy())
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,0\n1,2\n")
    with pytest.raises(ValueError, match="line 3 has 2 columns"):
        load_energies(tmp_path / "ragged.csv")
    np.save(tmp_path / "vec.npy", np.zeros(4))
    with pytest.raises(ValueError, match="2-D"):
        load_energies(tmp_path / "vec.npy")


def test_reliability_diagram_leaves_empty_bins_empty():
    from matplotlib.patches import Rectangle

    from gibbsebm.calibration import expected_calibration_error, plots

    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45]])
    r = expected_calibration_error(p, [0, 1, 0], n_bins=10, n_bootstrap=0)
    fig = plots.reliability_diagram(r)
    ax = fig.axes[0]
    bars = [c for c in ax.containers[0]]  # the accuracy bars
    assert len(bars) == 2  # two non-empty bins, no zero-height bars for the 8 empty ones
    assert sorted(b.get_height() for b in bars) == [0.5, 1.0]
    empty = [a for a in ax.patches if a.get_gid() == "empty-bin"]
    assert len(empty) == 8
    assert all(isinstance(a, Rectangle) for a in empty)
    with pytest.raises(ValueError, match="top-label"):
        plots.reliability_diagram(
            __import__("gibbsebm.calibration", fromlist=["x"]).classwise_calibration_error(
                p, [0, 1, 0], n_bootstrap=0
            )
        )


# ------------------------------------------------------------------ names, files, overwrite
HOSTILE = "<script>alert(1)</script>"


def _named(names, n=60, seed=4):
    """Systems with the given names: noisy, not redundant, energies of the same labels."""
    systems, y = _systems(n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    base = systems["over"]
    noise = [torch.randn(base.shape, generator=g, dtype=base.dtype) for _ in names]
    return {nm: base + 2.0 * z for nm, z in zip(names, noise)}, y


def test_names_are_escaped_in_html_and_markdown(tmp_path):
    torch.set_num_threads(1)
    names = [HOSTILE, "a|b *c* [x](http://e) # $\\frac{$ _u_\nline"]
    systems, y = _named(names)
    rep = report(systems, y, output_dir=tmp_path / "r", n_bootstrap=0, n_folds=2,
                 title="<b>t</b>", data_description="<img src=x onerror=alert(2)>",
                 sources={"<k>": "<v>"})  # fmt: skip
    html = rep.html_path.read_text()
    md = rep.markdown_path.read_text()
    for text in (html, md):
        assert "<script" not in text and "<img src=x" not in text and "<b>" not in text
        assert "<k>" not in text and "<v>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in md
    assert "[x](http://e)" not in md and "\\[x\\]\\(http\\://e\\)" in md
    assert json.loads(rep.json_path.read_text())["data"]["systems"] == names
    # a pipe or a line break in a name does not break a Markdown table row
    lines = md.splitlines()
    i = lines.index("## Fitted inverse temperature")
    width = len(re.split(r"(?<!\\)\|", lines[i + 2]))
    for row in lines[i + 4 : i + 6]:
        assert len(re.split(r"(?<!\\)\|", row)) == width, row  # JSON keeps them


@pytest.fixture
def no_rendering(monkeypatch):
    """These tests are about files: skip the PNG rendering (the slow part)."""
    from gibbsebm.calibration import plots

    monkeypatch.setattr(plots, "figure_png", lambda fig, dpi=100: PNG)


def test_similar_names_do_not_share_figure_files(tmp_path, no_rendering):
    torch.set_num_threads(1)
    systems, y = _named(["a/b", "a_b"])
    rep = report(systems, y, output_dir=tmp_path / "r", n_bootstrap=0, n_folds=2)
    figs = [k for k in rep.figures if k.startswith("reliability_")]
    assert len(figs) == 2 and len({rep.figures[k] for k in figs}) == 2
    assert all(p.parent == tmp_path / "r" / "figures" for p in rep.figures.values())
    assert all(rep.figures[k].is_file() for k in figs)  # both written, neither overwritten


def test_report_never_overwrites_without_force(tmp_path, no_rendering):
    torch.set_num_threads(1)
    systems, y = _named(["s"])
    out = tmp_path / "r"
    first = report(systems, y, output_dir=out, n_bootstrap=0, n_folds=2, title="first")
    with pytest.raises(FileExistsError, match="force"):
        report(systems, y, output_dir=out, n_bootstrap=0, n_folds=2, title="second")
    assert "first" in first.html_path.read_text()
    report(systems, y, output_dir=out, n_bootstrap=0, n_folds=2, title="second", force=True)
    assert "second" in first.html_path.read_text()
    link = tmp_path / "link"
    link.symlink_to(out)
    with pytest.raises(ValueError, match="symbolic link"):
        report(systems, y, output_dir=link, n_bootstrap=0, n_folds=2, force=True)


def test_cli_refuses_to_overwrite_a_report_without_force(tmp_path, capsys, no_rendering):
    systems, y = _systems(60, 5)
    np.savez(tmp_path / "val.npz", energies=systems["over"].numpy(), labels=y.numpy())
    out = tmp_path / "rep"
    argv = ["calibrate", "--energies", str(tmp_path / "val.npz"), "--output-dir", str(out),
            "--bootstrap", "0", "--folds", "2"]  # fmt: skip
    assert run_calibrate(_parse(argv)) == 0
    before = (out / "report.json").read_text()
    with pytest.raises(ValueError, match="--force"):
        run_calibrate(_parse(argv))
    assert (out / "report.json").read_text() == before
    assert run_calibrate(_parse([*argv, "--force", "--title", "again"])) == 0
    assert json.loads((out / "report.json").read_text())["title"] == "again"
    capsys.readouterr()


# ------------------------------------------------------------------ input formats and errors
def _run_cli(argv, capsys):
    from gibbsebm.cli import main

    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _io_data(n=60, k=3, seed=7):
    g = torch.Generator().manual_seed(seed)
    e = 2 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(-e, 1), 1, generator=g).squeeze(1)
    return e.numpy(), y.numpy()


@pytest.mark.parametrize("fmt", ["npy", "npz", "npz_single", "pt", "pt_dict", "csv"])
def test_every_input_format_gives_the_same_energies(tmp_path, fmt):
    from gibbsebm.calibration.files import load_energy_matrix

    e, y = _io_data()
    f = tmp_path / f"e.{fmt.split('_')[0]}"
    if fmt == "npy":
        np.save(f, e)
    elif fmt == "npz":
        np.savez(f, energies=e, labels=y)
    elif fmt == "npz_single":
        np.savez(f, whatever=e)
    elif fmt == "pt":
        torch.save(torch.from_numpy(e), f)
    elif fmt == "pt_dict":
        torch.save({"energies": torch.from_numpy(e), "labels": torch.from_numpy(y)}, f)
    else:
        f.write_text("\n".join(",".join(f"{v:.17g}" for v in r) for r in e) + "\n")
    d = load_energies(f)
    assert np.array_equal(d["energies"]["e"], e)
    if fmt in ("npz", "pt_dict"):
        assert np.array_equal(d["labels"], y)
    if fmt not in ("npz", "pt_dict"):
        assert np.array_equal(load_energy_matrix(f), e)
    # logits flip the sign: energies = -logits
    assert np.array_equal(load_energies(f, logits=True)["energies"]["e"], -e)


def test_cli_logits_pt_and_key_give_the_report_of_the_energies(tmp_path, capsys, no_rendering):
    e, y = _io_data(90, 4, seed=8)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "e.npy", e)
    torch.save({"logits": torch.from_numpy(-e), "other": torch.zeros(3)}, tmp_path / "l.pt")
    common = ["--labels", str(tmp_path / "y.npy"), "--bootstrap", "20", "--folds", "2"]
    code, _, err = _run_cli(
        ["calibrate", "--energies", str(tmp_path / "e.npy"), "--output-dir", str(tmp_path / "a"),
         *common], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = _run_cli(
        ["calibrate", "--energies", str(tmp_path / "l.pt"), "--logits", "--key", "logits",
         "--names", "e", "--output-dir", str(tmp_path / "b"), *common], capsys)  # fmt: skip
    assert code == 0, err
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert a["systems"]["e"]["beta_fit"] == b["systems"]["e"]["beta_fit"]
    assert a["systems"]["e"]["after"]["nll"] == b["systems"]["e"]["after"]["nll"]
    assert "logits" in b["data"]["sources"]["sign"]
    # without --key the two-array dict is ambiguous: one line naming the file and the arrays
    code, _, err = _run_cli(
        ["calibrate", "--energies", str(tmp_path / "l.pt"), "--output-dir", str(tmp_path / "c"),
         *common], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "l.pt" in err and "logits, other" in err and "--key" in err


def _bad_inputs(tmp_path):
    """(argv without the output folder, words the one-line error must contain)."""
    e, y = _io_data(60, 3)
    d = tmp_path
    np.save(d / "e.npy", e)
    np.save(d / "y.npy", y)
    np.save(d / "vec.npy", e[:, 0])
    np.save(d / "cube.npy", e[:, :, None])
    np.save(d / "str.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(d / "bool.npy", e > 0)
    nan = e.copy()
    nan[[5, 9], 1] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "y_short.npy", y[:-1])
    np.save(d / "y_float.npy", y + 0.5)
    ynan = y.astype(float)
    ynan[3] = np.nan
    np.save(d / "y_nan.npy", ynan)
    np.save(d / "y_big.npy", np.where(np.arange(60) == 0, 3, y))
    np.save(d / "e4.npy", np.concatenate([e, e[:, :1]], 1))
    torch.save({"energies": torch.from_numpy(nan)}, d / "nan.pt")
    (d / "code.pt").write_bytes(b"not a torch file")
    np.savez(d / "two.npz", a=e, b=e)
    (d / "nan.csv").write_text("c0,c1,c2,label\n1,2,nan,0\n1,2,3,1\n")
    lab = ["--labels", str(d / "y.npy")]
    return [
        (["--energies", str(d / "vec.npy"), *lab], ["vec.npy", "2-D", "(60,)"]),
        (["--energies", str(d / "cube.npy"), *lab], ["cube.npy", "2-D", "(60, 3, 1)"]),
        (["--energies", str(d / "str.npy"), *lab], ["str.npy", "dtype <U1", "(2, 2)"]),
        (["--energies", str(d / "bool.npy"), *lab], ["bool.npy", "dtype bool"]),
        (["--energies", str(d / "nan.npy"), *lab], ["nan.npy", "2 NaN", "(60, 3)", "row 5"]),
        (["--energies", str(d / "nan.pt"), *lab], ["nan.pt", "2 NaN", "(60, 3)"]),
        (["--energies", str(d / "nan.csv")], ["nan.csv", "1 NaN", "row 0"]),
        (["--energies", str(d / "code.pt"), *lab], ["code.pt", "weights_only=True"]),
        (["--energies", str(d / "two.npz"), *lab], ["two.npz", "a, b", "--key"]),
        (["--energies", str(d / "two.npz"), "--key", "c", *lab], ["two.npz", "'c'"]),
        (
            ["--energies", str(d / "e.npy"), "--labels", str(d / "y_short.npy")],
            ["y_short.npy", "59 labels", "(59,)", "60 rows", "e.npy"],
        ),
        (
            ["--energies", str(d / "e.npy"), "--labels", str(d / "y_float.npy")],
            ["y_float.npy", "integers", "entry 0 is 1.5"],
        ),
        (
            ["--energies", str(d / "e.npy"), "--labels", str(d / "y_nan.npy")],
            ["y_nan.npy", "1 NaN", "entry 3"],
        ),
        (
            ["--energies", str(d / "e.npy"), "--labels", str(d / "y_big.npy")],
            ["y_big.npy", "label 3", "3 classes"],
        ),
        (
            ["--energies", str(d / "e.npy"), str(d / "e4.npy"), *lab],
            ["e4.npy", "(60, 4)", "(60, 3)"],
        ),
        (
            ["--energies", str(d / "e.npy"), *lab, "--ood-energies", str(d / "e4.npy")],
            ["e4.npy", "(60, 4)", "3 classes"],
        ),
    ]


def test_bad_inputs_are_one_line_errors_naming_file_and_shape(tmp_path, capsys):
    from gibbsebm.calibration.files import CalibrationInputError

    for i, (argv, words) in enumerate(_bad_inputs(tmp_path)):
        out = tmp_path / f"out{i}"
        code, _, err = _run_cli(["calibrate", *argv, "--output-dir", str(out)], capsys)
        assert code == 2, (argv, err)
        assert err.startswith("gibbsebm: error: ") and err.count("\n") == 1, err
        for w in words:
            assert w in err, (w, err)
        assert not out.exists()  # nothing written for a bad input
        # the library raises its own error type (a ValueError) with the path attached
        with pytest.raises(CalibrationInputError) as info:
            run_calibrate(_parse(["calibrate", *argv, "--output-dir", str(out)]))
        assert info.value.path is not None and Path(info.value.path).name in err


# ------------------------------------------------------------------ verdict, style, counts
def test_verdict_opens_the_report_with_paired_intervals(crossfit_report):
    rep = crossfit_report
    v = rep.data["verdict"]
    html = rep.html_path.read_text()
    md = rep.markdown_path.read_text()
    # first thing after the title, in both renderings
    assert html.index('id="verdict"') < html.index("<h2>Data</h2>")
    assert md.splitlines()[2].startswith("**Verdict.**")
    assert v["best"] in rep.systems and v["ranking_by_nll"][0] == v["best"]
    # point differences are exactly the differences of the metrics in the tables
    for s, r in rep.systems.items():
        d = v["comparisons"][f"{s}: fitted beta vs beta = 1"]
        assert d["nll"]["value"] == pytest.approx(r.after["nll"].value - r.before["nll"].value)
        assert d["ece"]["value"] == pytest.approx(r.after["ece"].value - r.before["ece"].value)
        assert d["nll"]["ci_low"] <= d["nll"]["value"] <= d["nll"]["ci_high"]
    # 'over' is 3x overconfident: fitting beta must be a clear improvement on both metrics
    d = v["comparisons"]["over: fitted beta vs beta = 1"]
    assert d["nll"]["ci_high"] < 0 and d["ece"]["ci_high"] < 0
    assert "95% paired bootstrap CI" in v["text"]


def test_verdict_says_not_distinguishable_for_a_calibrated_system(tmp_path, no_rendering):
    # energies that are exactly calibrated at beta = 1: the fitted beta cannot be told apart
    g = torch.Generator().manual_seed(11)
    e = torch.randn(200, 3, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(-e, 1), 1, generator=g).squeeze(1)
    rep = report(e, y, output_dir=tmp_path / "r", n_bootstrap=200, n_folds=3)
    v = rep.data["verdict"]
    d = v["comparisons"][f"{v['best']}: fitted beta vs beta = 1"]["nll"]
    assert d["ci_low"] < 0 < d["ci_high"]
    assert "cannot be told apart" in v["text"] and "not distinguishable" in v["text"]
    # negative control: the same labels with energies 4x too sharp are clearly improved
    rep = report(4 * e, y, output_dir=tmp_path / "s", n_bootstrap=200, n_folds=3)
    assert "is better than the raw energies" in rep.data["verdict"]["text"]
    assert "not distinguishable" not in rep.data["verdict"]["text"]


def test_report_inlines_the_packaged_style_sheet(crossfit_report):
    from gibbsebm.calibration._page import css

    html = crossfit_report.html_path.read_text()
    sheet = css()
    assert "@media print" in sheet and "overflow-x:auto" in sheet
    assert sheet in html and 'name="viewport"' in html
    assert html.count('<div class="table-wrap">') == html.count("<table>")


def test_reliability_diagram_shows_per_bin_counts_and_keeps_legends_off_the_bars():
    from gibbsebm.calibration import expected_calibration_error, plots

    g = torch.Generator().manual_seed(3)
    p = torch.softmax(3 * torch.randn(300, 3, generator=g, dtype=torch.float64), 1)
    y = torch.multinomial(p, 1, generator=g).squeeze(1)
    r = expected_calibration_error(p, y, n_bins=10, n_bootstrap=0)
    fig = plots.reliability_diagram(r)
    ax, counts = fig.axes[:2]
    heights = [b.get_height() for b in counts.containers[0]]
    assert heights == list(r.bins.counts)  # one count bar per bin, empty ones included
    assert ax.get_legend() is None  # the legend sits under the count axes, outside the data
    leg = counts.get_legend()
    assert leg is not None and leg.get_bbox_to_anchor().y1 < counts.get_window_extent().y0 + 1
    assert "ECE" in ax.get_title()
