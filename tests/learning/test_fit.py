"""fit: checkpoint/resume, samplers, monitors and clear errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from _models import QuadraticEnergy, gaussian_data

from gibbsebm.energies import RBM
from gibbsebm.learning import (
    AISLogLikelihood,
    ExactLogLikelihood,
    MMDMonitor,
    NonFiniteLossError,
    ReplayBuffer,
    fit,
    mmd,
    trainable,
)


class MLPEnergy(torch.nn.Module):
    def __init__(self, d=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)  # test-local module init only
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1)
        ).double()

    def forward(self, y):
        return self.net(y).squeeze(-1)


class CondEnergy(torch.nn.Module):
    """E(x, y) = 0.5 (y - a x)^2: a conditional Gaussian with learnable slope a."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, y):
        return 0.5 * ((y - self.a * x) ** 2).sum(-1)


def _data(n=256):
    return gaussian_data(n, seed=5)[0]


def _rbm_data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = RBM.random(8, 3, scale=1.0, generator=g, dtype=torch.float64)
    from gibbsebm import Gibbs

    return Gibbs(truth, 1.0).sample((n,), generator=g)


@pytest.mark.parametrize("method", ["pcd", "cd", "dsm", "nce"])
def test_checkpoint_resume_equals_uninterrupted_run(method, tmp_path):
    x = _data()
    kw = dict(
        batch_size=64, lr=0.01, progress=False, seed=3, num_steps=3 if "cd" in method else None
    )
    kw["sampler_options"] = {"step_size": 0.05} if "cd" in method else None
    full = MLPEnergy()
    r_full = fit(full, x, method, epochs=4, **kw)
    part = MLPEnergy()
    ck = tmp_path / "ck.pt"
    fit(part, x, method, epochs=2, checkpoint=ck, **kw)
    resumed = MLPEnergy()  # a fresh process would start from a fresh module
    r_res = fit(resumed, x, method, epochs=4, checkpoint=ck, **kw)
    assert r_res.start_epoch == 2
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h["loss"] for h in r_full.history] == [h["loss"] for h in r_res.history]
    if method == "pcd":
        assert torch.equal(r_full.buffer.states, r_res.buffer.states)
    # the checkpoint is plain data
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 4
    # negative control: a different seed does not reproduce the run
    other = MLPEnergy()
    fit(other, x, method, epochs=4, **{**kw, "seed": 4})
    assert not all(
        torch.equal(a, b) for a, b in zip(full.parameters(), other.parameters(), strict=True)
    )


def test_resume_with_wrong_seed_is_refused(tmp_path):
    x = _data()
    ck = tmp_path / "ck.pt"
    fit(MLPEnergy(), x, "dsm", epochs=1, batch_size=64, progress=False, seed=1, checkpoint=ck)
    with pytest.raises(ValueError, match="seed"):
        fit(MLPEnergy(), x, "dsm", epochs=2, batch_size=64, progress=False, seed=2, checkpoint=ck)
    with pytest.raises(ValueError, match="seed of the original run"):
        fit(MLPEnergy(), x, "dsm", epochs=2, batch_size=64, progress=False, checkpoint=ck)


def test_nan_loss_names_the_epoch_and_keeps_last_good_checkpoint(tmp_path):
    x = _data()
    e = MLPEnergy()
    ck = tmp_path / "ck.pt"
    fit(e, x, "dsm", epochs=2, batch_size=64, progress=False, seed=0, checkpoint=ck)
    good = {k: v.clone() for k, v in e.state_dict().items()}

    def poison(y, idx):  # a loss that turns NaN in the third epoch's first batch
        poison.calls += 1
        return torch.tensor(float("nan")) if poison.calls > 0 else torch.zeros(())

    poison.calls = 0
    with pytest.raises(NonFiniteLossError, match="epoch 3") as info:
        fit(
            e,
            x,
            "dsm",
            epochs=4,
            batch_size=64,
            progress=False,
            seed=0,
            checkpoint=ck,
            extra_loss=poison,
        )
    assert info.value.epoch == 3 and isinstance(info.value, ValueError)
    assert torch.load(ck, weights_only=True)["epoch"] == 2
    for k, v in e.state_dict().items():
        assert torch.equal(v, good[k])


def test_bad_inputs_raise_clear_value_errors():
    x = _data()
    e = MLPEnergy()
    with pytest.raises(ValueError, match="shaped"):
        fit(e, x[:, 0], "dsm", epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="dtype"):
        fit(e, x.float(), "dsm", epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="could not be evaluated"):
        fit(
            e,
            torch.zeros(10, 3, dtype=torch.float64),
            "dsm",
            epochs=1,
            batch_size=8,
            progress=False,
        )
    with pytest.raises(ValueError, match="no trainable parameters.*trainable"):
        fit(RBM.random(4, 2), torch.zeros(10, 4), "pcd", epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        fit(e, x, "mle", epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="event_shape"):
        rbm = trainable(RBM.random(4, 2, dtype=torch.float64))
        fit(
            rbm,
            torch.zeros(10, 5, dtype=torch.float64),
            "pcd",
            epochs=1,
            batch_size=8,
            progress=False,
        )
    with pytest.raises(ValueError, match="epochs"):
        fit(e, x, "dsm", epochs=0, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        bad = x.clone()
        bad[0, 0] = float("nan")
        fit(e, bad, "dsm", epochs=1, batch_size=8, progress=False)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            fit(e, x.cuda(), "dsm", epochs=1, batch_size=8, progress=False)


def test_wrong_device_is_refused():
    x = _data()
    e = MLPEnergy().to("meta")
    with pytest.raises(ValueError, match="meta"):
        fit(e, x, "dsm", epochs=1, batch_size=8, progress=False)


def test_replay_buffer_checks_init_fn_shape():
    with pytest.raises(ValueError, match=r"expected \(10, 2\)"):
        buf = ReplayBuffer(10, 0.5, lambda n, g: torch.zeros(n, 3), event_shape=(2,))
        buf.sample(4, torch.Generator())
    with pytest.raises(ValueError, match="returned shape"):
        ReplayBuffer(10, 0.5, lambda n, g: torch.zeros(n + 1, 2)).sample(4, torch.Generator())
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer(10, 1.5, lambda n, g: torch.zeros(n, 2))
    x = _data()
    with pytest.raises(ValueError, match="init_fn"):
        fit(
            MLPEnergy(),
            x,
            "pcd",
            epochs=1,
            batch_size=8,
            progress=False,
            init_fn=lambda n, g: torch.zeros(n, 5, dtype=torch.float64),
        )


def test_replay_buffer_reinit_rate_and_persistence():
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(1000, 0.25, lambda n, gen: torch.full((n, 1), -1.0))
    buf.states = torch.zeros(1000, 1)
    starts, idx = buf.sample(1000, g)
    frac = float((starts == -1).double().mean())
    se = math.sqrt(0.25 * 0.75 / 1000)
    assert abs(frac - 0.25) < 4 * se
    assert not abs(frac - 0.4) < 4 * se  # negative control
    buf.update(idx, starts + 5)
    assert torch.equal(buf.states[idx], starts + 5)


def test_sgld_effective_beta_is_recorded():
    x = _data(128)
    res = fit(
        MLPEnergy(),
        x,
        "pcd",
        epochs=1,
        batch_size=64,
        progress=False,
        seed=0,
        num_steps=2,
        sampler_options={"step_size": 1.0, "noise_scale": 0.01},
    )
    assert res.history[0]["effective_beta"] == pytest.approx(20000.0)
    res = fit(
        MLPEnergy(),
        x,
        "cd",
        epochs=1,
        batch_size=64,
        progress=False,
        seed=0,
        num_steps=2,
        sampler_options={"step_size": 0.01},
    )
    assert res.history[0]["effective_beta"] == pytest.approx(1.0)


@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_gradient_kernels_run(sampler):
    x = _data(128)
    opts = {"step_size": 0.05}
    res = fit(
        MLPEnergy(),
        x,
        "pcd",
        epochs=1,
        batch_size=64,
        progress=False,
        seed=0,
        sampler=sampler,
        sampler_options=opts,
        num_steps=2,
    )
    assert 0.0 < res.history[0]["acceptance"] <= 1.0


def test_discrete_energy_with_gwg():
    class Pairwise(torch.nn.Module):
        support = torch.distributions.constraints.boolean

        def __init__(self):
            super().__init__()
            self.h = torch.nn.Parameter(torch.zeros(8, dtype=torch.float64))

        def forward(self, y):
            return -(y * self.h).sum(-1)

    data = _rbm_data(200)
    e = Pairwise()
    res = fit(
        e,
        data,
        "pcd",
        epochs=20,
        batch_size=50,
        lr=0.1,
        progress=False,
        seed=0,
        monitors=[ExactLogLikelihood(data)],
    )
    assert res.info["sampler"] == "gwg"
    # independent units: the MLE is h_i = logit(mean_i); the fit moves towards it
    target = torch.logit(data.mean(0).clamp(0.01, 0.99))
    assert float((e.h.detach() - target).abs().mean()) < float(target.abs().mean())
    assert res.curve("exact_ll")[-1] > res.curve("exact_ll")[0]


def test_conditional_energy_cd_and_dsm():
    g = torch.Generator().manual_seed(0)
    xc = torch.randn(400, 1, generator=g, dtype=torch.float64)
    y = 2.0 * xc + torch.randn(400, 1, generator=g, dtype=torch.float64)
    for method in ("dsm", "pcd"):
        e = CondEnergy()
        res = fit(
            e,
            y,
            method,
            condition=xc,
            epochs=30,
            batch_size=100,
            lr=0.1,
            progress=False,
            seed=0,
            num_steps=5,
            sampler_options={"step_size": 0.2},
            noise_std=0.1,
        )
        assert abs(float(e.a.detach()) - 2.0) < 0.3, method
        if method == "pcd":
            assert res.buffer.capacity == 400  # one persistent chain per example
    with pytest.raises(ValueError, match="log Z"):
        fit(CondEnergy(), y, "nce", condition=xc, epochs=1, batch_size=10, progress=False)


def test_ais_monitor_agrees_with_exact():
    data = _rbm_data(300, seed=1)
    rbm = trainable(
        RBM.random(
            8, 3, scale=0.01, generator=torch.Generator().manual_seed(2), dtype=torch.float64
        )
    )
    mons = [ExactLogLikelihood(data), AISLogLikelihood(data, num_chains=64)]
    res = fit(
        rbm, data, "cd", epochs=2, batch_size=50, lr=0.1, progress=False, seed=0, monitors=mons
    )
    for row in res.history:
        diff = row["ais_ll"] - row["exact_ll"]
        assert abs(diff) < 4 * row["ais_ll_stderr"] + 1e-9, row
        assert row["ais_ll_data_stderr"] == pytest.approx(row["exact_ll_stderr"])
    assert mons[1].schedule is not None  # warm start for the next epoch


def test_mmd_unbiased_and_detects_difference():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 2, generator=g, dtype=torch.float64)
    b = torch.randn(300, 2, generator=g, dtype=torch.float64)
    same = mmd(a, b)
    assert abs(same.value) < 4 * same.stderr
    diff = mmd(a, b + 0.5)
    assert diff.value > 4 * diff.stderr  # negative control: a shift is detected
    # the model-sample monitor runs with the fit's sampler
    x = _data(128)
    res = fit(
        QuadraticEnergy().double(),
        x,
        "dsm",
        epochs=1,
        batch_size=64,
        progress=False,
        seed=0,
        monitors=[MMDMonitor(x, num_steps=20)],
        sampler_options={"step_size": 0.05},
    )
    assert res.history[0]["mmd_stderr"] > 0


@pytest.mark.parametrize("method", ["pcd", "dsm"])
def test_runs_on_the_energys_device(method, device):
    """Everything follows the energy's parameters (GIBBSEBM_DEVICE=cuda runs this on a GPU)."""
    x = _data(128).to(device)
    e = MLPEnergy().to(device)
    mons = [MMDMonitor(x, num_steps=5)]
    res = fit(
        e,
        x,
        method,
        epochs=2,
        batch_size=64,
        progress=False,
        seed=0,
        num_steps=2,
        sampler_options={"step_size": 0.01},
        monitors=mons,
    )
    assert all(math.isfinite(r["loss"]) for r in res.history)
    if method == "pcd":
        assert res.buffer.states.device.type == torch.device(device).type
