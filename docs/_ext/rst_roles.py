"""Griffe extension: render the reST roles of gibbsebm's NumPy-style docstrings in MkDocs.

The docstrings use Sphinx roles (``:func:`x```, ``:class:`x```, ``:math:`x```) and the
``.. math::`` directive, which mkdocstrings' Markdown renderer shows as literal text. Before a
docstring is parsed, this extension rewrites them into what the MkDocs stack renders:

* cross-reference roles (``func``, ``class``, ``meth``, ``mod``, ``data``, ``attr``, ``exc``,
  ``obj``) become optional autorefs: a link where the target is documented on the site, plain
  code otherwise (``~a.b.c`` shows ``c``; an undotted name is first tried in the object's
  module);
* ``:math:`...``` becomes inline math ``\\( ... \\)`` and ``.. math::`` blocks become display
  math ``\\[ ... \\]`` for ``pymdownx.arithmatex`` (MathJax, shipped with the docs, renders
  them offline).

The sources keep their reST (it reads well in ``help()`` and in editors); only the rendered
pages change. ``tests/test_docs.py`` fails when a built page still shows a raw role.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_XREF = re.compile(r":(?:py:)?(func|class|meth|mod|data|attr|exc|obj):`([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _xref(match: re.Match[str], module: str) -> str:
    target = match.group(2).strip()
    title = None
    explicit = re.match(r"^(.*?)\s*<([^>]+)>$", target)  # :func:`title <target>`
    if explicit:
        title, target = explicit.group(1), explicit.group(2)
    short = target.startswith("~")
    target = target.lstrip("~").lstrip(".")
    if title is None:
        title = target.rsplit(".", 1)[-1] if short else target
    ident = target if "." in target else f"{module}.{target}"
    if match.group(1) in ("func", "meth"):
        title = title if title.endswith(")") else title + "()"
    return (
        f'<autoref identifier="{html.escape(ident)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == ".. math::":
            indent = len(line) - len(line.lstrip())
            i += 1
            body: list[str] = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            content = [b.strip() for b in body if b.strip()]
            pad = " " * indent
            out.append(pad + "\\[")
            out.extend(pad + c for c in content)
            out.append(pad + "\\]")
            out.append("")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def convert(text: str, module: str) -> str:
    """The docstring ``text`` (of an object in ``module``) with reST roles rendered."""
    text = _math_blocks(text)
    text = _MATH.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    return _XREF.sub(lambda m: _xref(m, module), text)


class RstRoles(griffe.Extension):
    """Rewrite reST roles and math directives in every docstring before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is None or not doc.value:
            return
        module = obj.module.path if not obj.is_module else obj.path
        doc.value = convert(doc.value, module)
