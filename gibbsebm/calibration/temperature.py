"""Probabilities from energies and the NLL-optimal inverse temperature (temperature scaling).

For an energy :math:`E(x, k)` over K labels the Gibbs classifier is

.. math::

    p_\\beta(k \\mid x) = \\frac{e^{-\\beta E(x, k)}}{\\sum_{j} e^{-\\beta E(x, j)}}
    = \\operatorname{softmax}(-\\beta E(x, \\cdot))_k .

Fitting one :math:`\\beta` on held-out data is temperature scaling (Guo et al. 2017, with
temperature :math:`T = 1/\\beta` and logits :math:`-E`). The mean held-out NLL

.. math::

    \\ell(\\beta) = \\frac1N \\sum_i \\Bigl[\\beta E(x_i, y_i)
        + \\log \\sum_k e^{-\\beta E(x_i, k)}\\Bigr]

has :math:`\\ell'(\\beta) = \\frac1N\\sum_i (E(x_i, y_i) - \\mathbb{E}_{p_\\beta}[E(x_i, \\cdot)])`
and :math:`\\ell''(\\beta) = \\frac1N\\sum_i \\operatorname{Var}_{p_\\beta}[E(x_i, \\cdot)] \\ge 0`:
it is convex in :math:`\\beta`, hence unimodal in :math:`\\log\\beta`, and the minimiser is the
unique root of the monotone :math:`\\ell'`. :func:`fit_beta` brackets that root on a
log-scale and solves it with safeguarded Newton steps; the standard error comes from the
observed information :math:`N\\,\\ell''(\\hat\\beta)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._inputs import as_labels, check_beta_value, check_energies

__all__ = [
    "probabilities",
    "log_probabilities",
    "fit_beta",
    "BetaFit",
    "BetaPosterior",
    "beta_posterior",
    "nll_from_energies",
    "free_energy_score",
    "label_energies",
]


def _beta_tensor(beta: Any, e: torch.Tensor) -> torch.Tensor:
    check_beta_value(beta)
    b = torch.as_tensor(
        beta.detach() if isinstance(beta, torch.Tensor) else beta,
        dtype=e.dtype,
        device=e.device,
    )
    if b.dim() == 0:
        return b
    if b.dim() == 1 and b.shape[0] == e.shape[0]:
        return b[:, None]
    raise ValueError(
        f"beta must be a scalar or shaped (N,) = ({e.shape[0]},), got shape {tuple(b.shape)}"
    )


def label_energies(dist: Any) -> torch.Tensor:
    """Energy matrix :math:`E(x_b, k)`, shape ``(B, K)``, of a conditional Gibbs over labels.

    ``dist`` is a :class:`gibbsebm.Gibbs` with a condition ``x`` of batch ``B`` and a finite
    scalar support of K labels (e.g. ``constraints.integer_interval(0, K - 1)``, event shape
    ``()``); its energies feed :func:`fit_beta`, :func:`probabilities` and the metrics.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import constraints
    >>> from gibbsebm import Gibbs
    >>> W = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, 2.0]])
    >>> d = Gibbs(lambda x, y: -(x @ W).gather(1, y.long()[:, None]).squeeze(1), beta=1.0,
    ...           condition=torch.eye(2), support=constraints.integer_interval(0, 2), event_shape=())
    >>> label_energies(d)
    tensor([[-1.0000,  1.0000, -0.0000],
            [-0.5000, -0.5000, -2.0000]])
    """
    if not (hasattr(dist, "enumerate_support") and hasattr(dist, "energy_of")):
        raise ValueError("label_energies needs a gibbsebm.Gibbs distribution")
    if tuple(dist.event_shape) != () or not getattr(dist, "has_enumerate_support", False):
        raise ValueError(
            "label_energies needs a Gibbs over a finite set of scalar labels (event_shape () and "
            "a finite support such as constraints.integer_interval(0, K - 1))"
        )
    if getattr(dist, "x", None) is None:
        raise ValueError("label_energies needs a conditional Gibbs: call dist.condition(x) first")
    states = dist.enumerate_support(expand=True)  # (K, B)
    return dist.energy_of(states).T.contiguous()


def log_probabilities(energies: Any, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """:math:`\\log p_\\beta(k\\mid x) = -\\beta E(x,k) - \\log\\sum_j e^{-\\beta E(x,j)}`.

    Returns a float64 tensor ``(N, K)`` on the energies' device (see :func:`probabilities`).
    """
    e = check_energies(energies)
    return torch.log_softmax(-_beta_tensor(beta, e) * e, dim=1)


def probabilities(energies: Any, beta: float | torch.Tensor = 1.0) -> Any:
    """Class probabilities :math:`p_\\beta(k \\mid x) = \\operatorname{softmax}(-\\beta E(x, \\cdot))_k`.

    Parameters
    ----------
    energies : array or Tensor, shape (N, K)
        :math:`E(x_i, k)` for every input i and label k (finite).
    beta : float or Tensor
        Inverse temperature > 0: a scalar, or one per row shaped ``(N,)``.

    Returns
    -------
    Tensor or ndarray, shape (N, K)
        A tensor with the energies' dtype and device for tensor input, a float64 NumPy array
        otherwise. Computed as a float64 log-softmax (stable for any energy scale).

    Examples
    --------
    >>> import torch
    >>> probabilities(torch.tensor([[0.0, 1.0]]), beta=2.0)
    tensor([[0.8808, 0.1192]])
    """
    p = log_probabilities(energies, beta).exp()
    if isinstance(energies, torch.Tensor):
        dtype = energies.dtype if energies.dtype.is_floating_point else torch.float64
        return p.to(dtype)
    return p.cpu().numpy()


def free_energy_score(energies: Any, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Free energy :math:`F_\\beta(x) = -\\frac1\\beta \\log \\sum_k e^{-\\beta E(x, k)}`, ``(N,)``.

    Low free energy means the input is likely under the model; Liu et al. (2020) use
    :math:`-F` as an out-of-distribution score.

    References
    ----------
    Liu, Wang, Owens & Li (2020), "Energy-based out-of-distribution detection", NeurIPS.

    Examples
    --------
    >>> float(free_energy_score([[0.0, 0.0]], beta=1.0))  # -log 2
    -0.6931471805599453
    """
    e = check_energies(energies)
    b = _beta_tensor(beta, e)
    return -torch.logsumexp(-b * e, dim=1) / b.reshape(-1)


def nll_from_energies(energies: Any, labels: Any, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Per-sample NLL :math:`\\beta E(x_i, y_i) + \\log\\sum_k e^{-\\beta E(x_i,k)}`, ``(N,)`` float64.

    Exact for any energy scale (no round trip through probabilities that may underflow).
    """
    e = check_energies(energies)
    y = as_labels(labels, e.shape[0], e.shape[1], device=e.device)
    lp = torch.log_softmax(-_beta_tensor(beta, e) * e, dim=1)
    return -lp.gather(1, y[:, None]).squeeze(1)


# ----------------------------------------------------------------------------- fitting
def _nll_derivatives(
    e: torch.Tensor, e_true: torch.Tensor, beta: float
) -> tuple[float, float, float]:
    """Mean NLL and its first two derivatives in beta at ``beta``."""
    lp = torch.log_softmax(-beta * e, dim=1)
    p = lp.exp()
    mean_e = (p * e).sum(1)
    var_e = (p * (e - mean_e[:, None]) ** 2).sum(1)
    nll = (beta * e_true + torch.logsumexp(-beta * e, dim=1)).mean()
    return float(nll), float((e_true - mean_e).mean()), float(var_e.mean())


@dataclass(frozen=True)
class BetaPosterior:
    """Posterior draws of :math:`\\beta` from Pyro's NUTS, with convergence diagnostics.

    Attributes
    ----------
    samples : ndarray
        Draws of beta, shape ``(num_chains, num_samples)`` (the arviz order).
    mean, sd : float
        Posterior mean and standard deviation.
    ci_low, ci_high : float
        Central posterior interval at ``ci_level``.
    ess : float
        Effective sample size (bulk, Pyro's ``effective_sample_size``).
    r_hat : float
        Split R-hat (Pyro's ``split_gelman_rubin``).
    mcse : float
        Monte Carlo standard error of the posterior mean, ``sd / sqrt(ess)``.
    prior : str
        The prior on :math:`\\log\\beta`.
    """

    samples: np.ndarray
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    ci_level: float
    ess: float
    r_hat: float
    mcse: float
    prior: str

    def to_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "mean",
                "sd",
                "ci_low",
                "ci_high",
                "ci_level",
                "ess",
                "r_hat",
                "mcse",
                "prior",
            )
        } | {"num_samples": int(self.samples.size)}


@dataclass(frozen=True)
class BetaFit:
    """Result of :func:`fit_beta`.

    Attributes
    ----------
    beta : float
        NLL-optimal inverse temperature on the data given.
    stderr : float
        Standard error of ``beta`` from the observed information,
        :math:`(N\\,\\ell''(\\hat\\beta))^{-1/2}`.
    log_beta_stderr : float
        Standard error of :math:`\\log\\hat\\beta` (delta method, ``stderr / beta``).
    temperature : float
        :math:`T = 1/\\hat\\beta`, the number Guo et al. (2017) call the temperature.
    nll : float
        Mean NLL (nats) at ``beta``.
    nll_at_one : float
        Mean NLL at :math:`\\beta = 1` (the energies as given).
    n : int
        Number of samples it was fitted on.
    iterations : int
        Newton/bisection iterations used.
    posterior : BetaPosterior or None
        NUTS posterior over beta when ``posterior_samples > 0`` was asked for.
    """

    beta: float
    stderr: float
    log_beta_stderr: float
    temperature: float
    nll: float
    nll_at_one: float
    n: int
    iterations: int
    posterior: BetaPosterior | None = field(default=None)

    def to_dict(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in (
                "beta",
                "stderr",
                "log_beta_stderr",
                "temperature",
                "nll",
                "nll_at_one",
                "n",
                "iterations",
            )
        }
        d["posterior"] = None if self.posterior is None else self.posterior.to_dict()
        return d

    def __str__(self) -> str:
        return f"beta = {self.beta:.4g} ± {self.stderr:.2g} (n={self.n}, NLL {self.nll_at_one:.4f} -> {self.nll:.4f})"


#: log-scale search range for beta: energies scaled by more than e**±40 are degenerate.
_LOG_BETA_RANGE = (-40.0, 40.0)


def fit_beta(
    energies: Any,
    labels: Any,
    *,
    tol: float = 1e-10,
    max_iter: int = 200,
    posterior_samples: int = 0,
    posterior_warmup: int = 300,
    seed: int = 0,
) -> BetaFit:
    """NLL-optimal inverse temperature :math:`\\hat\\beta` on held-out data.

    Minimises the mean NLL :math:`\\ell(\\beta)` of :math:`p_\\beta(y\\mid x) =
    \\operatorname{softmax}(-\\beta E(x,\\cdot))_y` (convex in beta; see the module notes) by
    a log-scale bracket and safeguarded Newton steps on :math:`\\ell'(\\beta) = 0`.

    Parameters
    ----------
    energies : array or Tensor, shape (N, K)
        Held-out energies :math:`E(x_i, k)` (not the data the energy was trained on).
    labels : array or Tensor, shape (N,)
        Integer labels ``0..K-1``.
    tol : float
        Stop when a Newton step changes beta by less than ``tol * beta``.
    max_iter : int
        Iteration limit.
    posterior_samples : int
        If > 0, also draw this many posterior samples of beta with Pyro's NUTS (see
        :func:`beta_posterior`) into ``.posterior``.
    posterior_warmup : int
        NUTS warm-up steps.
    seed : int
        Seed for NUTS.

    Returns
    -------
    BetaFit
        ``.beta`` and ``.stderr`` (observed information), NLL before/after, and the
        optional posterior.

    Raises
    ------
    ValueError
        On bad input, or when no finite optimum exists: the NLL keeps falling as beta grows
        (every label has the strictly lowest energy: the data are separable) or as beta
        shrinks (labels are no more likely than chance under the energy), or all energies of
        every row are equal (beta is not identifiable).

    References
    ----------
    Guo, Pleiss, Sun & Weinberger (2017), "On calibration of modern neural networks", ICML.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> e = torch.randn(2000, 5, generator=g, dtype=torch.float64)
    >>> y = torch.multinomial(torch.softmax(-2.0 * e, 1), 1, generator=g).squeeze(1)
    >>> fit = fit_beta(e, y)
    >>> abs(fit.beta - 2.0) < 3 * fit.stderr
    True
    """
    e = check_energies(energies)
    y = as_labels(labels, e.shape[0], e.shape[1], device=e.device)
    n, k = e.shape
    if k < 2:
        raise ValueError(
            "fit_beta needs at least two classes (K >= 2); with K = 1 p = 1 for any beta"
        )
    if not (isinstance(max_iter, int) and max_iter > 0):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if (e.amax(1) - e.amin(1)).max() == 0:
        raise ValueError(
            "every row of energies is constant: p_beta is uniform for every beta, so beta is "
            "not identifiable"
        )
    e_true = e.gather(1, y[:, None]).squeeze(1)
    others = e.scatter(1, y[:, None], math.inf).amin(1)
    if bool((e_true < others).all()):
        raise ValueError(
            "every label has the strictly lowest energy of its row (separable data): the NLL "
            "keeps decreasing as beta grows, so no finite beta is optimal"
        )
    # l'(0+) = mean_i (E(x_i, y_i) - mean_k E(x_i, k)); l' increases, so l'(0+) >= 0 means
    # the NLL only falls as beta -> 0
    if float((e_true - e.mean(1)).mean()) >= 0:
        raise ValueError(
            "the NLL keeps decreasing as beta shrinks to 0: the labels are not more likely "
            "under the energies than by chance (are the energies negated logits, E = -logit?)"
        )

    def grad(b: float) -> tuple[float, float, float]:
        return _nll_derivatives(e, e_true, b)

    # 1. bracket the root of l'(beta) (monotone increasing) on a log scale
    lo_t, hi_t = 0.0, 0.0
    _, g0, _ = grad(1.0)
    it = 0
    if g0 < 0:
        while True:
            hi_t += 1.0
            it += 1
            if hi_t > _LOG_BETA_RANGE[1]:
                raise ValueError(
                    "the NLL keeps decreasing as beta grows (beta > e**40): the labels always "
                    "have the lowest energy (separable data), so no finite beta is optimal"
                )
            if grad(math.exp(hi_t))[1] >= 0:
                break
        lo_t = hi_t - 1.0
    else:
        while True:
            lo_t -= 1.0
            it += 1
            if lo_t < _LOG_BETA_RANGE[0]:
                raise ValueError(
                    "the NLL keeps decreasing as beta shrinks (beta < e**-40): the labels are "
                    "not more likely under the energies than by chance (are the energies "
                    "negated logits, E = -logit?)"
                )
            if grad(math.exp(lo_t))[1] <= 0:
                break
        hi_t = lo_t + 1.0
    lo, hi = math.exp(lo_t), math.exp(hi_t)

    # 2. safeguarded Newton (Press et al., Numerical Recipes, "rtsafe") on l'(beta) = 0
    b = 0.5 * (lo + hi)
    for _ in range(max_iter):
        it += 1
        _, g1, h1 = grad(b)
        if g1 > 0:
            hi = b
        else:
            lo = b
        step = g1 / h1 if h1 > 0 else math.inf
        nb = b - step
        if not (lo < nb < hi):
            nb = 0.5 * (lo + hi)
        if abs(nb - b) <= tol * b:
            b = nb
            break
        b = nb
    nll, _, h = grad(b)
    if h <= 0:
        raise ValueError("the observed information is zero at the optimum: the NLL is flat in beta")
    stderr = 1.0 / math.sqrt(n * h)
    nll_one = grad(1.0)[0]
    post = None
    if posterior_samples:
        post = beta_posterior(
            e, y, num_samples=posterior_samples, warmup_steps=posterior_warmup, seed=seed
        )
    return BetaFit(
        beta=b,
        stderr=stderr,
        log_beta_stderr=stderr / b,
        temperature=1.0 / b,
        nll=nll,
        nll_at_one=nll_one,
        n=n,
        iterations=it,
        posterior=post,
    )


#: Prior on log beta for the NUTS posterior: Normal(0, 3) puts 95% of its mass on
#: beta in [e^-6, e^6], wide against the data's information for any N worth fitting on.
LOG_BETA_PRIOR_SCALE = 3.0


def beta_posterior(
    energies: Any,
    labels: Any,
    *,
    num_samples: int = 500,
    warmup_steps: int = 300,
    seed: int = 0,
    ci_level: float = 0.95,
) -> BetaPosterior:
    """Posterior over :math:`\\beta` under the Gibbs classifier likelihood, by Pyro NUTS.

    Model: :math:`\\log\\beta \\sim \\mathcal N(0, 3^2)`,
    :math:`y_i \\mid x_i, \\beta \\sim \\operatorname{Categorical}(\\operatorname{softmax}(-\\beta E(x_i,\\cdot)))`.
    NUTS runs on :math:`\\log\\beta` through a potential function (one chain). Pyro draws
    from torch's global generator; the run happens inside ``torch.random.fork_rng`` seeded
    with ``seed``, so the caller's global random state is left untouched.

    Parameters
    ----------
    energies, labels
        As in :func:`fit_beta`.
    num_samples, warmup_steps : int
        NUTS draws kept and warm-up steps.
    seed : int
        Seed for the run.
    ci_level : float
        Level of the central posterior interval.

    Returns
    -------
    BetaPosterior

    References
    ----------
    Hoffman & Gelman (2014), "The No-U-Turn sampler", JMLR 15.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> e = torch.randn(500, 3, generator=g, dtype=torch.float64)
    >>> y = torch.multinomial(torch.softmax(-e, 1), 1, generator=g).squeeze(1)
    >>> post = beta_posterior(e, y, num_samples=100, warmup_steps=100)  # doctest: +SKIP
    """
    from pyro.infer import MCMC, NUTS
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    e = check_energies(energies)
    y = as_labels(labels, e.shape[0], e.shape[1], device=e.device)
    if not (isinstance(num_samples, int) and num_samples >= 4):
        raise ValueError(f"num_samples must be an integer >= 4, got {num_samples!r}")
    e_true = e.gather(1, y[:, None]).squeeze(1)
    s = LOG_BETA_PRIOR_SCALE

    def potential(params: dict) -> torch.Tensor:
        t = params["log_beta"]
        beta = t.exp()
        nll = (beta * e_true + torch.logsumexp(-beta * e, dim=1)).sum()
        return nll + 0.5 * (t / s) ** 2

    init = torch.zeros((), dtype=torch.float64, device=e.device)
    devices = [e.device.index or 0] if e.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        kernel = NUTS(potential_fn=potential, adapt_step_size=True)
        mcmc = MCMC(
            kernel,
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            initial_params={"log_beta": init},
            disable_progbar=True,
        )
        mcmc.run()
    draws = mcmc.get_samples(group_by_chain=True)["log_beta"].exp()  # (1, S)
    ess = float(effective_sample_size(draws, chain_dim=0, sample_dim=1))
    rhat = float(split_gelman_rubin(draws, chain_dim=0, sample_dim=1))
    d = draws.detach().cpu().numpy().astype(np.float64)
    alpha = (1 - ci_level) / 2
    lo, hi = np.quantile(d, [alpha, 1 - alpha])
    sd = float(d.std(ddof=1))
    return BetaPosterior(
        samples=d,
        mean=float(d.mean()),
        sd=sd,
        ci_low=float(lo),
        ci_high=float(hi),
        ci_level=ci_level,
        ess=ess,
        r_hat=rhat,
        mcse=sd / math.sqrt(max(ess, 1.0)),
        prior=f"log beta ~ Normal(0, {s:g}^2)",
    )
