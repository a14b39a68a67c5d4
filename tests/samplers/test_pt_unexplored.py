"""The ``pt_unexplored_mode`` check (issue 13): target draws of ``pt`` against the basins of
the modes :func:`gibbsebm.find_modes` found.

The search is doctored (a found mode removed, or a spurious one added) to make the two
failures this check is for happen on a target whose modes the real search finds: the same run
with the real search is the negative control. A narrow mode that no start finds and no chain
visits cannot be detected by this check (see docs/multimodal.md).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from _sampler_mc import mixture_4d

import gibbsebm
import gibbsebm.modes as modes_mod
from gibbsebm import Gibbs
from gibbsebm.samplers.tempering import MIN_EXPECTED_VISITS, basin_labels, unexplored_modes

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(num_chains=8, num_samples=300, num_warmup=200, seed=1, progress=False)


def _subset(search, keep):
    """The search result restricted to the modes ``keep`` (a doctored search)."""
    f = {
        name: getattr(search, name)[keep]
        for name in ("locations", "log_density", "energies", "log_masses", "log_mass_errors",
                     "log_masses_is", "covariances", "basin_counts", "precisions")
    }  # fmt: skip
    f["curvature"] = [search.curvature[i] for i in keep.tolist()]
    return dataclasses.replace(search, **f)


def test_basin_labels_of_exact_gaussian_draws():
    g = torch.Generator().manual_seed(0)
    d = 6
    cov = torch.diag(torch.linspace(0.1, 4.0, d, dtype=torch.float64))
    mu = torch.stack([torch.zeros(d), torch.full((d,), 30.0)]).double()
    prec = torch.linalg.inv(cov).expand(2, d, d)
    y = torch.randn(4, 5000, d, generator=g, dtype=torch.float64) @ cov.sqrt() + mu[1]
    lab = basin_labels(y, mu, prec)
    # a 5-sigma chi-square quantile: no exact draw of the mode falls outside (P = 3e-7 each)
    assert bool((lab == 1).all())
    far = basin_labels(torch.full((1, 1, d), 15.0, dtype=torch.float64), mu, prec)
    assert int(far) == -1
    # visits due: a weight w predicts w * N visits; 0 visits of a due mode is counted
    n = lab.numel()
    w_due = torch.tensor([1.0 - MIN_EXPECTED_VISITS / n, MIN_EXPECTED_VISITS / n]).double()
    assert int(unexplored_modes(torch.zeros_like(lab), w_due)) == 1
    w_rare = torch.tensor([1.0 - 1.0 / n, 1.0 / n]).double()
    assert int(unexplored_modes(torch.zeros_like(lab), w_rare)) == 0


def test_draws_in_a_mode_the_search_missed_are_flagged(monkeypatch):
    gm = mixture_4d()
    real = modes_mod.find_modes
    ok = gibbsebm.sample(Gibbs(gm), "pt", warn=False, **KW)  # negative control: real search
    assert ok.adaptation["modes"]["num_modes"] == 3
    assert float((ok.stats["basin"] < 0).double().mean()) == 0.0
    assert "pt_unexplored_mode" not in {p.check for p in ok.diagnose()}

    def missing_one(*a, **k):
        r = real(*a, **k)
        return _subset(r, torch.arange(r.num_modes - 1))  # the lightest mode is "not found"

    monkeypatch.setattr(modes_mod, "find_modes", missing_one)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = gibbsebm.sample(Gibbs(gm), "pt", **KW)
    assert s.adaptation["modes"]["num_modes"] == 2
    outside = float((s.stats["basin"] < 0).double().mean())
    assert outside > 0.05  # tempering carried the chains into the missing mode (weight 0.2)
    (p,) = [p for p in s.diagnose() if p.check == "pt_unexplored_mode"]
    assert math.isclose(p.figure, outside)
    msgs = [str(w.message) for w in rec if issubclass(w.category, gibbsebm.SamplingWarning)]
    assert len(msgs) == 1 and "outside every basin" in msgs[0]


def test_a_found_mode_never_visited_is_flagged(monkeypatch):
    gm = mixture_4d()
    real = modes_mod.find_modes

    def with_spurious(*a, **k):
        r = real(*a, **k)
        extra = _subset(r, torch.tensor([0]))
        spur = dataclasses.replace(
            extra,
            locations=extra.locations + 40.0,  # no density there: chains started there leave
            log_masses=extra.log_masses + math.log(0.25),
        )
        f = {
            name: torch.cat([getattr(r, name), getattr(spur, name)])
            for name in ("locations", "log_density", "energies", "log_masses",
                         "log_mass_errors", "log_masses_is", "covariances", "basin_counts",
                         "precisions")
        }  # fmt: skip
        return dataclasses.replace(r, curvature=r.curvature + spur.curvature, **f)

    monkeypatch.setattr(modes_mod, "find_modes", with_spurious)
    s = gibbsebm.sample(Gibbs(gm), "pt", warn=False, **KW)
    assert s.adaptation["modes"]["num_modes"] == 4
    assert int(s.stats["unvisited_modes"][0, 0]) == 1
    assert "pt_unexplored_mode" in {p.check for p in s.diagnose()}
