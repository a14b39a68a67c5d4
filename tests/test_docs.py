"""The documentation renders: no raw reST role on a built page, math shipped with the docs, and
every generated snippet (``--8<-- "docs/generated/x.md"``) expanded in place.

``GIBBSEBM_DOCS_SITE=<folder>`` points the page check at a site already built (CI builds it
with ``mkdocs build --strict`` and passes the folder); without it the check builds the site
itself and is marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|math|ref):`")
sys.path.insert(0, str(ROOT / "docs" / "_ext"))


def _raw_roles_in_site(site: Path) -> dict[str, list[str]]:
    found = {}
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        # roles show as ':func:<code>x</code>' once rendered
        hits = re.findall(r":(?:func|class|meth|mod|data|attr|exc|obj|math|ref):<code>", text)
        hits += re.findall(r"<p>\.\. math::</p>", text)
        if hits:
            found[str(page.relative_to(site))] = hits[:3]
    return found


SNIPPET_LINE = re.compile(r'^\s*--8<-- "([^"]+)"\s*$', re.MULTILINE)


def _unexpanded_snippets(site: Path) -> list[str]:
    """Pages that show an include line as text (the snippets extension did not run on it)."""
    out = []
    for page in site.rglob("*.html"):
        if re.search(r"--8(?:&lt;|<)--", page.read_text("utf-8")):
            out.append(str(page.relative_to(site)))
    return out


def _snippets_config() -> dict:
    import yaml

    conf = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    for ext in conf["markdown_extensions"]:
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            return ext["pymdownx.snippets"]
    raise AssertionError("mkdocs.yml does not enable pymdownx.snippets")


def _render_with_snippets(text: str) -> str:
    import markdown

    conf = dict(_snippets_config())
    conf["base_path"] = [str(ROOT / p) for p in conf.get("base_path", ["."])]
    return markdown.markdown(
        text,
        extensions=["tables", "pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": conf},
    )


def test_snippet_includes_expand_and_missing_ones_fail():
    """The include lines the pages use expand with mkdocs.yml's settings; a missing file fails."""
    conf = _snippets_config()
    assert conf.get("check_paths") is True  # a missing snippet must fail the strict build
    html = _render_with_snippets('--8<-- "docs/generated/double_well_table.md"\n')
    assert "<table>" in html and "--8&lt;--" not in html and "P(left) sampled" in html
    with pytest.raises(Exception, match="(?i)snippet|no_such"):
        _render_with_snippets('--8<-- "docs/generated/no_such_snippet.md"\n')


def test_every_include_line_names_an_existing_file():
    missing = []
    for page in (ROOT / "docs").rglob("*.md"):
        if "generated" in page.relative_to(ROOT / "docs").parts:
            continue
        for target in SNIPPET_LINE.findall(page.read_text("utf-8")):
            if not (ROOT / target).is_file():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_unexpanded_include_is_caught(tmp_path):
    """Negative control for the built-site check: a page showing the include line is reported."""
    (tmp_path / "ok.html").write_text("<table><tr><td>1</td></tr></table>")
    (tmp_path / "bad.html").write_text('<p>--8&lt;-- "docs/generated/x.md"</p>')
    assert _unexpanded_snippets(tmp_path) == ["bad.html"]


def _external_scripts(site: Path) -> list[str]:
    out = []
    for page in site.rglob("*.html"):
        for src in re.findall(r'<script[^>]+src="(https?:[^"]+)"', page.read_text("utf-8")):
            out.append(f"{page.relative_to(site)}: {src}")
    return out


def test_converter_renders_every_role():
    from rst_roles import convert

    text = (
        "See :func:`~gibbsebm.partition.log_partition` and :class:`Gibbs`.\n\n"
        "    .. math::\n\n        \\log Z = x\n\n    and :math:`\\beta > 0`."
    )
    out = convert(text, "gibbsebm.distribution")
    assert not RAW_ROLE.search(out) and ".. math::" not in out
    assert 'identifier="gibbsebm.partition.log_partition"' in out and "<code>log_partition()" in out
    assert 'identifier="gibbsebm.distribution.Gibbs"' in out
    assert "\\[" in out and "\\(\\beta > 0\\)" in out
    # negative control: the raw text is caught by the same pattern
    assert RAW_ROLE.search(text)


def test_every_docstring_converts_cleanly():
    """Every docstring of the package has no role left after conversion."""
    import ast

    from rst_roles import convert

    left = []
    for path in (ROOT / "gibbsebm").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = [tree] + [
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        for node in nodes:
            doc = ast.get_docstring(node, clean=True)
            if doc and RAW_ROLE.search(convert(doc, "gibbsebm")):
                left.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}")
    assert not left, f"docstrings with roles the converter does not render: {left[:10]}"


def _site() -> Path:
    given = os.environ.get("GIBBSEBM_DOCS_SITE")
    if given:
        return Path(given)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "gibbsebm-docs-test-site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return out


@pytest.mark.skipif(
    not os.environ.get("GIBBSEBM_DOCS_SITE"),
    reason="set GIBBSEBM_DOCS_SITE to a built site (CI does), or run test_built_site_slow",
)
def test_built_site_has_no_raw_role_and_no_cdn():
    site = _site()
    assert (site / "index.html").exists()
    assert not _raw_roles_in_site(site)
    assert not _external_scripts(site)
    assert not _unexpanded_snippets(site)


@pytest.mark.slow
def test_built_site_slow():
    site = _site()
    assert not _raw_roles_in_site(site)
    assert not _external_scripts(site)
    assert not _unexpanded_snippets(site)
