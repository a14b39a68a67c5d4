"""The lean HMC transition (issue 15): the cheaper per-step paths give the same numbers.

Tier 1 (deterministic): :func:`select_chains` equals :func:`where_chain` bit for bit in every
branch (index copy, fallback to ``torch.where`` for views, many rejections, other dtypes);
``hmc.step`` (no extras, buffers reused) equals ``hmc.transition`` with extras; the in-place
kicks leave the caller's momentum alone. The opt-in compiled leapfrog step
(``GIBBSEBM_COMPILE=1``) is checked against the eager one in a slow test (compiling takes
about a minute on the 2-core CPU), with a negative control: a wrong step is detected.
"""

from __future__ import annotations

import pytest
import torch
from _sampler_mc import one_thread  # noqa: F401 (autouse fixture)

from gibbsebm.samplers import _compiled, hmc
from gibbsebm.samplers.base import select_chains, where_chain
from gibbsebm.samplers.integrators import IntegratorState, leapfrog
from gibbsebm.samplers.metrics import diagonal_metric


def _gauss(y):
    return -0.5 * (y * y * torch.linspace(0.5, 2.0, y.shape[-1], device=y.device)).sum(-1)


@pytest.mark.parametrize("reject_fraction", [0.0, 0.2, 0.9, 1.0])
@pytest.mark.parametrize("reuse", [False, True])
def test_select_chains_equals_where_chain(device, reject_fraction, reuse):
    g = torch.Generator(device=device).manual_seed(0)
    new = torch.randn(64, 3, 2, generator=g, device=device)
    old = torch.randn(64, 3, 2, generator=g, device=device)
    mask = torch.rand(64, generator=g, device=device) >= reject_fraction
    expected = where_chain(mask, new, old)
    keep = new.clone()
    got = select_chains(mask, new, old, reuse_new=reuse)
    assert torch.equal(got, expected)
    if not reuse:
        assert torch.equal(new, keep)  # the proposal is left alone without reuse_new


def test_select_chains_falls_back_for_views_and_dtypes(device):
    mask = torch.tensor([True, False, True], device=device)
    old = torch.zeros(3, 4, device=device)
    view = torch.ones(1, 4, device=device).expand(3, 4)  # stride 0: no in-place copy
    assert torch.equal(select_chains(mask, view, old, reuse_new=True), where_chain(mask, view, old))
    other = torch.ones(3, 4, dtype=torch.float64, device=device)
    assert torch.equal(
        select_chains(mask, other, old, reuse_new=True), where_chain(mask, other, old)
    )


def test_negative_control_where_chain_differs_from_inverted_mask(device):
    # the equality checks above have power: selecting with the inverted mask differs
    g = torch.Generator(device=device).manual_seed(1)
    new, old = torch.randn(32, 4, generator=g, device=device), torch.zeros(32, 4, device=device)
    mask = torch.rand(32, generator=g, device=device) < 0.5
    assert not torch.equal(select_chains(~mask, new.clone(), old), where_chain(mask, new, old))


def test_step_without_extras_equals_transition_with_extras(device):
    metric = diagonal_metric(torch.tensor([1.0, 0.5, 2.0], device=device))
    y0 = torch.randn(128, 3, generator=torch.Generator(device=device).manual_seed(2), device=device)
    s = hmc.init(y0, _gauss)
    g1 = torch.Generator(device=device).manual_seed(3)
    g2 = torch.Generator(device=device).manual_seed(3)
    a, b = s, s
    for _ in range(5):
        a, ia = hmc.step(g1, a, _gauss, step_size=0.9, num_steps=3, metric=metric)
        b, ib, extras = hmc.transition(g2, b, _gauss, 0.9, 3, metric)
        assert extras is not None
        assert 0 < int(ia.is_accepted.sum()) < 128  # both selection branches are exercised
        for x, z in zip(a[:3], b[:3]):
            assert torch.equal(x, z)
        assert torch.equal(ia.acceptance_prob, ib.acceptance_prob)
    assert torch.equal(s.position, y0)  # the start state was never written to


def test_leapfrog_leaves_the_callers_momentum_alone(device):
    metric = diagonal_metric(torch.ones(3, device=device))
    y = torch.randn(4, 3, device=device)
    p = torch.randn(4, 3, device=device)
    st = hmc.init(y, _gauss)
    p_copy = p.clone()
    leapfrog(_gauss, metric, IntegratorState(y, p, st.logdensity, st.logdensity_grad), 0.1, 4)
    assert torch.equal(p, p_copy)


def test_compile_is_off_by_default(monkeypatch):
    monkeypatch.delenv(_compiled.ENV_VAR, raising=False)
    assert not _compiled.enabled()
    assert _compiled.leapfrog_step(_gauss) is None
    monkeypatch.setenv(_compiled.ENV_VAR, "1")
    assert _compiled.enabled()


@pytest.mark.slow
def test_compiled_leapfrog_matches_eager(monkeypatch, device):
    metric = diagonal_metric(torch.linspace(0.5, 1.5, 5, device=device))
    gen = torch.Generator(device=device).manual_seed(4)
    y = torch.randn(256, 5, generator=gen, device=device)
    p = torch.randn(256, 5, generator=gen, device=device)
    st = hmc.init(y, _gauss)
    start = IntegratorState(y, p, st.logdensity, st.logdensity_grad)
    monkeypatch.delenv(_compiled.ENV_VAR, raising=False)
    eager = leapfrog(_gauss, metric, start, 0.2, 6)
    monkeypatch.setenv(_compiled.ENV_VAR, "1")
    fn = lambda x: _gauss(x)  # noqa: E731 (a fresh function: its own compile cache entry)
    comp = leapfrog(fn, metric, start, 0.2, 6)
    assert fn in _compiled._cache and fn not in _compiled._failed  # it really compiled
    for a, b in zip(eager, comp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # negative control: one step fewer is detected at this tolerance
    short = leapfrog(_gauss, metric, start, 0.2, 5)
    assert not torch.allclose(short.position, comp.position, rtol=1e-5, atol=1e-5)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    # a compiled step that raises (as torch.compile does for an energy it cannot trace):
    # one warning, then the eager step gives exactly the eager result
    def failing_build(fn):
        def step(*args):
            raise RuntimeError("cannot trace this energy")

        return step

    monkeypatch.setattr(_compiled, "_build", failing_build)
    monkeypatch.setenv(_compiled.ENV_VAR, "1")
    fn = lambda x: _gauss(x)  # noqa: E731
    metric = diagonal_metric(torch.ones(3))
    y, p = torch.randn(8, 3), torch.randn(8, 3)
    st = hmc.init(y, _gauss)
    start = IntegratorState(y, p, st.logdensity, st.logdensity_grad)
    with pytest.warns(UserWarning, match="compile"):
        out = leapfrog(fn, metric, start, 0.1, 3)
    assert fn in _compiled._failed and _compiled.leapfrog_step(fn) is None
    monkeypatch.delenv(_compiled.ENV_VAR)
    ref = leapfrog(_gauss, metric, start, 0.1, 3)
    for a, b in zip(out, ref):
        assert torch.equal(a, b)
