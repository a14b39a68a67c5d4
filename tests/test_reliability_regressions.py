"""Regression tests for the bullets of issue 12's "Why" that had no test elsewhere.

Issue 12 asks that every bullet under "Why" have a regression test that fails on the code it
was measured on. Where each bullet is tested (this file fills the gaps):

* Code execution (crafted checkpoint / shard payload): ``tests/test_files_and_resume.py``
  (``test_crafted_pickle_runs_no_code``, ``test_crafted_shard_file_runs_no_code``,
  ``test_crafted_samples_file_runs_no_code``) and
  ``tests/samplers/test_checkpoint.py::test_crafted_pickle_checkpoint_runs_no_code``.
* Resume accepts what it should refuse:
  another beta / energy / method: ``tests/samplers/test_checkpoint.py``
  (``test_resume_refuses_a_different_run``, ``test_resume_refuses_another_energy_function``),
  log Z shard folders: ``tests/test_executors.py::test_log_z_shard_folder_refuses_another_target``;
  flipped bytes: ``test_checkpoint.py::test_flipped_byte_is_a_corrupt_file``;
  symlinked ``--resume``: ``tests/test_cli.py`` (the interrupted-warmup test) and
  ``test_checkpoint.py::test_checkpoint_that_is_a_symlink_is_refused``;
  Ctrl-C: ``test_checkpoint.py::test_ctrl_c_saves_the_last_completed_draw_and_resumes``;
  warmup: ``test_plain_warmup_is_checkpointed_and_resumed_midway``,
  ``test_adaptive_warmup_interrupted_restarts_cleanly``;
  fsync before the rename: **here** (``test_files_are_fsynced_before_the_rename``).
* Silent garbage: ``tests/test_boundary_checks.py`` (scalar energy, beta in its dtype,
  ``num_steps=0`` for ais/bdmc, discrete ``init``, 1e30 offset in float32);
  R-hat of constant chains: ``tests/test_diagnostics.py`` (constant chains at different values
  give ``inf``, not NaN).
* Short warmup: ``tests/samplers/test_adaptation.py::test_short_warmup_never_freezes_the_chains``
  and ``test_too_short_warmup_warns_once_in_one_line``.
* Support and counts: ``tests/test_boundary_checks.py`` (Ising ``log_prob``, ``thin``,
  ``n_bootstrap``), ``tests/samplers/test_nuts.py::test_nuts_refuses_a_max_tree_depth_below_one``.
* NaN regions: sampling: ``tests/test_boundary_checks.py`` (redrawn starts, explicit init,
  a start region that cannot be left); log Z: **here**
  (``test_log_z_of_an_energy_nan_on_half_the_space``).
* Degenerate Laplace base: ``tests/partition/test_multimodal.py`` covers ``find_modes`` and
  ``importance`` on the 3-D quartic; the default ``log_partition`` on the docs' 2-D quartic
  (time, coverage over seeds, base named) and the ring: **here**.
* Reports and names: ``tests/calibration/test_report_cli.py`` (``<script>``, ``a/b`` vs
  ``a_b``, ``--force``).
* Network: ``tests/test_executors.py::test_ray_private_head_listens_on_loopback_only``.
* Stuck chains on real posteriors: ``tests/samplers/test_stuck_chains.py`` (another change).

Statistical checks: fixed seeds, tolerance ``K_SE`` standard errors, with a negative control.
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

import gibbsebm
from gibbsebm.runtime import files

#: |z| > 4 has probability 6e-5 for a correct estimator with the stated error.
K_SE = 4.0
#: "A smooth 2-D or 3-D problem should take seconds, not most of a minute" (issue 12, item 5);
#: 4 to 12 s measured on 2 busy CPU cores, 40 s before; the bound leaves room for a slow CI.
SECONDS_2D = 30.0


# ------------------------------------------------------------------------------ files
@pytest.mark.parametrize("kind", ["tensors", "json"])
def test_files_are_fsynced_before_the_rename(tmp_path, monkeypatch, kind):
    """The new file's bytes reach the disk before it replaces the old one; then the folder."""
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(
            (
                "fsync",
                os.path.realpath(f"/proc/self/fd/{fd}")
                if os.path.exists(f"/proc/self/fd/{fd}")
                else fd,
            )
        )
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("replace", os.fspath(dst)))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "f.bin"
    if kind == "tensors":
        files.save_tensors({"x": torch.arange(3)}, path)
    else:
        files.save_json({"a": 1}, path, kind="test")
    names = [e[0] for e in events]
    assert "replace" in names, events
    i = names.index("replace")
    assert "fsync" in names[:i], f"no fsync of the file before the rename: {events}"
    assert "fsync" in names[i + 1 :], f"no fsync of the folder after the rename: {events}"
    if os.path.isdir("/proc/self/fd"):  # Linux: name what was synced
        assert events[i + 1][1] == os.path.realpath(tmp_path), events
    # and what was written reads back
    if kind == "tensors":
        assert torch.equal(files.load_tensors(path)["x"], torch.arange(3))
    else:
        assert files.load_json(path, kind="test")["a"] == 1


# ------------------------------------------------------------------------------ log Z
def _quartic(y):
    return (y**4).sum(-1) / 4


#: log Z of exp(-sum(y^4)/4) in 2-D: (int exp(-t^4/4) dt)^2 = (2 Gamma(1/4) 4^(1/4) / 4)^2.
QUARTIC_2D = 2 * math.log(2 * math.gamma(0.25) * 4**0.25 / 4)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_default_log_z_of_the_degenerate_quartic_is_fast_and_covers_the_truth(seed):
    """Issue 12: Laplace base degenerate (Hessian 0 at the mode): 40 s and biased high, trusted."""
    torch.set_num_threads(1)
    dist = gibbsebm.Gibbs(_quartic, event_shape=(2,))
    t0 = time.perf_counter()
    est = gibbsebm.log_partition(dist, seed=seed, progress=False)
    took = time.perf_counter() - t0
    assert took < SECONDS_2D, f"{took:.1f} s for a smooth 2-D problem"
    assert est.diagnostics["base"]["kind"] != "laplace"  # the degenerate base is not used
    assert est.stderr > 0 and math.isfinite(est.stderr)
    if est.trusted:
        assert abs(est.log_z - QUARTIC_2D) < K_SE * est.stderr, (est.log_z, est.stderr)
    # negative control: the Laplace base's own log Z was 12.5 (the truth is 1.88)
    assert not abs(12.5 - QUARTIC_2D) < K_SE * est.stderr


@pytest.mark.slow  # about 11 s
def test_ring_energy_gives_an_estimate_not_a_linalg_error():
    """Issue 12: a ring-shaped energy raised a raw LinAlgError from the Laplace fit."""
    torch.set_num_threads(1)

    def ring(y):
        return 4 * ((y**2).sum(-1).sqrt() - 3) ** 2

    # log Z = log int_0^inf exp(-4 (r-3)^2) 2 pi r dr
    r = torch.linspace(0, 12, 200_001, dtype=torch.float64)
    f = torch.exp(-4 * (r - 3) ** 2) * 2 * math.pi * r
    truth = math.log(float(torch.trapezoid(f, r)))
    est = gibbsebm.log_partition(
        gibbsebm.Gibbs(ring, event_shape=(2,)), seed=0, progress=False, on_untrusted="ignore"
    )
    assert "kind" in est.diagnostics["base"]
    assert math.isfinite(est.log_z) and math.isfinite(est.stderr) and est.stderr > 0
    if est.trusted:
        assert abs(est.log_z - truth) < K_SE * est.stderr


def test_log_z_of_an_energy_nan_on_half_the_space():
    """Issue 12: an energy NaN on part of the space (log of a negative number): wrong log Z.

    E(y) = |y|^2 / 2 - log(y_0) is NaN for y_0 < 0, where the density is taken as 0:
    Z = int_0^inf y e^{-y^2/2} dy * sqrt(2 pi) = sqrt(2 pi).
    """
    torch.set_num_threads(1)

    def energy(y):
        return (y**2).sum(-1) / 2 - torch.log(y[..., 0])

    truth = 0.5 * math.log(2 * math.pi)
    est = gibbsebm.log_partition(
        gibbsebm.Gibbs(energy, event_shape=(2,)), seed=0, progress=False, on_untrusted="ignore"
    )
    assert math.isfinite(est.log_z) and est.stderr > 0
    if est.trusted:
        assert abs(est.log_z - truth) < K_SE * est.stderr, (est.log_z, est.stderr)
    # negative control: the whole-plane Gaussian's log Z (the NaN half counted) is rejected
    assert not abs(est.log_z - math.log(2 * math.pi)) < K_SE * est.stderr


def test_ais_pilot_is_not_pinned_by_particles_in_a_nan_region():
    """Fuzz finding: particles where the target is NaN die at every step size, and the pilot's
    bisection pinned the step to zero (thousands of empty steps, 35 s for a 3-D problem).

    Here (log-normal energy, NaN for y < 0, beta = 2, 3-D) the pilot took 42 steps before and
    takes 18 now; 30 separates the two.
    """
    torch.set_num_threads(1)

    def energy(y):
        return 0.5 * (torch.log(y) ** 2).sum(-1)

    est = gibbsebm.log_partition(
        gibbsebm.Gibbs(energy, 2.0, event_shape=(3,)),
        "ais",
        seed=0,
        progress=False,
        num_chains=16,
        num_steps=8,
        on_untrusted="ignore",
    )
    assert est.diagnostics["pilot_num_steps"] <= 30
    assert math.isfinite(est.log_z)


@pytest.mark.parametrize(
    "method, option", [("ais", "num_chains"), ("ais", "num_steps"), ("importance", "num_samples")]
)
def test_huge_log_z_counts_are_refused_not_allocated(method, option):
    """Fuzz finding: ``num_chains=10**12`` reached torch's allocator (a RuntimeError)."""
    dist = gibbsebm.Gibbs(gibbsebm.energies.Gaussian(torch.zeros(2)))
    with pytest.raises(ValueError, match=f"{option} = 1000000000000 exceeds the limit"):
        gibbsebm.log_partition(dist, method, seed=0, progress=False, **{option: 10**12})
