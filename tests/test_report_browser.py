"""The reports render in a real browser: verdict visible, nothing wider than the screen.

Runs with Playwright and a Chromium: Playwright's own (``playwright install chromium``) or a
system one (``chromium``, ``chromium-browser``, ``google-chrome`` on the PATH, or the path in
``GIBBSEBM_CHROMIUM``). Skipped when neither Playwright nor a browser is available; Playwright
is not a dependency of gibbsebm. With ``GIBBSEBM_SCREENSHOTS=1`` the screenshots are written to
``docs/figures/`` (the ones the docs show), otherwise to a temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")

DOCS_FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
WIDTHS = (375, 1280)

#: Elements whose right edge passes the viewport, outside a horizontally scrolling wrapper.
OVERFLOW_JS = """
() => {
  const w = document.documentElement.clientWidth;
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > w + 1 || r.left < -1) {
      if (el.closest('.table-wrap') && el.closest('.table-wrap') !== el) continue;
      bad.push(el.tagName + (el.id ? '#' + el.id : '') + ' right=' + Math.round(r.right));
    }
  }
  return {bad: bad.slice(0, 10), scrollWidth: document.documentElement.scrollWidth, width: w};
}
"""


def _executable() -> str | None:
    env = os.environ.get("GIBBSEBM_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = None
        for exe in (None, _executable()):
            try:
                b = p.chromium.launch(executable_path=exe) if exe else p.chromium.launch()
                break
            except Exception:  # no bundled browser, or the system one does not start
                continue
        if b is None:
            pytest.skip("no Chromium available for Playwright")
        yield b
        b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A calibration report of two systems and the report of a short (warned) sampling run."""
    import gibbsebm
    from gibbsebm.calibration import report
    from gibbsebm.energies import Gaussian
    from gibbsebm.workflow.run_report import write_run_report

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    true = 2 * torch.randn(300, 4, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(-true, 1), 1, generator=g).squeeze(1)
    systems = {
        "overconfident": 3 * (true + torch.randn(300, 4, generator=g, dtype=torch.float64)),
        "underconfident": 0.3 * (true + torch.randn(300, 4, generator=g, dtype=torch.float64)),
    }
    base = tmp_path_factory.mktemp("browser")
    cal = report(systems, y, output_dir=base / "calibration", n_bootstrap=50, n_folds=3,
                 title="Calibration report (synthetic example)")  # fmt: skip
    s = gibbsebm.sample(gibbsebm.Gibbs(Gaussian(torch.zeros(3))), "mala", num_chains=4,
                        num_samples=80, num_warmup=20, seed=1, warn=False)  # fmt: skip
    run = write_run_report(base / "run", s, title="Sampling run (short, warned)",
                           settings={"method": "mala", "chains x draws": "4 x 80"})  # fmt: skip
    return {"calibration": cal.html_path, "sampling": run["html"]}


@pytest.mark.parametrize("kind", ["calibration", "sampling"])
@pytest.mark.parametrize("width", WIDTHS)
def test_report_renders_with_verdict_and_no_overflow(browser, reports, kind, width, tmp_path):
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(reports[kind].resolve().as_uri())
        verdict = page.locator("#verdict")
        assert verdict.is_visible()
        box = verdict.bounding_box()
        assert box is not None and box["y"] < 900  # above the fold: read first
        assert "Verdict." in verdict.inner_text()
        res = page.evaluate(OVERFLOW_JS)
        assert res["scrollWidth"] <= res["width"], res
        assert not res["bad"], res
        for img in page.locator("figure img").all():  # images scale down, never overflow
            b = img.bounding_box()
            assert b is not None and b["x"] + b["width"] <= width + 1
        folder = DOCS_FIGURES if os.environ.get("GIBBSEBM_SCREENSHOTS") == "1" else tmp_path
        shot = folder / f"{kind}_report_{width}px.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 1000
    finally:
        page.close()


def test_overflow_check_catches_a_too_wide_element(browser, tmp_path):
    """Negative control: the check above fails on a page with an element wider than 375 px."""
    from gibbsebm.calibration import _page

    f = tmp_path / "wide.html"
    f.write_text(_page.page("wide", [_page.verdict("x"), '<div style="width:900px">w</div>']))
    page = browser.new_page(viewport={"width": 375, "height": 600})
    try:
        page.goto(f.resolve().as_uri())
        res = page.evaluate(OVERFLOW_JS)
        assert res["bad"] and res["scrollWidth"] > res["width"]
    finally:
        page.close()
