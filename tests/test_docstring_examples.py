"""The examples in the public docstrings run and print what they show.

Users copy these examples; one that fails, or that raises a ``SamplingWarning`` under this
suite's warnings-as-errors setting, is a documentation bug. Each module of the package is a
test; a module that needs an optional dependency that is not installed is skipped.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gibbsebm

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(gibbsebm.__path__, prefix="gibbsebm.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, one_thread):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional dependency (ray, matplotlib) is missing
        pytest.skip(f"{name}: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, name)  # each example sees its module's globals, as pytest does
    if not tests:
        pytest.skip(f"{name}: no examples")
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
