r"""MCMC convergence diagnostics in torch, on the draws' device: R-hat, ESS, MCSE, nested R-hat.

Every function takes draws shaped ``(chains, draws, *event)`` (the arviz order, as
``Samples.draws``) and returns one value per coordinate, shaped ``event``, computed for all
coordinates at once (no Python loop over coordinates or chains, no host synchronisation) on
the draws' device. Arithmetic is in float64; results come back in the draws' floating dtype
(float64 for integer or boolean draws).

The estimators are those of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), as
implemented by Stan and arviz, and agree with `arviz.rhat` (``method="rank"``),
`arviz.ess` (``method="bulk"``, ``"tail"``, ``"mean"``) and `arviz.mcse`
(``method="mean"``) to rounding (the tests check \(10^{-6}\) relative).

Edge cases (the same as arviz unless stated):

* fewer than 4 draws per chain: NaN (too few to split the chains and estimate
  autocorrelations);
* R-hat with a single chain: NaN (arviz's rule; split R-hat of one chain only compares its two
  halves, run several chains);
* a coordinate containing NaN or \(\pm\infty\) in any draw: NaN everywhere (arviz ranks
  infinities and returns finite bulk values; we refuse to summarise non-finite draws);
* a coordinate that is constant over all draws of all chains: ESS equals the number of draws
  (nothing to estimate), R-hat is NaN (0/0: no variance to compare). Chains that are each
  constant at *different* values give R-hat \(+\infty\) (no within-chain variance, some
  between-chain variance): they have not mixed. `check` reports the second case as an
  R-hat problem and the first as none (but a chain that never moves is reported as stuck).

Besides the estimators (whose arithmetic lives in ``gibbsebm._convergence``; import them from
here), this module defines `SamplingWarning` and `check`, the Stan-style checks that
`gibbsebm.sample` runs after every run (``warn=True``) and that `gibbsebm.Samples.diagnose`
returns as data.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B., Bürkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved \(\widehat{R}\) for assessing convergence of MCMC.
*Bayesian Analysis* 16(2), 667-718.

Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4), 473-483.

Margossian, C. C., Hoffman, M. D., Sountsov, P., Riou-Durand, L., Vehtari, A., Gelman, A. (2023).
Nested \(\widehat{R}\): assessing the convergence of Markov chain Monte Carlo when running
many short chains. *Bayesian Analysis* (advance publication), arXiv:2110.13017.

Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte
Carlo. arXiv:1604.00695 (E-BFMI).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ._convergence import check_stats, ess, mcse, nested_rhat, rhat
from ._run_stats import ebfmi, summary_stats
from ._tails import gpd_fit, tail_khat

__all__ = [
    "rhat",
    "ess",
    "mcse",
    "nested_rhat",
    "ebfmi",
    "summary_stats",
    "check_stats",
    "tail_khat",
    "gpd_fit",
    "SamplingWarning",
    "Problem",
    "check",
    "format_problems",
    "warn_problems",
    "RHAT_THRESHOLD",
    "default_superchains",
    "ESS_PER_CHAIN",
    "EBFMI_THRESHOLD",
    "KHAT_VARIANCE_THRESHOLD",
    "KHAT_MEAN_THRESHOLD",
]

#: R-hat above this signals chains that disagree (Vehtari et al. 2021, section 4).
RHAT_THRESHOLD = 1.01
#: Bulk and tail ESS should reach 100 per chain, counted for at most 4 chains (Vehtari et al.
#: 2021 recommend 100 per chain with Stan's 4 chains; see `check` for many chains).
ESS_PER_CHAIN = 100
#: E-BFMI below this signals poor momentum resampling (Betancourt 2016; Stan's threshold).
EBFMI_THRESHOLD = 0.3
#: Pareto k-hat of a coordinate's tail (`tail_khat`) above this flags ``heavy_tails``: the
#: tail of \(y^2\) then has shape \(2k > 0.7\), the threshold above which Pareto smoothed
#: importance sampling stops being practically reliable (Vehtari et al. 2024, section 3);
#: \(y^2\) has no finite variance for \(2k > 1/2\), so the sd, the variance and their MCSE
#: (``mcse_sd``) are unreliable, and its estimate falls far short of the truth (Student's
#: t with \(\nu = 2.5\), \(k = 0.4\): hmc's variance 2.7 to 3.4 against 5). The strict
#: bound \(k < 1/4\) (a finite fourth moment) would flag Student's t with 4 to 6 degrees of
#: freedom half the time from sampling noise alone (k-hat's sd is about \((1 + k)/\sqrt M\),
#: 0.08 with 4000 draws); the largest k-hat of 100 Gaussian coordinates (\(k = 0\)) stayed
#: below 0.10 (20 seeds, see ``tests/test_heavy_tails.py``).
KHAT_VARIANCE_THRESHOLD = 0.35
#: ... and above this, the stronger message: the draws' own variance is infinite
#: (\(k > 1/2\): moments exist only below order \(1/k\)), so the MCSE of the mean,
#: \(\mathrm{sd}/\sqrt{\mathrm{ESS}}\), is unreliable too (a mean that exists converges
#: only at the rate \(S^{k - 1}\) of the generalized central limit theorem).
KHAT_MEAN_THRESHOLD = 0.5
#: Parallel tempering: a chain whose replicas completed fewer round trips (coldest ->
#: hottest -> coldest) than this during the draws never brought a configuration from the hot
#: end back to the target, so tempering did nothing for its draws.
PT_MIN_ROUND_TRIPS = 1
#: Parallel tempering: a pair of neighbouring temperatures whose mean swap acceptance is below
#: this cuts the ladder in two (the default ladder is spaced for about 0.25, Vousden et al.
#: 2016; 0.01 is 25 times less, about one exchange per 100 proposals).
PT_MIN_SWAP_RATE = 0.01
#: Parallel tempering from the modes `gibbsebm.find_modes` found: a run whose target draws fall
#: outside every found basin more often than this (`gibbsebm.samplers.tempering.basin_labels`:
#: 5 sigma under each mode's Laplace precision, 3e-7 of a Gaussian mode's draws) visited
#: a region the search did not find; 1% leaves room for the tails of non-Gaussian modes.
PT_MAX_OUTSIDE_FRACTION = 0.01
#: Many short chains (`default_superchains`): at least this many chains ...
NESTED_MIN_CHAINS = 64
#: ... and fewer draws per chain than this switch the default R-hat check to nested R-hat.
NESTED_MAX_DRAWS = 200
#: Chains per superchain: the divisor of the number of chains in [8, 32] closest to 16.
NESTED_CHAINS_PER_SUPERCHAIN = 16
NESTED_CHAINS_PER_SUPERCHAIN_RANGE = (8, 32)


class SamplingWarning(UserWarning):
    """The draws of a sampling run failed a convergence check (R-hat, ESS, divergences, ...).

    Issued once per `gibbsebm.sample` call (``warn=True``), listing every problem with
    its figure; `gibbsebm.Samples.diagnose` returns the same problems as data.
    """


# --------------------------------------------------------------------------------------------
# checks (Stan / Pyro style) and the warning
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """One failed check of a sampling run.

    Attributes
    ----------
    check : str
        ``"rhat"``, ``"nested_rhat"``, ``"ess_bulk"``, ``"ess_tail"``, ``"divergences"``,
        ``"tree_depth"``, ``"ebfmi"``, ``"nonfinite_proposals"``, ``"stuck_chains"``,
        ``"nonfinite_draws"``, ``"heavy_tails"``, ``"pt_round_trips"``, ``"pt_swap_rate"`` or
        ``"pt_unexplored_mode"``.
    figure : float
        The measured value (the worst R-hat, the smallest ESS, a count, ...).
    threshold : float
        The value it was compared with.
    message : str
        One line saying what is wrong and what to do.
    coordinates : tuple of tuple of int
        Offending coordinates (indices into ``(*batch, *event)``), at most 10, worst first.
    chains : tuple of int
        Offending chains (at most 10), where the check is per chain.
    count : int
        How many coordinates, chains or transitions failed.
    """

    check: str
    figure: float
    threshold: float
    message: str
    coordinates: tuple = ()
    chains: tuple = ()
    count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        d = dataclasses.asdict(self)
        d["coordinates"] = [list(c) for c in self.coordinates]
        d["chains"] = list(self.chains)
        return d


_MAX_LISTED = 10


def _worst(values: torch.Tensor, bad: torch.Tensor, largest: bool) -> tuple[tuple, int]:
    """Indices (into ``values.shape``) of at most 10 flagged entries, worst first; and the count."""
    flat_bad = bad.reshape(-1)
    count = int(flat_bad.sum())
    if count == 0:
        return (), 0
    key = values.reshape(-1).to(torch.float64).nan_to_num(nan=math.inf if largest else -math.inf)
    key = torch.where(flat_bad, key, torch.full_like(key, -math.inf if largest else math.inf))
    order = torch.argsort(key, descending=largest)[: min(count, _MAX_LISTED)].tolist()
    shape = tuple(values.shape)
    coords = []
    for i in order:
        idx = []
        for d in reversed(shape):
            idx.append(i % d)
            i //= d
        coords.append(tuple(reversed(idx)))
    return tuple(coords), count


def default_superchains(num_chains: int, num_draws: int) -> int | None:
    r"""The number of superchains of the default check, or ``None`` for split R-hat.

    Split R-hat compares each chain's variance with the pooled variance, so a correct sampler
    whose chains are shorter than a few autocorrelation times (AR(1) chains with
    \(\rho = 0.7\), 1024 chains of 50 draws: split R-hat 1.10) fails the 1.01 rule although
    the chains are stationary. Nested R-hat (`nested_rhat`, Margossian et al. 2023) compares
    superchain means instead; at stationarity
    \(\mathfrak{n}\widehat R^2 - 1 \approx 1 / (M\,\mathrm{ESS}_{\text{chain}})\) for
    superchains of ``M`` chains, so the same 1.01 threshold (`RHAT_THRESHOLD`) fires once
    \(M\,\mathrm{ESS}_{\text{chain}} \lesssim 50\): it asks the superchains, not each chain,
    to have forgotten their starts.

    Chains stuck in different modes (each chain in a mode at random) give
    \(\mathfrak{n}\widehat R^2 - 1 \approx 1/M\) or more, whatever their length. The ratio
    of the two is the per-chain ESS, and ``M`` sets both: ``M = 16`` flags stuck chains at
    \(\mathfrak{n}\widehat R \approx 1.03\) and passes correct chains down to a per-chain
    ESS of about 6 (measured: 512 chains of 50 draws stuck in two modes at random gave
    1.013 and 1.008 with ``M = 32`` on two seeds, one missed; ``M = 16``: see
    ``tests/test_sampling_warnings.py``).

    Rule: with ``num_chains >= NESTED_MIN_CHAINS`` (64) and ``num_draws < NESTED_MAX_DRAWS``
    (200), superchains of ``M`` consecutive chains, ``M`` the divisor of ``num_chains`` in
    ``NESTED_CHAINS_PER_SUPERCHAIN_RANGE`` (8 to 32) closest to 16 (the smaller on a tie), and
    ``K = num_chains / M`` superchains. Otherwise (few chains, long chains, or no such
    divisor, e.g. a prime number of chains) ``None``: split R-hat. Chains need not share a
    start within a superchain (the library starts each chain on its own): the check then
    compares groups of independently started chains.

    Parameters
    ----------
    num_chains, num_draws : int
        Shape of the run.

    Returns
    -------
    int or None
        ``K``.

    Examples
    --------
    >>> default_superchains(1024, 50), default_superchains(100, 50), default_superchains(8, 50)
    (64, 5, None)
    """
    if num_chains < NESTED_MIN_CHAINS or num_draws >= NESTED_MAX_DRAWS:
        return None
    lo, hi = NESTED_CHAINS_PER_SUPERCHAIN_RANGE
    fits = [m for m in range(lo, hi + 1) if num_chains % m == 0]
    if not fits:
        return None
    m = min(fits, key=lambda m: (abs(m - NESTED_CHAINS_PER_SUPERCHAIN), m))
    return num_chains // m


def _ess_threshold(num_chains: int) -> float:
    return float(ESS_PER_CHAIN * min(num_chains, 4))


def check(
    draws: torch.Tensor,
    stats: Mapping[str, torch.Tensor] | None = None,
    *,
    method: str = "",
    max_tree_depth: int | None = None,
    num_superchains: int | None = None,
) -> list[Problem]:
    r"""Stan-style checks of a run's draws and per-draw statistics; the failed ones as data.

    Checks, each reported only when it fails:

    * ``rhat``: the largest rank-normalised split R-hat (`rhat`) over coordinates
      exceeds 1.01 (\(+\infty\) included: chains constant at different values). With
      ``num_superchains`` it is replaced by ``nested_rhat`` (`nested_rhat`, same
      threshold), the check meant for many short chains.
    * ``ess_bulk``, ``ess_tail``: the smallest bulk / tail ESS is below
      \(100 \times \min(C, 4)\). Stan asks 100 per chain for its 4 chains; with many
      short chains 100 per chain is out of reach and beside the point (the ESS sets the
      Monte Carlo error, \(\mathrm{sd}/\sqrt{\mathrm{ESS}}\), sd/20 at 400), so the
      threshold stops growing at 400 in total.
    * ``divergences``: transitions with ``is_divergent`` (hmc, nuts, mala: energy error above
      the kernel's threshold), any; proposals with a non-finite log-density, which the
      kernels also mark divergent, are counted by ``nonfinite_proposals`` instead.
    * ``tree_depth``: transitions whose recorded ``tree_depth`` reached ``max_tree_depth``
      (only for kernels that record ``tree_depth``; the Pyro-backed ``nuts`` does not yet).
    * ``ebfmi``: chains with E-BFMI below 0.3 (`ebfmi`), only for kernels that record
      their ``hamiltonian``: the stat ``energy`` is the potential \(E(y)\) of the draw,
      not the Hamiltonian, and E-BFMI computed from it would be a different quantity; no
      kernel of the library records it yet, so this check is skipped for them.
    * ``nonfinite_proposals``: transitions whose proposal had a non-finite log-density
      (``is_nonfinite``; rejected and counted, any).
    * ``stuck_chains``: chains that accepted no move during the recorded draws
      (``is_accepted`` never true; without that stat, chains whose draws never change).
    * ``nonfinite_draws``: draws containing NaN or infinities.
    * ``heavy_tails``: the Pareto \(\hat k\) of a coordinate's heavier tail (`tail_khat`,
      chains pooled) exceeds :data:`KHAT_VARIANCE_THRESHOLD` (0.35): the fourth moment may
      be infinite, so the sd, the variance and ``mcse_sd`` are unreliable (the reported
      variance is typically far too small); above :data:`KHAT_MEAN_THRESHOLD` (0.5) even
      the variance may be infinite and ``mcse_mean`` is unreliable too. Needs at least 25
      draws in all; coordinates with non-finite or (nearly) discrete tails are not checked.
    * ``pt_round_trips`` (parallel tempering, from the stat ``round_trips``): chains whose
      replicas completed fewer than :data:`PT_MIN_ROUND_TRIPS` round trips between the
      coldest and the hottest temperature during the draws.
    * ``pt_swap_rate`` (from the stat ``swap_rate``): neighbouring temperatures whose mean
      swap acceptance, pooled over chains, is below :data:`PT_MIN_SWAP_RATE`.
    * ``pt_unexplored_mode`` (stats ``basin``, ``unvisited_modes``): more than
      :data:`PT_MAX_OUTSIDE_FRACTION` of the draws outside every basin the mode search
      found, or a found mode never visited (a mode that no start finds and no draw visits
      cannot be detected).

    R-hat and ESS need 4 draws per chain (R-hat 2 chains); with fewer they are not checked.

    Parameters
    ----------
    draws : Tensor
        ``(chains, draws, *coords)``.
    stats : mapping of str to Tensor, optional
        Per-draw statistics ``(chains, draws, ...)`` as in ``Samples.stats``.
    method : str
        Sampler name, for the messages.
    max_tree_depth : int, optional
        For the ``tree_depth`` check (default 10, NUTS's).
    num_superchains : int, optional
        Use nested R-hat with this many superchains of consecutive chains instead of R-hat.

    Returns
    -------
    list of Problem
        Empty when every check passes.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.diagnostics import check
    >>> g = torch.Generator().manual_seed(0)
    >>> check(torch.randn(4, 500, 2, generator=g))
    []
    >>> bad = torch.randn(4, 500, generator=g) + torch.tensor([0.0, 0.0, 0.0, 8.0])[:, None]
    >>> [p.check for p in check(bad)]
    ['rhat', 'ess_bulk', 'ess_tail']
    """
    stats = dict(stats or {})
    problems: list[Problem] = []
    c, n = int(draws.shape[0]), int(draws.shape[1])
    if c == 0 or n == 0:
        return problems
    who = f"{method}: " if method else ""
    coord_shape = tuple(draws.shape[2:])
    # largest and smallest draw of each coordinate: NaN propagates, +-inf shows (no bool copy)
    d_flat = draws.detach().reshape(c * n, -1)
    if d_flat.dtype.is_floating_point:
        bad_coord = ~(torch.isfinite(d_flat.amax(0)) & torch.isfinite(d_flat.amin(0)))
    else:
        bad_coord = ~torch.isfinite(d_flat).all(0)
    if bool(bad_coord.any()):
        finite = torch.isfinite(draws.detach())
        coords, count = _worst(
            bad_coord.reshape(coord_shape).to(torch.float64), bad_coord.reshape(coord_shape), True
        )
        nbad = int((~finite).sum())
        problems.append(
            Problem(
                "nonfinite_draws",
                float(nbad),
                0.0,
                f"{who}{nbad} draw values are NaN or infinite (in {count} coordinates); the "
                "target or the sampler broke down",
                coords,
                (),
                count,
            )
        )
    _heavy_tails_check(problems, draws, bad_coord.reshape(coord_shape), who)
    nested = num_superchains is not None and num_superchains > 0
    # bulk/tail ESS and split R-hat share one sort per coordinate (`check_stats`)
    both = (
        check_stats(draws, rhat=not nested, num_superchains=num_superchains if nested else None)
        if n >= 4
        else {}
    )
    if nested:
        r = both["nested_rhat"] if n >= 4 else nested_rhat(draws, num_superchains)
        name, label = "nested_rhat", f"nested R-hat ({num_superchains} superchains)"
    elif c >= 2 and n >= 4:
        r = both["rhat"]
        name, label = "rhat", "rank-normalized split R-hat"
    else:
        r = None
    if r is not None:
        bad = r > RHAT_THRESHOLD  # NaN (constant coordinate) is not flagged; +inf is
        if bool(bad.any()):
            coords, count = _worst(r, bad, True)
            worst = float(r.reshape(-1)[bad.reshape(-1)].max())
            problems.append(
                Problem(
                    name,
                    worst,
                    RHAT_THRESHOLD,
                    f"{who}{label} is {worst:.3g} > {RHAT_THRESHOLD} for {count} coordinates: "
                    + (
                        "the chains have not mixed; with tempering this often means chains "
                        "that stayed in the modes they started in, or a mode some chains found "
                        "and others did not (lower beta_min, add temperatures, run longer)"
                        if method == "pt"
                        else "the chains have not mixed (run longer, reparametrize, or use "
                        "tempering)"
                    ),
                    coords,
                    (),
                    count,
                )
            )
    if n >= 4:
        threshold = _ess_threshold(c)
        for kind in ("bulk", "tail"):
            e = both[f"ess_{kind}"]
            bad = e < threshold
            if bool(bad.any()):
                coords, count = _worst(e, bad, False)
                worst = float(e.reshape(-1)[bad.reshape(-1)].min())
                problems.append(
                    Problem(
                        f"ess_{kind}",
                        worst,
                        threshold,
                        f"{who}{kind} ESS is {worst:.3g} < {threshold:g} for {count} coordinates: "
                        f"{'means and medians' if kind == 'bulk' else 'the 5% and 95% quantiles'} "
                        "are unreliable (run more or longer chains)",
                        coords,
                        (),
                        count,
                    )
                )
    div = stats.get("is_divergent")
    nonfinite = stats.get("is_nonfinite")
    if div is not None and nonfinite is not None and nonfinite.shape == div.shape:
        div = div.bool() & ~nonfinite.bool()  # non-finite proposals are counted on their own
    _count_check(
        problems,
        {"is_divergent": div},
        "is_divergent",
        "divergences",
        who,
        "transitions diverged (energy error above the threshold): the step size is too "
        "large for the target's curvature (lower it, raise target_accept, reparametrize)",
    )
    depth = stats.get("tree_depth")
    if depth is not None:
        max_depth = 10 if max_tree_depth is None else int(max_tree_depth)
        _count_check(
            problems,
            {"tree_depth": depth >= max_depth},
            "tree_depth",
            "tree_depth",
            who,
            f"transitions hit the maximum tree depth {max_depth}: trajectories were cut "
            "short (raise max_tree_depth or reparametrize)",
        )
    ham = stats.get("hamiltonian")
    if ham is not None and n >= 2:
        e = ebfmi(ham)
        bad = e < EBFMI_THRESHOLD
        if bool(bad.any()):
            coords, count = _worst(e, bad, False)
            worst = float(e.reshape(-1)[bad.reshape(-1)].min())
            problems.append(
                Problem(
                    "ebfmi",
                    worst,
                    EBFMI_THRESHOLD,
                    f"{who}E-BFMI is {worst:.3g} < {EBFMI_THRESHOLD} in {count} chains: momentum "
                    "resampling explores the energy levels poorly (reparametrize)",
                    (),
                    tuple(int(cc[0]) for cc in coords),
                    count,
                )
            )
    _count_check(
        problems,
        stats,
        "is_nonfinite",
        "nonfinite_proposals",
        who,
        "proposals had a non-finite log-density and were rejected (expected at the edge "
        "of a bounded support; otherwise the step is too large or the energy overflows)",
    )
    acc = stats.get("is_accepted")
    if acc is not None:
        moved = acc.detach().bool().reshape(c, n, -1).any(1)  # (C, batch)
        how = "accepted no move"
    else:
        d0 = draws.detach()
        moved = (d0 != d0[:, :1]).reshape(c, -1).any(-1, keepdim=True)  # (C, 1)
        how = "never moved"
    stuck = ~moved
    if bool(stuck.any()):
        nstuck = int(stuck.sum())
        chains = tuple(torch.nonzero(stuck.any(-1)).reshape(-1)[:_MAX_LISTED].tolist())
        problems.append(
            Problem(
                "stuck_chains",
                float(nstuck),
                0.0,
                f"{who}{nstuck} of {stuck.numel()} chains {how} in {n} draws: they are stuck "
                "(lower the step size or check the initial positions)",
                (),
                chains,
                nstuck,
            )
        )
    _pt_checks(problems, stats, who, n)
    _pt_mode_check(problems, stats, who)
    return problems


def _heavy_tails_check(problems: list, draws: torch.Tensor, bad: torch.Tensor, who: str) -> None:
    """``heavy_tails``: Pareto k-hat of the coordinates' tails above the thresholds."""
    if draws.dtype == torch.bool or int(draws.shape[0]) * int(draws.shape[1]) < 25:
        return
    k = tail_khat(draws)
    heavy = k > KHAT_VARIANCE_THRESHOLD  # NaN (degenerate or non-finite) is not flagged
    heavy &= ~bad
    if not bool(heavy.any()):
        return
    coords, count = _worst(k, heavy, True)
    worst = float(k.reshape(-1)[heavy.reshape(-1)].max())
    listed = ", ".join(
        f"{list(cc) if len(cc) != 1 else cc[0]}: {float(k[cc]):.2f}" for cc in coords[:5] if cc
    )
    listed = f" (worst {listed})" if listed else ""
    if worst > KHAT_MEAN_THRESHOLD:
        what = (
            f"Pareto k-hat above {KHAT_MEAN_THRESHOLD}: even the variance may be infinite, so "
            "mcse_mean (sd / sqrt(ESS)) is unreliable as well as the sd, the variance and "
            "mcse_sd"
        )
    else:
        what = (
            "the fourth moment may be infinite: the sd, the variance and mcse_sd are "
            "unreliable (the variance is typically underestimated)"
        )
    problems.append(
        Problem(
            "heavy_tails",
            worst,
            KHAT_VARIANCE_THRESHOLD,
            f"{who}heavy tails: Pareto k-hat of the draws is {worst:.3g} > "
            f"{KHAT_VARIANCE_THRESHOLD} for {count} coordinates{listed}; {what} "
            "(reparametrize to lighten the tails, or report quantiles, whose error the tail "
            "ESS measures)",
            coords,
            (),
            count,
        )
    )


def _pt_mode_check(problems: list, stats: Mapping, who: str) -> None:
    """``pt_unexplored_mode``: target draws outside every found basin, or found modes never
    visited (stats ``basin`` and ``unvisited_modes`` of ``pt`` from its default start)."""
    basin, missed = stats.get("basin"), stats.get("unvisited_modes")
    if basin is None or missed is None or basin.numel() == 0:
        return
    outside = float((basin.detach() < 0).to(torch.float64).mean())
    k = int(missed.detach().reshape(-1)[0])
    if outside > PT_MAX_OUTSIDE_FRACTION or k > 0:
        problems.append(
            Problem(
                "pt_unexplored_mode",
                outside,
                PT_MAX_OUTSIDE_FRACTION,
                f"{who}{100 * outside:.3g}% of the target draws lie outside every basin of the "
                f"modes find_modes found, and {k} found modes with weight enough to expect "
                "visits were never visited: the draws explored a mode the search missed, or "
                "did not reach one it found, so mode weights are not trustworthy (more "
                "starts, more temperatures or a lower beta_min, longer runs)",
            )
        )


def _pt_checks(problems: list, stats: Mapping, who: str, n: int) -> None:
    """The round-trip and swap-rate checks of parallel tempering (see `check`)."""
    trips, rate = stats.get("round_trips"), stats.get("swap_rate")
    if trips is None or rate is None or trips.dim() != 2 or rate.dim() != 3:
        return
    per_chain = trips.detach()[:, -1].to(torch.float64)  # cumulative: the last draw's count
    few = per_chain < PT_MIN_ROUND_TRIPS
    pooled = rate.detach()[:, -1].to(torch.float64).nanmean(0)  # (R - 1,)
    pairs = "; swap rates of the pairs of temperatures: " + ", ".join(
        f"{float(v):.2f}" for v in pooled
    )
    if bool(few.any()):
        k = int(few.sum())
        problems.append(
            Problem(
                "pt_round_trips",
                float(per_chain.min()),
                float(PT_MIN_ROUND_TRIPS),
                f"{who}{k} of {few.numel()} chains made no round trip between the coldest and "
                f"the hottest temperature in {n} draws (round trips per chain: median "
                f"{float(per_chain.median()):g}){pairs}: tempering did not carry "
                "configurations between the target and the hot end, so those chains may sit "
                "in the modes they started in (run longer, add temperatures or lower beta_min)",
                (),
                tuple(torch.nonzero(few).reshape(-1)[:_MAX_LISTED].tolist()),
                k,
            )
        )
    low = pooled < PT_MIN_SWAP_RATE
    if bool(low.any()):
        idx = torch.nonzero(low).reshape(-1).tolist()
        problems.append(
            Problem(
                "pt_swap_rate",
                float(pooled[low].min()),
                PT_MIN_SWAP_RATE,
                f"{who}swaps between neighbouring temperatures (pairs {idx[:_MAX_LISTED]}) were "
                f"accepted with probability < {PT_MIN_SWAP_RATE}{pairs}: the ladder is cut "
                "there (add temperatures between them)",
                (),
                (),
                len(idx),
            )
        )


def _count_check(problems: list, stats: Mapping, key: str, name: str, who: str, what: str) -> None:
    t = stats.get(key)
    if t is None or t.numel() == 0:
        return
    t = t.detach().bool()
    count = int(t.sum())
    if count == 0:
        return
    per_chain = t.reshape(t.shape[0], -1).any(-1)
    chains = tuple(torch.nonzero(per_chain).reshape(-1)[:_MAX_LISTED].tolist())
    problems.append(
        Problem(
            name,
            float(count),
            0.0,
            f"{who}{count} of {t.numel()} {what}",
            (),
            chains,
            count,
        )
    )


def format_problems(problems: list[Problem]) -> str:
    """The lines of a `SamplingWarning`: one per problem (what the CLI prints).

    Examples
    --------
    >>> print(format_problems([Problem("divergences", 3.0, 0.0, "hmc: 3 of 100 transitions diverged")]))
    sampling diagnostics found 1 problem:
      - hmc: 3 of 100 transitions diverged
    """
    k = len(problems)
    head = f"sampling diagnostics found {k} problem{'s' if k != 1 else ''}:"
    return "\n".join([head] + [f"  - {p.message}" for p in problems])


def warn_problems(problems: list[Problem], stacklevel: int = 2) -> None:
    """Issue one `SamplingWarning` listing ``problems`` (nothing when empty)."""
    if problems:
        warnings.warn(format_problems(problems), SamplingWarning, stacklevel=stacklevel + 1)
