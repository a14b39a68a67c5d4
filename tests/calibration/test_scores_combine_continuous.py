"""Energy-vs-probability scores, combination of systems, continuous predictive calibration."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from gibbsebm.calibration import (
    auroc,
    combine,
    compare_confidence_scores,
    compare_ood_scores,
    crps,
    fit_predictive_beta,
    fit_weights,
    interval_coverage,
    pit_values,
    risk_coverage,
)


# ----------------------------------------------------------------------------- scores
def test_auroc_hand_values_and_ties():
    assert auroc([1.0, 1.0, 0.0], [True, False, False]).value == pytest.approx(0.75)
    assert auroc([0.9, 0.8, 0.3, 0.1], [True, False, True, False]).value == 0.75
    r = auroc([1.0, 2.0], [True, True])
    assert math.isnan(r.value) and r.n_neg == 0


def test_auroc_matches_sklearn_and_delong_bruteforce():
    g = np.random.default_rng(0)
    s = np.round(g.normal(size=300), 1)  # many ties
    pos = g.random(300) < 1 / (1 + np.exp(-2 * s))
    r = auroc(s, pos)
    assert r.value == pytest.approx(roc_auc_score(pos, s), abs=1e-12)
    x, y = s[pos], s[~pos]
    psi = (x[:, None] > y[None]) + 0.5 * (x[:, None] == y[None])
    v10, v01 = psi.mean(1), psi.mean(0)
    se = math.sqrt(v10.var(ddof=1) / len(x) + v01.var(ddof=1) / len(y))
    assert r.stderr == pytest.approx(se, rel=1e-10)
    with pytest.raises(ValueError, match="mismatched lengths"):
        auroc(s, pos[:-1])


def test_risk_coverage_hand_values():
    rc = risk_coverage([0.9, 0.8, 0.7, 0.6], [True, False, True, False], n_bootstrap=0)
    assert rc.risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert rc.coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert rc.aurc == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    rb = risk_coverage([0.9, 0.8, 0.7, 0.6] * 50, [True, False, True, False] * 50, n_bootstrap=200)
    assert rb.aurc_ci_low <= rb.aurc <= rb.aurc_ci_high


def test_probability_beats_raw_energy_when_offsets_are_uninformative():
    # correctness depends on the energy gaps; each input carries a random offset that moves
    # min_k E but not softmax(-E): the probability detects errors, the raw energy cannot
    g = torch.Generator().manual_seed(0)
    n, k = 3000, 5
    e = 1.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(-e, 1), 1, generator=g).squeeze(1)
    e = e + 10 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    cmp = compare_confidence_scores(e, y, beta=1.0, n_bootstrap=100)
    pa, ea = cmp.auroc["probability"], cmp.auroc["energy"]
    assert pa.value - ea.value > 3 * math.hypot(pa.stderr, ea.stderr)
    assert abs(ea.value - 0.5) < 3 * ea.stderr  # the energy level says nothing here
    assert cmp.risk_coverage["probability"].aurc < cmp.risk_coverage["energy"].aurc


def test_free_energy_detects_ood_that_max_probability_misses():
    # OOD inputs: same energy gaps (same softmax) but every energy shifted up by 5
    g = torch.Generator().manual_seed(1)
    e_in = torch.randn(1000, 10, generator=g, dtype=torch.float64)
    e_out = torch.randn(1000, 10, generator=g, dtype=torch.float64) + 5.0
    r = compare_ood_scores(e_in, e_out, beta=1.0)
    assert r.auroc["neg_free_energy"].value > 0.99
    p = r.auroc["probability"]
    assert abs(p.value - 0.5) < 3 * p.stderr
    assert r.fpr_at_95_tpr["neg_free_energy"] < 0.05 < r.fpr_at_95_tpr["probability"]
    with pytest.raises(ValueError, match="labels"):
        compare_ood_scores(e_in, e_out[:, :3])


# ----------------------------------------------------------------------------- combination
def _two_systems(n, seed, a=1.0, b=0.5):
    g = torch.Generator().manual_seed(seed)
    e1 = torch.randn(n, 4, generator=g, dtype=torch.float64)
    e2 = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(-(a * e1 + b * e2), 1), 1, generator=g).squeeze(1)
    return e1, e2, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_weights_recovers_generating_weights(seed):
    e1, e2, y = _two_systems(4000, seed)
    fit = fit_weights({"a": e1, "b": e2}, y)
    assert abs(fit.weights[0] - 1.0) < 3 * fit.stderr[0]
    assert abs(fit.weights[1] - 0.5) < 3 * fit.stderr[1]
    # negative control: swapped weights are rejected
    assert abs(fit.weights[0] - 0.5) > 3 * fit.stderr[0]


def test_fit_weights_singular_raises():
    e1, _, y = _two_systems(500, 0)
    with pytest.raises(ValueError, match="identifiable"):
        fit_weights({"a": e1, "b": 2 * e1}, y)


def test_combine_table_crossfit_and_separate_fit():
    # system a is overconfident (x 4), system b underconfident (x 0.25): the raw sum is
    # dominated by a; the product of calibrated experts and fitted weights use both
    e1, e2, y = _two_systems(3000, 3, a=1.0, b=1.0)
    sys = {"a": 4 * e1[:2000], "b": 0.25 * e2[:2000]}
    res = combine(sys, y[:2000], n_bootstrap=50, n_folds=4)
    assert res.fitted_on.startswith("4-fold cross-fit")
    names = [r.name for r in res.rows]
    assert names == [
        "a",
        "a (beta)",
        "b",
        "b (beta)",
        "raw sum",
        "raw sum (beta)",
        "product of experts",
        "fitted weights",
    ]
    assert res.beta_fits["a"].beta == pytest.approx(0.25, rel=0.2)
    assert res.beta_fits["b"].beta == pytest.approx(4.0, rel=0.2)
    poe, raw = res.row("product of experts"), res.row("raw sum")
    assert poe.nll.value < raw.nll.value and poe.nll.value < res.row("a (beta)").nll.value
    fw = res.row("fitted weights")
    assert fw.coefficients["a"] == pytest.approx(0.25, abs=3 * res.weight_fit.stderr[0] + 0.02)
    # separate fit data
    fit_sys = {"a": 4 * e1[2000:], "b": 0.25 * e2[2000:]}
    res2 = combine(sys, y[:2000], fit_energies=fit_sys, fit_labels=y[2000:], n_bootstrap=0)
    assert res2.fitted_on == "separate fit data" and res2.n_fit == 1000
    d = res2.to_dict()
    assert d["rows"][0]["nll"]["value"] == res2.rows[0].nll.value
    with pytest.raises(ValueError, match="systems"):
        combine(sys, y[:2000], fit_energies={"a": fit_sys["a"]}, fit_labels=y[2000:])
    with pytest.raises(ValueError, match="both"):
        combine(sys, y[:2000], fit_energies=fit_sys)


# ----------------------------------------------------------------------------- continuous
def _gaussian_predictive(n, s, beta_true, beta0, seed):
    """E(x, y) = (y - mu(x))^2 / 2, so p_beta(y | x) = N(mu(x), 1/beta)."""
    g = torch.Generator().manual_seed(seed)
    mu = 3 * torch.randn(n, generator=g, dtype=torch.float64)
    y = mu + torch.randn(n, generator=g, dtype=torch.float64) / math.sqrt(beta_true)
    draws = mu + torch.randn(s, n, generator=g, dtype=torch.float64) / math.sqrt(beta0)
    return mu, y, draws, (draws - mu) ** 2 / 2, (y - mu) ** 2 / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_predictive_beta_recovers_beta_and_fixes_coverage(seed):
    mu, y, draws, se, ye = _gaussian_predictive(600, 400, 4.0, 2.5, seed)
    fit = fit_predictive_beta(draws, se, y, ye, beta0=2.5)
    assert abs(fit.beta - 4.0) < 3 * fit.stderr
    before, after = fit.coverage_before, fit.coverage_after
    i50 = int(np.argmin(np.abs(before.levels - 0.5)))
    # draws at beta0 < beta are too wide: the 50% interval over-covers (negative control)
    assert before.coverage[i50] - 0.5 > 3 * before.stderr[i50]
    assert np.all(
        np.abs(after.coverage - after.levels)
        < 3.5 * np.sqrt(after.levels * (1 - after.levels) / 600)
    )
    cov_fit = fit_predictive_beta(draws, se, y, ye, beta0=2.5, method="coverage", level=0.8)
    assert abs(cov_fit.beta - 4.0) < 3 * cov_fit.stderr


def test_fit_predictive_beta_degenerate_weights_raise():
    mu, y, draws, se, ye = _gaussian_predictive(200, 100, 400.0, 1.0, 0)
    with pytest.raises(ValueError, match="degenerate"):
        fit_predictive_beta(draws, se, y, ye, beta0=1.0)


def test_pit_uniform_when_calibrated_and_not_otherwise():
    mu, y, draws, _, _ = _gaussian_predictive(1000, 400, 1.0, 1.0, 5)
    assert pit_values(draws, y).ks_pvalue > 1e-3
    wide = mu + 3 * (draws - mu)
    bad = pit_values(wide, y)
    assert bad.ks_pvalue < 1e-6
    # too-wide predictive: PIT values pile up in the middle
    assert bad.histogram[4:6].sum() > bad.histogram[[0, 9]].sum()


def test_interval_coverage_nominal_for_exact_draws():
    _, y, draws, _, _ = _gaussian_predictive(3000, 400, 1.0, 1.0, 6)
    cov = interval_coverage(draws, y)
    assert np.all(np.abs(cov.coverage - cov.levels) < 3 * cov.stderr + 1 / 400)
    assert np.all(cov.ci_low < cov.coverage) and np.all(cov.coverage < cov.ci_high)
    assert cov.mean_width[-1] == pytest.approx(2 * norm.ppf(0.975), rel=0.05)


def test_crps_exact_and_gaussian_closed_form():
    assert crps(torch.tensor([[0.0], [2.0]]), torch.tensor([1.0])).mean == pytest.approx(0.5)
    g = np.random.default_rng(0)
    s = g.normal(size=(50, 7))
    y = g.normal(size=7)
    brute = np.abs(s - y).mean(0) - 0.5 * np.abs(s[:, None] - s[None]).mean((0, 1))
    assert crps(s, y).values == pytest.approx(brute, rel=1e-12)
    mu, y, draws, _, _ = _gaussian_predictive(400, 4000, 1.0, 1.0, 7)
    z = (y - mu).numpy()
    exact = z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi)
    r = crps(draws, y)
    diff = r.values - exact
    # empirical-CRPS bias is E|X - X'| / (2S) = 1 / (sqrt(pi) S); the rest is Monte Carlo
    assert abs(diff.mean()) < 3 * diff.std(ddof=1) / math.sqrt(400) + 1 / (
        math.sqrt(math.pi) * 4000
    )


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.zeros(5), np.zeros(5)), r"\(S, N\)"),
        ((np.zeros((5, 3)), np.zeros(4)), "mismatched lengths"),
        ((np.full((5, 3), np.nan), np.zeros(3)), "NaN"),
    ],
)
def test_continuous_bad_inputs(args, match):
    for fn in (pit_values, interval_coverage, crps):
        with pytest.raises(ValueError, match=match):
            fn(*args)
    with pytest.raises(ValueError, match="levels"):
        interval_coverage(np.zeros((5, 3)), np.zeros(3), levels=[1.5])
