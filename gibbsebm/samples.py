"""The result of a sampling run: :class:`Samples` (draws, per-draw statistics, provenance).

Draws are shaped ``(chain, draw, *batch, *event)`` (the arviz order); diagnostics and arviz
export are methods; :meth:`Samples.save` / :meth:`Samples.load` write and read plain data only
(:mod:`gibbsebm.runtime.files`), and :meth:`Samples.concatenate` joins the shards of a run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch

from ._json import to_jsonable
from .errors import CorruptFileError
from .runtime.files import load_tensors, save_tensors

__all__ = ["Samples"]


def _options_json(obj: Any) -> Any:
    """Options and attrs as recorded with a run: small tensors as lists, large ones described."""
    return to_jsonable(obj, nonfinite="keep", max_tensor_numel=16)


@dataclasses.dataclass
class Samples:
    """Draws and per-draw statistics of a sampling run.

    Attributes
    ----------
    draws : Tensor
        ``(num_chains, num_samples, *batch_shape, *event_shape)``.
    stats : dict of str to Tensor
        Per-draw statistics shaped ``(num_chains, num_samples, *batch_shape, ...)``: every
        field of the sampler's ``Info`` (``acceptance_prob``, ``is_accepted``,
        ``is_divergent``, ``is_nonfinite``, ...), plus ``step_size``, ``beta``, ``logdensity``
        (:math:`\\log b(y) - \\beta E(y)`) and ``energy`` (:math:`E(y)` of the draw).
    extra : dict of str to Tensor
        Additional per-draw arrays the sampler asks to keep (e.g. all replicas of ``pt``).
    method : str
        The ``method=`` name.
    options : dict
        The kernel options given to :func:`sample`.
    seed : int or None
        The seed of the run (``None`` for runs started from a caller-supplied generator).
    num_warmup, thin : int
        Warmup length and thinning.
    batch_shape, event_shape : tuple of int
        Shapes of the distribution.
    adaptation : dict
        Tuned parameters (step size, inverse mass matrix, trajectory length, ...).
    attrs : dict
        Extra JSON-serialisable metadata.
    sites : dict of str to Tensor, optional
        For a Pyro model: each latent site's draws in its constrained space,
        ``(num_chains, num_samples, *site_shape)`` (``draws`` holds the unconstrained vector).
        Saved by :meth:`save` and joined by :meth:`concatenate` (shards) like ``draws``.
    """

    draws: torch.Tensor
    stats: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    method: str = ""
    options: dict = dataclasses.field(default_factory=dict)
    seed: int | None = None
    num_warmup: int = 0
    thin: int = 1
    batch_shape: tuple = ()
    event_shape: tuple = ()
    adaptation: dict = dataclasses.field(default_factory=dict)
    attrs: dict = dataclasses.field(default_factory=dict)
    sites: dict | None = None

    @property
    def num_chains(self) -> int:
        return int(self.draws.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.draws.shape[1])

    def __repr__(self) -> str:
        acc = self.stats.get("acceptance_prob")
        acc_s = f", mean acceptance={float(acc.double().mean()):.3f}" if acc is not None else ""
        return (
            f"Samples(method={self.method!r}, draws={tuple(self.draws.shape)}, "
            f"stats={sorted(self.stats)}{acc_s})"
        )

    # -- diagnostics ----------------------------------------------------------------------
    def to_inference_data(self, var_name: str = "y"):
        """An :class:`arviz.InferenceData` with ``posterior``, ``sample_stats`` and attrs.

        See :func:`gibbsebm.interop.arviz.to_inference_data`; a Pyro model's run has one
        posterior variable per site (:attr:`sites`).
        """
        if self.sites is not None:
            from .interop.pyro import sites_inference_data

            return sites_inference_data(self)
        from .interop.arviz import to_inference_data

        return to_inference_data(self, var_name=var_name)

    def summary(self, var_name: str = "y", **kwargs: Any):
        """Per-coordinate mean, sd, HDI, MCSE, bulk/tail ESS and R-hat (arviz's columns).

        Computed in torch on the draws' device by `gibbsebm.diagnostics`, with the
        columns, labels and rounding of `arviz.summary`: ``mean``, ``sd``, ``hdi_3%``,
        ``hdi_97%``, ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``.
        ``hdi_prob``, ``round_to`` and ``kind`` are honoured here (see
        `gibbsebm._summary.summary`); any other keyword argument (``stat_focus``,
        ``fmt``, ...) hands the call to `arviz.summary` through
        `gibbsebm.interop.arviz.summary`.

        Returns
        -------
        pandas.DataFrame
            One row per coordinate of ``(*batch_shape, *event_shape)``.
        """
        if set(kwargs) <= {"hdi_prob", "round_to", "kind"}:
            from ._summary import summary

            return summary(self, var_name=var_name, **kwargs)
        from .interop.arviz import summary as arviz_summary

        return arviz_summary(self, var_name=var_name, **kwargs)

    def diagnose(self, num_superchains: int | str | None = "auto") -> list:
        """Stan-style convergence checks of this run; the failed ones as data.

        R-hat > 1.01, bulk or tail ESS < 100 per chain up to 4 chains, divergences, tree-depth
        saturation, E-BFMI < 0.3 (where the kernel records its Hamiltonian), non-finite
        proposals, stuck chains and non-finite draws: see `gibbsebm.diagnostics.check`
        for each rule. `gibbsebm.sample` (``warn=True``) issues one
        `gibbsebm.SamplingWarning` with these problems after every run.

        Parameters
        ----------
        num_superchains : int, "auto" or None
            ``"auto"`` (default): for many short chains (at least 64 chains of fewer than 200
            draws) nested R-hat over superchains of consecutive chains replaces split R-hat,
            which fails on short chains of correct samplers; the rule and the number of
            superchains are `gibbsebm.diagnostics.default_superchains`. An int forces nested
            R-hat with that many superchains; ``None`` forces split R-hat.

        Returns
        -------
        list of gibbsebm.diagnostics.Problem
            Empty when every check passes; ``[p.to_dict() for p in ...]`` gives plain data.
        """
        from .diagnostics import check, default_superchains

        if isinstance(num_superchains, str):
            if num_superchains != "auto":
                raise ValueError(
                    f"num_superchains must be an int, 'auto' or None, got {num_superchains!r}"
                )
            num_superchains = default_superchains(self.num_chains, self.num_samples)
        return check(
            self.draws,
            self.stats,
            method=self.method,
            max_tree_depth=self.options.get("max_tree_depth"),
            num_superchains=num_superchains,
        )

    # -- persistence ----------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "format": "gibbsebm.Samples",
            "version": 1,
            "draws": self.draws.detach().cpu(),
            "stats": {k: v.detach().cpu() for k, v in self.stats.items()},
            "extra": {k: v.detach().cpu() for k, v in self.extra.items()},
            "meta": {
                "method": self.method,
                "options": _options_json(self.options),
                "seed": self.seed,
                "num_warmup": self.num_warmup,
                "thin": self.thin,
                "batch_shape": list(self.batch_shape),
                "event_shape": list(self.event_shape),
                "attrs": _options_json(self.attrs),
            },
            "adaptation": _tensor_or_json(self.adaptation),
            "sites": (
                None
                if self.sites is None
                else {str(k): v.detach().cpu() for k, v in self.sites.items()}
            ),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (tensors and JSON-like metadata only, with a SHA-256 checksum),
        atomically (see :mod:`gibbsebm.runtime.files`)."""
        save_tensors(self._payload(), path, kind="samples")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Samples:
        """Read a file written by :meth:`save` (checksum checked, then
        ``torch.load(weights_only=True)``: no code runs).

        Raises
        ------
        gibbsebm.CorruptFileError
            (a ``ValueError``) If the file is damaged, a link, or not a Samples file.
        """
        payload = load_tensors(path, what="gibbsebm Samples file", kind="samples")
        if not isinstance(payload, dict) or payload.get("format") != "gibbsebm.Samples":
            raise CorruptFileError(f"{path} is not a gibbsebm Samples file", os.fspath(path))
        try:
            return cls._from_payload(payload)
        except (KeyError, TypeError, AttributeError) as err:
            raise CorruptFileError(
                f"{path} is a damaged gibbsebm Samples file ({type(err).__name__}: {err})",
                os.fspath(path),
            ) from None

    @classmethod
    def _from_payload(cls, payload: dict) -> Samples:
        m = payload["meta"]
        return cls(
            draws=payload["draws"],
            stats=dict(payload["stats"]),
            extra=dict(payload["extra"]),
            method=m["method"],
            options=m["options"],
            seed=m["seed"],
            num_warmup=m["num_warmup"],
            thin=m["thin"],
            batch_shape=tuple(m["batch_shape"]),
            event_shape=tuple(m["event_shape"]),
            adaptation=payload["adaptation"],
            attrs=m["attrs"],
            sites=None if payload.get("sites") is None else dict(payload["sites"]),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Samples]) -> Samples:
        """Join runs of the same sampler along the chain dimension (e.g. shards).

        Raises
        ------
        ValueError
            If the parts differ in method, number of draws, shapes or recorded statistics.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("concatenate needs at least one Samples")
        first = parts[0]
        for p in parts[1:]:
            if p.method != first.method:
                raise ValueError(f"cannot concatenate methods {first.method!r} and {p.method!r}")
            if p.draws.shape[1:] != first.draws.shape[1:]:
                raise ValueError(
                    f"draws shapes differ beyond the chain dim: {tuple(first.draws.shape)} vs "
                    f"{tuple(p.draws.shape)}"
                )
            if set(p.stats) != set(first.stats) or set(p.extra) != set(first.extra):
                raise ValueError("the parts record different statistics")
            if (p.sites is None) != (first.sites is None) or (
                p.sites is not None and set(p.sites) != set(first.sites)
            ):
                raise ValueError("the parts record different Pyro sites")
        return cls(
            draws=torch.cat([p.draws for p in parts], 0),
            stats={k: torch.cat([p.stats[k] for p in parts], 0) for k in first.stats},
            extra={k: torch.cat([p.extra[k] for p in parts], 0) for k in first.extra},
            method=first.method,
            options=first.options,
            seed=first.seed if all(p.seed == first.seed for p in parts) else None,
            num_warmup=first.num_warmup,
            thin=first.thin,
            batch_shape=first.batch_shape,
            event_shape=first.event_shape,
            adaptation={"shards": [p.adaptation for p in parts]},
            attrs={**first.attrs, "shard_seeds": [p.seed for p in parts]},
            sites=(
                None
                if first.sites is None
                else {k: torch.cat([p.sites[k] for p in parts], 0) for k in first.sites}
            ),
        )


def _tensor_or_json(obj: Any) -> Any:
    """Keep tensors (on CPU) and JSON-able values; render anything else with repr."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k): _tensor_or_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tensor_or_json(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)
