"""Calibrating and combining two energy-based classifiers on scikit-learn's digits.

Two energies E(x, k) over the 10 digit labels are trained separately:

* ``linear``: E(x, k) = -(W x + b)_k, fitted to convergence without regularisation. The
  training set is nearly separable, so the weights grow and the classifier ends up
  **over-confident** (its best inverse temperature is below 1);
* ``mlp``: a small two-layer network trained with heavy label smoothing (0.4), which keeps
  its energies close together: **under-confident** (best beta above 1).

Each defines a conditional Gibbs distribution p_beta(k | x) = softmax(-beta E(x, .)). The
script fits beta for each on a held-out calibration split, writes a calibration report for
the test split (reliability diagrams, metrics before/after with bootstrap CIs, raw energy vs
calibrated probability, free-energy OOD scores on pixel-shuffled digits, and the combination
table) and prints what calibration changed and what combining the calibrated energies
(a product of experts, sum_s beta_s E_s) gains over the raw sum of energies.

Run::

    python examples/calibration_digits.py                # under a minute on 2 CPU cores
    python examples/calibration_digits.py --smoke        # a few seconds, rough numbers
    python examples/calibration_digits.py --output-dir runs/digits
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from _common import example_parser, parse_example_args
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.distributions import constraints

from gibbsebm import Gibbs
from gibbsebm.calibration import report


def _split(seed: int):
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_tr, x_rest, y_tr, y_rest = train_test_split(
        x, y, test_size=0.4, stratify=y, random_state=seed
    )
    x_cal, x_te, y_cal, y_te = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed
    )
    mean, sd = x_tr.mean(0), x_tr.std(0) + 1e-3
    f = lambda a: torch.tensor((a - mean) / sd, dtype=torch.float64)  # noqa: E731
    t = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    return (f(x_tr), t(y_tr)), (f(x_cal), t(y_cal)), (f(x_te), t(y_te))


class LinearEnergy(torch.nn.Module):
    """E(x, k) = -(W x + b)_k."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(d, k, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.lin(x)


class MLPEnergy(torch.nn.Module):
    """E(x, k) = -(W2 tanh(W1 x + b1) + b2)_k."""

    def __init__(self, d: int, k: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, hidden, dtype=torch.float64),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, k, dtype=torch.float64),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.net(x)


def _params_vector(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([q.detach().reshape(-1) for q in model.parameters()])


def _set_params(model: torch.nn.Module, v: torch.Tensor) -> None:
    i = 0
    with torch.no_grad():
        for q in model.parameters():
            q.copy_(v[i : i + q.numel()].reshape(q.shape))
            i += q.numel()


def train_linear(x, y, steps: int, seed: int) -> LinearEnergy:
    """Unregularised maximum likelihood with L-BFGS (scipy), run to (near) convergence.

    (Plain scipy and autograd instead of ``torch.optim``: the first optimizer step imports
    torch's compiler stack, which costs more time than this whole example's training.)
    """
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(seed)
    model = LinearEnergy(x.shape[1], 10)
    _set_params(
        model, 0.01 * torch.randn(_params_vector(model).numel(), generator=g, dtype=torch.float64)
    )

    def loss_and_grad(v: np.ndarray):
        _set_params(model, torch.from_numpy(v))
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(-model(x), y)
        loss.backward()
        grad = torch.cat([q.grad.reshape(-1) for q in model.parameters()])
        return float(loss.detach()), grad.numpy().copy()

    res = minimize(
        loss_and_grad,
        _params_vector(model).numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": steps},
    )
    _set_params(model, torch.from_numpy(res.x))
    return model


def train_mlp(x, y, epochs: int, seed: int, lr: float = 1e-2) -> MLPEnergy:
    """Full-batch Adam (Kingma & Ba 2015, default betas) with label smoothing 0.4."""
    g = torch.Generator().manual_seed(seed)
    model = MLPEnergy(x.shape[1], 10)
    with torch.no_grad():
        for q in model.parameters():  # Glorot-style init from an explicit generator
            fan = q.shape[-1] if q.dim() > 1 else 1
            q.copy_(torch.randn(q.shape, generator=g, dtype=q.dtype) / math.sqrt(fan))
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = [torch.zeros_like(q) for q in model.parameters()]
    v = [torch.zeros_like(q) for q in model.parameters()]
    for t in range(1, epochs + 1):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(-model(x), y, label_smoothing=0.4)
        loss.backward()
        with torch.no_grad():
            for q, mq, vq in zip(model.parameters(), m, v):
                mq.mul_(b1).add_(q.grad, alpha=1 - b1)
                vq.mul_(b2).addcmul_(q.grad, q.grad, value=1 - b2)
                step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                q.sub_(step * mq / (vq.sqrt() + eps))
    return model


def main(argv=None) -> Path:
    args, out = parse_example_args(example_parser(__doc__, "calibration_digits"), argv)
    # small tensors: one intra-op thread is faster than two that wait on each other
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    (x_tr, y_tr), (x_cal, y_cal), (x_te, y_te) = _split(args.seed)
    lin = train_linear(x_tr, y_tr, steps=30 if args.smoke else 300, seed=args.seed)
    mlp = train_mlp(x_tr, y_tr, epochs=60 if args.smoke else 400, seed=args.seed + 1)
    t_train = time.perf_counter() - t0

    with torch.no_grad():
        cal = {"linear": lin(x_cal), "mlp": mlp(x_cal)}
        test = {"linear": lin(x_te), "mlp": mlp(x_te)}
        # out-of-distribution inputs: test digits with their pixels shuffled (same marginals)
        g = torch.Generator().manual_seed(args.seed)
        perm = torch.randperm(x_te.shape[1], generator=g)
        ood = {"linear": lin(x_te[:, perm]), "mlp": mlp(x_te[:, perm])}

        # the same classifier as a conditional Gibbs distribution over the labels
        gibbs = Gibbs(
            lambda x, k: lin(x).gather(1, k.long()[:, None]).squeeze(1),
            beta=1.0,
            condition=x_te[:5],
            support=constraints.integer_interval(0, 9),
            event_shape=(),
        )
        p_gibbs = gibbs.log_prob(gibbs.enumerate_support()).exp().T
        assert torch.allclose(p_gibbs, torch.softmax(-test["linear"][:5], 1))

    rep = report(
        test,
        y_te,
        output_dir=out,
        fit_energies=cal,
        fit_labels=y_cal,
        ood_energies=ood,
        n_bootstrap=100 if args.smoke else 1000,
        seed=args.seed,
        title="Calibration of two energy-based digit classifiers",
        data_description=(
            f"scikit-learn load_digits, stratified split (seed {args.seed}): "
            f"{len(y_tr)} train / {len(y_cal)} calibration (beta fitted here) / {len(y_te)} "
            "test (all metrics); OOD = test digits with pixels shuffled"
        ),
    )

    print(f"trained two energies in {t_train:.1f} s (smoke run: {args.smoke})")
    for name, s in rep.systems.items():
        b, a = s.before, s.after
        kind = "over-confident" if s.beta_fit.beta < 1 else "under-confident"
        print(
            f"{name:7s} beta = {s.beta_fit.beta:.3f} ± {s.beta_fit.stderr:.3f} ({kind} at beta = 1)\n"
            f"        NLL {b['nll'].value:.3f} -> {a['nll'].value:.3f}   "
            f"ECE {b['ece'].value:.3f} -> {a['ece'].value:.3f}   "
            f"accuracy {a['accuracy'].value:.3f} (unchanged: same arg-min)\n"
            f"        error-detection AUROC: raw energy {s.scores.auroc['energy'].value:.3f}, "
            f"calibrated probability {s.scores.auroc['probability'].value:.3f}; "
            f"OOD AUROC: free energy {s.ood.auroc['neg_free_energy'].value:.3f}, "
            f"max probability {s.ood.auroc['probability'].value:.3f}"
        )
    comb = rep.combination
    print(f"combination ({comb.fitted_on}):")
    for r in comb.rows:
        print(f"  {r.name:20s} NLL {r.nll:.3f}  ECE {r.ece:.3f}  accuracy {r.accuracy.value:.3f}")
    raw, poe = comb.row("raw sum"), comb.row("product of experts")
    print(
        f"product of calibrated experts vs raw sum: NLL {raw.nll.value:.3f} -> {poe.nll.value:.3f}, "
        f"ECE {raw.ece.value:.3f} -> {poe.ece.value:.3f}, "
        f"accuracy {raw.accuracy.value:.3f} -> {poe.accuracy.value:.3f}"
    )
    print(f"total {time.perf_counter() - t0:.1f} s")
    print(f"report written to {rep.output_dir.resolve()} (report.html, report.json, report.md)")
    return rep.output_dir


if __name__ == "__main__":
    main()
