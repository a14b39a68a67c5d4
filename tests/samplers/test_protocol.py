"""Tier 2: the sampler protocol, checked for every method in the registry.

Methods whose module is not there yet are skipped with the reason.
"""

import importlib
import importlib.util

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

import gibbsebm
from gibbsebm.run import flat_logdensity, initial_positions
from gibbsebm.samplers.registry import METHODS, get_spec

REQUIRED_INFO = ("acceptance_prob", "is_accepted", "is_divergent", "is_nonfinite")
C = 6


def make_dist(method, device):
    if method == "block_gibbs":
        from gibbsebm.energies import RBM

        rbm = RBM.random(5, 3, generator=torch.Generator().manual_seed(0)).to(device)
        return gibbsebm.Gibbs(rbm)
    if method in ("gwg", "dmala", "metropolis"):
        from gibbsebm.energies import Ising2D

        return gibbsebm.Gibbs(Ising2D(3, device=device), beta=0.3)
    from gibbsebm.energies import Gaussian

    return gibbsebm.Gibbs(
        Gaussian(torch.zeros(2, device=device), covariance=torch.tensor([1.0, 2.0]))
    )


def module_or_skip(method):
    name = f"gibbsebm.samplers.{METHODS[method]}"
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not written yet (method={method!r})")
    return importlib.import_module(name)


@pytest.fixture(params=sorted(METHODS))
def method(request):
    module_or_skip(request.param)
    return request.param


def first_state(method, device, seed=0):
    d = make_dist(method, device)
    spec = get_spec(method, d)
    g = torch.Generator(device=device).manual_seed(seed)
    y = initial_positions(d, C, g)
    fn = flat_logdensity(d)
    return d, spec, g, fn, spec.init(y, fn)


def test_module_exports_make_spec(method):
    mod = module_or_skip(method)
    assert callable(mod.make_spec)


def test_init_and_step_follow_the_protocol(method, device):
    d, spec, g, fn, state = first_state(method, device)
    assert spec.name == method
    assert state.position.shape == (C,) + tuple(d.event_shape)
    assert state.logdensity.shape == (C,)
    before = state.position.clone()
    new, info = spec.step(g, state, fn, **spec.default_params)
    assert torch.equal(state.position, before), "step must not modify its input state"
    assert type(new) is type(state)
    assert new.position.shape == state.position.shape
    assert new.position.device == state.position.device and new.position.dtype == before.dtype
    assert not new.position.requires_grad and not new.logdensity.requires_grad
    for f in REQUIRED_INFO:
        v = getattr(info, f)
        assert isinstance(v, torch.Tensor) and v.shape[0] == C, f
    for f in ("is_accepted", "is_divergent", "is_nonfinite"):
        assert getattr(info, f).dtype == torch.bool, f
    a = info.acceptance_prob
    assert bool(((a >= 0) & (a <= 1)).all())
    assert bool(d.support.check(new.position).reshape(C, -1).all())
    torch.testing.assert_close(new.logdensity, fn(new.position))


def test_step_is_deterministic_given_the_generator(method, device):
    outs = []
    for _ in range(2):
        _, spec, g, fn, state = first_state(method, device, seed=3)
        for _ in range(3):
            state, info = spec.step(g, state, fn, **spec.default_params)
        outs.append((state.position, info.acceptance_prob))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])


@pytest.mark.filterwarnings(r"ignore:num_warmup=\d+ leaves:UserWarning")
def test_sample_records_every_info_field(method, device):
    d, spec, g, fn, state = first_state(method, device)
    _, info = spec.step(g, state, fn, **spec.default_params)
    s = gibbsebm.sample(
        d, method, num_chains=3, num_samples=4, num_warmup=4, seed=0, progress=False, warn=False
    )
    assert s.draws.shape == (3, 4) + tuple(d.event_shape)
    for f in info._fields:
        assert f in s.stats, f
        assert s.stats[f].shape[:2] == (3, 4), f
    for f in ("energy", "beta", "logdensity"):
        assert s.stats[f].shape == (3, 4), f
