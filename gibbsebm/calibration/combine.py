"""Combining separately trained energy-based classifiers as a product of experts.

Given S systems with energies :math:`E_s(x, k)` over the same K labels, the product of their
calibrated Gibbs classifiers is again a Gibbs classifier,

.. math::

    p(k \\mid x) \\propto \\prod_s p_{\\beta_s}(k \\mid x) \\propto
    \\exp\\Bigl(-\\sum_s \\beta_s E_s(x, k)\\Bigr),

with each :math:`\\beta_s` fitted on held-out data by :func:`fit_beta` (Hinton 2002 for
products of experts). The raw sum :math:`\\sum_s E_s` instead weighs each system by the
arbitrary scale its training left it with. Optionally the weights :math:`w_s` of
:math:`\\sum_s w_s E_s` are fitted jointly by held-out NLL (convex in :math:`w`; its
gradient is :math:`\\frac1N\\sum_i (E_s(x_i,y_i) - \\mathbb E_p[E_s(x_i,\\cdot)])` and its
Hessian the mean covariance of the energies under :math:`p`), which also accounts for
correlated systems that the product of separately calibrated experts double-counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._inputs import as_labels, check_energies
from .metrics import (
    DEFAULT_BOOTSTRAP,
    MetricResult,
    _mean_metric,
    accuracy,
    brier_score,
    expected_calibration_error,
)
from .temperature import BetaFit, fit_beta

__all__ = [
    "WeightFit",
    "fit_weights",
    "CombinationRow",
    "CombinationResult",
    "combine",
    "fold_indices",
    "check_systems",
]


def check_systems(energies: Any, name: str = "energies") -> dict[str, torch.Tensor]:
    """A mapping ``name -> (N, K)`` (or one matrix, named ``"model"``) of checked energies."""
    if isinstance(energies, Mapping):
        if not energies:
            raise ValueError(f"{name} is an empty mapping; give at least one system")
        out = {str(k): check_energies(v, f"{name}[{k!r}]") for k, v in energies.items()}
    else:
        out = {"model": check_energies(energies, name)}
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"all systems must have the same (N, K) shape, got {shapes}")
    dev = next(iter(out.values())).device
    return {k: v.to(dev) for k, v in out.items()}


def fold_indices(n: int, n_folds: int, seed: int = 0) -> list[torch.Tensor]:
    """A seeded random split of ``range(n)`` into ``n_folds`` folds of near-equal size."""
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if n < n_folds:
        raise ValueError(f"cannot cross-fit {n} samples in {n_folds} folds")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    return [f.sort().values for f in torch.tensor_split(perm, n_folds)]


@dataclass(frozen=True)
class WeightFit:
    """Result of :func:`fit_weights`.

    Attributes
    ----------
    weights : ndarray
        Fitted :math:`w_s`, shape ``(S,)``.
    stderr : ndarray
        Standard errors from the inverse observed information.
    covariance : ndarray
        Inverse observed information ``(S, S)``.
    nll : float
        Mean NLL at the optimum.
    n : int
    iterations : int
    """

    weights: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    nll: float
    n: int
    iterations: int

    def to_dict(self) -> dict:
        return {
            "weights": self.weights.tolist(),
            "stderr": self.stderr.tolist(),
            "nll": self.nll,
            "n": self.n,
            "iterations": self.iterations,
        }


def _nll_w(stack: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
    """Mean NLL, gradient and Hessian of softmax(-sum_s w_s E_s) in ``w``."""
    comb = torch.einsum("s,snk->nk", w, stack)
    lp = torch.log_softmax(-comb, dim=1)
    p = lp.exp()
    e_true = stack.gather(2, y[None, :, None].expand(stack.shape[0], -1, 1)).squeeze(2)  # (S, N)
    mean_e = (p[None] * stack).sum(2)  # (S, N)
    nll = -lp.gather(1, y[:, None]).mean()
    grad = (e_true - mean_e).mean(1)
    centered = stack - mean_e[..., None]  # (S, N, K)
    hess = torch.einsum("snk,tnk,nk->st", centered, centered, p) / stack.shape[1]
    return nll, grad, hess


def fit_weights(
    energies: Mapping[str, Any] | Any,
    labels: Any,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> WeightFit:
    """NLL-optimal weights :math:`w` of the combined energy :math:`\\sum_s w_s E_s(x, k)`.

    Damped Newton with backtracking (the mean NLL is convex in :math:`w`); standard errors
    from the inverse observed information :math:`(N H)^{-1}`.

    Parameters
    ----------
    energies : mapping of str to (N, K) arrays, or one (N, K) array
        Held-out energies of each system.
    labels : array or Tensor, shape (N,)
    tol : float
        Stop when the Newton decrement :math:`g^T H^{-1} g / 2` falls below ``tol``.
    max_iter : int
        Iteration limit.

    Returns
    -------
    WeightFit

    Raises
    ------
    ValueError
        When the Hessian is singular (e.g. two identical systems: the weights are not
        identifiable) or no finite optimum exists.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> e1, e2 = torch.randn(2, 3000, 4, generator=g, dtype=torch.float64)
    >>> y = torch.multinomial(torch.softmax(-(1.0 * e1 + 0.5 * e2), 1), 1, generator=g)[:, 0]
    >>> fit = fit_weights({"a": e1, "b": e2}, y)
    >>> bool(abs(fit.weights[0] - 1.0) < 3 * fit.stderr[0])
    True
    """
    systems = check_systems(energies)
    stack = torch.stack(list(systems.values()))  # (S, N, K)
    n = stack.shape[1]
    y = as_labels(labels, n, stack.shape[2], device=stack.device)
    w = (
        torch.tensor(
            [fit_beta(e, y).beta for e in systems.values()],
            dtype=torch.float64,
            device=stack.device,
        )
        / stack.shape[0]
    )
    nll, g, h = _nll_w(stack, y, w)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - reported
        try:
            step = torch.linalg.solve(h, g)
        except RuntimeError:
            raise ValueError(
                "the NLL Hessian in the weights is singular: some systems are (linear "
                "combinations of) each other, so their weights are not identifiable"
            ) from None
        decrement = float(g @ step) / 2
        if decrement < tol:
            break
        t = 1.0
        while t > 1e-10:
            w_new = w - t * step
            nll_new, g_new, h_new = _nll_w(stack, y, w_new)
            if float(nll_new) <= float(nll) - 0.25 * t * 2 * decrement:  # Armijo, c = 1/4
                break
            t *= 0.5
        w, nll, g, h = w_new, nll_new, g_new, h_new
        if float(w.abs().max()) > math.exp(40):
            raise ValueError("the combination weights diverge (separable data)")
    ev = torch.linalg.eigvalsh(h)
    if float(ev.min()) <= 1e-12 * max(float(ev.max()), 1e-300):
        raise ValueError(
            "the NLL Hessian in the weights is singular at the optimum: the weights are not "
            "identifiable (identical or redundant systems)"
        )
    cov = torch.linalg.inv(h * n)
    return WeightFit(
        weights=w.cpu().numpy(),
        stderr=cov.diagonal().sqrt().cpu().numpy(),
        covariance=cov.cpu().numpy(),
        nll=float(nll),
        n=n,
        iterations=it,
    )


@dataclass(frozen=True)
class CombinationRow:
    """One line of the combination table.

    Attributes
    ----------
    name : str
        What was evaluated (a member raw or calibrated, the raw sum, the product of experts).
    description : str
        The energy formula.
    coefficients : dict of str to float
        The multiplier of each system's energy in this row (fitted on all fit data).
    nll, ece, brier, accuracy : MetricResult
        Metrics on the evaluation data (out-of-fold when cross-fitted).
    """

    name: str
    description: str
    coefficients: dict
    nll: MetricResult
    ece: MetricResult
    brier: MetricResult
    accuracy: MetricResult

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "coefficients": dict(self.coefficients),
            "nll": self.nll.to_dict(),
            "ece": self.ece.to_dict(),
            "brier": self.brier.to_dict(),
            "accuracy": self.accuracy.to_dict(),
        }


@dataclass(frozen=True)
class CombinationResult:
    """Result of :func:`combine`.

    Attributes
    ----------
    rows : list of CombinationRow
    beta_fits : dict of str to BetaFit
        Each member's beta (and of the raw sum, key ``"raw sum"``) fitted on all fit data.
    weight_fit : WeightFit or None
        Jointly fitted weights (``None`` when ``fit_weights=False`` or only one system).
    fitted_on : str
        How the fitted numbers relate to the evaluation data (``"separate fit data"`` or
        ``"k-fold cross-fit on the evaluation data"``).
    n_eval, n_fit : int
    """

    rows: list
    beta_fits: dict
    weight_fit: WeightFit | None
    fitted_on: str
    n_eval: int
    n_fit: int
    n_folds: int | None = field(default=None)

    def row(self, name: str) -> CombinationRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "fitted_on": self.fitted_on,
            "n_eval": self.n_eval,
            "n_fit": self.n_fit,
            "n_folds": self.n_folds,
            "beta_fits": {k: v.to_dict() for k, v in self.beta_fits.items()},
            "weight_fit": None if self.weight_fit is None else self.weight_fit.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
        }


def _row_metrics(
    name: str,
    description: str,
    coefficients: dict,
    log_p: torch.Tensor,
    y: torch.Tensor,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
) -> CombinationRow:
    p = log_p.exp()
    p = p / p.sum(1, keepdim=True)
    nll = _mean_metric("nll", -log_p.gather(1, y[:, None]).squeeze(1), n_bootstrap, seed, 0.95)
    return CombinationRow(
        name=name,
        description=description,
        coefficients=coefficients,
        nll=nll,
        ece=expected_calibration_error(p, y, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed),
        brier=brier_score(p, y, n_bootstrap=n_bootstrap, seed=seed),
        accuracy=accuracy(p, y, n_bootstrap=n_bootstrap, seed=seed),
    )


def combine(
    energies: Mapping[str, Any],
    labels: Any,
    *,
    fit_energies: Mapping[str, Any] | None = None,
    fit_labels: Any = None,
    fit_weights_jointly: bool = True,
    n_folds: int = 5,
    n_bins: int = 15,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> CombinationResult:
    """Compare each system, the raw sum of energies and the product of calibrated experts.

    Rows of the table (all evaluated on ``energies``/``labels``):

    * ``"<name>"`` raw: :math:`p_1(\\cdot \\mid x) = \\operatorname{softmax}(-E_s)`;
    * ``"<name> (beta)"``: :math:`\\operatorname{softmax}(-\\hat\\beta_s E_s)`;
    * ``"raw sum"``: :math:`\\operatorname{softmax}(-\\sum_s E_s)`;
    * ``"raw sum (beta)"``: one beta fitted to the raw sum;
    * ``"product of experts"``: :math:`\\operatorname{softmax}(-\\sum_s \\hat\\beta_s E_s)`;
    * ``"fitted weights"``: :math:`\\operatorname{softmax}(-\\sum_s \\hat w_s E_s)` (optional).

    Parameters
    ----------
    energies : mapping of str to (N, K) arrays
        Evaluation energies of each separately trained system, same inputs and labels.
    labels : array or Tensor, shape (N,)
    fit_energies, fit_labels : optional
        Separate held-out data to fit betas and weights on (same system names). Without
        them, every fitted quantity is cross-fitted: fitted on k-1 folds of the evaluation
        data and applied to the remaining fold, so no prediction is scored on data it was
        fitted to.
    fit_weights_jointly : bool
        Also fit the weights :math:`w` jointly (:func:`fit_weights`).
    n_folds : int
        Folds for cross-fitting.
    n_bins, n_bootstrap, seed
        Settings for the metrics.

    Returns
    -------
    CombinationResult

    References
    ----------
    Hinton (2002), "Training products of experts by minimizing contrastive divergence",
    Neural Computation 14(8).
    """
    systems = check_systems(energies)
    names = list(systems)
    first = systems[names[0]]
    n, k = first.shape
    y = as_labels(labels, n, k, device=first.device)
    if (fit_energies is None) != (fit_labels is None):
        raise ValueError("give both fit_energies and fit_labels, or neither")
    if fit_energies is not None:
        fit_sys = check_systems(fit_energies, "fit_energies")
        if set(fit_sys) != set(names):
            raise ValueError(
                f"fit_energies has systems {sorted(fit_sys)} but energies has {sorted(names)}"
            )
        fit_sys = {s: fit_sys[s].to(first.device) for s in names}
        if next(iter(fit_sys.values())).shape[1] != k:
            raise ValueError("fit_energies and energies must have the same number of labels K")
        fy = as_labels(fit_labels, next(iter(fit_sys.values())).shape[0], k, device=first.device)
    else:
        fit_sys, fy = systems, y
    joint = fit_weights_jointly and len(names) > 1

    def fit_all(sys: dict, lab: torch.Tensor) -> dict:
        out = {s: fit_beta(sys[s], lab) for s in names}
        out["raw sum"] = fit_beta(sum(sys[s] for s in names), lab)
        if joint:
            out["weights"] = fit_weights(sys, lab)
        return out

    def coefs(fits: dict) -> dict[str, dict]:
        c = {}
        for s in names:
            c[s] = {t: (1.0 if t == s else 0.0) for t in names}
            c[f"{s} (beta)"] = {t: (fits[s].beta if t == s else 0.0) for t in names}
        if len(names) > 1:
            c["raw sum"] = dict.fromkeys(names, 1.0)
            c["raw sum (beta)"] = dict.fromkeys(names, fits["raw sum"].beta)
            c["product of experts"] = {t: fits[t].beta for t in names}
            if joint:
                c["fitted weights"] = {
                    t: float(fits["weights"].weights[i]) for i, t in enumerate(names)
                }
        return c

    def log_p(coef: dict, sys: dict, idx=None) -> torch.Tensor:
        comb = sum(coef[t] * (sys[t] if idx is None else sys[t][idx]) for t in names)
        return torch.log_softmax(-comb, dim=1)

    full = fit_all(fit_sys, fy)
    full_coefs = coefs(full)
    if fit_energies is not None:
        lps = {r: log_p(c, systems) for r, c in full_coefs.items()}
        fitted_on, n_f = "separate fit data", int(fy.shape[0])
        folds_used = None
    else:
        lps = {r: torch.empty(n, k, dtype=torch.float64, device=first.device) for r in full_coefs}
        folds = fold_indices(n, n_folds, seed)
        for f in folds:
            f = f.to(first.device)
            train = torch.ones(n, dtype=torch.bool, device=first.device)
            train[f] = False
            fits = fit_all({s: systems[s][train] for s in names}, y[train])
            for r, c in coefs(fits).items():
                lps[r][f] = log_p(c, systems, f)
        fitted_on, n_f = f"{n_folds}-fold cross-fit on the evaluation data", n
        folds_used = n_folds
    descr = {}
    for s in names:
        descr[s] = f"softmax(-E_{s})"
        descr[f"{s} (beta)"] = f"softmax(-beta_{s} E_{s})"
    descr["raw sum"] = "softmax(-sum_s E_s)"
    descr["raw sum (beta)"] = "softmax(-beta sum_s E_s)"
    descr["product of experts"] = "softmax(-sum_s beta_s E_s)"
    descr["fitted weights"] = "softmax(-sum_s w_s E_s), w fitted jointly"
    rows = [
        _row_metrics(r, descr[r], full_coefs[r], lps[r], y, n_bins, n_bootstrap, seed)
        for r in full_coefs
    ]
    beta_fits: dict[str, BetaFit] = {s: full[s] for s in names}
    if len(names) > 1:
        beta_fits["raw sum"] = full["raw sum"]
    return CombinationResult(
        rows=rows,
        beta_fits=beta_fits,
        weight_fit=full.get("weights") if joint else None,
        fitted_on=fitted_on,
        n_eval=n,
        n_fit=n_f,
        n_folds=folds_used,
    )
