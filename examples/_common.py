"""What every script in ``examples/`` shares: its command line, output folder and JSON file.

Every example runs as ``python examples/<name>.py [--smoke] [--output-dir DIR] [--seed N]``:
``--smoke`` makes a tiny run (seconds; the tests run every script that way), the figures and
``results.json`` go to ``--output-dir`` (default ``runs/<name>``). Python puts the script's
folder on ``sys.path``, so ``from _common import ...`` finds this file; the tests do the same.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["example_parser", "parse_example_args", "write_results"]


def example_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options every example takes: ``--output-dir``, ``--smoke`` and ``--seed``.

    Parameters
    ----------
    doc : str
        The script's docstring; its first line describes the script in ``--help``.
    name : str
        The script's name: the default output folder is ``runs/<name>``.

    Returns
    -------
    argparse.ArgumentParser
        Add the script's own options to it, then call :func:`parse_example_args`.
    """
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument(
        "--output-dir",
        default=f"runs/{name}",
        help=f"folder for the figures and numbers (default runs/{name})",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def parse_example_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, Path]:
    """Parse ``argv`` and create the output folder; returns the options and the folder."""
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return args, out


def write_results(out: Path, result: dict[str, Any]) -> Path:
    """Write ``result`` to ``out/results.json`` (indented, plain :func:`json.dumps`)."""
    path = out / "results.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
