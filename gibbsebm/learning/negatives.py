"""Negative samples for contrastive divergence, drawn by the library's own kernels.

``draw_negatives`` runs ``num_steps`` steps of a registered kernel
(``gibbsebm.samplers.registry.get_spec``) on the Gibbs distribution of the energy, one
chain per start, and reports what the chains sampled: the acceptance rate and the
*effective* inverse temperature. For ULA with a decoupled step \\(\\tau\\) and noise
\\(\\sigma\\) (SGLD as used for EBM training, e.g. \\(\\tau = 1, \\sigma = 0.01\\)) the
chains sample \\(e^{-\\beta_{\\text{eff}} E}\\) with
\\(\\beta_{\\text{eff}} = \\beta \\cdot 2\\tau/\\sigma^2\\)
(``gibbsebm.samplers.ula.effective_beta``), not the model at \\(\\beta\\): the
contrastive gradient is then biased, and ``gibbsebm.learning.fit`` records the value in
every epoch's history.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..distribution import Gibbs
from ..samplers.registry import get_spec

__all__ = ["Negatives", "draw_negatives", "make_dist", "DISCRETE_SAMPLERS"]

#: Kernels for discrete y.
DISCRETE_SAMPLERS = ("gwg", "block_gibbs", "metropolis", "dmala")


class Negatives(NamedTuple):
    """Output of ``draw_negatives``.

    Attributes
    ----------
    samples : Tensor
        Final chain states ``(C, *event)``, detached.
    acceptance : float
        Mean acceptance probability over chains and steps.
    effective_beta : float
        Inverse temperature the chains sample at (``beta`` except for decoupled ULA).
    nonfinite : int
        Proposals rejected because the energy or its gradient was NaN/inf.
    """

    samples: torch.Tensor
    acceptance: float
    effective_beta: float
    nonfinite: int


def make_dist(
    energy: Any,
    event_shape: torch.Size,
    *,
    beta: float = 1.0,
    condition: torch.Tensor | None = None,
    support: Any = None,
) -> Gibbs:
    """The Gibbs distribution that the kernels sample (one chain per row of ``condition``).

    A conditional energy ``energy(x, y)`` becomes ``y -> energy(condition, y)``, so chain
    ``i`` samples \\(p(y \\mid x_i)\\).
    """
    ref = next(iter(energy.parameters()), None) if hasattr(energy, "parameters") else None
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else None
    b = torch.tensor(float(beta), dtype=dtype, device=device)
    if support is None:
        support = getattr(energy, "support", None)
    if condition is None:
        return Gibbs(energy, b, event_shape=event_shape, support=support)

    def fn(y: torch.Tensor) -> torch.Tensor:
        return energy(condition, y)

    return Gibbs(fn, b, event_shape=event_shape, support=support)


def draw_negatives(
    energy: Any,
    start: torch.Tensor,
    *,
    num_steps: int,
    generator: torch.Generator | None,
    sampler: str = "ula",
    sampler_options: dict | None = None,
    step_params: dict | None = None,
    condition: torch.Tensor | None = None,
    beta: float = 1.0,
    support: Any = None,
) -> Negatives:
    """Move ``start`` by ``num_steps`` kernel steps towards the model at ``beta``.

    Parameters
    ----------
    energy : nn.Module or callable
        ``energy(y) -> (N,)`` (or ``energy(x, y)`` with ``condition``).
    start : Tensor
        Chain starts ``(C, *event)``.
    num_steps : int
        Kernel steps (k of CD-k; 0 returns ``start``).
    generator : torch.Generator
        All randomness.
    sampler : str
        A kernel name of ``gibbsebm.samplers.registry.METHODS`` (``ula``, ``mala``,
        ``hmc``, ``gwg``, ``block_gibbs``, ...).
    sampler_options : dict, optional
        Options of the kernel's ``make_spec`` (e.g. ``step_size``, ``noise_scale`` for ULA,
        ``temperature`` for GWG, ``num_sweeps`` for block Gibbs).
    step_params : dict, optional
        Overrides of the kernel's default step parameters.
    condition : Tensor, optional
        ``x`` rows aligned with the chains.
    beta : float
        Inverse temperature of the target.
    support : Constraint, optional
        Support of y (default: the energy's, else real).

    Returns
    -------
    Negatives

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.energies import Gaussian
    >>> g = torch.Generator().manual_seed(0)
    >>> neg = draw_negatives(Gaussian(torch.zeros(2)), torch.zeros(4, 2), num_steps=3,
    ...                      generator=g, sampler="ula",
    ...                      sampler_options={"step_size": 0.5, "noise_scale": 0.1})
    >>> round(neg.effective_beta, 6)
    100.0
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}")
    dist = make_dist(energy, start.shape[1:], beta=beta, condition=condition, support=support)
    spec = get_spec(sampler, dist, **(sampler_options or {}))
    params = {**spec.default_params, **(step_params or {})}
    eff = float(beta)
    if sampler == "ula" and params.get("noise_scale") is not None:
        # decoupled Langevin: beta * 2 tau / sigma^2 (see gibbsebm.samplers.ula)
        eff = float(beta) * 2.0 * float(params["step_size"]) / float(params["noise_scale"]) ** 2
    if num_steps == 0:
        return Negatives(start.detach(), 1.0, eff, 0)
    state = spec.init(start.detach(), dist.logdensity)
    acc = torch.zeros((), dtype=torch.float64, device=start.device)
    bad = torch.zeros((), dtype=torch.long, device=start.device)
    for _ in range(num_steps):
        state, info = spec.step(generator, state, dist.logdensity, **params)
        acc = acc + info.acceptance_prob.detach().to(torch.float64).mean()
        bad = bad + info.is_nonfinite.sum()
    return Negatives(state.position.detach(), float(acc) / num_steps, eff, int(bad))
