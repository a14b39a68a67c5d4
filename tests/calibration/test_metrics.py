"""Metric values computed by hand, conventions at bin edges, bootstrap intervals, bad inputs."""

import math

import numpy as np
import pytest
import torch

from gibbsebm.calibration import (
    accuracy,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    negative_log_likelihood,
)

NB0 = {"n_bootstrap": 0}


def _reference_ce(conf, hit, edges, norm):
    """Loop implementation straight from the definition (right-closed bins, 0 in bin 0)."""
    n = len(conf)
    gaps, weights = [], []
    for m in range(len(edges) - 1):
        lo, hi = edges[m], edges[m + 1]
        sel = [i for i in range(n) if (lo < conf[i] <= hi) or (m == 0 and conf[i] == lo)]
        if not sel:
            continue
        gaps.append(abs(np.mean([hit[i] for i in sel]) - np.mean([conf[i] for i in sel])))
        weights.append(len(sel) / n)
    gaps, weights = np.array(gaps), np.array(weights)
    if norm == "l1":
        return float((weights * gaps).sum())
    if norm == "l2":
        return float(math.sqrt((weights * gaps**2).sum()))
    return float(gaps.max())


def test_confidences_on_bin_edges_and_at_one():
    # M = 5, edges 0, .2, .4, .6, .8, 1: 0.6 belongs to (0.4, 0.6], 0.8 to (0.6, 0.8], 1.0 to (0.8, 1]
    p = np.array([[1.0, 0.0], [0.8, 0.2], [0.6, 0.4], [0.6, 0.4]])
    y = [0, 1, 0, 0]
    r = expected_calibration_error(p, y, n_bins=5, **NB0)
    # bins: (0.4,0.6]: 2 correct at 0.6 -> gap 0.4; (0.6,0.8]: 1 wrong at 0.8 -> 0.8; (0.8,1]: 0
    assert r.value == pytest.approx((2 * 0.4 + 0.8 + 0.0) / 4, abs=1e-15)
    assert r.bins.counts.tolist() == [0, 0, 2, 1, 1]
    assert np.isnan(r.bins.accuracy[:2]).all() and np.isnan(r.bins.confidence[:2]).all()
    assert r.bins.accuracy[2:].tolist() == [1.0, 0.0, 1.0]
    mce = expected_calibration_error(p, y, n_bins=5, norm="max", **NB0)
    assert mce.value == pytest.approx(0.8, abs=1e-15)
    assert mce.name == "mce"
    rms = expected_calibration_error(p, y, n_bins=5, norm="l2", **NB0)
    assert rms.value == pytest.approx(math.sqrt((2 * 0.16 + 0.64) / 4), abs=1e-15)


def test_right_closed_bins_change_the_number():
    # 0.6 (correct) and 0.7 (wrong) with M = 5: right-closed bins separate them,
    # (0.4, 0.6] -> |1 - 0.6| and (0.6, 0.8] -> |0 - 0.7|: ECE = 0.55.
    # Left-closed bins [0.6, 0.8) (torchmetrics) would merge them: |0.5 - 0.65| = 0.15.
    p = np.array([[0.6, 0.4], [0.7, 0.3]])
    r = expected_calibration_error(p, [0, 1], n_bins=5, **NB0)
    assert r.value == pytest.approx(0.55, abs=1e-15)
    assert r.value != pytest.approx(0.15)


def test_decimal_edge_is_exact():
    # 0.3 = 3/10 sits on an edge with M = 10 and belongs to (0.2, 0.3]
    p = np.array([[0.3, 0.25, 0.25, 0.2]])
    r = expected_calibration_error(p, [0], n_bins=10, **NB0)
    assert r.bins.counts.tolist() == [0, 0, 1] + [0] * 7
    assert r.value == pytest.approx(0.7, abs=1e-15)


def test_empty_bins_do_not_count_as_zero_accuracy():
    p = np.array([[0.95, 0.05], [0.95, 0.05]])
    r = expected_calibration_error(p, [0, 0], n_bins=15, **NB0)
    assert r.value == pytest.approx(0.05, abs=1e-12)
    assert r.bins.counts.sum() == 2 and (r.bins.counts > 0).sum() == 1
    assert np.isnan(r.bins.accuracy).sum() == 14
    assert expected_calibration_error(p, [0, 0], norm="max", **NB0).value == pytest.approx(0.05)


def test_single_class_column():
    p = np.ones((4, 1))
    y = np.zeros(4, dtype=int)
    assert expected_calibration_error(p, y, **NB0).value == 0.0
    assert classwise_calibration_error(p, y, **NB0).value == 0.0
    assert brier_score(p, y, **NB0).value == 0.0
    assert negative_log_likelihood(p, y, **NB0).value == 0.0
    assert accuracy(p, y, **NB0).value == 1.0


def test_labels_from_one_class_only():
    p = np.array([[0.7, 0.3], [0.9, 0.1]])
    y = [0, 0]
    assert expected_calibration_error(p, y, n_bins=10, **NB0).value == pytest.approx(0.2)
    cw = classwise_calibration_error(p, y, n_bins=10, **NB0)
    assert cw.value == pytest.approx(0.2)  # class 0: (0.3 + 0.1)/2, class 1: (0.3 + 0.1)/2
    assert cw.bins.counts.shape == (2, 10)
    assert brier_score(p, y, **NB0).value == pytest.approx((0.18 + 0.02) / 2)
    nll = negative_log_likelihood(p, y, **NB0).value
    assert nll == pytest.approx(-(math.log(0.7) + math.log(0.9)) / 2)


def test_classwise_hand_computed():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    r = classwise_calibration_error(p, [0, 1, 1], n_bins=5, **NB0)
    # class 0: 0.9|y=1 -> .1, 0.6|y=0 -> .6, 0.3|y=0 -> .3 ; class 1 mirrors it: (1/3 + 1/3)/2
    assert r.value == pytest.approx(1 / 3)
    assert r.bins.counts[0].tolist() == [0, 1, 1, 0, 1]
    assert r.bins.counts[1].tolist() == [1, 1, 0, 1, 0]  # 0.4 on the edge -> (0.2, 0.4]


def test_quantile_binning_hand_computed():
    # confidences .5,.6,.7,.8; M = 2: median edge .65 -> {.5, .6} and {.7, .8}
    p = np.array([[0.5, 0.5], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2]])
    y = [0, 1, 0, 0]
    r = expected_calibration_error(p, y, n_bins=2, binning="quantile", **NB0)
    assert r.bins.counts.tolist() == [2, 2]
    assert r.bins.edges.tolist() == pytest.approx([0.0, 0.65, 1.0])
    assert r.value == pytest.approx((2 * 0.05 + 2 * 0.25) / 4)


def test_brier_range_and_sklearn_relation():
    worst = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert brier_score(worst, [0, 1], **NB0).value == 2.0
    # binary: the sum form is twice scikit-learn's brier_score_loss on the positive class
    p1 = np.array([0.1, 0.8, 0.35, 0.6])
    y = np.array([0, 1, 1, 0])
    sk_style = np.mean((p1 - y) ** 2)
    ours = brier_score(np.stack([1 - p1, p1], 1), y, **NB0).value
    assert ours == pytest.approx(2 * sk_style)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_matches_loop_reference(norm, binning):
    g = np.random.default_rng(3)
    logits = g.normal(size=(300, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = g.integers(0, 4, size=300)
    r = expected_calibration_error(p, y, n_bins=7, binning=binning, norm=norm, **NB0)
    conf, pred = p.max(1), p.argmax(1)
    edges = r.bins.edges
    if binning == "uniform":
        assert edges.tolist() == [m / 7 for m in range(8)]
    else:
        inner = np.quantile(conf, np.linspace(0, 1, 8))[1:-1]
        assert edges[1:-1] == pytest.approx(inner)
    assert r.value == pytest.approx(_reference_ce(conf, pred == y, edges, norm), rel=1e-12)
    cw = classwise_calibration_error(p, y, n_bins=7, binning=binning, norm=norm, **NB0)
    per_class = [_reference_ce(p[:, j], y == j, cw.bins.edges[j], norm) for j in range(p.shape[1])]
    assert cw.value == pytest.approx(np.mean(per_class), rel=1e-12)


def test_bootstrap_interval_is_seeded_and_covers():
    g = np.random.default_rng(0)
    logits = g.normal(size=(400, 3)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = g.integers(0, 3, size=400)
    a = expected_calibration_error(p, y, n_bootstrap=300, seed=5)
    b = expected_calibration_error(p, y, n_bootstrap=300, seed=5)
    c = expected_calibration_error(p, y, n_bootstrap=300, seed=6)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low <= a.value <= a.ci_high and a.stderr > 0
    acc = accuracy(p, y, n_bootstrap=2000, seed=1)
    # bootstrap sd of a proportion ~ sqrt(a(1-a)/N)
    binom = math.sqrt(acc.value * (1 - acc.value) / 400)
    assert acc.stderr == pytest.approx(binom, rel=0.1)
    nb = expected_calibration_error(p, y, n_bootstrap=0)
    assert math.isnan(nb.ci_low) and nb.n_bootstrap == 0
    d = a.to_dict()
    assert d["bins"]["counts"] == a.bins.counts.tolist() and d["value"] == a.value


def test_torch_float32_input_and_nll_inf():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float32)
    y = torch.tensor([0, 2])
    assert accuracy(p, y, **NB0).value == 1.0
    assert negative_log_likelihood(p, y, **NB0).value == pytest.approx(
        -(math.log(0.7) + math.log(0.8)) / 2, rel=1e-6
    )
    r = negative_log_likelihood(np.array([[1.0, 0.0]]), [1], n_bootstrap=10)
    assert math.isinf(r.value)


@pytest.mark.parametrize(
    "probs,labels,match",
    [
        ([[0.5, 0.6]], [0], "sum to 1"),
        ([[0.5, 0.5]], [2], "out of range"),
        ([[0.5, 0.5]], [-1], "out of range"),
        ([[float("nan"), 0.5]], [0], "NaN"),
        ([[0.5, 0.5], [0.5, 0.5]], [0], "mismatched lengths"),
        ([[1.5, -0.5]], [0], r"\[0, 1\]"),
        ([0.5, 0.5], [0], r"\(N, K\)"),
        ([[0.5, 0.5]], [0.5], "integers"),
        ([[0.5, 0.5]], [[0]], "one-dimensional"),
        (np.zeros((0, 2)), [], "empty"),
    ],
)
def test_bad_inputs_raise(probs, labels, match):
    for fn in (
        expected_calibration_error,
        classwise_calibration_error,
        brier_score,
        negative_log_likelihood,
        accuracy,
    ):
        with pytest.raises(ValueError, match=match):
            fn(np.asarray(probs, dtype=float), labels)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"n_bins": 0}, "n_bins"),
        ({"binning": "adaptive"}, "binning"),
        ({"norm": "l3"}, "norm"),
        ({"n_bootstrap": -1}, "n_bootstrap"),
        ({"ci_level": 1.0}, "ci_level"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error([[0.5, 0.5]], [0], **{"n_bootstrap": 5, **kw})


def test_consistency_reference_for_calibrated_and_overconfident_probabilities():
    # labels drawn from the probabilities themselves: the plug-in ECE is positive (binning
    # noise) but typical of a calibrated model, so its consistency p-value is not small
    g = torch.Generator().manual_seed(4)
    p = torch.softmax(2 * torch.randn(500, 3, generator=g, dtype=torch.float64), 1)
    y = torch.multinomial(p, 1, generator=g).squeeze(1)
    for fn in (expected_calibration_error, classwise_calibration_error):
        r = fn(p, y, n_bootstrap=400, seed=0)
        assert r.value > 0 and r.consistency["p_value"] > 0.05
        assert r.consistency["mean"] == pytest.approx(r.value, rel=0.5)
        # negative control: the same labels with sharpened (overconfident) probabilities
        sharp = torch.softmax(4 * torch.log(p), 1)
        r2 = fn(sharp, y, n_bootstrap=400, seed=0)
        assert r2.consistency["p_value"] < 0.01 and r2.value > r2.consistency["q95"]


@pytest.mark.slow
def test_consistency_p_values_are_uniform_for_calibrated_models():
    # 200 calibrated data sets: P(p_value <= 0.1) should be 0.1 (binomial sd 0.021)
    g = torch.Generator().manual_seed(123)
    pv = []
    for _ in range(200):
        p = torch.softmax(1.5 * torch.randn(300, 4, generator=g, dtype=torch.float64), 1)
        y = torch.multinomial(p, 1, generator=g).squeeze(1)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        r = expected_calibration_error(p, y, n_bootstrap=200, seed=seed)
        pv.append(r.consistency["p_value"])
    frac = np.mean(np.array(pv) <= 0.1)
    assert abs(frac - 0.1) < 3 * math.sqrt(0.1 * 0.9 / 200)
