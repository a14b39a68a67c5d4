"""Sharded runs: LocalExecutor and RayExecutor (gibbsebm.executors).

The Ray tests share one local Ray instance (started by ``RayExecutor``, two CPUs, module scope,
listening on the loopback only) and are
skipped with a reason when Ray cannot be imported (``pip install gibbsebm[ray]``). The other
tests (layout, seeds, pooling identities, checkpoints, the transport check and the install
hint) need no Ray instance.

Statistical checks use fixed seeds and tolerances of k standard errors computed from the
Monte Carlo error (MCSE from arviz for sample means, the estimator's own stderr for log Z),
each with a negative control that the same check must reject.
"""

from __future__ import annotations

import ipaddress
import math
import os
import sys
import threading

import numpy as np
import pytest
import torch

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.energies.ising import Ising2D
from gibbsebm.executors import (
    LocalExecutor,
    RayExecutor,
    ShardError,
    UnpicklableError,
    check_picklable,
    resolve_executor,
    run_log_partition,
    run_sample,
    shard_sizes,
    shard_stream_seeds,
)
from gibbsebm.run import shard_seeds

try:
    import ray

    HAVE_RAY = True
except ImportError:  # pragma: no cover - CI installs the ray extra
    HAVE_RAY = False


#: Monte Carlo tolerance in standard errors: |z| > 4 has probability 6e-5 under a correct
#: implementation, and the seeds are fixed.
K_SE = 4.0

MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
VAR = torch.tensor([1.0, 4.0], dtype=torch.float64)


def gaussian_dist(energy_cls=Gaussian, **kw) -> gibbsebm.Gibbs:
    return gibbsebm.Gibbs(energy_cls(MEAN, covariance=VAR, **kw), beta=1.0)


# ------------------------------------------------------------------ energies used as faults
class FlakyGaussian(Gaussian):
    """Raises once, in the first Ray worker call that creates ``marker`` (O_EXCL: exactly once)."""

    def __init__(self, mean, covariance, marker: str, driver_pid: int) -> None:
        super().__init__(mean, covariance=covariance)
        self.marker = marker
        self.driver_pid = driver_pid

    def forward(self, y):
        if os.getpid() != self.driver_pid:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                raise RuntimeError("simulated transient failure")
        return super().forward(y)


class DiesOnce(Gaussian):
    """Kills its Ray worker process once (``os._exit``), in the first worker call."""

    def __init__(self, mean, covariance, marker: str, driver_pid: int) -> None:
        super().__init__(mean, covariance=covariance)
        self.marker = marker
        self.driver_pid = driver_pid

    def forward(self, y):
        if os.getpid() != self.driver_pid:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)
        return super().forward(y)


class FailsOnTwoChains(Gaussian):
    """Always raises when evaluated on exactly two chains (the shard of size 2)."""

    def forward(self, y):
        if y.shape[0] == 2:
            raise RuntimeError("simulated permanent failure")
        return super().forward(y)


# ------------------------------------------------------------------ moments check
def moments_within_mcse(s, mean: torch.Tensor, var: torch.Tensor) -> bool:
    """Mean and variance of each coordinate within K_SE MCSE of the given values.

    The MCSE of the mean is arviz's; the MCSE of the variance is arviz's MCSE of the mean of
    (y - mean)^2 (the variance is that mean when the mean is known).
    """
    import arviz as az

    idata = s.to_inference_data()
    y = idata.posterior["y"]
    m_hat = y.mean(("chain", "draw")).values
    m_se = az.mcse(idata, var_names=["y"], method="mean")["y"].values
    sq = ((y - mean.numpy()) ** 2).rename("sq").to_dataset()
    v_hat = sq["sq"].mean(("chain", "draw")).values
    v_se = az.mcse(sq, var_names=["sq"], method="mean")["sq"].values
    ok_m = np.all(np.abs(m_hat - mean.numpy()) < K_SE * m_se)
    ok_v = np.all(np.abs(v_hat - var.numpy()) < K_SE * v_se)
    return bool(ok_m and ok_v)


SAMPLE_ARGS = dict(num_chains=8, num_samples=300, num_warmup=200, seed=11, progress=False)


# ================================================================== no Ray needed
def test_shard_layout_and_seeds():
    assert shard_sizes(10, 4) == [3, 3, 2, 2]
    assert sum(shard_sizes(1001, 7)) == 1001
    assert shard_stream_seeds(5, 1) == [5]
    assert shard_stream_seeds(5, 3) == shard_seeds(5, 3)
    with pytest.raises(ValueError, match="empty"):
        shard_sizes(3, 4)
    with pytest.raises(ValueError, match="num_shards"):
        LocalExecutor(num_shards=0)
    with pytest.raises(ValueError, match="executor must be"):
        resolve_executor("dask")
    with pytest.raises(ValueError, match="resource"):
        RayExecutor(resources_per_worker={"CPU": -1})


def test_one_shard_is_the_in_process_run():
    torch.set_num_threads(1)
    d = gaussian_dist()
    kw = dict(num_chains=4, num_samples=30, num_warmup=30, seed=3, progress=False)
    plain = gibbsebm.sample(d, "mala", **kw, warn=False)
    sharded = gibbsebm.sample(d, "mala", executor="local", **kw, warn=False)
    assert torch.equal(plain.draws, sharded.draws)
    assert torch.equal(plain.stats["acceptance_prob"], sharded.stats["acceptance_prob"])
    # AIS: the driver's setup and the one shard continue the same stream
    di = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    opts = dict(num_chains=32, num_steps=50, seed=5, progress=False, on_untrusted="ignore")
    e1 = gibbsebm.log_partition(di, "ais", **opts)
    e2 = gibbsebm.log_partition(di, "ais", executor="local", **opts)
    assert (e1.log_z, e1.stderr, e1.num_energy_evals) == (e2.log_z, e2.stderr, e2.num_energy_evals)
    assert e1.diagnostics["step_increment_var"] == pytest.approx(
        e2.diagnostics["step_increment_var"], rel=1e-12
    )
    # AIS with an HMC kernel (continuous y: the shard's kernel copy holds module references)
    dg = gibbsebm.Gibbs(Gaussian(MEAN, covariance=VAR), beta=1.0)
    opts_g = dict(num_chains=16, num_steps=20, seed=1, progress=False, on_untrusted="ignore")
    g1 = gibbsebm.log_partition(dg, "ais", **opts_g)
    g2 = gibbsebm.log_partition(dg, "ais", executor=LocalExecutor(num_shards=1), **opts_g)
    assert (g1.log_z, g1.stderr) == (g2.log_z, g2.stderr)


def test_pooled_first_interval_is_exact():
    """Pooling per-shard (log mean w, stderr) equals log-mean-exp over all weights."""
    from gibbsebm.partition._stats import log_mean_exp, pool_log_mean_exp, weight_ess

    g = torch.Generator().manual_seed(0)
    log_w = 3.0 * torch.randn(101, generator=g, dtype=torch.float64) + 50.0
    sizes = [40, 40, 21]
    parts = torch.split(log_w, sizes)
    summaries = [log_mean_exp(p) for p in parts]
    pooled = pool_log_mean_exp([m for m, _ in summaries], [se for _, se in summaries], sizes)
    ref = log_mean_exp(log_w)
    assert pooled[0] == pytest.approx(ref[0], abs=1e-10)
    assert pooled[1] == pytest.approx(ref[1], rel=1e-9)
    assert pooled[2] == pytest.approx(weight_ess(log_w), rel=1e-9)
    # negative control: averaging the shard estimates is not the pooled estimate
    assert abs(sum(m for m, _ in summaries) / 3 - ref[0]) > 1e-3


def test_ti_shards_stitch_rungs():
    torch.set_num_threads(1)
    di = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    exact = float(di.log_partition())
    opts = dict(num_chains=24, seed=7, progress=False, on_untrusted="ignore")
    one = gibbsebm.log_partition(di, "ti", executor="local", **opts)
    ref = gibbsebm.log_partition(di, "ti", **opts)
    assert (one.log_z, one.stderr) == (ref.log_z, ref.stderr)
    est = gibbsebm.log_partition(di, "ti", executor=LocalExecutor(num_shards=3), **opts)
    d = est.diagnostics
    assert d["num_chains"] == 24 and d["shards"]["shard_sizes"] == [8, 8, 8]
    assert len(d["rung_mcse"]) == d["num_rungs"] == len(ref.diagnostics["rung_mcse"])
    assert all(math.isfinite(v) and v > 0 for v in d["rung_mcse"])
    assert abs(est.log_z - exact) < K_SE * est.stderr
    assert abs(est.log_z - float(di.at(0.5).log_partition())) > K_SE * est.stderr


def test_ais_pools_weights_before_log_mean_exp():
    """The merged estimate is log((1/N) sum_k n_k Zhat_k), not the mean of shard log Z."""
    torch.set_num_threads(1)
    di = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    est = run_log_partition(
        di,
        "ais",
        executor=LocalExecutor(num_shards=4),
        num_chains=60,
        num_steps=50,
        seed=2,
        progress=False,
        on_untrusted="ignore",
    )
    sh = est.diagnostics["shards"]
    n = torch.tensor(sh["shard_sizes"], dtype=torch.float64)
    lz = torch.tensor(sh["shard_log_z"], dtype=torch.float64)
    pooled = float(torch.logsumexp(lz + torch.log(n / n.sum()), 0))
    assert est.log_z == pytest.approx(pooled, abs=1e-10)
    # negative control: the per-shard average is a different number (Jensen)
    assert abs(est.log_z - float(lz.mean())) > 1e-6
    assert est.diagnostics["num_chains"] == 60 and sh["shard_sizes"] == [15, 15, 15, 15]


def test_checkpoint_reruns_only_missing_shards(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    ckpt = tmp_path / "run"
    kw = dict(num_chains=5, num_samples=20, num_warmup=20, seed=9, progress=False)
    ex = LocalExecutor(num_shards=2)  # shards of 3 and 2 chains
    # a failure of the machine, not of the run: the rerun has the same energy (a different
    # energy class would be refused as another run)
    real_forward = Gaussian.forward

    def fails_on_two_chains(self, y):
        if y.shape[0] == 2:
            raise RuntimeError("simulated permanent failure")
        return real_forward(self, y)

    monkeypatch.setattr(Gaussian, "forward", fails_on_two_chains)
    with pytest.raises(ShardError, match=r"shard 1 \(chains 3-4") as info:
        run_sample(gaussian_dist(), "mala", executor=ex, checkpoint=ckpt, **kw)
    monkeypatch.undo()
    assert set(info.value.failed) == {1} and set(info.value.completed) == {0}
    assert (ckpt / "shard-00000.pt").exists() and not (ckpt / "shard-00001.pt").exists()
    resumed = run_sample(gaussian_dist(), "mala", executor=ex, checkpoint=ckpt, **kw, warn=False)
    assert resumed.attrs["shards_from_checkpoint"] == [0]
    fresh = run_sample(gaussian_dist(), "mala", executor=ex, **kw, warn=False)
    assert torch.equal(resumed.draws, fresh.draws)
    with pytest.raises(ValueError, match="different run"):
        run_sample(gaussian_dist(), "mala", executor=ex, checkpoint=ckpt, **{**kw, "seed": 10})


def test_ais_checkpoint_recomputes_only_the_missing_shard(tmp_path):
    torch.set_num_threads(1)
    di = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    ckpt = tmp_path / "ais"
    opts = dict(num_chains=32, num_steps=30, seed=8, progress=False, on_untrusted="ignore")
    ex = LocalExecutor(num_shards=2)
    full = gibbsebm.log_partition(di, "ais", executor=ex, checkpoint=ckpt, **opts)
    assert full.diagnostics["shards"]["shards_from_checkpoint"] == []
    (ckpt / "shard-00001.pt").unlink()
    again = gibbsebm.log_partition(di, "ais", executor=ex, checkpoint=ckpt, **opts)
    assert again.diagnostics["shards"]["shards_from_checkpoint"] == [0]
    assert (again.log_z, again.stderr) == (full.log_z, full.stderr)


def test_log_z_shard_folder_refuses_another_target(tmp_path):
    """Issue 12: a log Z shard folder written for one target is refused for another."""
    torch.set_num_threads(1)
    ckpt = tmp_path / "ais"
    opts = dict(num_chains=16, num_steps=20, seed=8, progress=False, on_untrusted="ignore")
    ex = LocalExecutor(num_shards=2)
    full = gibbsebm.log_partition(
        gibbsebm.Gibbs(Ising2D(3), beta=1.0), "ais", executor=ex, checkpoint=ckpt, **opts
    )
    (ckpt / "shard-00001.pt").unlink()
    others = {
        "beta": gibbsebm.Gibbs(Ising2D(3), beta=2.0),
        "energy_parameters": gibbsebm.Gibbs(Ising2D(3, J=0.5), beta=1.0),
        "dtype": gibbsebm.Gibbs(Ising2D(3, dtype=torch.float64), beta=1.0),
    }
    for field, other in others.items():
        with pytest.raises(gibbsebm.CheckpointMismatchError, match=field) as info:
            gibbsebm.log_partition(other, "ais", executor=ex, checkpoint=ckpt, **opts)
        assert field in info.value.fields, (field, info.value.fields)
    with pytest.raises(gibbsebm.CheckpointMismatchError, match="options"):
        gibbsebm.log_partition(
            gibbsebm.Gibbs(Ising2D(3), beta=1.0),
            "ais",
            executor=ex,
            checkpoint=ckpt,
            **{**opts, "num_steps": 21},
        )
    # the same target resumes: only the missing shard is computed, and the result is the same
    again = gibbsebm.log_partition(
        gibbsebm.Gibbs(Ising2D(3), beta=1.0), "ais", executor=ex, checkpoint=ckpt, **opts
    )
    assert again.diagnostics["shards"]["shards_from_checkpoint"] == [0]
    assert (again.log_z, again.stderr) == (full.log_z, full.stderr)


def test_transport_check_names_what_cannot_travel(monkeypatch):
    def never(*a, **k):
        raise AssertionError("nothing may be submitted")

    monkeypatch.setattr(RayExecutor, "map", never)
    monkeypatch.setattr(RayExecutor, "_ray", never)  # not even Ray is started
    lock = threading.Lock()

    def energy_with_lock(y):
        with lock:
            return 0.5 * (y**2).sum(-1)

    d = gibbsebm.Gibbs(energy_with_lock, beta=1.0, event_shape=(2,))
    ex = RayExecutor()  # the default number of workers would need Ray: checked first
    with pytest.raises(UnpicklableError, match="energy_with_lock.*cannot be sent to Ray workers"):
        run_sample(d, "mala", executor=ex, **SAMPLE_ARGS)
    # cloudpickle (what Ray uses) carries lambdas; the strict check rejects them
    d_lambda = gibbsebm.Gibbs(lambda y: 0.5 * (y**2).sum(-1), beta=1.0, event_shape=(2,))
    check_picklable({"the distribution": d_lambda})
    with pytest.raises(UnpicklableError, match="lambda"):
        run_sample(
            d_lambda,
            "mala",
            executor=RayExecutor(num_workers=2, pickle_check="pickle"),
            **SAMPLE_ARGS,
        )
    with pytest.raises(UnpicklableError, match="kernel option 'lock'"):
        check_picklable({"kernel option 'lock'": lock})


def test_missing_ray_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install gibbsebm\[ray\]"):
        resolve_executor("ray")
    with pytest.raises(ImportError, match=r"pip install gibbsebm\[ray\]"):
        run_sample(gaussian_dist(), "mala", executor="ray", **SAMPLE_ARGS)


def test_private_ray_head_settings_and_one_warning(monkeypatch):
    """A RayExecutor without an address asks for a loopback head, and warns once if refused."""
    import types

    import gibbsebm.runtime._ray_network as ex_mod

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kw = RayExecutor()._init_kwargs()
    assert kw["address"] == "local" and kw["_node_ip_address"] == "127.0.0.1"
    assert kw["include_dashboard"] is False
    assert "_node_ip_address" not in RayExecutor(address="auto")._init_kwargs()
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # an address from the environment
    assert "_node_ip_address" not in RayExecutor()._init_kwargs()

    monkeypatch.setattr(ex_mod, "_warned_ray_network", False)
    fake = types.SimpleNamespace(util=types.SimpleNamespace(get_node_ip_address=lambda: "10.0.0.5"))
    with pytest.warns(RuntimeWarning, match="not 127.0.0.1"):
        ex_mod.check_loopback_node(fake)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex_mod.check_loopback_node(fake)  # once per process
        monkeypatch.setattr(ex_mod, "_warned_ray_network", False)
        ok = types.SimpleNamespace(
            util=types.SimpleNamespace(get_node_ip_address=lambda: "127.0.0.1")
        )
        ex_mod.check_loopback_node(ok)  # the loopback: no warning


def test_one_progress_bar_for_the_run(capsys):
    torch.set_num_threads(1)
    run_sample(
        gaussian_dist(),
        "mala",
        executor=LocalExecutor(num_shards=3),
        num_chains=3,
        num_samples=5,
        num_warmup=5,
        seed=0,
        progress="always",
        warn=False,
    )
    err = capsys.readouterr().err
    assert "shards 3/3" in err
    assert "30/30" in err  # 3 chains x 10 iterations, in one bar


# ================================================================== Ray
_RAY_STATE = {"started_here": False}


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket (Linux ``/proc/net``)."""
    out: dict[int, tuple[str, int]] = {}
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            with open(f"/proc/net/{name}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A":  # TCP_LISTEN
                continue
            hexaddr, hexport = cols[1].split(":")
            raw = b"".join(
                bytes.fromhex(hexaddr[i : i + 8])[::-1] for i in range(0, width, 8)
            )  # /proc prints each 32-bit word in host (little-endian) order
            addr = ipaddress.ip_address(raw)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            out[int(cols[9])] = (str(addr), int(hexport, 16))
    return out


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (from ``/proc/<pid>/stat``)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def _worker_pid() -> int:
    return os.getpid()


def _ray_listeners() -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of the TCP listeners of this process and its children.

    A Ray head started from this process (GCS, raylet, workers, agents) runs below it.
    """
    sockets = _listening_sockets()
    found = []
    for pid in _descendants(os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in sockets:
                    found.append((pid, comm, *sockets[inode]))
    return found


@pytest.fixture(scope="module")
def ray_local():
    if not HAVE_RAY:
        pytest.skip("Ray is not installed (pip install gibbsebm[ray])")
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = auth or "disabled"  # no token notice for a local test instance
    started = not ray.is_initialized()
    if started:  # as a user's RayExecutor() would: a private head on the loopback
        RayExecutor(init_kwargs={"num_cpus": 2, "log_to_driver": False})._ray()
    _RAY_STATE["started_here"] = started
    # the helper energies of this (non-importable) test module travel by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    @ray.remote(num_cpus=1)
    def warm_up() -> None:
        import gibbsebm.run  # noqa: F401 - what a shard imports; overlaps the local work below
        from gibbsebm.run import _library_versions

        _library_versions()

    warm = [warm_up.remote() for _ in range(2)]
    yield ray
    ray.get(warm)
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()
    if auth is None:
        del os.environ["RAY_AUTH_MODE"]


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install gibbsebm[ray])")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net (Linux)")
def test_ray_private_head_listens_on_loopback_only(ray_local):
    """Issue 12: a RayExecutor without an address binds no Ray server beyond 127.0.0.1."""
    if not _RAY_STATE["started_here"]:
        pytest.skip("Ray was initialised before this module; its head is not RayExecutor's")
    ray.get(ray.remote(num_cpus=1)(_worker_pid).remote())  # a worker is up and listening
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    listeners = _ray_listeners()
    names = {comm for _, comm, _, _ in listeners}
    assert "gcs_server" in names and "raylet" in names, listeners  # the check sees Ray
    exposed = [x for x in listeners if not x[2].startswith("127.")]
    assert not exposed, f"Ray listeners beyond the loopback: {exposed}"


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install gibbsebm[ray])")
def test_ray_sample_matches_local_and_moments(ray_local):
    torch.set_num_threads(1)
    d = gaussian_dist()
    local = run_sample(d, "mala", executor=LocalExecutor(num_shards=2), **SAMPLE_ARGS)
    on_ray = gibbsebm.sample(d, "mala", executor=RayExecutor(num_workers=2), **SAMPLE_ARGS)
    assert torch.equal(on_ray.draws, local.draws)
    for k in local.stats:
        assert torch.equal(on_ray.stats[k], local.stats[k]), k
    assert on_ray.attrs["shard_seeds"] == shard_seeds(SAMPLE_ARGS["seed"], 2)
    idata = on_ray.to_inference_data()
    assert idata.posterior.sizes["chain"] == 8 and idata.sample_stats.sizes["chain"] == 8
    assert float(on_ray.summary()["r_hat"].max()) < 1.05
    assert moments_within_mcse(on_ray, MEAN, VAR)
    assert not moments_within_mcse(on_ray, MEAN, 1.5 * VAR)  # negative control


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install gibbsebm[ray])")
def test_ray_ais_ising_matches_exact(ray_local):
    torch.set_num_threads(1)
    di = gibbsebm.Gibbs(Ising2D(3), beta=0.4)
    exact = float(di.log_partition())
    opts = dict(num_chains=64, num_steps=100, seed=4, progress=False)
    local = run_log_partition(di, "ais", executor=LocalExecutor(num_shards=2), **opts)
    est = gibbsebm.log_partition(di, "ais", executor=RayExecutor(num_workers=2), **opts)
    assert (est.log_z, est.stderr) == (local.log_z, local.stderr)
    assert abs(est.log_z - exact) < K_SE * est.stderr
    assert est.stderr < 0.1  # informative, not covered by a huge error bar
    # negative control: the exact log Z at another beta is rejected by the same check
    assert abs(est.log_z - float(di.at(0.5).log_partition())) > K_SE * est.stderr


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install gibbsebm[ray])")
def test_ray_retries_a_shard_that_raises_once(ray_local, tmp_path):
    torch.set_num_threads(1)
    marker = str(tmp_path / "failed-once")
    flaky = gibbsebm.Gibbs(FlakyGaussian(MEAN, VAR, marker, os.getpid()), beta=1.0)
    kw = {**SAMPLE_ARGS, "num_samples": 20, "num_warmup": 20}
    out = run_sample(
        flaky, "mala", executor=RayExecutor(num_workers=2, max_retries=1), **kw, warn=False
    )
    assert os.path.exists(marker)  # a shard did fail once
    ref = run_sample(
        gaussian_dist(), "mala", executor=LocalExecutor(num_shards=2), **kw, warn=False
    )
    assert torch.equal(out.draws, ref.draws)  # the retried shard recomputed the same draws


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install gibbsebm[ray])")
def test_ray_shard_that_always_fails_is_named(ray_local):
    d = gaussian_dist(FailsOnTwoChains)
    kw = {**SAMPLE_ARGS, "num_chains": 5, "num_samples": 10, "num_warmup": 10}
    with pytest.raises(ShardError) as info:
        run_sample(d, "mala", executor=RayExecutor(num_workers=2, max_retries=1), **kw)
    msg = str(info.value)
    assert "1 of 2 shards failed after 2 attempt(s)" in msg
    assert "shard 1 (chains 3-4" in msg and "simulated permanent failure" in msg
    assert set(info.value.failed) == {1} and set(info.value.completed) == {0}
    assert math.isfinite(float(info.value.completed[0].draws.sum()))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install gibbsebm[ray])")
def test_ray_worker_death_loses_only_its_shard(ray_local, tmp_path):
    """A worker that dies is replaced and its shard rerun (Ray's task retries)."""
    torch.set_num_threads(1)
    marker = str(tmp_path / "died-once")
    dying = gibbsebm.Gibbs(DiesOnce(MEAN, VAR, marker, os.getpid()), beta=1.0)
    kw = {**SAMPLE_ARGS, "num_samples": 20, "num_warmup": 20}
    ex = RayExecutor(num_workers=2, max_retries=2, retry_exceptions=False)
    out = gibbsebm.sample(dying, "mala", executor=ex, **kw)
    assert os.path.exists(marker)  # a worker did die
    ref = gibbsebm.sample(gaussian_dist(), "mala", executor=LocalExecutor(num_shards=2), **kw)
    assert torch.equal(out.draws, ref.draws)
