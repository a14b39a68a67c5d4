"""The sample() driver: shapes, stats, batching, thinning, init, seeds, arviz, persistence,
shards, progress, and a sampler-independent check with an exact i.i.d. kernel."""

import json
from typing import NamedTuple

import numpy as np
import pytest
import torch
from _sampler_mc import one_thread, zscore  # noqa: F401 (autouse fixture)
from torch.distributions import constraints

import gibbsebm
from gibbsebm.energies import Gaussian
from gibbsebm.run import Samples, initial_positions, run_chains, shard_seeds
from gibbsebm.samplers.base import SamplerSpec

DT = torch.float64


def gaussian(device, d=2, **kw):
    return gibbsebm.Gibbs(Gaussian(torch.zeros(d, dtype=DT, device=device), **kw))


def test_shapes_and_recorded_stats(device):
    d = gaussian(device, 3)
    s = gibbsebm.sample(
        d,
        "hmc",
        num_chains=5,
        num_samples=7,
        num_warmup=10,
        seed=0,
        progress=False,
        num_steps=3,
        warn=False,
    )
    assert s.draws.shape == (5, 7, 3) and s.num_chains == 5 and s.num_samples == 7
    from gibbsebm.samplers.hmc import HMCInfo

    for name in HMCInfo._fields + ("step_size", "beta", "energy", "logdensity"):
        assert s.stats[name].shape == (5, 7), name
    assert s.stats["is_divergent"].dtype == torch.bool
    torch.testing.assert_close(s.stats["energy"], d.energy_of(s.draws))
    torch.testing.assert_close(s.stats["logdensity"], d.unnormalized_log_prob(s.draws))
    assert bool((s.stats["beta"] == 1.0).all())
    assert s.method == "hmc" and s.seed == 0 and s.options == {"num_steps": 3}
    assert "Samples(method='hmc'" in repr(s)


def test_batched_beta_ladder(device):
    """A beta ladder is sampled member by member: draws (C, D, B, d), variance 1/beta."""
    betas = torch.tensor([0.5, 1.0, 4.0], dtype=DT, device=device)
    d = gaussian(device, 2).at(betas)
    s = gibbsebm.sample(
        d,
        "mala",
        num_chains=16,
        num_samples=200,
        num_warmup=200,
        seed=1,
        progress=False,
        warn=False,
    )
    assert s.draws.shape == (16, 200, 3, 2)
    assert s.stats["acceptance_prob"].shape == (16, 200, 3)
    assert torch.equal(s.stats["beta"][0, 0], betas)
    torch.testing.assert_close(
        s.stats["energy"], d.energy.forward(s.draws.reshape(-1, 2)).reshape(16, 200, 3)
    )
    var = (1.0 / betas)[:, None].expand(3, 2).cpu().numpy()
    # one shared step size: the widest member mixes slowest, so 5 MCSE still applies
    assert np.abs(zscore(s.draws.double() ** 2, var)).max() < 5


def test_conditional_distribution_batch(device):
    """A conditional energy E(x, y) = |y - x|^2 / 2 over 3 inputs: mean of y | x is x."""

    def energy(x, y):
        return 0.5 * ((y - x) ** 2).sum(-1)

    x = torch.tensor([[-2.0], [0.0], [3.0]], dtype=DT, device=device)
    d = gibbsebm.Gibbs(energy, condition=x, event_shape=(1,))
    s = gibbsebm.sample(
        d, "hmc", num_chains=16, num_samples=100, num_warmup=100, seed=2, progress=False, warn=False
    )
    assert s.draws.shape == (16, 100, 3, 1)
    assert np.abs(zscore(s.draws, x.cpu().numpy())).max() < 5


def test_thinning_keeps_every_kth_iteration(device):
    d = gaussian(device)
    kw = dict(num_chains=3, num_warmup=5, seed=4, progress=False, step_size=0.3)
    a = gibbsebm.sample(d, "ula", num_samples=12, thin=1, **kw, warn=False)
    b = gibbsebm.sample(d, "ula", num_samples=4, thin=3, **kw, warn=False)
    assert torch.equal(b.draws, a.draws[:, 2::3])
    assert b.thin == 3


def test_init_defaults_and_explicit(device):
    d = gaussian(device, 4)
    g = torch.Generator(device=device).manual_seed(0)
    y = initial_positions(d, 1000, g)
    assert y.shape == (1000, 4) and float(y.abs().max()) < 2.0 and float(y.std()) > 1.0
    disc = gibbsebm.Gibbs(lambda v: v.sum(-1), event_shape=(5,), support=constraints.boolean)
    v = initial_positions(disc, 100, g)
    assert set(v.unique().tolist()) == {0.0, 1.0}
    pos = gibbsebm.Gibbs(
        lambda v: v.sum(-1),
        event_shape=(2,),
        support=constraints.independent(constraints.positive, 1),
    )
    assert bool((initial_positions(pos, 50, g) > 0).all())
    init = torch.full((4, 4), 0.5, dtype=DT, device=device)
    s = gibbsebm.sample(
        d,
        "ula",
        num_chains=4,
        num_samples=1,
        num_warmup=0,
        seed=0,
        init=init,
        progress=False,
        step_size=1e-12,
        noise_scale=1e-12,
    )
    torch.testing.assert_close(s.draws[:, 0], init, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="init must have shape"):
        gibbsebm.sample(d, "ula", num_chains=4, num_samples=1, num_warmup=0, init=init[:2])
    with pytest.raises(ValueError, match="non-finite"):
        gibbsebm.sample(
            d, "ula", num_chains=4, num_samples=1, num_warmup=0, init=init * float("nan")
        )
    with pytest.raises(ValueError, match="no default initialisation"):
        initial_positions(
            gibbsebm.Gibbs(lambda v: v.sum(-1), event_shape=(1,), support=constraints.simplex), 2
        )


def test_bad_arguments(device):
    d = gaussian(device)
    with pytest.raises(ValueError, match="unknown method"):
        gibbsebm.sample(d, "slice", num_chains=2, num_samples=1, num_warmup=0)
    with pytest.raises(ValueError, match="num_chains"):
        gibbsebm.sample(d, "hmc", num_chains=0, num_samples=1, num_warmup=0)
    with pytest.raises(ValueError, match="thin"):
        gibbsebm.sample(d, "hmc", num_chains=1, num_samples=1, num_warmup=0, thin=0)
    with pytest.raises(ValueError, match="seed"):
        gibbsebm.sample(d, "hmc", num_chains=1, num_samples=1, num_warmup=0, seed=-3)
    with pytest.raises(ValueError, match="progress"):
        gibbsebm.sample(d, "ula", num_chains=1, num_samples=1, num_warmup=0, progress="yes")


def test_default_method_and_seed(device):
    d = gaussian(device)
    s = gibbsebm.sample(d, num_chains=2, num_samples=3, num_warmup=0, progress=False)
    assert s.method == "hmc" and isinstance(s.seed, int)
    again = gibbsebm.sample(
        d, num_chains=2, num_samples=3, num_warmup=0, progress=False, seed=s.seed
    )
    assert torch.equal(s.draws, again.draws)  # the recorded seed reproduces the run


def test_arviz_conversion_and_summary(device):
    d = gaussian(device, 2)
    s = gibbsebm.sample(
        d, "hmc", num_chains=4, num_samples=50, num_warmup=50, seed=3, progress=False, warn=False
    )
    idata = s.to_inference_data()
    assert idata.posterior["y"].shape == (4, 50, 2)
    ss = idata.sample_stats
    for name in ("acceptance_rate", "diverging", "lp", "gibbs_energy", "step_size", "beta"):
        assert name in ss, name
    assert "energy" not in ss  # arviz's energy is the Hamiltonian, not E(y)
    attrs = idata.posterior.attrs
    assert attrs["method"] == "hmc" and attrs["seed"] == 3
    assert json.loads(attrs["options"]) == {}
    for lib in ("gibbsebm", "torch", "pyro", "arviz"):
        assert f"{lib}_version" in attrs
    assert "adapted_step_size" in attrs
    summ = s.summary()
    for col in ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"):
        assert col in summ.columns
    assert len(summ) == 2
    np.testing.assert_allclose(
        summ["mean"].to_numpy(), s.draws.mean((0, 1)).cpu().numpy(), atol=1e-3
    )
    # the torch summary has arviz's columns, labels and numbers
    from gibbsebm.interop.arviz import summary as arviz_summary

    ours = s.summary(round_to="none")
    ref = arviz_summary(s, round_to="none")
    assert list(ours.columns) == list(ref.columns) and list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=1e-5)
    assert list(s.summary(kind="diagnostics").columns) == list(ref.columns[4:])


def test_many_chains_few_draws_convert_without_warnings(device):
    d = gaussian(device, 1)
    s = gibbsebm.sample(
        d, "ula", num_chains=64, num_samples=4, num_warmup=0, seed=0, progress=False, warn=False
    )
    s.to_inference_data()
    s.summary()  # filterwarnings=error: arviz's "more chains than draws" must not leak


def test_save_load_roundtrip(tmp_path, device):
    d = gaussian(device, 2)
    s = gibbsebm.sample(
        d,
        "mala",
        num_chains=3,
        num_samples=10,
        num_warmup=20,
        seed=5,
        progress=False,
        dense_mass=True,
        warn=False,
    )
    path = tmp_path / "s.pt"
    s.save(path)
    t = Samples.load(path)
    assert torch.equal(t.draws, s.draws.cpu())
    assert set(t.stats) == set(s.stats)
    assert t.method == "mala" and t.seed == 5 and t.options == {"dense_mass": True}
    assert torch.equal(t.adaptation["inverse_mass"], s.adaptation["inverse_mass"].cpu())
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a gibbsebm Samples"):
        Samples.load(tmp_path / "junk.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a gibbsebm Samples"):
        Samples.load(tmp_path / "other.pt")


def test_shards_concatenate(device):
    d = gaussian(device, 2)
    seeds = shard_seeds(123, 3)
    assert len(set(seeds)) == 3 and seeds == shard_seeds(123, 3)
    parts = []
    for sd in seeds:
        g = torch.Generator(device=device).manual_seed(sd)
        pos = initial_positions(d, 4, g).reshape(4, 2)
        parts.append(run_chains(d, "hmc", pos, g, num_samples=6, num_warmup=10, seed=sd))
    s = Samples.concatenate(parts)
    assert s.draws.shape == (12, 6, 2)
    assert torch.equal(s.draws[4:8], parts[1].draws)
    assert s.attrs["shard_seeds"] == seeds
    other = gibbsebm.sample(
        d, "ula", num_chains=2, num_samples=6, num_warmup=0, progress=False, warn=False
    )
    with pytest.raises(ValueError, match="methods"):
        Samples.concatenate([parts[0], other])
    with pytest.raises(ValueError):
        Samples.concatenate([])


def test_progress_bar_forced(device, capsys):
    d = gaussian(device, 2)
    gibbsebm.sample(
        d,
        "mala",
        num_chains=2,
        num_samples=30,
        num_warmup=30,
        seed=0,
        progress="always",
        warn=False,
    )
    err = capsys.readouterr().err
    assert "mala" in err and "acc=" in err and "draw/s" in err and "100%" in err
    gibbsebm.sample(
        d, "mala", num_chains=2, num_samples=3, num_warmup=0, seed=0, progress=True, warn=False
    )
    assert capsys.readouterr().err == ""  # not a terminal: hidden


# ---------------------------------------------------------------------- driver vs. exact kernel
class ExactState(NamedTuple):
    position: torch.Tensor
    logdensity: torch.Tensor


class ExactInfo(NamedTuple):
    acceptance_prob: torch.Tensor
    is_accepted: torch.Tensor
    is_divergent: torch.Tensor
    is_nonfinite: torch.Tensor
    pair: torch.Tensor  # a field with a trailing dimension


def exact_spec(dist):
    """An i.i.d. 'prior kernel' (Pyro's trick): every step is an exact draw, so anything the
    driver gets wrong (ordering, thinning, reshaping, stats) shows up against closed forms."""

    def init(position, fn):
        return ExactState(position, fn(position))

    def step(generator, state, fn, scale=1.0):
        y = scale * torch.randn(
            state.position.shape, generator=generator, dtype=DT, device=state.position.device
        )
        c = y.shape[0]
        ones = torch.ones(c, dtype=DT, device=y.device)
        info = ExactInfo(ones, ones > 0, ones < 0, ones < 0, torch.stack([ones, 2 * ones], 1))
        return ExactState(y, fn(y)), info

    return SamplerSpec(
        name="exact",
        init=init,
        step=step,
        default_params={"scale": 1.0},
        extra_draws=lambda st: {"double": 2 * st.position},
    )


def test_driver_with_an_exact_kernel(device, monkeypatch):
    import gibbsebm.run as run_mod

    monkeypatch.setattr(run_mod, "get_spec", lambda method, dist, **kw: exact_spec(dist))
    d = gaussian(device, 2)
    s = gibbsebm.sample(
        d, "exact", num_chains=16, num_samples=500, num_warmup=3, seed=9, thin=2, progress=False
    )
    assert s.stats["pair"].shape == (16, 500, 2)
    assert torch.equal(s.extra["double"], 2 * s.draws)
    assert "step_size" not in s.stats
    # exact N(0, I) draws: mean 0, variance 1 within 5 MCSE
    assert np.abs(zscore(s.draws, [0.0, 0.0])).max() < 5
    assert np.abs(zscore(s.draws**2, [1.0, 1.0])).max() < 5
    # negative control: the same check rejects a kernel with the wrong scale
    monkeypatch.setattr(
        run_mod,
        "get_spec",
        lambda method, dist, **kw: exact_spec(dist)._replace(default_params={"scale": 1.1}),
    )
    bad = gibbsebm.sample(
        d, "exact", num_chains=16, num_samples=500, num_warmup=0, seed=9, progress=False
    )
    assert np.abs(zscore(bad.draws**2, [1.0, 1.0])).max() > 5
