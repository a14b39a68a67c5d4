"""Every command shown to users runs: the README, the docs and every ``--help`` epilog.

The commands are *collected*, not listed here: a fenced code block line or an inline code span
that starts with ``gibbsebm``, ``python examples/``, ``python benchmarks/`` or
``python scripts/`` is a documented command, and so is every ``gibbsebm ...`` line of a
``--help`` epilog. A new command in the docs is therefore tested without anyone adding it here.

How each kind runs (in a fresh folder, with the files it names created first):

* ``gibbsebm ...``: in-process through :func:`gibbsebm.cli.main`, exactly as written; it must
  exit with status 0. The few that take over ~20 s on two cores (the full demo, the long TOML
  run) run as written in the ``slow`` profile only.
* ``python examples/<name>.py ...``: as written plus ``--smoke`` in the default run (every
  example takes ``--smoke``); as written, full size, in the ``slow`` profile.
* ``python benchmarks/...`` and ``python scripts/...``: ``--help`` in the default run (the
  script parses its options without running); ``--quick`` variants as written in ``slow``;
  full benchmark runs (tens of minutes) are not run by a test, which this file says here.

Files a command reads are made by :data:`FIXTURES` (small random energies and labels, the
``my_energies.py`` module and ``run.toml`` shown in docs/cli.md, a user module for the
``--help`` example). A ``--resume`` command first runs the command that created its run folder.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PREFIXES = ("gibbsebm ", "python examples/", "python benchmarks/", "python scripts/")
NOT_A_COMMAND = ("gibbsebm: error",)  # an error message shown in the docs, not a command

# commands that take long: run as written only with -m slow (seconds measured on 2 cores)
SLOW_CLI = {
    "gibbsebm demo",  # about a minute; `gibbsebm demo --quick` runs in the default suite
    "gibbsebm sample --config run.toml --seed 3",  # L=16, 2000 draws from docs/cli.md's TOML
}


# ------------------------------------------------------------------ collecting
def _join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf = ""
    for line in lines:
        s = line.rstrip()
        if s.endswith("\\"):
            buf += s[:-1].rstrip() + " "
            continue
        out.append((buf + s.strip()).strip() if buf else s.strip())
        buf = ""
    if buf:
        out.append(buf.strip())
    return out


def _strip_comment(cmd: str) -> str:
    return " ".join(shlex.split(cmd, comments=True))


def _is_command(text: str) -> bool:
    return text.startswith(PREFIXES) and not text.startswith(NOT_A_COMMAND)


def _is_concrete(span: str) -> bool:
    """An inline span is a command to run when it has options and no placeholder.

    Prose names commands (`gibbsebm sample`) and templates (`gibbsebm sample --resume
    --output-dir RUN`, `python examples/<name>.py`); those are not runnable as written.
    """
    tokens = span.split()
    placeholder = any("<" in t or "|" in t or re.fullmatch(r"[A-Z][A-Z_]+", t) for t in tokens)
    return " -" in span and not placeholder


def commands_in_markdown(text: str) -> list[str]:
    """Commands in fenced blocks (any language) and in concrete inline code spans."""
    found: list[str] = []
    in_block = False
    block: list[str] = []
    prose: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if in_block:
                found += [c for c in _join_continuations(block) if _is_command(c)]
                block = []
            in_block = not in_block
            continue
        (block if in_block else prose).append(line)
    for span in re.findall(r"`([^`\n]+)`", "\n".join(prose)):
        if _is_command(span.strip()) and _is_concrete(span.strip()):
            found.append(span.strip())
    return [_strip_comment(c) for c in found]


def commands_in_help() -> list[str]:
    """The ``gibbsebm ...`` lines of the top-level and every subcommand's ``--help`` epilog."""
    import argparse

    from gibbsebm.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    found: list[str] = []
    for p in parsers:
        lines = (p.epilog or "").splitlines()
        found += [c for c in _join_continuations(lines) if c.startswith("gibbsebm ")]
    return [_strip_comment(c) for c in found]


def documented_commands() -> dict[str, list[str]]:
    """Each documented command -> where it is shown."""
    where: dict[str, list[str]] = {}
    for path in DOC_FILES:
        for cmd in commands_in_markdown(path.read_text()):
            where.setdefault(cmd, []).append(str(path.relative_to(ROOT)))
    for cmd in commands_in_help():
        where.setdefault(cmd, []).append("--help")
    return where


DOCUMENTED = documented_commands()


# ------------------------------------------------------------------ fixtures
def _energies_npy(
    path: Path, n: int = 120, k: int = 4, seed: int = 0, labels_seed: int = 1
) -> None:
    # informative energies: lower at the label of the matching labels file (_labels_npy)
    energies = np.random.default_rng(seed).normal(size=(n, k))
    labels = np.random.default_rng(labels_seed).integers(0, k, size=n)
    energies[np.arange(n), labels] -= 1.5
    np.save(path, energies)


def _labels_npy(path: Path, n: int = 120, k: int = 4, seed: int = 1) -> None:
    np.save(path, np.random.default_rng(seed).integers(0, k, size=n))


def _val_npz(path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=150)
    energies = rng.normal(size=(150, 4))
    energies[np.arange(150), labels] -= 1.5
    np.savez(path, energies=energies, labels=labels)


def _logits_pt(path: Path) -> None:
    import torch

    # logits that favour the labels of y.npy (same generator as _labels_npy), too sharp
    labels = np.random.default_rng(1).integers(0, 4, size=120)
    g = torch.Generator().manual_seed(7)
    logits = 3.0 * torch.randn(120, 4, generator=g, dtype=torch.float64)
    logits[torch.arange(120), torch.as_tensor(labels)] += 3.0
    torch.save(logits, path)


def _code_block_after(doc: str, marker: str) -> str:
    """The fenced block of docs/cli.md whose first line is ``marker``."""
    text = (ROOT / doc).read_text()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        if block.lstrip().startswith(marker):
            return block
    raise AssertionError(f"{doc} has no code block starting with {marker!r}")


def _my_energies(path: Path) -> None:
    path.write_text(_code_block_after("docs/cli.md", "# my_energies.py"))


def _run_toml(path: Path) -> None:
    path.write_text(_code_block_after("docs/cli.md", 'energy = "ising"'))


def _mymodels(path: Path) -> None:
    # the --help example names a user package `mymodels.energies` with `MyEnergy(width)`
    pkg = path
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "energies.py").write_text(
        "import torch\n\n"
        "class MyEnergy(torch.nn.Module):\n"
        "    def __init__(self, width=32):\n"
        "        super().__init__()\n"
        "        self.net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(),\n"
        "                                       torch.nn.Linear(width, 1))\n\n"
        "    def forward(self, y):\n"
        "        return 0.5 * (y ** 2).sum(-1) + 0.1 * self.net(y).squeeze(-1)\n"
    )


FIXTURES: dict[str, Callable[[Path], None]] = {
    "val.npz": _val_npz,
    "lin.npy": lambda p: _energies_npy(p, seed=2),
    "mlp.npy": lambda p: _energies_npy(p, seed=3),
    "y.npy": _labels_npy,
    "lin_fit.npy": lambda p: _energies_npy(p, seed=4, labels_seed=6),
    "mlp_fit.npy": lambda p: _energies_npy(p, seed=5, labels_seed=6),
    "y_fit.npy": lambda p: _labels_npy(p, seed=6),
    "logits.pt": _logits_pt,
    "my_energies": _my_energies,
    "run.toml": _run_toml,
    "mymodels.energies": _mymodels,
}
_FIXTURE_FILE = {"my_energies": "my_energies.py", "mymodels.energies": "mymodels"}


def _make_fixtures(argv: list[str], folder: Path) -> None:
    text = " ".join(argv)
    for name, make in FIXTURES.items():
        if re.search(rf"(?<![\w/.]){re.escape(name)}(?![\w])", text):
            make(folder / _FIXTURE_FILE.get(name, name))


def _run_cli(argv: list[str]) -> int:
    from gibbsebm.cli import main

    try:
        return int(main(argv) or 0)
    except SystemExit as exc:  # --help exits through argparse
        return int(exc.code or 0)


def _output_dir(argv: list[str]) -> str | None:
    return argv[argv.index("--output-dir") + 1] if "--output-dir" in argv else None


def _run_documented_cli(cmd: str, folder: Path, monkeypatch) -> None:
    argv = shlex.split(cmd)[1:]
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))  # user modules named package.module:attr
    _make_fixtures(argv, folder)
    if "--resume" in argv:
        out = _output_dir(argv)
        first = [
            c
            for c in DOCUMENTED
            if c.startswith("gibbsebm sample") and "--resume" not in c and out and out in c
        ]
        assert first, f"{cmd!r}: no documented command creates {out}"
        # the docs resume an *interrupted* run: Ctrl-C (KeyboardInterrupt from inside the
        # energy, after some hundred evaluations) ends the creating run with exit 130 and a
        # checkpoint; then the documented --resume finishes it
        from gibbsebm.energies import ising

        calls = {"n": 0}
        forward = ising.Ising2D.forward

        def interrupted(self, *a, **k):
            calls["n"] += 1
            if calls["n"] > 600:
                raise KeyboardInterrupt
            return forward(self, *a, **k)

        monkeypatch.setattr(ising.Ising2D, "forward", interrupted)
        assert _run_cli(shlex.split(first[0])[1:]) == 130, first[0]
        monkeypatch.setattr(ising.Ising2D, "forward", forward)
    rc = _run_cli(argv)
    assert rc == 0, f"{cmd!r} (shown in {DOCUMENTED[cmd]}) exited with {rc}"


def _script_path(cmd: str) -> Path:
    return ROOT / shlex.split(cmd)[1]


def _run_script(argv: list[str], folder: Path, timeout: int) -> None:
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stderr[-3000:]}"


CLI = sorted(c for c in DOCUMENTED if c.startswith("gibbsebm "))
EXAMPLES = sorted(c for c in DOCUMENTED if c.startswith("python examples/"))
SCRIPTS = sorted(c for c in DOCUMENTED if c.startswith(("python benchmarks/", "python scripts/")))


def test_commands_are_collected():
    # the collector itself: the docs show commands of every kind
    assert len(CLI) >= 8 and len(EXAMPLES) >= 8 and SCRIPTS, DOCUMENTED
    assert "gibbsebm sample --resume --output-dir runs/ising" in CLI
    assert any("--help" in w for w in DOCUMENTED["gibbsebm demo"])
    # negative control: an error message shown in the docs is not a command
    assert not any(c.startswith("gibbsebm: ") for c in DOCUMENTED)


@pytest.mark.parametrize("cmd", [c for c in CLI if c not in SLOW_CLI])
def test_documented_cli_command_runs(cmd, tmp_path, monkeypatch):
    _run_documented_cli(cmd, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("cmd", sorted(SLOW_CLI & set(CLI)))
def test_documented_cli_command_runs_slow(cmd, tmp_path, monkeypatch):
    _run_documented_cli(cmd, tmp_path, monkeypatch)


@pytest.mark.parametrize("cmd", EXAMPLES)
def test_documented_example_runs_smoke(cmd, tmp_path):
    argv = shlex.split(cmd)[1:]
    assert _script_path(cmd).is_file(), f"{cmd!r}: no such script"
    _run_script([str(ROOT / argv[0]), *argv[1:], "--smoke"], tmp_path, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("cmd", EXAMPLES)
def test_documented_example_runs_as_written(cmd, tmp_path):
    argv = shlex.split(cmd)[1:]
    _run_script([str(ROOT / argv[0]), *argv[1:]], tmp_path, timeout=3600)


@pytest.mark.parametrize("cmd", SCRIPTS)
def test_documented_script_parses(cmd, tmp_path):
    argv = shlex.split(cmd)[1:]
    assert _script_path(cmd).is_file(), f"{cmd!r}: no such script"
    _run_script([str(ROOT / argv[0]), "--help"], tmp_path, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("cmd", [c for c in SCRIPTS if "--quick" in c])
def test_documented_quick_script_runs(cmd, tmp_path):
    argv = shlex.split(cmd)[1:]
    _run_script([str(ROOT / argv[0]), *argv[1:]], tmp_path, timeout=3600)
