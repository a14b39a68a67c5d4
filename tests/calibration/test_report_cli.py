"""The report renders and holds every figure and number it promises; the CLI reads files."""

import argparse
import base64
import json
import re

import numpy as np
import pytest
import torch

from gibbsebm.calibration import report
from gibbsebm.calibration.cli import add_calibrate_parser, run_calibrate
from gibbsebm.calibration.report import METRIC_NAMES, _fmt, _fmt_beta

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
        "reliability_over",
        "reliability_under",
        "energy_vs_probability_over",
        "energy_vs_probability_under",
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
    add_calibrate_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_npz_csv_and_errors(tmp_path, capsys):
    systems, y = _systems(90, 2)
    np.savez(
        tmp_path / "val.npz",
        energies_over=systems["over"].numpy(),
        energies_under=systems["under"].numpy(),
        labels=y.numpy(),
    )
    out = tmp_path / "rep"
    args = _parse(
        [
            "calibrate",
            "--energies",
            str(tmp_path / "val.npz"),
            "--output-dir",
            str(out),
            "--bootstrap",
            "10",
            "--folds",
            "3",
        ]
    )
    assert args.func is run_calibrate
    assert run_calibrate(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = json.loads((out / "report.json").read_text())
    assert data["data"]["systems"] == ["over", "under"]
    assert data["data"]["sources"]["energies"] == str(tmp_path / "val.npz")
    # CSV with a label column, fit data from .npy files
    csv_path = tmp_path / "sys.csv"
    rows = ["c0,c1,c2,c3,label"] + [
        ",".join(f"{v:.17g}" for v in e) + f",{int(t)}" for e, t in zip(systems["over"].numpy(), y)
    ]
    csv_path.write_text("\n".join(rows) + "\n")
    np.save(tmp_path / "fit.npy", systems["over"].numpy())
    np.save(tmp_path / "fit_y.npy", y.numpy())
    args = _parse(
        [
            "calibrate",
            "--energies",
            str(csv_path),
            "--fit-energies",
            str(tmp_path / "fit.npy"),
            "--fit-labels",
            str(tmp_path / "fit_y.npy"),
            "--output-dir",
            str(tmp_path / "rep2"),
            "--bootstrap",
            "0",
        ]
    )
    run_calibrate(args)
    d2 = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert d2["data"]["n_fit"] == 90 and not d2["data"]["cross_fitted"]
    # user errors: one ValueError each, naming the problem
    np.save(tmp_path / "e.npy", systems["over"].numpy())
    cases = [
        (["--energies", str(tmp_path / "e.npy")], "no labels"),
        (["--energies", str(tmp_path / "missing.npy")], "does not exist"),
        (
            [
                "--energies",
                str(tmp_path / "e.npy"),
                "--labels",
                str(tmp_path / "fit_y.npy"),
                "--n-bins",
                "0",
            ],
            "n_bins",
        ),
        (["--energies", str(csv_path), "--output-dir", str(tmp_path)], "other files"),
    ]
    (tmp_path / "notes.txt").write_text("x")
    for extra, match in cases:
        with pytest.raises(ValueError, match=match):
            run_calibrate(_parse(["calibrate", *extra]))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="unsupported file type"):
        run_calibrate(_parse(["calibrate", "--energies", str(bad)]))
