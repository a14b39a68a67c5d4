"""The ``gibbsebm`` command line: ``demo``, ``sample``, ``logz`` and ``calibrate``.

Every command writes into a *run folder* (``--output-dir``, default ``runs/<command>-<time>``)
and prints its path. An energy is named in one way everywhere:

* a built-in name with parameters, ``--energy ising --param L=8 --param J=1.0``
  (``gibbsebm sample --list-energies`` lists them with their parameters), or
* ``package.module:attribute`` (or ``path/to/file.py:attribute``) for your own: an energy
  callable or module, a class or factory (called with the ``--param`` values), or a ready
  :class:`gibbsebm.Gibbs` distribution.

Options can also come from a TOML file (``--config run.toml``); options given on the command
line win. Keys are the long option names with ``_`` for ``-``, plus tables ``[params]`` and
``[options]`` (sampler or estimator keyword arguments)::

    energy = "ising"
    beta = 0.4407
    method = "gwg"
    num_chains = 32
    [params]
    L = 8

User errors (unknown energy, bad parameter, unreadable file, beta <= 0, a run folder that is
not empty, ...) print one line starting with ``gibbsebm: error:`` on stderr and exit with
status 2; set ``GIBBSEBM_TRACEBACK=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import calibrate, demo, logz, sample
from ._common import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, _Formatter, _Parser
from ._common import to_jsonable as to_jsonable  # re-exported: gibbsebm.cli.to_jsonable
from ._common import write_json as write_json
from ._energies import BUILTIN_ENERGIES, make_energy
from ._energies import BuiltinEnergy as BuiltinEnergy
from ._energies import Param as Param

__all__ = ["main", "build_parser", "UsageError", "BUILTIN_ENERGIES", "make_energy"]

_MAIN_EPILOG = """\
examples:
  gibbsebm demo
  gibbsebm sample --energy ising --param L=8 --beta 0.4 --num-chains 32
  gibbsebm logz --energy gaussian --param dim=10 --method ais
  gibbsebm calibrate --help

run 'gibbsebm <command> --help' for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``gibbsebm`` argument parser (subcommands ``demo``, ``sample``, ``logz``, ``calibrate``)."""
    from .. import __version__

    parser = _Parser(
        prog="gibbsebm",
        description="Energy-based models as Gibbs distributions: sample, estimate log Z, calibrate.",
        epilog=_MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"gibbsebm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in (demo, sample, logz, calibrate):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gibbsebm`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on a user error (one line on stderr), 130 after Ctrl-C.

    Examples
    --------
    >>> main(["sample", "--energy", "nonexistent"])  # doctest: +SKIP
    gibbsebm: error: unknown energy 'nonexistent'; built-in energies are ...
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        status = args._run(args)
    except UsageError as exc:
        return _fail(exc)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        # bad input caught by the library's own checks (ValueError names the problem)
        return _fail(exc)
    except KeyboardInterrupt:
        print("gibbsebm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(status or 0)


def _fail(exc: BaseException) -> int:
    if os.environ.get("GIBBSEBM_TRACEBACK"):
        raise exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, FileNotFoundError | PermissionError) and exc.filename:
        msg = f"cannot read {exc.filename!r}: {exc.strerror}"
    print(f"gibbsebm: error: {msg}", file=sys.stderr)
    return EXIT_USAGE
