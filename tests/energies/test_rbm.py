import math

import pytest
import torch
from scipy import stats

from gibbsebm import Gibbs
from gibbsebm.energies import RBM, train_rbm_cd


def all_binary(n: int, device: torch.device | None = None) -> torch.Tensor:
    idx = torch.arange(2**n, device=device)
    return ((idx[:, None] >> torch.arange(n, device=device)) & 1).to(torch.float64)


def brute_log_partition(rbm: RBM, beta: float) -> float:
    """log sum_{v,h} exp(-beta E(v, h)) over both layers."""
    V, H = all_binary(rbm.num_visible), all_binary(rbm.num_hidden)
    v = V.repeat_interleave(H.shape[0], 0)
    h = H.repeat(V.shape[0], 1)
    return float(torch.logsumexp(-beta * rbm.joint_energy(v, h), 0))


def brute_free_energy(rbm: RBM, v: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    H = all_binary(rbm.num_hidden)
    e = torch.stack([rbm.joint_energy(v, h.expand(v.shape[0], -1)) for h in H], -1)
    return -torch.logsumexp(-beta[:, None] * e, -1) / beta


@pytest.fixture
def rbm():
    return RBM.random(
        5, 3, scale=1.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_exact_log_partition_matches_brute_force(rbm, beta):
    exact = rbm.exact_log_partition(beta)
    assert exact.dtype == torch.float64
    assert float(exact) == pytest.approx(brute_log_partition(rbm, beta), rel=1e-12)


def test_enumeration_branches_agree(rbm):
    beta = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    via_hidden = rbm._enumerated_log_partition(beta, "hidden")
    via_visible = rbm._enumerated_log_partition(beta, "visible")
    torch.testing.assert_close(via_hidden, via_visible, rtol=1e-12, atol=0)
    # the transposed machine (layers swapped) has the same log Z and takes the other branch
    swapped = RBM(rbm.W.T, rbm.c, rbm.b)
    torch.testing.assert_close(swapped.exact_log_partition(beta), via_hidden, rtol=1e-12, atol=0)
    assert rbm.exact_log_partition(beta).shape == beta.shape


def test_chunked_enumeration_matches_single_chunk(monkeypatch):
    import gibbsebm.energies.rbm as rbm_module

    rbm = RBM.random(
        12, 9, scale=0.5, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    one = rbm.exact_log_partition(0.7)
    monkeypatch.setattr(rbm_module, "_CHUNK_ELEMENTS", 64)  # forces 2^9 / 4 chunks
    torch.testing.assert_close(rbm.exact_log_partition(0.7), one, rtol=1e-13, atol=0)


def test_log_partition_cache_follows_in_place_updates(rbm):
    before = rbm.exact_log_partition(0.7)
    assert float(rbm.exact_log_partition(0.7)) == float(before)  # memoised value
    rbm.W.mul_(1.5)
    assert float(rbm.exact_log_partition(0.7)) == pytest.approx(
        brute_log_partition(rbm, 0.7), rel=1e-12
    )
    assert float(rbm.exact_log_partition(0.7)) != float(before)


def test_tempered_energy_is_marginal_of_joint(rbm):
    v = all_binary(5)
    beta = torch.linspace(0.2, 3.0, v.shape[0], dtype=torch.float64)
    torch.testing.assert_close(rbm.tempered_energy(v, beta), brute_free_energy(rbm, v, beta))
    one = torch.ones(v.shape[0], dtype=torch.float64)
    torch.testing.assert_close(rbm(v), brute_free_energy(rbm, v, one))
    torch.testing.assert_close(rbm.tempered_energy(v, 0.5), brute_free_energy(rbm, v, 0.5 * one))


def test_gibbs_marginal_is_normalized(rbm):
    beta = 0.7
    d = Gibbs(rbm, beta)
    states = d.enumerate_support()
    p = d.log_prob(states).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    # p(v) = sum_h exp(-beta E(v, h)) / Z
    H = all_binary(3)
    joint = torch.stack(
        [-beta * rbm.joint_energy(states, h.expand(states.shape[0], -1)) for h in H], -1
    )
    ref = torch.logsumexp(joint, -1) - brute_log_partition(rbm, beta)
    torch.testing.assert_close(d.log_prob(states), ref)


def test_conditionals_match_joint(rbm):
    v = all_binary(5)[[3, 17, 30]]
    beta = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    H = all_binary(3)
    logw = torch.stack([-beta * rbm.joint_energy(v, h.expand(3, -1)) for h in H], -1)
    post = torch.softmax(logw, -1)  # p(h | v)
    torch.testing.assert_close(rbm.hidden_probs(v, beta), post @ H)
    h = H[[1, 5, 6]]
    V = all_binary(5)
    logw = torch.stack([-beta * rbm.joint_energy(vv.expand(3, -1), h) for vv in V], -1)
    torch.testing.assert_close(rbm.visible_probs(h, beta), torch.softmax(logw, -1) @ V)


def _chi2_of_sweep(rbm, beta_target, beta_sweep, generator, n=20000):
    """Exact draws of p_beta, one block Gibbs sweep at beta_sweep, chi^2 against p_beta."""
    d = Gibbs(rbm, beta_target)
    v = d.sample((n,), generator=generator)
    h = rbm.sample_hidden(v, beta_sweep, generator)
    v = rbm.sample_visible(h, beta_sweep, generator)
    codes = (v.long() * (2 ** torch.arange(rbm.num_visible, device=v.device))).sum(-1)
    counts = torch.bincount(codes, minlength=2**rbm.num_visible).double()
    expected = n * d.log_prob(all_binary(rbm.num_visible, v.device)).exp()
    return float(((counts - expected) ** 2 / expected).sum())


def test_block_gibbs_preserves_distribution(generator, device):
    rbm = RBM.random(
        5, 3, scale=1.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).to(device)
    # chi^2 with 31 degrees of freedom; threshold at tail probability 1e-4
    threshold = stats.chi2.ppf(1 - 1e-4, df=2**5 - 1)
    assert _chi2_of_sweep(rbm, 0.8, 0.8, generator) < threshold
    # negative control: conditionals at the wrong temperature do not preserve p_0.8
    assert _chi2_of_sweep(rbm, 0.8, 2.0, generator) > threshold


def _noisy_prototypes(generator, n=600, flip=0.05):
    protos = torch.tensor([[1.0] * 5 + [0.0] * 5, [0.0] * 5 + [1.0] * 5], dtype=torch.float64)
    labels = torch.randint(0, 2, (n,), generator=generator)
    noise = (torch.rand(n, 10, generator=generator, dtype=torch.float64) < flip).double()
    data = (protos[labels] + noise) % 2
    # exact mean log-likelihood of the generating mixture
    logs = [
        (data * math.log(1 - flip) + (1 - data) * math.log(flip)) * pr
        + (data * math.log(flip) + (1 - data) * math.log(1 - flip)) * (1 - pr)
        for pr in protos
    ]
    true_ll = float((torch.logaddexp(logs[0].sum(1), logs[1].sum(1)) - math.log(2)).mean())
    return data, true_ll


def _mean_log_likelihood(rbm, data):
    return float((-rbm(data) - rbm.exact_log_partition(1.0)).mean())


def test_cd_training_learns_structure():
    g = torch.Generator().manual_seed(3)
    data, true_ll = _noisy_prototypes(g)
    p = data.mean(0)
    independent_ll = float((data * p.log() + (1 - data) * (1 - p).log()).sum(1).mean())
    rbm = train_rbm_cd(data, 4, epochs=30, lr=0.1, batch_size=20, generator=g)
    assert rbm.W.dtype == torch.float64 and rbm.W.shape == (10, 4)
    gain = _mean_log_likelihood(rbm, data) - independent_ll
    # the trained RBM must recover 90% of the attainable gain over independent bits
    assert gain > 0.9 * (true_ll - independent_ll)
    # negative control: the initial machine (W = 0, b = logit(p), c = 0) is the independent model
    init = RBM(
        torch.zeros(10, 4, dtype=torch.float64),
        torch.log(p / (1 - p)),
        torch.zeros(4, dtype=torch.float64),
    )
    assert _mean_log_likelihood(init, data) - independent_ll < 0.9 * (true_ll - independent_ll)


def test_validation():
    with pytest.raises(ValueError, match="W must have shape"):
        RBM(torch.zeros(3), torch.zeros(3), torch.zeros(1))
    with pytest.raises(ValueError, match="b must have shape"):
        RBM(torch.zeros(3, 2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="binary"):
        train_rbm_cd(torch.full((4, 3), 0.5), 2)
    with pytest.raises(ValueError, match="beta"):
        RBM.random(3, 2).exact_log_partition(-1.0)
    big = RBM.random(30, 25, scale=0.01)
    assert not big.has_exact_log_partition
    with pytest.raises(NotImplementedError, match="ais"):
        big.exact_log_partition(1.0)
