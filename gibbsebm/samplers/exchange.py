"""The exchange algorithm for doubly intractable posteriors (Murray, Ghahramani & MacKay 2006).

A Pyro model whose observed :class:`gibbsebm.Gibbs` sites have energies (or betas) that depend
on its latent parameters :math:`\\theta` has the likelihood
:math:`q_\\theta(x) / Z(\\theta)` with an unknown :math:`Z(\\theta)`. The exchange algorithm
proposes :math:`\\theta'` (a Gaussian random walk in the unconstrained space), draws an
auxiliary data set :math:`w \\sim p_{\\theta'}` of the shape of the data and accepts with

.. math::

    \\log a = \\log \\pi(\\theta') - \\log \\pi(\\theta)
             + \\log q_{\\theta'}(x) - \\log q_\\theta(x) + \\log q_\\theta(w) - \\log q_{\\theta'}(w),

where the :math:`Z`'s cancel. **Exact** when :math:`w` is an exact draw: the Gibbs site has an
exact sampler (enumeration of a finite support, or a closed form such as
:class:`~gibbsebm.energies.Gaussian`). Otherwise :math:`w` is the end of an auxiliary chain
of ``aux_steps`` steps started at the data (double Metropolis-Hastings, Liang 2010): MALA for
continuous sites, sweeps of single-site Metropolis updates for discrete ones. That is
**approximate**: its bias shrinks as ``aux_steps`` grows (the auxiliary chain must mix at
:math:`\\theta'`), and the run records ``exact_auxiliary = False``.

State and acceptance are batched over chains; the model itself is traced once per chain and
step (energies with per-chain parameters are not vectorized).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["sample_exchange"]


def _gibbs_terms(pot: Any, u: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, dict]:
    tr, rest = pot.trace_one(u, skip=tuple(names))
    return rest, {n: tr.nodes[n] for n in names}


def sample_exchange(
    pot: Any,
    *,
    num_chains: int,
    num_samples: int,
    num_warmup: int,
    generator: torch.Generator,
    init: torch.Tensor | None = None,
    step_size: float = 0.5,
    aux_steps: int = 200,
    target_accept: float = 0.3,
) -> dict:
    """Run the exchange algorithm on a :class:`gibbsebm.interop.pyro.PyroModelPotential`.

    Parameters
    ----------
    pot : PyroModelPotential
        The model; its ``observed_gibbs`` sites are the doubly intractable likelihoods.
    num_chains, num_samples, num_warmup : int
        Chains, recorded draws per chain, warmup iterations (random-walk scale adapted toward
        ``target_accept``; per-coordinate scales from the chains' spread).
    generator : torch.Generator
        All randomness.
    init : Tensor, optional
        Unconstrained starts ``(C, D)``; default uniform on (-2, 2) (Stan's).
    step_size : float
        Initial random-walk scale.
    aux_steps : int
        Length of the auxiliary chains where no exact sampler exists (double MH).
    target_accept : float
        Acceptance rate the warmup aims for.

    Returns
    -------
    dict
        ``draws`` ``(C, S, D)``, ``stats`` (``acceptance_prob``, ``is_accepted``,
        ``step_size``, ``logdensity`` of the unconstrained parameters without the Gibbs
        terms), ``exact_auxiliary`` (bool) and ``adaptation``.
    """
    names = list(pot.observed_gibbs)
    if not names:
        raise ValueError(
            "method 'exchange' needs an observed Gibbs site (pyro.sample(name, Gibbs(...), obs=x)) "
            "whose energy depends on the model's parameters; use 'hmc' for other models"
        )
    c, d = num_chains, pot.dim
    u = pot.init(c, generator) if init is None else torch.as_tensor(init, dtype=pot.dtype).clone()
    if u.shape != (c, d):
        raise ValueError(f"init must have shape {(c, d)}, got {tuple(u.shape)}")
    rest = torch.empty(c, dtype=u.dtype)
    sites: list[dict] = []
    with torch.no_grad():
        for i in range(c):
            rest[i], nodes = _gibbs_terms(pot, u[i], names)
            sites.append(nodes)
    exact = all(sites[0][n]["fn"].has_exact_sampler for n in names)
    log_step = math.log(step_size)
    scale = torch.ones(d, dtype=u.dtype)
    draws = torch.empty(c, num_samples, d, dtype=u.dtype)
    acc_p = torch.empty(c, num_samples, dtype=u.dtype)
    acc_b = torch.empty(c, num_samples, dtype=torch.bool)
    lps = torch.empty(c, num_samples, dtype=u.dtype)
    for it in range(num_warmup + num_samples):
        h = math.exp(log_step)
        prop = u + h * scale * torch.randn(c, d, generator=generator, dtype=u.dtype)
        log_a = torch.empty(c, dtype=u.dtype)
        new_rest = torch.empty(c, dtype=u.dtype)
        new_sites: list[dict] = []
        with torch.no_grad():
            for i in range(c):
                try:
                    r, nodes = _gibbs_terms(pot, prop[i], names)
                except (ValueError, RuntimeError):  # outside the support: reject
                    new_rest[i], log_a[i] = -math.inf, -math.inf
                    new_sites.append(sites[i])
                    continue
                la = r - rest[i]
                for n in names:
                    fn_new, fn_old = nodes[n]["fn"], sites[i][n]["fn"]
                    x = nodes[n]["value"]
                    if fn_new.has_exact_sampler:
                        w = fn_new.sample(generator=generator)
                    else:
                        w = fn_new.mcmc_from(x[None], aux_steps, generator)[0]
                    la = la + (
                        fn_new.unnormalized_log_prob(x).sum()
                        - fn_old.unnormalized_log_prob(x).sum()
                        + fn_old.unnormalized_log_prob(w).sum()
                        - fn_new.unnormalized_log_prob(w).sum()
                    )
                new_rest[i] = r
                log_a[i] = la
                new_sites.append(nodes)
        log_a = torch.nan_to_num(log_a, nan=-math.inf)
        accept = torch.log(torch.rand(c, generator=generator, dtype=u.dtype)) < log_a
        u = torch.where(accept[:, None], prop, u)
        rest = torch.where(accept, new_rest, rest)
        sites = [new_sites[i] if bool(accept[i]) else sites[i] for i in range(c)]
        p = torch.exp(log_a.clamp(max=0.0))
        if it < num_warmup:
            log_step += (float(p.mean()) - target_accept) / math.sqrt(it + 10.0)
            if c >= 4 and (it + 1) % 50 == 0:
                scale = u.std(0).clamp(min=1e-3)
        else:
            k = it - num_warmup
            draws[:, k], acc_p[:, k], acc_b[:, k], lps[:, k] = u, p, accept, rest
    return {
        "draws": draws,
        "stats": {
            "acceptance_prob": acc_p,
            "is_accepted": acc_b,
            "logdensity": lps,
            "step_size": torch.full((c, num_samples), math.exp(log_step), dtype=u.dtype),
        },
        "exact_auxiliary": exact,
        "adaptation": {"step_size": math.exp(log_step), "scale": scale},
    }
