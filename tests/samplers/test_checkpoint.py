"""Checkpoints: an interrupted run resumed from its file gives the uninterrupted draws."""

import os
import warnings

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

import gibbsebm
import gibbsebm.run as run_mod
from gibbsebm._run_loop import load_checkpoint
from gibbsebm.energies import Gaussian

# runs here are deliberately short: these tests are about files, resume and checks,
# not about the quality of the draws (tests/test_sampling_warnings.py covers that)
pytestmark = [
    pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning"),
    pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning"),
]

DT = torch.float64


class Interrupt(Exception):
    pass


def interrupting(monkeypatch, after: int, exc: type[BaseException] = Interrupt):
    """Make the sampler's step raise ``exc`` after ``after`` calls (a crash or Ctrl-C)."""
    real = run_mod.get_spec
    calls = {"n": 0}

    def get_spec(method, dist, **kw):
        spec = real(method, dist, **kw)

        def step(*a, **k):
            calls["n"] += 1
            if calls["n"] > after:
                raise exc
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
    saved = load_checkpoint(path)
    assert saved["phase"] == "sample" and saved["k"] == 7
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


# ----------------------------------------------------------------------------- every method
def _rbm_dist(device):
    from gibbsebm.energies import RBM

    rbm = RBM.random(6, 3, scale=1.0, generator=torch.Generator().manual_seed(3)).to(device)
    return gibbsebm.Gibbs(rbm, beta=1.0)


@pytest.mark.parametrize(
    "method", ["ula", "mala", "hmc", "pt", "gwg", "dmala", "metropolis", "block_gibbs"]
)
def test_every_stepping_method_resumes_exactly(tmp_path, device, monkeypatch, method):
    """States (NamedTuples), Metric params and adaptation records survive the plain format."""
    if method in ("gwg", "dmala", "metropolis", "block_gibbs"):
        d = _rbm_dist(device)
    else:
        d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT, device=device)))
    kw = dict(num_chains=3, num_samples=12, num_warmup=10, seed=3, progress=False,
              checkpoint_every=4)  # fmt: skip
    full = gibbsebm.sample(d, method, **kw)
    path = tmp_path / "c.ckpt"
    # adaptive warmups do not go through spec.step: they stop at draw 6, the others in warmup
    interrupting(monkeypatch, after=6, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gibbsebm.sample(d, method, checkpoint=path, **kw)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an adaptive warmup interrupted restarts (warns)
        resumed = gibbsebm.sample(d, method, checkpoint=path, **kw)
    assert torch.equal(resumed.draws, full.draws)
    for name in full.stats:  # bit for bit; NaN where a statistic is undefined (pt's swaps)
        torch.testing.assert_close(resumed.stats[name], full.stats[name], rtol=0, atol=0,
                                   equal_nan=True, msg=name)  # fmt: skip


# ----------------------------------------------------------------------------- Ctrl-C and warmup
def test_ctrl_c_saves_the_last_completed_draw_and_resumes(tmp_path, device, monkeypatch):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT, device=device)))
    kw = dict(num_chains=3, num_samples=30, num_warmup=20, seed=5, thin=2, progress=False,
              checkpoint_every=100)  # fmt: skip
    full = gibbsebm.sample(d, "hmc", **kw)
    path = tmp_path / "c.ckpt"
    # hmc adapts inside spec.adapt (not through spec.step): 23 sampling steps = 11 draws + 1
    interrupting(monkeypatch, after=23, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        gibbsebm.sample(d, "hmc", checkpoint=path, **kw)
    monkeypatch.undo()
    saved = load_checkpoint(path)
    assert saved["phase"] == "sample" and saved["k"] == 11  # not 0: Ctrl-C saved its progress
    resumed = gibbsebm.sample(d, "hmc", checkpoint=path, **kw)
    assert torch.equal(resumed.draws, full.draws)


def test_plain_warmup_is_checkpointed_and_resumed_midway(tmp_path, device, monkeypatch):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT, device=device)))
    kw = dict(num_chains=3, num_samples=10, num_warmup=30, seed=2, progress=False,
              checkpoint_every=8, step_size=0.2)  # fmt: skip
    full = gibbsebm.sample(d, "ula", **kw)
    path = tmp_path / "c.ckpt"
    interrupting(monkeypatch, after=13, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        gibbsebm.sample(d, "ula", checkpoint=path, **kw)
    monkeypatch.undo()
    saved = load_checkpoint(path)
    assert saved["phase"] == "warmup" and saved["k"] == 13
    resumed = gibbsebm.sample(d, "ula", checkpoint=path, **kw)
    assert torch.equal(resumed.draws, full.draws)


def test_adaptive_warmup_interrupted_restarts_cleanly(tmp_path, device, monkeypatch):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT, device=device)))
    kw = dict(num_chains=3, num_samples=10, num_warmup=30, seed=2, progress=False)
    full = gibbsebm.sample(d, "mala", **kw)
    path = tmp_path / "c.ckpt"
    real = run_mod.get_spec

    def get_spec(method, dist, **o):
        spec = real(method, dist, **o)

        def adapt(*a, **k):
            raise KeyboardInterrupt

        return spec._replace(adapt=adapt)

    monkeypatch.setattr(run_mod, "get_spec", get_spec)
    with pytest.raises(KeyboardInterrupt):
        gibbsebm.sample(d, "mala", checkpoint=path, **kw)
    monkeypatch.undo()
    saved = load_checkpoint(path)  # the run folder is never a dead end: the file exists
    assert saved["phase"] == "warmup" and saved["state"] is None
    with pytest.warns(UserWarning, match="restarts from its beginning"):
        resumed = gibbsebm.sample(d, "mala", checkpoint=path, **kw)
    assert torch.equal(resumed.draws, full.draws)
    with pytest.raises(gibbsebm.CheckpointMismatchError, match="seed"):
        gibbsebm.sample(d, "mala", checkpoint=path, **{**kw, "seed": 3})


# ----------------------------------------------------------------------------- identity
def _quadratic(y):
    return 0.5 * (y**2).sum(-1)


def _quartic(y):
    return 0.25 * (y**4).sum(-1)


BASE = dict(num_chains=2, num_samples=4, num_warmup=3, seed=1, progress=False)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(beta=2.0), "beta"),
        (dict(loc=1.0), "energy_parameters"),
        (dict(method="mala"), "method"),
        (dict(step_size=0.2), "options"),
        (dict(dtype=torch.float32), "dtype"),
        (dict(num_chains=3), "num_chains"),
        (dict(thin=2), "thin"),
    ],
)
def test_resume_refuses_a_different_run(tmp_path, device, change, field):
    def run(beta=1.0, loc=0.0, method="ula", step_size=0.1, dtype=DT, **kw):
        d = gibbsebm.Gibbs(Gaussian(torch.full((2,), loc, dtype=dtype, device=device)), beta=beta)
        return gibbsebm.sample(
            d, method, checkpoint=tmp_path / "c.ckpt", step_size=step_size, **{**BASE, **kw}
        )

    run()
    with pytest.raises(gibbsebm.CheckpointMismatchError, match=field) as err:
        run(**change)
    assert field in err.value.fields
    assert isinstance(err.value, ValueError)
    run()  # the original arguments still resume (the file is untouched)


def test_resume_refuses_another_energy_function(tmp_path, device):
    kw = dict(BASE, checkpoint=tmp_path / "c.ckpt", step_size=0.1)
    gibbsebm.sample(gibbsebm.Gibbs(_quadratic, event_shape=(2,)), "ula", **kw)
    with pytest.raises(gibbsebm.CheckpointMismatchError, match="energy_code") as err:
        gibbsebm.sample(gibbsebm.Gibbs(_quartic, event_shape=(2,)), "ula", **kw)
    assert "source code of the energy changed" in str(err.value)


def test_identity_records_digests_and_says_when_code_is_unavailable():
    from gibbsebm._run_loop import run_identity

    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)))
    ident = run_identity(d, torch.zeros(3, 2), method="hmc")
    assert len(ident["energy_parameters"]) == 64 and len(ident["energy_code"]) == 64
    assert ident["device"] == "cpu" and ident["dtype"] == "float32" and ident["beta"] == 1.0
    fn = eval("lambda y: (y ** 2).sum(-1)")  # no source file
    ident = run_identity(gibbsebm.Gibbs(fn, event_shape=(2,)), None)
    assert ident["energy_code"] is None and "not available" in ident["energy_code_note"]
    # the energy's parameters change the digest, a copy with equal values does not
    a = run_identity(gibbsebm.Gibbs(Gaussian(torch.zeros(2))), None)
    b = run_identity(gibbsebm.Gibbs(Gaussian(torch.zeros(2))), None)
    c = run_identity(gibbsebm.Gibbs(Gaussian(torch.tensor([0.0, 1e-6]))), None)
    assert a["energy_parameters"] == b["energy_parameters"] != c["energy_parameters"]


# ----------------------------------------------------------------------------- damaged files
def _small_run(path, device):
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2, dtype=DT, device=device)))
    return d, gibbsebm.sample(d, "ula", checkpoint=path, step_size=0.1, **BASE)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95])
def test_flipped_byte_is_a_corrupt_file(tmp_path, device, where):
    path = tmp_path / "c.ckpt"
    d, _ = _small_run(path, device)
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(gibbsebm.CorruptFileError):
        gibbsebm.sample(d, "ula", checkpoint=path, step_size=0.1, **BASE)
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(gibbsebm.CorruptFileError):
        gibbsebm.sample(d, "ula", checkpoint=path, step_size=0.1, **BASE)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("with_valid_header", [False, True])
def test_crafted_pickle_checkpoint_runs_no_code(tmp_path, device, with_valid_header):
    import pickle

    from gibbsebm.runtime.files import save_tensors

    path = tmp_path / "c.ckpt"
    marker = tmp_path / "pwned"
    d, _ = _small_run(path, device)
    path.unlink()
    obj = {"format": "gibbsebm.checkpoint", "version": 2, "state": _Payload(marker)}
    if with_valid_header:  # header and checksum recomputed by the attacker
        import io

        real_save = torch.save
        buf = io.BytesIO()
        real_save(obj, buf)
        save_tensors(0, path, kind="checkpoint")
        raw = path.read_bytes()
        # replace the body by the crafted one and fix the header's length and checksum
        import hashlib
        import json

        n = int.from_bytes(raw[8:12], "big")
        header = json.loads(raw[12 : 12 + n])
        body = buf.getvalue()
        header.update(body_bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
        hb = json.dumps(header).encode()
        path.write_bytes(raw[:8] + len(hb).to_bytes(4, "big") + hb + body)
    else:
        path.write_bytes(pickle.dumps(obj))
    with pytest.raises(gibbsebm.CorruptFileError):
        gibbsebm.sample(d, "ula", checkpoint=path, step_size=0.1, **BASE)
    assert not marker.exists()


def test_checkpoint_that_is_a_symlink_is_refused(tmp_path, device):
    path = tmp_path / "c.ckpt"
    outside = tmp_path / "outside.ckpt"
    d, _ = _small_run(outside, device)
    before = outside.read_bytes()
    path.symlink_to(outside)
    with pytest.raises(gibbsebm.CorruptFileError, match="symbolic link"):
        gibbsebm.sample(d, "ula", checkpoint=path, step_size=0.1, **BASE)
    dangling = tmp_path / "dangling.ckpt"
    dangling.symlink_to(tmp_path / "victim")
    with pytest.raises(gibbsebm.CorruptFileError, match="symbolic link"):
        gibbsebm.sample(d, "ula", checkpoint=dangling, step_size=0.1, **BASE)
    assert not (tmp_path / "victim").exists()
    assert outside.read_bytes() == before


# ----------------------------------------------------------------------------- generator state
def test_generator_state_loads_as_a_cpu_byte_tensor(tmp_path, device):
    path = tmp_path / "c.ckpt"
    _small_run(path, device)
    gs = load_checkpoint(path)["generator_state"]
    assert gs.device.type == "cpu" and gs.dtype == torch.uint8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda(tmp_path, monkeypatch):
    """Issue 15: set_state got the generator's byte state moved to the GPU and failed."""
    cuda = torch.device("cuda")
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(3, dtype=DT, device=cuda)))
    kw = dict(num_chains=4, num_samples=20, num_warmup=20, seed=7, progress=False,
              checkpoint_every=5)  # fmt: skip
    full = gibbsebm.sample(d, "hmc", **kw)
    path = tmp_path / "c.ckpt"
    interrupting(monkeypatch, after=12)
    with pytest.raises(Interrupt):
        gibbsebm.sample(d, "hmc", checkpoint=path, **kw)
    monkeypatch.undo()
    resumed = gibbsebm.sample(d, "hmc", checkpoint=path, **kw)
    assert resumed.draws.device.type == "cuda"
    assert torch.equal(resumed.draws, full.draws)


_W = torch.ones(2, dtype=DT)


def _weighted(y):
    return 0.5 * (_W * y**2).sum(-1)


def test_identity_sees_the_globals_a_function_energy_reads(monkeypatch):
    from gibbsebm._run_loop import run_identity

    d = gibbsebm.Gibbs(_weighted, event_shape=(2,))
    a = run_identity(d, None)["energy_parameters"]
    monkeypatch.setitem(globals(), "_W", torch.full((2,), 2.0, dtype=DT))
    assert run_identity(d, None)["energy_parameters"] != a
