"""The HTML page and Markdown pieces every gibbsebm report shares (calibration, sampling runs).

One style sheet (``report.css``, package data) is inlined in every page, so a report is one
self-contained file that reads at any width and prints cleanly. User text (titles, system or
coordinate names, descriptions) is escaped here: :func:`html.escape` for HTML, :func:`md` for
Markdown. The sampling run report (:mod:`gibbsebm.workflow.run_report`) imports this module
from the layer above.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "css",
    "page",
    "table",
    "figure",
    "verdict",
    "md",
    "md_table",
    "md_escape_cells",
    "num",
]


@lru_cache(maxsize=1)
def css() -> str:
    """The report style sheet (``gibbsebm/calibration/report.css``)."""
    return resources.files("gibbsebm.calibration").joinpath("report.css").read_text("utf-8")


def page(title: str, body: Iterable[str]) -> str:
    """A complete HTML document: ``title`` (escaped) and the ``body`` parts (already HTML)."""
    e = html.escape
    head = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)}</title>\n<style>\n{css()}</style></head>\n<body>\n"
        f"<h1>{e(title)}</h1>"
    )
    return "\n".join([head, *body, "</body></html>\n"])


def verdict(text: str, tone: str = "") -> str:
    """The verdict box: ``text`` (plain, escaped) in a ``<p class="verdict">``."""
    cls = f"verdict {tone}".strip()
    return f'<p class="{cls}" id="verdict"><strong>Verdict.</strong> {html.escape(text)}</p>'


def table(title: str | None, header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A titled table in a horizontally scrolling wrapper (cells are plain text, escaped)."""
    e = html.escape
    out = [f"<h2>{e(title)}</h2>"] if title else []
    out.append('<div class="table-wrap"><table><thead><tr>')
    out += [f"<th>{e(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def figure(key: str, png: bytes, caption: str) -> str:
    """A figure with its PNG embedded as base64 and an escaped caption."""
    e = html.escape
    b64 = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{e(key)}"><img alt="{e(key)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


_MD_SPECIAL = set("\\`*_{}[]()#+-.!|~>\"'$:")


def md(text: Any) -> str:
    """User text for Markdown: HTML-special characters as entities, Markdown punctuation
    backslash-escaped, line breaks and other control characters as spaces."""
    out = []
    for c in str(text):
        if c == "&":
            out.append("&amp;")
        elif c == "<":
            out.append("&lt;")
        elif c == ">":
            out.append("&gt;")
        elif c in _MD_SPECIAL:
            out.append("\\" + c)
        elif c < " " or c == "\x7f" or c in "\u2028\u2029\x85":
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


PIPE = re.compile(r"(?<!\\)\|")  # a pipe not escaped yet (user text is escaped already)


def md_escape_cells(row: Sequence[str]) -> list[str]:
    """Cells with any unescaped pipe escaped (so a cell never breaks its table row)."""
    return [PIPE.sub(r"\\|", str(c)) for c in row]


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table (cells already Markdown)."""
    out = ["| " + " | ".join(md_escape_cells(header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_escape_cells(r)) + " |" for r in rows]
    return out


def num(x: Any, spec: str = ".4g") -> str:
    """A number for a report cell: ``format(x, spec)``; ``"n/a"`` for None, NaN or anything
    that is not a number; ``"inf"``/``"-inf"`` for infinities."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)
