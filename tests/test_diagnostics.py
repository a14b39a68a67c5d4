"""gibbsebm.diagnostics against arviz (to 1e-6 relative), nested R-hat against the paper's formula,
edge cases, and the Stan-style checks on synthetic draws."""

import json
import math
import warnings
import zlib

import numpy as np
import pytest
import torch

from gibbsebm import _convergence
from gibbsebm import diagnostics as D

az = pytest.importorskip("arviz")

RTOL = 1e-6


def _ar1(rng, shape, phi):
    """AR(1) chains ``(C, N, *event)`` with coefficient ``phi`` and stationary start."""
    c, n, *event = shape
    e = rng.standard_normal((c, n, *event))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


CASES = [
    ("iid", (4, 100, 3), 0.0),
    ("ar1 odd draws", (4, 101, 2), 0.9),
    ("ar1 2-d event", (3, 60, 2, 2), 0.99),
    ("many short chains", (64, 6, 2), 0.5),
    ("one chain", (1, 80, 2), 0.95),
    ("few draws", (2, 7, 3), 0.3),
    ("minimum draws", (8, 4, 1), 0.0),
    ("scalar event", (4, 50), 0.8),
]


def _arviz(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz: "More chains than draws"
        ds = az.convert_to_dataset({"x": x})
        return {
            "rhat": az.rhat(ds, method="rank")["x"].values,
            "bulk": az.ess(ds, method="bulk")["x"].values,
            "tail": az.ess(ds, method="tail")["x"].values,
            "mean": az.ess(ds, method="mean")["x"].values,
            "mcse": az.mcse(ds, method="mean")["x"].values,
        }


def _close(mine, ref):
    mine = np.asarray(mine, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64).reshape(mine.shape)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    np.testing.assert_allclose(mine, ref, rtol=RTOL, atol=0)


@pytest.mark.parametrize("name,shape,phi", CASES, ids=[c[0] for c in CASES])
def test_equal_to_arviz(name, shape, phi, device):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = _ar1(rng, shape, phi)
    ref = _arviz(x)
    t = torch.tensor(x, device=device)
    mine = {
        "rhat": D.rhat(t),
        "bulk": D.ess(t, "bulk"),
        "tail": D.ess(t, "tail"),
        "mean": D.ess(t, "mean"),
        "mcse": D.mcse(t),
    }
    for k, v in mine.items():
        assert v.shape == t.shape[2:] and v.device == t.device and v.dtype == torch.float64
        _close(v.cpu(), ref[k])


def test_ties_discrete_draws_equal_to_arviz():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(6, 40, 2)).astype(np.float64)  # many ties in the ranks
    ref = _arviz(x)
    t = torch.tensor(x)
    _close(D.rhat(t), ref["rhat"])
    _close(D.ess(t, "bulk"), ref["bulk"])
    _close(D.ess(t, "tail"), ref["tail"])


def test_summary_stats_equal_to_arviz_summary():
    rng = np.random.default_rng(4)
    x = _ar1(rng, (4, 80, 3), 0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.summary(az.convert_to_dataset({"x": x}), round_to="none")
    mine = D.summary_stats(torch.tensor(x))
    names = {"hdi_low": "hdi_3%", "hdi_high": "hdi_97%"}
    for k, v in mine.items():
        _close(v, ref[names.get(k, k)].to_numpy())


def test_float32_in_float32_out():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 100, 2, generator=g)
    for f in (D.rhat, D.mcse, lambda d: D.ess(d, "tail")):
        out = f(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), f(x.double()), rtol=1e-6, atol=0)


def test_edge_cases_are_documented_values():
    c, n = 4, 20
    const = torch.ones(c, n, 1)
    assert torch.isnan(D.rhat(const)).all()  # 0/0: nothing to compare
    assert D.ess(const, "bulk").item() == c * (n // 2) * 2  # arviz: the number of draws
    apart = torch.arange(c, dtype=torch.float64)[:, None, None].expand(c, n, 1)
    assert torch.isinf(D.rhat(apart)).all()  # constant chains at different values: not mixed
    short = torch.randn(4, 3, 2)
    for f in (D.rhat, D.mcse, D.ess):
        assert torch.isnan(f(short)).all()
    bad = torch.randn(4, 50, 2, dtype=torch.float64)
    bad[1, 7, 0] = math.inf
    for f in (D.rhat, D.mcse, lambda d: D.ess(d, "bulk"), lambda d: D.nested_rhat(d, 2)):
        out = f(bad)
        assert torch.isnan(out[0]) and torch.isfinite(out[1])
    with pytest.raises(ValueError):
        D.ess(bad, "median")
    with pytest.raises(ValueError):
        D.nested_rhat(bad, 3)


def _nested_rhat_direct(x, k):
    """Margossian et al. (2023), definition 2, written out with loops."""
    c, n = x.shape
    m = c // k
    chains = [[x[kk * m + mm] for mm in range(m)] for kk in range(k)]
    cm = [[ch.mean() for ch in sc] for sc in chains]
    sm = [np.mean(v) for v in cm]
    overall = np.mean(sm)
    b_nu = sum((s - overall) ** 2 for s in sm) / (k - 1)
    w_nu = 0.0
    for kk in range(k):
        bt = sum((v - sm[kk]) ** 2 for v in cm[kk]) / (m - 1) if m > 1 else 0.0
        wt = (
            np.mean([((ch - ch.mean()) ** 2).sum() / (n - 1) for ch in chains[kk]])
            if n > 1
            else 0.0
        )
        w_nu += (bt + wt) / k
    return math.sqrt(1 + b_nu / w_nu)


@pytest.mark.parametrize("c,n,k", [(12, 5, 3), (8, 1, 4), (6, 9, 6)])
def test_nested_rhat_matches_the_paper_formula(c, n, k):
    rng = np.random.default_rng(c * 100 + n)
    x = _ar1(rng, (c, n, 2), 0.6) + rng.standard_normal((c, 1, 2))
    got = D.nested_rhat(torch.tensor(x), k)
    for j in range(2):
        assert got[j].item() == pytest.approx(_nested_rhat_direct(x[..., j], k), rel=1e-12)


def _superchains(rng, k, m, n, starts, phi=0.9):
    """k superchains of m AR(1) chains around the modes in ``starts`` (one mode per superchain)."""
    x = _ar1(rng, (k * m, n), phi)
    return x + np.repeat(np.asarray(starts, dtype=np.float64), m)[:, None]


def test_nested_rhat_flags_superchains_in_different_modes():
    rng = np.random.default_rng(5)
    k, m, n = 8, 16, 10
    # well-mixed (independent draws): E[B/W] ~ 1 / (m n) = 0.006, so nested R-hat ~ 1.003
    mixed = _superchains(rng, k, m, n, np.zeros(k), phi=0.0)
    split = _superchains(rng, k, m, n, np.where(np.arange(k) % 2 == 0, -8.0, 8.0), phi=0.0)
    r_mixed = D.nested_rhat(torch.tensor(mixed), k).item()
    r_split = D.nested_rhat(torch.tensor(split), k).item()
    assert r_mixed < 1.01  # the superchains agree
    assert r_split > 1.5  # negative control: modes at +-8 seen by different superchains


def test_ebfmi_iid_and_sticky():
    g = torch.Generator().manual_seed(1)
    iid = torch.randn(2, 4000, generator=g, dtype=torch.float64)
    # i.i.d.: E[(H_n - H_{n-1})^2] = 2 var(H), so E-BFMI ~ 2
    assert torch.allclose(D.ebfmi(iid), torch.full((2,), 2.0, dtype=torch.float64), atol=0.15)
    sticky = torch.tensor(_ar1(np.random.default_rng(2), (2, 4000), 0.95))
    assert (D.ebfmi(sticky) < D.EBFMI_THRESHOLD).all()  # 2 (1 - phi) = 0.1


def test_check_silent_on_good_draws_and_lists_problems_on_bad_ones():
    rng = np.random.default_rng(6)
    good = torch.tensor(_ar1(rng, (4, 500, 3), 0.3))
    stats = {
        "is_divergent": torch.zeros(4, 500, dtype=torch.bool),
        "is_accepted": torch.ones(4, 500, dtype=torch.bool),
        "is_nonfinite": torch.zeros(4, 500, dtype=torch.bool),
    }
    assert D.check(good, stats, method="hmc") == []
    bad = good.clone()
    bad[3] += 8.0  # one chain in another mode
    div = stats["is_divergent"].clone()
    div[1, :7] = True
    acc = stats["is_accepted"].clone()
    acc[2] = False
    bad[2] = bad[2, :1]  # and it never moved
    problems = D.check(bad, {**stats, "is_divergent": div, "is_accepted": acc}, method="hmc")
    by = {p.check: p for p in problems}
    assert set(by) == {"rhat", "ess_bulk", "ess_tail", "divergences", "stuck_chains"}
    assert by["rhat"].figure > 1.5 and by["rhat"].count == 3
    assert by["divergences"].count == 7 and by["divergences"].chains == (1,)
    assert by["stuck_chains"].chains == (2,)
    json.dumps([p.to_dict() for p in problems])  # plain data
    text = D.format_problems(problems)
    assert text.count("\n  - ") == len(problems) and "7 of 2000" in text


def test_check_tree_depth_ebfmi_and_nested():
    rng = np.random.default_rng(7)
    x = torch.tensor(_ar1(rng, (4, 400, 2), 0.2))
    depth = torch.full((4, 400), 3)
    depth[0, :5] = 10
    ham = torch.tensor(_ar1(rng, (4, 400), 0.95))
    problems = D.check(x, {"tree_depth": depth, "hamiltonian": ham}, method="nuts")
    by = {p.check: p for p in problems}
    assert set(by) == {"tree_depth", "ebfmi"}
    assert by["tree_depth"].count == 5 and by["ebfmi"].count == 4
    split = torch.tensor(_superchains(rng, 4, 8, 10, [-8.0, 8.0, -8.0, 8.0]))
    names = [p.check for p in D.check(split, num_superchains=4)]
    assert "nested_rhat" in names and "rhat" not in names


def test_warn_problems_issues_one_sampling_warning():
    assert issubclass(D.SamplingWarning, UserWarning)
    import gibbsebm

    assert gibbsebm.SamplingWarning is D.SamplingWarning
    p = D.Problem("divergences", 2.0, 0.0, "hmc: 2 of 10 transitions diverged")
    with pytest.warns(D.SamplingWarning, match="2 of 10") as rec:
        D.warn_problems([p, p])
    assert len(rec) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.warn_problems([])


@pytest.mark.parametrize("levels", [1, 2, 5, 50, None])
def test_rank_normal_scores_equal_scipy_average_ranks(levels):
    """The sparse tie handling: every tie-group size, groups at row ends, a constant row."""
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 40)) if levels is None else rng.integers(0, levels, (6, 40))
    x = x.astype(np.float64)
    x[0] = 3.0  # one row constant
    r = scipy_stats.rankdata(x, axis=-1)
    expected = scipy_stats.norm.ppf((r - 3 / 8) / (x.shape[1] + 1 / 4))
    t = torch.tensor(x)
    got = _convergence._z_scale(t[:, None, :])[:, 0, :]  # (B, C=1, N)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [50, 51])
def test_check_stats_and_chunks_give_the_values_of_the_single_estimators(monkeypatch, n):
    """`check_stats` (one sort, CPU chunks of coordinates) returns exactly what `ess`, `rhat`
    and `nested_rhat` return alone, whatever the chunk size; ties, a NaN and an infinite
    coordinate included."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy(_ar1(rng, (16, n, 7), 0.6)).to(torch.float32)
    x[..., 2] = torch.round(x[..., 2])  # many ties
    x[3, 5, 4] = math.nan
    x[1, 0, 6] = -math.inf

    def singles():
        return {
            "ess_bulk": D.ess(x, kind="bulk"),
            "ess_tail": D.ess(x, kind="tail"),
            "rhat": D.rhat(x),
            "nested_rhat": D.nested_rhat(x, 4),
        }

    monkeypatch.setattr(_convergence, "_CPU_CHUNK_DRAWS", 1 << 30)  # one chunk
    whole = singles()
    for chunk in (1, 3 * 16 * n, 1 << 30):  # one coordinate, three, all
        monkeypatch.setattr(_convergence, "_CPU_CHUNK_DRAWS", chunk)
        fused = D.check_stats(x, rhat=True, num_superchains=4)
        assert sorted(fused) == sorted(whole)
        for key, ref in {**whole, **singles()}.items():
            assert fused[key].dtype == torch.float32
            torch.testing.assert_close(fused[key], ref, rtol=0, atol=0, equal_nan=True)
        assert torch.isnan(fused["ess_bulk"][4]) and torch.isnan(fused["rhat"][6])
    monkeypatch.setattr(_convergence, "_CPU_CHUNK_DRAWS", 1)
    torch.testing.assert_close(D.mcse(x)[:2], D.mcse(x[..., :2]), rtol=0, atol=0)
