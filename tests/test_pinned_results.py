"""Refactors keep results: the same seeds give the draws and estimates pinned in
``tests/data/pinned.json`` (written by ``tests/pinned_cases.py`` before the change)."""

from __future__ import annotations

import json

import pytest
from pinned_cases import LOGZ_CASES, PATH, SAMPLE_CASES, close, run_logz_case, run_sample_case

pytestmark = pytest.mark.usefixtures("one_thread")

with open(PATH) as _fh:
    PINNED = json.load(_fh)


@pytest.mark.parametrize("name", [c[0] for c in SAMPLE_CASES])
def test_sample_draws_pinned(name):
    got = run_sample_case(name)
    assert close(got, PINNED["sample"][name]), (got, PINNED["sample"][name])


@pytest.mark.parametrize("name", [c[0] for c in LOGZ_CASES])
def test_log_partition_pinned(name):
    got = run_logz_case(name)
    assert close(got, PINNED["log_partition"][name]), (got, PINNED["log_partition"][name])
