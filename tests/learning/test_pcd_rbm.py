"""PCD on a small RBM matches the data moments within Monte Carlo error.

At a maximum of the likelihood the gradient vanishes, i.e. the model's moments
<v_i>, <h_j> and <v_i h_j> (with h summed out: p(h_j = 1 | v)) equal the data's. The model
moments are computed exactly by enumerating the 2^6 visible states; the tolerance is k = 4
standard errors of the data moments (N i.i.d. examples). Negative control: the untrained
machine does not match.
"""

from __future__ import annotations

import torch

from gibbsebm import Gibbs
from gibbsebm.energies import RBM
from gibbsebm.learning import ExactLogLikelihood, fit, trainable

K = 4.0
N = 2000


def _moments(v: torch.Tensor, rbm: RBM, weights: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        ph = rbm.hidden_probs(v)
        if weights is None:
            weights = torch.full((v.shape[0],), 1.0 / v.shape[0], dtype=v.dtype)
        mv = weights @ v
        mh = weights @ ph
        mvh = (weights[:, None] * v).T @ ph
    return torch.cat([mv, mh, mvh.reshape(-1)])


def _model_moments(rbm: RBM) -> torch.Tensor:
    d = Gibbs(rbm, 1.0)
    states = d.enumerate_support()
    with torch.no_grad():
        p = d.log_prob(states).exp()
    return _moments(states, rbm, p)


def _data_moment_stderr(v: torch.Tensor, rbm: RBM) -> torch.Tensor:
    with torch.no_grad():
        ph = rbm.hidden_probs(v)
        per = torch.cat([v, ph, (v[:, :, None] * ph[:, None, :]).reshape(v.shape[0], -1)], 1)
    return per.std(0) / v.shape[0] ** 0.5


def test_pcd_matches_data_moments():
    g = torch.Generator().manual_seed(11)
    truth = RBM.random(6, 3, scale=1.0, generator=g, dtype=torch.float64)
    data = Gibbs(truth, 1.0).sample((N,), generator=g)
    model = trainable(RBM.random(6, 3, scale=0.01, generator=g, dtype=torch.float64))
    before = _model_moments(model)
    held = data[: N // 4]
    res = fit(
        model,
        data,
        "pcd",
        epochs=15,
        batch_size=100,
        lr=0.05,
        progress=False,
        seed=0,
        buffer_capacity=None,
        monitors=[ExactLogLikelihood(held)],
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    fit(model, data, "pcd", epochs=10, batch_size=500, optimizer=opt, progress=False, seed=1)
    assert res.info["sampler"] == "block_gibbs"
    se = _data_moment_stderr(data, model)
    gap = (_model_moments(model) - _moments(data, model)).abs()
    assert bool((gap <= K * se).all()), (gap / se).max()
    # negative control: the untrained machine's moments are far from the data's
    assert not bool(((before - _moments(data, model)).abs() <= K * se).all())
    # the exact held-out log-likelihood improved and is reported with its error
    ll = res.curve("exact_ll")
    assert ll[-1] > ll[0] and res.history[-1]["exact_ll_stderr"] > 0
    # the truth's held-out log-likelihood is an upper reference within sampling error
    true_ll = float((-truth(held) - truth.exact_log_partition(1.0)).mean())
    assert ll[-1] < true_ll + K * res.history[-1]["exact_ll_stderr"]
