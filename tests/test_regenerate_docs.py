"""The docs' numbers come from ``scripts/regenerate_docs.py``: the committed snippets match the
committed JSON, a changed number changes its snippet, and every snippet is shown on a page.

The renderers run on the saved JSON only (no example or benchmark is rerun here), so these
tests take seconds.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "generated"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "regenerate_docs", ROOT / "scripts" / "regenerate_docs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["regenerate_docs"] = mod
    spec.loader.exec_module(mod)
    return mod


rd = _load_script()
NAMES = [s.name for s in rd.SNIPPETS]
INCLUDE = re.compile(r'^\s*--8<-- "docs/generated/([^"]+)\.md"\s*$', re.MULTILINE)


def _pages() -> dict[Path, str]:
    return {
        p: p.read_text("utf-8")
        for p in (ROOT / "docs").rglob("*.md")
        if "generated" not in p.relative_to(ROOT / "docs").parts
    }


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A copy of the generated files, the saved data and the README that the script writes to."""
    gen = tmp_path / "generated"
    shutil.copytree(GENERATED, gen)
    res = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", res)
    readme = tmp_path / "README.md"
    shutil.copyfile(ROOT / "README.md", readme)
    monkeypatch.setattr(rd, "GENERATED", gen)
    monkeypatch.setattr(rd, "DATA", gen / "data")
    monkeypatch.setattr(rd, "RESULTS", res)
    monkeypatch.setattr(rd, "README", readme)
    return tmp_path


def test_check_passes_on_the_committed_tree(capsys):
    assert rd.main(["--check"]) == 0
    assert f"{len(NAMES)} generated files up to date" in capsys.readouterr().out


def test_a_changed_number_changes_its_snippet_and_check_catches_the_stale_one(sandbox):
    path = sandbox / "results" / "pyro_benchmark.json"
    data = json.loads(path.read_text())
    data["results"][0]["ratio_ess_per_s"] = 777.0
    path.write_text(json.dumps(data))
    # negative control: the committed snippet is now stale
    assert rd.main(["--check", "--only", "pyro_benchmark_table"]) == 1
    assert rd.main(["--tables-only", "--only", "pyro_benchmark_table"]) == 0
    assert "| 777 |" in (sandbox / "generated" / "pyro_benchmark_table.md").read_text()
    assert rd.main(["--check", "--only", "pyro_benchmark_table"]) == 0


def test_a_changed_example_output_changes_the_guide(sandbox):
    path = sandbox / "generated" / "data" / "double_well.json"
    data = json.loads(path.read_text())
    data["results"][0]["left"] = 0.987654
    path.write_text(json.dumps(data))
    assert rd.main(["--check", "--only", "double_well_table"]) == 1
    rd.main(["--tables-only", "--only", "double_well_table"])
    assert "| 0.988 |" in (sandbox / "generated" / "double_well_table.md").read_text()


def test_a_stale_readme_block_fails_check_and_is_rewritten_in_place(sandbox):
    readme = sandbox / "README.md"
    text = readme.read_text()
    _, body = rd._readme_block(text, "readme_ais_seeds")
    assert body and "seeds" in body
    readme.write_text(text.replace(body, "hand-copied: 12 of 12 seeds, mean z +9.99"))
    assert rd.main(["--check", "--only", "readme_ais_seeds"]) == 1
    rd.main(["--tables-only", "--only", "readme_ais_seeds"])
    assert readme.read_text() == text


def test_every_snippet_is_included_by_a_page_or_pending():
    included = {name for text in _pages().values() for name in INCLUDE.findall(text)}
    readme = (ROOT / "README.md").read_text()
    for name in NAMES:
        if name in rd.README_BLOCKS:
            assert f"<!-- generated:{name} -->" in readme
        elif name in rd.PENDING:
            assert name not in included, f"{name} is placed: take it off PENDING"
        else:
            assert name in included, f"docs/generated/{name}.md is on no page"
    # and every include names a registered snippet
    assert included <= set(NAMES)


def test_generated_folder_holds_only_registered_snippets():
    on_disk = {p.stem for p in GENERATED.glob("*.md")}
    assert on_disk == {n for n in NAMES if n not in rd.README_BLOCKS}
    for s in rd.SNIPPETS:
        for src in s.sources:
            assert (ROOT / src).is_file(), f"{s.name}: source {src} missing"


def test_list_names_every_snippet(capsys):
    assert rd.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert re.search(rf"^{name}: ", out, re.MULTILINE)
    assert ("pending" in out) == bool(rd.PENDING)


def test_unknown_names_are_refused():
    with pytest.raises(SystemExit, match="unknown snippet"):
        rd.main(["--check", "--only", "no_such_table"])
    with pytest.raises(SystemExit, match="unknown benchmark"):
        rd.main(["--rerun-benchmark", "no_such_benchmark"])


def test_every_example_producer_has_saved_data():
    for ex in rd.EXAMPLES + rd.SLOW_EXAMPLES:
        assert (ROOT / ex.argv[0]).is_file()
        assert (GENERATED / "data" / f"{ex.name}.json").is_file(), ex.name


@pytest.mark.parametrize(
    ("page", "snippet", "hand_copied"),
    [
        ("guides/double_well.md", "double_well_table", "| 0.25 | hmc |"),
        ("calibration.md", "calibration_digits_table", "| ECE | 0.0"),
        ("calibration.md", "calibration_temperature_table", "| NLL | 1.0"),
        ("learning.md", "learning_spiral_table", "| PCD + Langevin |"),
        ("learning.md", "learning_jem_table", "| JEM (CE + PCD) |"),
        ("learning.md", "learning_rbm_table", "| gibbsebm CD-1 |"),
        ("guides/bayesian_workflow.md", "pyro_benchmark_table", "| eight schools"),
        ("multimodal.md", "multimodal_table", "| double-well-4d-16modes"),
        ("benchmarks/diagnostics.md", "diagnostics_table", "| 64 x 100 x 10 |"),
        ("benchmarks/partition.md", "benchmark_partition", "| ais | default |"),
        ("benchmarks/ray.md", "benchmark_ray", "|"),
        ("guides/rbm_digits.md", "guide_rbm_digits", "AIS gives \\(\\log Z ="),
        ("guides/gibbs_posterior_calibration.md", "guide_gibbs_posterior", "covers the true"),
        ("multimodal.md", "coverage_tables", "| Gaussian 2-D | 1.00 |"),
        ("multimodal.md", "coverage_new_rules", "| Student-t, nu = 3, 2-D | 40 |"),
        ("multimodal.md", "coverage_before", "| `bdmc` | Gaussian 2-D |"),
        ("reliability.md", "fuzz_table", "| `Gibbs` | 60 |"),
        ("benchmarks/diagnostics.md", "diagnostics_micro", "| rank transform's order"),
        ("multimodal.md", "pt_schedule_table", "| 8-D Gaussian | linear, 8 temperatures |"),
        ("multimodal.md", "pt_basin_checks", "of the draws fell outside every found basin"),
        ("ray.md", "ray_pays_off", "`ray.init` took"),
        ("guides/bayesian_workflow.md", "guide_bayesian_workflow", "smallest bulk ESS"),
    ],
)
def test_converted_pages_include_the_snippet_not_a_copy(page, snippet, hand_copied):
    text = (ROOT / "docs" / page).read_text()
    assert f'--8<-- "docs/generated/{snippet}.md"' in text
    assert hand_copied not in text
    assert hand_copied in (GENERATED / f"{snippet}.md").read_text()


def test_why_page_is_second_in_nav_and_its_figures_are_generated():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    assert nav[1] == {"Why gibbsebm": "why.md"}
    text = (ROOT / "docs" / "why.md").read_text()
    for name in ("why_sampling", "why_logz", "why_multimodal", "why_calibration", "why_limits"):
        assert f'--8<-- "docs/generated/{name}.md"' in text
    # the machine the numbers came from is stated, and no table on the page is hand-written
    # except the feature comparison (no digits in its cells)
    assert "no GPU" in text
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            assert not re.search(r"\d\.\d|\d{3}", line.replace("1.9", "").replace("1.7", "")), line


def test_default_run_reruns_only_the_producers_of_the_selected_snippets(sandbox, monkeypatch):
    ran = []
    monkeypatch.setattr(rd, "run_example", lambda ex: ran.append(ex.name))
    monkeypatch.setattr(rd, "run_job", lambda name: ran.append(name))
    assert rd.main(["--only", "double_well_table,readme_ais_seeds,benchmark_ray"]) == 0
    assert sorted(ran) == ["double_well", "readme_ais_seeds"]  # benchmarks are never rerun
    ran.clear()
    assert rd.main(["--tables-only"]) == 0 and ran == []


def test_rerun_benchmark_keeps_the_pages_that_include_snippets(tmp_path, monkeypatch):
    """A benchmark that writes its whole page (ray_benchmark.py) must not replace the include."""
    page = tmp_path / "docs" / "benchmarks" / "ray.md"
    page.parent.mkdir(parents=True)
    page.write_text('--8<-- "docs/generated/benchmark_ray.md"\n')
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        page.write_text("# Ray executor benchmark\n\n| a whole page |\n")
        return rd.subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(rd, "ROOT", tmp_path)
    monkeypatch.setattr(rd.subprocess, "run", fake_run)
    rd.run_benchmark(next(b for b in rd.BENCHMARKS if b.name == "ray"))
    assert calls and calls[0][1] == "benchmarks/ray_benchmark.py"
    assert page.read_text() == '--8<-- "docs/generated/benchmark_ray.md"\n'


def test_a_missed_coverage_run_changes_the_coverage_table(sandbox):
    """Negative control: one trusted run moved 5 stderr off the truth is counted as a miss."""
    path = sandbox / "results" / f"{rd.COVERAGE_FILE}.json"
    data = json.loads(path.read_text())
    run = next(
        r for r in data["runs"] if r["cell"] == "gaussian-2d" and r["method"] == "importance"
    )
    run["stderr"], run["log_z"] = 0.1, run["truth"] + 0.5
    path.write_text(json.dumps(data))
    assert rd.main(["--check", "--only", "coverage_tables"]) == 1
    rd.main(["--tables-only", "--only", "coverage_tables"])
    text = (sandbox / "generated" / "coverage_tables.md").read_text()
    assert "| Gaussian 2-D | 1.00 | 0.97 ± 0.03 (39/40) | +5.00 |" in text


def test_rerun_benchmark_passes_its_environment_and_reports_unwritten_outputs(
    tmp_path, monkeypatch
):
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    monkeypatch.setattr(rd, "ROOT", tmp_path)
    write = "import os, pathlib; pathlib.Path(os.environ['OUT_FILE']).write_text('1')"
    bench = rd.Benchmark("w", ("-c", write), ("a.json", "b.json"), (("OUT_FILE", "a.json"),))
    assert rd.run_benchmark(bench) == ["b.json"]  # a.json written, b.json never
    assert (tmp_path / "a.json").read_text() == "1"
    failing = rd.Benchmark("f", ("-c", "raise SystemExit(3)"), ("a.json",))
    with pytest.raises(SystemExit, match="exited with status 3"):
        rd.run_benchmark(failing)


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+\.png)\)")


def test_every_figure_on_a_page_has_a_producer():
    """Each PNG a page shows is written by an example the script runs (its figure folder and
    a ``savefig`` of that name) or is an output of a ``--rerun-benchmark`` producer."""
    folders = {ex.figures: ex for ex in rd.EXAMPLES + rd.SLOW_EXAMPLES if ex.figures}
    bench_outputs = {o for b in rd.BENCHMARKS for o in b.outputs}
    shown = set()
    for page, text in _pages().items():
        for ref in IMAGE.findall(text):
            path = (page.parent / ref).resolve().relative_to(ROOT)
            assert (ROOT / path).is_file(), f"{page.name}: {ref} missing"
            shown.add(path)
    assert shown
    for path in shown:
        rel = path.relative_to("docs/figures")
        if len(rel.parts) == 2 and rel.parts[0] in folders:
            scripts = [
                (ROOT / ex.argv[0]).read_text()
                for ex in rd.EXAMPLES + rd.SLOW_EXAMPLES
                if ex.figures == rel.parts[0]
            ]
            assert any(f'"{rel.name}"' in t for t in scripts), f"{path}: no example saves it"
        else:
            assert str(path) in bench_outputs, f"{path}: no producer in regenerate_docs.py"
