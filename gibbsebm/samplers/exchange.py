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
of ``aux_steps`` steps started at the data (double Metropolis-Hastings, Liang 2010). That is
**approximate**: its bias shrinks as ``aux_steps`` grows (the auxiliary chain must forget
the data at :math:`\theta'`); the run records ``exact_auxiliary = False`` and how its
auxiliary draws were made (``auxiliary``). After the run, :func:`auxiliary_memory_check`
tests whether auxiliary chains of ``aux_steps`` steps still remember the data (a failure
is part of the run's ``SamplingWarning``); the direct check is to double ``aux_steps``: the
posterior must not move by more than its Monte Carlo error.

Batching: the model is traced once per chain and step (to get each chain's Gibbs site and
the rest of the log joint), and the auxiliary draws of all chains are made in one tensor
where the site allows it:

* :class:`~gibbsebm.energies.Ising2D` sites (no base, no condition): heat-bath sweeps of
  all chains' lattices at once with per-chain couplings
  (:func:`gibbsebm.energies.ising.checkerboard_sweep`), ``aux_steps`` sweeps;
* :class:`~gibbsebm.energies.Gaussian` sites: exact draws of all chains in one call;
* other sites: exact draws (``Gibbs.sample``) or ``aux_steps`` steps of
  :meth:`gibbsebm.Gibbs.mcmc_from` (MALA for continuous sites, sweeps of single-site
  Metropolis updates for discrete ones), one chain at a time.

References
----------
I. Murray, Z. Ghahramani and D. J. C. MacKay, "MCMC for doubly-intractable distributions",
UAI 2006. F. Liang, "A double Metropolis-Hastings sampler for spatial models with
intractable normalizing constants", J. Stat. Comput. Simul. 80, 1007 (2010).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..energies.gaussian import Gaussian
from ..energies.ising import Ising2D, checkerboard_sweep

__all__ = ["sample_exchange", "auxiliary_draws"]


def _gibbs_terms(pot: Any, u: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, dict]:
    tr, rest = pot.trace_one(u, skip=tuple(names))
    return rest, {n: tr.nodes[n] for n in names}


def _plain(fn: Any) -> bool:
    """A site with no base density, condition or latent: its energy alone defines it."""
    return fn.base is None and fn.x is None and fn.latent is None


def _sample_shape(fn: Any, x: torch.Tensor) -> tuple[int, ...]:
    """Leading dimensions of the observed value ``x`` left of the site's batch and event."""
    k = x.dim() - len(fn.batch_shape) - len(fn.event_shape)
    if k < 0:
        raise ValueError(
            f"observed value of shape {tuple(x.shape)} is smaller than the site's batch and "
            f"event shape {tuple(fn.batch_shape) + tuple(fn.event_shape)}"
        )
    return tuple(x.shape[:k])


def auxiliary_draws(
    fns: list[Any], x: torch.Tensor, aux_steps: int, generator: torch.Generator
) -> tuple[torch.Tensor, str]:
    """Auxiliary data sets ``w_i ~ fns[i]`` of the shape of ``x``, all chains at once.

    Parameters
    ----------
    fns : list of Gibbs
        The observed site's distribution at each chain's proposed parameter.
    x : Tensor
        The observed value (also the start of the auxiliary chains of double MH).
    aux_steps : int
        Sweeps or steps of the auxiliary chains where no exact sampler exists.
    generator : torch.Generator
        All randomness.

    Returns
    -------
    (Tensor, str)
        ``w`` shaped ``(len(fns), *x.shape)`` and how it was drawn: ``"exact"``,
        ``"heat-bath sweeps"`` (Ising) or ``"mcmc"`` (:meth:`gibbsebm.Gibbs.mcmc_from`).

    Examples
    --------
    >>> import torch, gibbsebm
    >>> from gibbsebm.energies import Ising2D
    >>> fns = [gibbsebm.Gibbs(Ising2D(8, J=j)) for j in (0.1, 0.2)]  # 2^64 states: no enumeration
    >>> w, how = auxiliary_draws(fns, torch.ones(3, 8, 8), 5, torch.Generator().manual_seed(0))
    >>> w.shape, how
    (torch.Size([2, 3, 8, 8]), 'heat-bath sweeps')
    """
    c = len(fns)
    x = x.detach()
    if all(f.has_exact_sampler for f in fns):
        if all(_plain(f) and type(f.energy) is Gaussian for f in fns) and (
            len({f.energy.dim for f in fns}) == 1
        ):
            # one batched exact draw: w = mean + L eps / sqrt(beta), per chain
            tril = torch.stack([f.energy._scale_tril64 for f in fns])  # (C, d, d)
            mean = torch.stack([f.energy.mean.to(torch.float64) for f in fns])  # (C, d)
            beta = torch.stack(
                [f.beta.to(torch.float64).expand(x.shape[:-1]) for f in fns]
            )  # (C, *x.shape[:-1])
            eps = torch.randn(
                (c,) + tuple(x.shape), generator=generator, dtype=torch.float64, device=x.device
            )
            y = torch.einsum("c...j,cij->c...i", eps, tril) / beta.sqrt()[..., None]
            y = y + mean.reshape((c,) + (1,) * (x.dim() - 1) + (-1,))
            return y.to(x.dtype), "exact"
        w = [f.sample(_sample_shape(f, x), generator=generator) for f in fns]
        return torch.stack(w).to(x.dtype), "exact"
    if all(_plain(f) and isinstance(f.energy, Ising2D) for f in fns):
        # K = beta J per chain and per lattice of x (beta may carry a plate's batch shape)
        lead = tuple(x.shape[:-2])
        k = torch.stack([(f.beta * f.energy.J).to(x.dtype).expand(lead) for f in fns])
        w = checkerboard_sweep(x.expand((c,) + tuple(x.shape)), k, generator, sweeps=aux_steps)
        return w, "heat-bath sweeps"
    w = []
    for f in fns:
        y0 = x.reshape((-1,) + tuple(f.batch_shape) + tuple(f.event_shape))
        w.append(f.mcmc_from(y0, aux_steps, generator).reshape(x.shape))
    return torch.stack(w), "mcmc"


#: Pairs of auxiliary draws in :func:`auxiliary_memory_check` (spread over the chains): about
#: 95% power against a short draw being the closer one with probability 0.65 (one sweep of
#: an 8x8 Ising lattice at J = 0.3 measured about 0.7); where auxiliary chains run one at a
#: time (``"mcmc"``) at most :data:`MEMORY_MAX_REPLICATES` per chain, to bound the cost.
MEMORY_PAIRS = 512
MEMORY_MAX_REPLICATES = 4
#: Length of the reference chains as a multiple of ``aux_steps``, and the z of the sign test
#: above which the check fails (one-sided, binomial null: about 3e-5 false alarms).
MEMORY_REFERENCE_FACTOR = 4
MEMORY_Z = 4.0


def auxiliary_memory_check(
    fns: list[Any], x: torch.Tensor, aux_steps: int, generator: torch.Generator
) -> dict:
    """Do auxiliary chains of ``aux_steps`` steps still remember their start, the data?

    Double MH is unbiased only when the auxiliary draw :math:`w` has forgotten :math:`x`. For
    the parameters in ``fns`` this draws :data:`MEMORY_PAIRS` pairs from ``x`` in all (at
    most :data:`MEMORY_MAX_REPLICATES` per parameter where the draws are not batched):
    :math:`w_s` after ``aux_steps`` steps and :math:`w_l` after
    :data:`MEMORY_REFERENCE_FACTOR` times as many, and with :math:`T = \\log q_\\theta`
    counts the pairs where the short draw is the closer one to the data,
    :math:`|T(w_s) - T(x)| < |T(w_l) - T(x)|`. When both chains have mixed, :math:`w_s` and
    :math:`w_l` are exchangeable and the count is Binomial(n, 1/2); a short chain that stays
    near the data makes it larger. The check fails when the count is more than
    :data:`MEMORY_Z` binomial standard errors above n/2 (a sign test: exact under its null,
    whatever the law of T).

    Parameters
    ----------
    fns : list of Gibbs
        The observed site at the chains' parameters.
    x : Tensor
        The observed value.
    aux_steps : int
        Length of the auxiliary chains of the run.
    generator : torch.Generator
        All randomness.

    Returns
    -------
    dict
        ``z`` (the sign test's statistic), ``passed`` (``z <= MEMORY_Z``), ``closer``
        (how many short draws were closer), ``pairs``, ``aux_steps`` and ``reference_steps``.
    """
    r = max(1, math.ceil(MEMORY_PAIRS / len(fns)))
    if not all(_plain(f) and isinstance(f.energy, Ising2D) for f in fns):
        r = min(r, MEMORY_MAX_REPLICATES)  # auxiliary chains one at a time: bound the cost
    reps = [f for f in fns for _ in range(r)]
    ref_steps = MEMORY_REFERENCE_FACTOR * aux_steps
    w_s, _ = auxiliary_draws(reps, x, aux_steps, generator)
    w_l, _ = auxiliary_draws(reps, x, ref_steps, generator)
    closer, ties = 0, 0
    for i, f in enumerate(reps):
        t = f.unnormalized_log_prob(torch.stack([x, w_s[i], w_l[i]])).reshape(3, -1).sum(-1)
        a, b = float((t[1] - t[0]).abs()), float((t[2] - t[0]).abs())
        closer += a < b
        ties += a == b
    n = len(reps) - ties  # ties carry no sign
    z = (closer - 0.5 * n) / math.sqrt(0.25 * n) if n else 0.0
    return {
        "z": z,
        "passed": bool(z <= MEMORY_Z),
        "closer": int(closer),
        "pairs": int(n),
        "aux_steps": aux_steps,
        "reference_steps": ref_steps,
    }


def memory_problem(check: dict | None) -> list:
    """A failed :func:`auxiliary_memory_check` as a :class:`gibbsebm.diagnostics.Problem`."""
    from ..diagnostics import Problem

    if check is None or check["passed"]:
        return []
    return [
        Problem(
            check="auxiliary_memory",
            figure=check["z"],
            threshold=MEMORY_Z,
            message=(
                f"exchange: auxiliary chains of {check['aux_steps']} steps still remember the "
                f"data ({check['closer']} of {check['pairs']} draws closer to it than after "
                f"{check['reference_steps']} steps, z = {check['z']:.1f} > {MEMORY_Z:g}): the "
                "double-MH posterior is biased; raise aux_steps"
            ),
            count=check["closer"],
        )
    ]


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
        ``target_accept``; per-coordinate scales from the chains' spread every 50 warmup
        iterations, the last one at least 20 iterations before the end of warmup).
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
        terms), ``exact_auxiliary`` (bool), ``auxiliary`` (how the auxiliary draws were
        made: ``"exact"``, ``"heat-bath sweeps"`` or ``"mcmc"``, see :func:`auxiliary_draws`),
        ``auxiliary_check`` (:func:`auxiliary_memory_check` at the chains' last proposals,
        the worst site; ``None`` for exact auxiliary draws) and ``adaptation``.
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
    # log q_theta(x) of each chain's current theta, per observed site (kept, not recomputed)
    qx = {n: torch.empty(c, dtype=u.dtype) for n in names}
    with torch.no_grad():
        for i in range(c):
            rest[i], nodes = _gibbs_terms(pot, u[i], names)
            sites.append(nodes)
            for n in names:
                qx[n][i] = nodes[n]["fn"].unnormalized_log_prob(nodes[n]["value"]).sum()
    exact = all(sites[0][n]["fn"].has_exact_sampler for n in names)
    log_step = math.log(step_size)
    scale = torch.ones(d, dtype=u.dtype)
    draws = torch.empty(c, num_samples, d, dtype=u.dtype)
    acc_p = torch.empty(c, num_samples, dtype=u.dtype)
    acc_b = torch.empty(c, num_samples, dtype=torch.bool)
    lps = torch.empty(c, num_samples, dtype=u.dtype)
    how: set[str] = set()
    for it in range(num_warmup + num_samples):
        h = math.exp(log_step)
        prop = u + h * scale * torch.randn(c, d, generator=generator, dtype=u.dtype)
        log_a = torch.full((c,), -math.inf, dtype=u.dtype)
        new_rest = torch.full((c,), -math.inf, dtype=u.dtype)
        new_sites: list[dict] = list(sites)
        ok: list[int] = []
        with torch.no_grad():
            for i in range(c):
                try:
                    new_rest[i], new_sites[i] = _gibbs_terms(pot, prop[i], names)
                except (ValueError, RuntimeError):  # outside the support: reject
                    new_rest[i] = -math.inf
                    continue
                ok.append(i)
            new_qx = {n: qx[n].clone() for n in names}
            if ok:
                la = new_rest[ok] - rest[ok]
                for n in names:
                    x = sites[ok[0]][n]["value"]
                    fns_new = [new_sites[i][n]["fn"] for i in ok]
                    w, kind = auxiliary_draws(fns_new, x, aux_steps, generator)
                    how.add(kind)
                    for j, i in enumerate(ok):
                        fn_new, fn_old = fns_new[j], sites[i][n]["fn"]
                        # log q_new at (x, w) in one call: shape (2, *sample, *batch)
                        q_new = fn_new.unnormalized_log_prob(torch.stack([x, w[j]]))
                        q_new = q_new.reshape(2, -1).sum(-1)
                        new_qx[n][i] = q_new[0]
                        la[j] = la[j] + (
                            q_new[0]
                            - qx[n][i]
                            + fn_old.unnormalized_log_prob(w[j]).sum()
                            - q_new[1]
                        )
                log_a[ok] = la
        log_a = torch.nan_to_num(log_a, nan=-math.inf)
        accept = torch.log(torch.rand(c, generator=generator, dtype=u.dtype)) < log_a
        u = torch.where(accept[:, None], prop, u)
        rest = torch.where(accept, new_rest, rest)
        qx = {n: torch.where(accept, new_qx[n], qx[n]) for n in names}
        sites = [new_sites[i] if bool(accept[i]) else sites[i] for i in range(c)]
        p = torch.exp(log_a.clamp(max=0.0))
        if it < num_warmup:
            log_step += (float(p.mean()) - target_accept) / math.sqrt(it + 10.0)
            if c >= 4 and (it + 1) % 50 == 0 and it + 1 <= num_warmup - 20:
                # per-coordinate scales from the chains' spread; the overall step is
                # rescaled so that the proposal's size does not jump, and at least 20
                # iterations remain to adapt it to the new shape
                new_scale = u.std(0).clamp(min=1e-3)
                log_step += float(torch.log(scale / new_scale).mean())
                scale = new_scale
        else:
            k = it - num_warmup
            draws[:, k], acc_p[:, k], acc_b[:, k], lps[:, k] = u, p, accept, rest
    check = None
    if not exact and aux_steps > 0:
        with torch.no_grad():
            # at the last proposals: the data are atypical there, as in the run's
            # acceptance ratios, so an auxiliary chain that stays near them shows
            checks = [
                auxiliary_memory_check(
                    [new_sites[i][n]["fn"] for i in range(c)],
                    sites[0][n]["value"],
                    aux_steps,
                    generator,
                )
                for n in names
            ]
            check = max(checks, key=lambda r: r["z"])  # the worst site
    return {
        "draws": draws,
        "stats": {
            "acceptance_prob": acc_p,
            "is_accepted": acc_b,
            "logdensity": lps,
            "step_size": torch.full((c, num_samples), math.exp(log_step), dtype=u.dtype),
        },
        "exact_auxiliary": exact,
        "auxiliary": ", ".join(sorted(how)) or "none",
        "auxiliary_check": check,
        "adaptation": {"step_size": math.exp(log_step), "scale": scale},
    }
