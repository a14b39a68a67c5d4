"""The CPU allocator tuning of the run loop (:func:`gibbsebm._run_loop.tune_cpu_allocator`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gibbsebm import _run_loop

_PROBE = (
    "import gibbsebm._run_loop as r; a = r.tune_cpu_allocator(); b = r.tune_cpu_allocator(); "
    "print(a, b)"
)


def _probe(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("GIBBSEBM_MALLOC_TUNE", None)
    if env_value is not None:
        env["GIBBSEBM_MALLOC_TUNE"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def test_opt_out_leaves_the_allocator_alone():
    assert _probe("0") == "False False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applied_once_on_glibc():
    import ctypes

    if not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"):
        pytest.skip("not glibc")
    assert _probe(None) == "True True"


def test_idempotent_in_process():
    first = _run_loop.tune_cpu_allocator()
    assert _run_loop.tune_cpu_allocator() is first
