"""Checkpoints: an interrupted run resumed from its file gives the uninterrupted draws."""

import os

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

import gibbsebm
import gibbsebm.run as run_mod
from gibbsebm.energies import Gaussian

DT = torch.float64


class Interrupt(Exception):
    pass


def interrupting(monkeypatch, after: int):
    """Make the sampler's step raise after ``after`` calls (a crash mid-run)."""
    real = run_mod.get_spec
    calls = {"n": 0}

    def get_spec(method, dist, **kw):
        spec = real(method, dist, **kw)

        def step(*a, **k):
            calls["n"] += 1
            if calls["n"] > after:
                raise Interrupt
            return spec.step(*a, **k)

        return spec._replace(step=step)

    monkeypatch.setattr(run_mod, "get_spec", get_spec)


@pytest.mark.parametrize(
    "method, options", [("hmc", {}), ("mala", {"dense_mass": True}), ("ula", {"step_size": 0.1})]
)
def test_resume_gives_the_uninterrupted_draws(tmp_path, device, monkeypatch, method, options):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(3, dtype=DT, device=device)))
    kw = dict(
        num_chains=4,
        num_samples=40,
        num_warmup=60,
        seed=7,
        thin=2,
        progress=False,
        checkpoint_every=7,
        **options,
    )
    full = gibbsebm.sample(d, method, **kw, warn=False)
    path = tmp_path / "run.ckpt"
    # crash after warmup and 25 sampling iterations (12 recorded draws; last save at 7)
    interrupting(monkeypatch, after=(0 if method in ("hmc", "mala") else 60) + 25)
    with pytest.raises(Interrupt):
        gibbsebm.sample(d, method, checkpoint=path, **kw)
    monkeypatch.undo()
    assert os.path.exists(path)
    saved = torch.load(path, weights_only=False)
    assert saved["k"] == 7
    assert not any(p.name.startswith("run.ckpt.tmp") for p in tmp_path.iterdir())
    resumed = gibbsebm.sample(d, method, checkpoint=path, **kw, warn=False)
    assert torch.equal(resumed.draws, full.draws)
    for name in full.stats:
        assert torch.equal(resumed.stats[name], full.stats[name]), name
    # a finished checkpoint returns the same result without sampling again
    again = gibbsebm.sample(d, method, checkpoint=path, **kw, warn=False)
    assert torch.equal(again.draws, full.draws)


def test_checkpoint_of_another_run_is_refused(tmp_path, device):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT, device=device)))
    path = tmp_path / "c.ckpt"
    kw = dict(num_chains=2, num_samples=5, num_warmup=5, progress=False, checkpoint=path)
    gibbsebm.sample(d, "ula", seed=1, **kw, warn=False)
    with pytest.raises(ValueError, match="different run"):
        gibbsebm.sample(d, "ula", seed=2, **kw)
    with pytest.raises(ValueError, match="seed"):
        gibbsebm.sample(d, "ula", **kw)
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match="not a gibbsebm checkpoint"):
        gibbsebm.sample(d, "ula", seed=1, **kw)
