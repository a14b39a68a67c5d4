"""LogZEstimate, trust checks and weight statistics (deterministic checks)."""

import math
import warnings

import numpy as np
import pytest
import torch

from gibbsebm.partition import (
    LogZEstimate,
    LogZWarning,
    UntrustedLogZError,
    check_trust,
)
from gibbsebm.partition._stats import (
    batch_homogeneity,
    log_mean_exp,
    pareto_khat,
    weight_ess,
)


def test_ci_is_symmetric_normal_interval():
    est = LogZEstimate(log_z=2.0, stderr=0.5, method="ais")
    lo, hi = est.ci(0.95)
    assert lo == pytest.approx(2.0 - 1.959964 * 0.5, abs=1e-6)
    assert hi == pytest.approx(2.0 + 1.959964 * 0.5, abs=1e-6)
    with pytest.raises(ValueError, match="level"):
        est.ci(1.5)


def test_to_dict_is_plain_python():
    est = LogZEstimate(1.0, 0.1, "ais", diagnostics={"x": torch.tensor([1.0, 2.0]), "k": math.inf})
    d = est.to_dict()
    assert d["diagnostics"]["x"] == [1.0, 2.0]
    assert d["diagnostics"]["k"] == "inf"


def test_check_trust_warns_raises_or_ignores():
    def bad():
        return LogZEstimate(1.0, 0.1, "ais", diagnostics={"khat": 0.9, "ess": 3.0})

    with pytest.warns(LogZWarning, match="k-hat 0.90"):
        est = check_trust(bad(), "warn")
    assert not est.trusted and len(est.problems) == 2
    with pytest.raises(UntrustedLogZError) as info:
        check_trust(bad(), "raise")
    assert info.value.estimate.log_z == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_trust(bad(), "ignore").problems
        good = LogZEstimate(1.0, 0.1, "ais", diagnostics={"khat": 0.3, "ess": 500.0})
        assert check_trust(good, "warn").trusted
    with pytest.raises(ValueError, match="on_untrusted"):
        check_trust(bad(), "loud")
    with pytest.raises(ValueError, match="unknown trust thresholds"):
        check_trust(bad(), "ignore", {"nope": 1.0})


def test_log_mean_exp_and_delta_method_by_hand():
    w = np.array([1.0, 2.0, 3.0, 6.0])
    lm, se = log_mean_exp(np.log(w) + 1000.0)  # shift: no overflow
    assert lm == pytest.approx(1000.0 + math.log(3.0))
    assert se == pytest.approx(w.std(ddof=1) / (2 * 3.0))
    assert weight_ess(np.log(w)) == pytest.approx(12.0**2 / 50.0)


def test_pareto_khat_matches_arviz_and_known_tails():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(1)
    for k_true in (0.3, 0.9):
        lw = np.log(rng.pareto(1.0 / k_true, size=4000) + 1.0)
        k = pareto_khat(lw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k_az = float(az.psislw(lw.copy())[1])
        assert k == pytest.approx(k_az, abs=1e-8)
        assert abs(k - k_true) < 0.15
    # bounded weights have a negative shape
    assert pareto_khat(np.log(rng.uniform(size=4000))) < 0
    # constant weights: degenerate tail
    assert math.isnan(pareto_khat(np.zeros(100)))


def test_batch_homogeneity_flags_shifted_batch():
    rng = np.random.default_rng(2)
    lw = rng.normal(scale=0.3, size=800)
    ok = batch_homogeneity(lw, 8)
    assert ok["batch_pvalue"] > 1e-3
    lw[:100] += 2.0
    assert batch_homogeneity(lw, 8)["batch_pvalue"] < 1e-6


def test_estimate_attaches_to_a_gibbs_distribution():
    import gibbsebm

    dist = gibbsebm.Gibbs(lambda y: 0.5 * (y**2).sum(-1), beta=1.0, event_shape=(2,))
    est = gibbsebm.log_partition(dist, method="exact")
    normed = dist.attach_log_partition(est)
    y = torch.zeros(1, 2)
    assert normed.normalized
    assert float(normed.log_prob(y)) == pytest.approx(-math.log(2 * math.pi), abs=1e-6)
