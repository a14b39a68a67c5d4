"""Files the library reads back: checked, never code, never through a link (issue 12).

Checkpoints of a sampling run are tested in ``tests/samplers/test_checkpoint.py``; this file
covers the file layer itself (:mod:`gibbsebm.runtime.files`), ``Samples`` files, shard
folders of executors and the Ray head's network settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle

import pytest
import torch

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.executors import LocalExecutor, RayExecutor, run_sample
from gibbsebm.runtime import files

# runs here are deliberately short: these tests are about files, resume and checks,
# not about the quality of the draws (tests/test_sampling_warnings.py covers that)
pytestmark = [
    pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning"),
    pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


class Payload:
    """Unpickling this writes a marker file: the proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_with_valid_header(obj, path, kind):
    """A file with a correct gibbsebm header and checksum around a malicious pickle."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    body = buf.getvalue()
    header = json.dumps(
        {
            "format_version": files.FORMAT_VERSION,
            "kind": kind,
            "body": "torch",
            "body_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    ).encode()
    path.write_bytes(files.MAGIC + len(header).to_bytes(4, "big") + header + body)


# ------------------------------------------------------------------------------ the file layer
def test_round_trip_and_header(tmp_path):
    p = tmp_path / "f.pt"
    obj = {"a": torch.arange(5.0), "b": [1, "x", None, 2.5], "c": {"d": torch.ones(2, 2)}}
    files.save_tensors(obj, p, kind="test")
    raw = p.read_bytes()
    assert raw.startswith(files.MAGIC)
    header = json.loads(raw[12 : 12 + int.from_bytes(raw[8:12], "big")])
    assert header["format_version"] == 1 and header["kind"] == "test"
    back = files.load_tensors(p, kind="test")
    assert torch.equal(back["a"], obj["a"]) and back["b"] == obj["b"]
    with pytest.raises(gibbsebm.CorruptFileError, match="'test' file"):
        files.load_tensors(p, kind="checkpoint")
    assert [q.name for q in tmp_path.iterdir()] == ["f.pt"]  # no temporary file left


@pytest.mark.parametrize("damage", ["flip_body", "flip_header", "truncate", "extend", "empty"])
def test_damaged_files_are_refused(tmp_path, damage):
    p = tmp_path / "f.pt"
    files.save_tensors({"x": torch.arange(100.0)}, p)
    raw = bytearray(p.read_bytes())
    if damage == "flip_body":
        raw[-50] ^= 1
    elif damage == "flip_header":
        raw[20] ^= 0x20
    elif damage == "truncate":
        raw = raw[:-10]
    elif damage == "extend":
        raw += b"\0"
    else:
        raw = bytearray()
    p.write_bytes(bytes(raw))
    with pytest.raises(gibbsebm.CorruptFileError) as err:
        files.load_tensors(p)
    assert isinstance(err.value, ValueError) and err.value.path == str(p)


def test_other_format_version_is_refused(tmp_path):
    p = tmp_path / "f.pt"
    files.save_tensors(1, p)
    raw = p.read_bytes().replace(b'"format_version": 1', b'"format_version": 9')
    p.write_bytes(raw)
    with pytest.raises(gibbsebm.CorruptFileError, match="version 9"):
        files.load_tensors(p)


@pytest.mark.parametrize("with_valid_header", [False, True])
def test_crafted_pickle_runs_no_code(tmp_path, with_valid_header):
    p, marker = tmp_path / "f.pt", tmp_path / "pwned"
    if with_valid_header:
        crafted_with_valid_header({"x": Payload(marker)}, p, "data")
    else:
        p.write_bytes(pickle.dumps({"x": Payload(marker)}))
    with pytest.raises(gibbsebm.CorruptFileError):
        files.load_tensors(p)
    assert not marker.exists()


def test_links_fifos_and_folders_are_not_read_or_written(tmp_path):
    target = tmp_path / "target.pt"
    files.save_tensors(1, target)
    link = tmp_path / "link.pt"
    link.symlink_to(target)
    with pytest.raises(gibbsebm.CorruptFileError, match="symbolic link"):
        files.load_tensors(link)
    with pytest.raises(gibbsebm.CorruptFileError, match="symbolic link"):
        files.save_tensors(2, link)
    assert files.load_tensors(target) == 1  # the link's target was not overwritten
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(gibbsebm.CorruptFileError, match="regular file"):
        files.load_tensors(fifo)  # and it did not hang waiting for a writer
    with pytest.raises(gibbsebm.CorruptFileError, match="regular file"):
        files.load_tensors(tmp_path)
    with pytest.raises(FileNotFoundError):
        files.load_tensors(tmp_path / "missing.pt")
    assert files.symlinks_in(tmp_path) == [str(link)]


def test_checked_json(tmp_path):
    p = tmp_path / "m.json"
    files.save_json({"a": 1, "b": [1.5, "x"]}, p, kind="manifest")
    assert json.loads(p.read_text())["a"] == 1  # still plain, readable JSON
    assert files.load_json(p, kind="manifest") == {"a": 1, "b": [1.5, "x"]}
    p.write_text(p.read_text().replace('"a": 1', '"a": 2'))
    with pytest.raises(gibbsebm.CorruptFileError, match="checksum"):
        files.load_json(p, kind="manifest")
    p.write_text("{not json")
    with pytest.raises(gibbsebm.CorruptFileError, match="not JSON"):
        files.load_json(p, kind="manifest")


def test_error_types_are_public_value_errors():
    assert issubclass(gibbsebm.CorruptFileError, ValueError)
    assert issubclass(gibbsebm.CheckpointMismatchError, ValueError)
    assert "CorruptFileError" in dir(gibbsebm) and "CheckpointMismatchError" in dir(gibbsebm)


# ------------------------------------------------------------------------------ Samples files
def _samples():
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)))
    return gibbsebm.sample(d, "ula", num_chains=2, num_samples=5, num_warmup=2, seed=0,
                           progress=False, step_size=0.1)  # fmt: skip


def test_samples_save_load_checked(tmp_path):
    s = _samples()
    p = tmp_path / "s.pt"
    s.save(p)
    back = gibbsebm.Samples.load(p)
    assert torch.equal(back.draws, s.draws) and back.method == "ula"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(gibbsebm.CorruptFileError, match="checksum"):
        gibbsebm.Samples.load(p)


@pytest.mark.parametrize("with_valid_header", [False, True])
def test_crafted_samples_file_runs_no_code(tmp_path, with_valid_header):
    p, marker = tmp_path / "s.pt", tmp_path / "pwned"
    obj = {"format": "gibbsebm.Samples", "draws": Payload(marker)}
    if with_valid_header:
        crafted_with_valid_header(obj, p, "samples")
    else:
        torch.save(obj, p)
    with pytest.raises(gibbsebm.CorruptFileError):
        gibbsebm.Samples.load(p)
    assert not marker.exists()


# ------------------------------------------------------------------------------ shard folders
KW = dict(num_chains=4, num_samples=10, num_warmup=5, seed=3, progress=False)


def _dist(loc=0.0, beta=1.0):
    return gibbsebm.Gibbs(Gaussian(torch.full((2,), loc)), beta=beta)


def test_crafted_shard_file_runs_no_code(tmp_path):
    ckpt, marker = tmp_path / "run", tmp_path / "pwned"
    ex = LocalExecutor(num_shards=2)
    run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    shard = ckpt / "shard-00001.pt"
    crafted_with_valid_header({"format": "gibbsebm.Samples", "x": Payload(marker)}, shard,
                              "samples")  # fmt: skip
    with pytest.raises(gibbsebm.CorruptFileError):
        run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    shard.unlink()
    shard.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(gibbsebm.CorruptFileError):
        run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(beta=2.0), "target.beta"),
        (dict(loc=1.0), "target.energy_parameters"),
        (dict(method="ula"), "method"),
        (dict(step_size=0.3), "options.step_size"),
    ],
)
def test_shard_folder_of_another_run_is_refused(tmp_path, change, field):
    ckpt = tmp_path / "run"
    ex = LocalExecutor(num_shards=2)
    run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    method = change.pop("method", "mala")
    opts = {"step_size": change.pop("step_size")} if "step_size" in change else {}
    with pytest.raises(gibbsebm.CheckpointMismatchError, match=field) as err:
        run_sample(_dist(**change), method, executor=ex, checkpoint=ckpt, **KW, **opts)
    assert field in err.value.fields


def test_shard_manifest_is_checked_and_links_refused(tmp_path):
    ckpt = tmp_path / "run"
    ex = LocalExecutor(num_shards=2)
    run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    manifest = ckpt / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"num_warmup": 5', '"num_warmup": 6'))
    with pytest.raises(gibbsebm.CorruptFileError, match="checksum"):
        run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    manifest.write_text(text)
    (ckpt / "shard-00000.pt").rename(tmp_path / "elsewhere.pt")
    (ckpt / "shard-00000.pt").symlink_to(tmp_path / "elsewhere.pt")
    with pytest.raises(gibbsebm.CorruptFileError, match="symbolic link"):
        run_sample(_dist(), "mala", executor=ex, checkpoint=ckpt, **KW)
    link = tmp_path / "link"
    link.symlink_to(ckpt)
    with pytest.raises(gibbsebm.CorruptFileError, match="symbolic link"):
        run_sample(_dist(), "mala", executor=ex, checkpoint=link, **KW)


# ------------------------------------------------------------------------------ Ray's network
class _FakeRay:
    def __init__(self):
        self.calls = []

    def is_initialized(self):
        return bool(self.calls)

    def init(self, address=None, **kwargs):
        self.calls.append(dict(address=address, **kwargs))


@pytest.mark.parametrize(
    "address, env, init_kwargs, local",
    [
        (None, None, {}, True),
        ("auto", None, {}, False),
        ("ray://head:10001", None, {}, False),
        (None, "10.0.0.1:6379", {}, False),
        (None, None, {"include_dashboard": True}, True),
    ],
)
def test_local_ray_head_binds_to_loopback(monkeypatch, address, env, init_kwargs, local):
    import gibbsebm.runtime.executors as ex_mod

    fake = _FakeRay()
    monkeypatch.setattr(ex_mod, "_import_ray", lambda: fake)
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    RayExecutor(address=address, init_kwargs=init_kwargs)._ray()
    (call,) = fake.calls
    assert call["address"] == ("local" if local else address)  # local: a new head, never joined
    if local:
        assert call["_node_ip_address"] == "127.0.0.1"
        assert call["dashboard_host"] == "127.0.0.1"
        assert call["include_dashboard"] is init_kwargs.get("include_dashboard", False)
    else:  # the user's cluster decides its own addresses
        assert "_node_ip_address" not in call and "include_dashboard" not in call


def test_ray_init_accepts_the_loopback_options():
    """The options exist in the installed Ray (a rename would otherwise fail only at run time)."""
    ray = pytest.importorskip("ray")
    import inspect

    sig = inspect.signature(ray.init)
    assert "include_dashboard" in sig.parameters and "dashboard_host" in sig.parameters
    assert "_node_ip_address" in inspect.getsource(ray.init)
