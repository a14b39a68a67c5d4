"""Training losses of energy-based models as small pure functions.

Each loss takes the energy, a batch and (where it needs randomness) an explicit
``torch.Generator``, and returns a scalar tensor to minimise. A conditional energy
``energy(x, y)`` is handled by passing ``condition=x`` (rows aligned with ``y``); scores are
always gradients in ``y``. Temperature: the losses fit \\(p(y) \\propto e^{-E(y)}\\)
(\\(\\beta = 1\\); a different \\(\\beta\\) is a rescaling of the energy).

* ``cd_loss``: contrastive divergence, \\(\\bar E(\\text{data}) - \\bar E(\\text{negatives})\\)
  (+ an optional L2 penalty on both energies, Du & Mordatch 2019), whose gradient is the
  maximum-likelihood gradient when the negatives are model samples (Hinton 2002).
* ``dsm_loss``: denoising score matching (Vincent 2011).
* ``ssm_loss``: sliced score matching (Song et al. 2019).
* ``nce_loss``: noise-contrastive estimation with a learned \\(\\log Z\\)
  (Gutmann & Hyvarinen 2010).

References
----------
.. [1] G. E. Hinton, "Training products of experts by minimizing contrastive divergence",
   Neural Computation 14 (2002).
.. [2] P. Vincent, "A connection between score matching and denoising autoencoders",
   Neural Computation 23 (2011).
.. [3] Y. Song, S. Garg, J. Shi and S. Ermon, "Sliced score matching: a scalable approach to
   density and score estimation", UAI 2019.
.. [4] M. Gutmann and A. Hyvarinen, "Noise-contrastive estimation: a new estimation principle
   for unnormalized statistical models", AISTATS 2010.
.. [5] Y. Du and I. Mordatch, "Implicit generation and modeling with energy-based models",
   NeurIPS 2019.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["cd_loss", "dsm_loss", "ssm_loss", "nce_loss", "GaussianNoise", "energy_of"]


def energy_of(energy: Any, y: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
    """``energy(y)`` or ``energy(condition, y)``, checked to be shaped ``(N,)``."""
    e = energy(y) if condition is None else energy(condition, y)
    if not isinstance(e, torch.Tensor) or e.shape != (y.shape[0],):
        shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        raise ValueError(
            f"the energy must map a batch of {y.shape[0]} inputs to shape ({y.shape[0]},), "
            f"got {shape}"
        )
    return e


def _score(
    energy: Any, y: torch.Tensor, condition: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input with grad, score \\(-\\nabla_y E(y)\\) with a graph for second derivatives)."""
    y = y.detach().requires_grad_(True)
    e = energy_of(energy, y, condition)
    (g,) = torch.autograd.grad(e.sum(), y, create_graph=True)
    return y, -g


def cd_loss(
    energy: Any,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    condition: torch.Tensor | None = None,
    l2_weight: float = 0.0,
) -> torch.Tensor:
    """Contrastive divergence \\(\\frac1N\\sum_i E(y_i^+) - \\frac1M\\sum_j E(y_j^-)\\).

    With \\(y^-\\) drawn from the model, the gradient in the parameters is an unbiased
    estimate of the negative log-likelihood gradient
    \\(\\langle \\nabla_\\theta E\\rangle_{\\text{data}} - \\langle \\nabla_\\theta
    E\\rangle_{\\text{model}}\\). ``l2_weight`` adds
    \\(\\alpha (\\overline{E(y^+)^2} + \\overline{E(y^-)^2})\\) (Du & Mordatch 2019), which
    keeps the energies near zero.

    Parameters
    ----------
    energy : nn.Module or callable
        ``(N, *event) -> (N,)``.
    positives, negatives : Tensor
        Data batch and negative samples (the negatives are detached).
    condition : Tensor, optional
        ``x`` aligned with both batches, for a conditional energy.
    l2_weight : float
        \\(\\alpha \\ge 0\\).

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.energies import Gaussian
    >>> e = Gaussian(torch.zeros(2))
    >>> float(cd_loss(e, torch.zeros(3, 2), torch.ones(3, 2)))
    -1.0
    """
    ep = energy_of(energy, positives, condition)
    en = energy_of(energy, negatives.detach(), condition)
    loss = ep.mean() - en.mean()
    if l2_weight:
        loss = loss + l2_weight * ((ep**2).mean() + (en**2).mean())
    return loss


def dsm_loss(
    energy: Any,
    y: torch.Tensor,
    noise_std: float,
    generator: torch.Generator | None,
    *,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """Denoising score matching at noise level \\(\\sigma\\) (Vincent 2011).

    \\[
    L = \\frac{1}{2N}\\sum_i \\big\\| s(\\tilde y_i) + (\\tilde y_i - y_i)/\\sigma^2
    \\big\\|^2, \\qquad \\tilde y_i = y_i + \\sigma \\varepsilon_i,\\quad
    s = -\\nabla_y E.
    \\]

    Its minimiser is the score of the *noisy* data density
    \\(p_\\sigma = p_{\\text{data}} * \\mathcal N(0, \\sigma^2 I)\\): a Gaussian
    \\(\\mathcal N(\\mu, \\Sigma)\\) is recovered as \\(\\mathcal N(\\mu, \\Sigma +
    \\sigma^2 I)\\).

    Parameters
    ----------
    energy : nn.Module or callable
        Continuous-y energy.
    y : Tensor
        Data batch ``(N, *event)``.
    noise_std : float
        \\(\\sigma > 0\\).
    generator : torch.Generator
        Source of \\(\\varepsilon\\).
    condition : Tensor, optional
        ``x`` aligned with ``y``.
    """
    if not (noise_std > 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be a positive finite number, got {noise_std!r}")
    eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    noisy = y.detach() + noise_std * eps
    _, s = _score(energy, noisy, condition)
    target = -eps / noise_std
    return 0.5 * ((s - target) ** 2).reshape(y.shape[0], -1).sum(-1).mean()


def ssm_loss(
    energy: Any,
    y: torch.Tensor,
    generator: torch.Generator | None,
    *,
    condition: torch.Tensor | None = None,
    num_projections: int = 1,
    projection: str = "gaussian",
) -> torch.Tensor:
    """Sliced score matching with variance reduction (SSM-VR; Song et al. 2019).

    \\[
    L = \\frac1N \\sum_i \\Big[\\tfrac12 \\|s(y_i)\\|^2 + \\frac1M\\sum_{m=1}^M
    v_{im}^\\top \\nabla_y \\big(v_{im}^\\top s(y_i)\\big)\\Big],
    \\qquad s = -\\nabla_y E,
    \\]

    with projections \\(v\\) standard Gaussian or Rademacher (\\(E[vv^\\top] = I\\)), an
    unbiased estimate of Hyvarinen's score-matching objective
    \\(\\frac12\\|s\\|^2 + \\operatorname{tr}\\nabla_y s\\), minimised by the data score.

    Parameters
    ----------
    energy : nn.Module or callable
        Continuous-y energy, twice differentiable.
    y : Tensor
        Data batch ``(N, *event)``.
    generator : torch.Generator
        Source of the projections.
    condition : Tensor, optional
        ``x`` aligned with ``y``.
    num_projections : int
        \\(M\\).
    projection : {"gaussian", "rademacher"}
    """
    if projection not in ("gaussian", "rademacher"):
        raise ValueError(f"projection must be 'gaussian' or 'rademacher', got {projection!r}")
    yy, s = _score(energy, y, condition)
    n = y.shape[0]
    loss = 0.5 * (s**2).reshape(n, -1).sum(-1)
    for _ in range(num_projections):
        v = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        if projection == "rademacher":
            v = torch.sign(v)
        sv = (s * v).sum()
        (gsv,) = torch.autograd.grad(sv, yy, create_graph=True)
        loss = loss + (gsv * v).reshape(n, -1).sum(-1) / num_projections
    return loss.mean()


class GaussianNoise:
    """Gaussian noise distribution of NCE, \\(\\mathcal N(\\mu, \\Sigma)\\) on flat y.

    ``fit`` matches the mean and covariance of the data (Gutmann & Hyvarinen 2010
    recommend a noise close to the data).

    Examples
    --------
    >>> import torch
    >>> q = GaussianNoise(torch.zeros(2), torch.eye(2))
    >>> q.sample(5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, event_shape: Any = None) -> None:
        self.mean = mean.detach()
        self.cov = cov.detach()
        self.event_shape = torch.Size(event_shape or mean.shape)
        self._dist = torch.distributions.MultivariateNormal(self.mean, self.cov)
        self._chol = torch.linalg.cholesky(self.cov)

    @classmethod
    def fit(cls, data: torch.Tensor, jitter: float = 1e-6) -> GaussianNoise:
        """Mean and covariance of ``data`` ``(N, *event)`` (flattened events)."""
        flat = data.detach().reshape(data.shape[0], -1)
        mean = flat.mean(0)
        centered = flat - mean
        cov = centered.T @ centered / max(flat.shape[0] - 1, 1)
        cov = cov + jitter * cov.diagonal().mean().clamp_min(1e-12) * torch.eye(
            cov.shape[0], dtype=cov.dtype, device=cov.device
        )
        return cls(mean, cov, data.shape[1:])

    def sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        eps = torch.randn(
            n,
            self.mean.shape[0],
            generator=generator,
            dtype=self.mean.dtype,
            device=self.mean.device,
        )
        return (self.mean + eps @ self._chol.T).reshape((n,) + self.event_shape)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        return self._dist.log_prob(y.reshape(y.shape[0], -1))

    def state_dict(self) -> dict:
        return {"mean": self.mean, "cov": self.cov, "event_shape": list(self.event_shape)}


def nce_loss(
    energy: Any,
    y: torch.Tensor,
    log_z: torch.Tensor,
    noise: Any,
    generator: torch.Generator | None,
    *,
    noise_ratio: float = 1.0,
) -> torch.Tensor:
    """Noise-contrastive estimation with a learned \\(\\log Z\\) (Gutmann & Hyvarinen 2010).

    The model \\(\\log p_\\theta(y) = -E(y) - \\log Z\\) (with \\(\\log Z\\) a free
    parameter) is trained to tell data from \\(\\nu N\\) noise draws
    \\(y^- \\sim q\\): with \\(G(y) = \\log p_\\theta(y) - \\log q(y) - \\log\\nu\\),

    \\[
    L = -\\frac1N\\sum_i \\log\\sigma(G(y_i)) - \\frac{\\nu}{\\nu N}\\sum_j
    \\log\\sigma(-G(y^-_j)).
    \\]

    At the optimum (a model family that contains the data density) \\(p_\\theta\\) is the
    data density and the learned ``log_z`` is the energy's true \\(\\log Z\\).

    Parameters
    ----------
    energy : nn.Module or callable
        Energy of y.
    y : Tensor
        Data batch ``(N, *event)``.
    log_z : Tensor
        Scalar parameter (learned with the energy).
    noise : object
        With ``sample(n, generator)`` and ``log_prob(y)``, e.g. ``GaussianNoise``.
    generator : torch.Generator
        Source of the noise draws.
    noise_ratio : float
        \\(\\nu\\), noise draws per data point (rounded to a whole number of draws).
    """
    if not noise_ratio > 0:
        raise ValueError(f"noise_ratio must be > 0, got {noise_ratio!r}")
    n = y.shape[0]
    m = max(1, int(round(noise_ratio * n)))
    nu = m / n
    yn = noise.sample(m, generator).to(dtype=y.dtype, device=y.device)
    log_nu = math.log(nu)
    g_data = -energy_of(energy, y) - log_z - noise.log_prob(y) - log_nu
    g_noise = -energy_of(energy, yn) - log_z - noise.log_prob(yn) - log_nu
    return -(F.logsigmoid(g_data).mean() + nu * F.logsigmoid(-g_noise).mean())
