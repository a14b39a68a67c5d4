"""What every log Z plan shares: the generator hand-over from setup to shards, the layout,
option checks and the record of a sharded run.

An estimator is one module with its plan (see :mod:`gibbsebm.runtime.plan`): the plan's
constructor does the setup on the caller's generator (fit a base, run a pilot, place a
schedule), :meth:`LogZPlan.shards` cuts the particles or chains into seeded shards, the
estimator's ``run_shard`` computes one, and its ``merge`` pools them into a
:class:`~gibbsebm.partition.result.LogZEstimate`. A one-shard run continues the setup's
generator, so it is the in-process run bit for bit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .._run_loop import run_identity
from ..runtime.plan import Plan, Shard, shard_seeds, shard_sizes, tensor_digest

__all__ = ["LogZPlan", "check_options", "tensor_digest"]


def check_options(method: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse options that ``method`` does not know, naming the ones it does."""
    allowed = set(allowed)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method={method!r}; known: {sorted(allowed)}"
        )


def keyword_options(fn: Callable[..., Any], *exclude: str) -> list[str]:
    """Keyword-only parameter names of ``fn`` (minus ``exclude``)."""
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in exclude
    ]


class LogZPlan(Plan):
    """Base of the log Z plans.

    Subclasses call :meth:`_finish_setup` at the end of their constructor (after the setup
    has drawn from the generator) and implement ``run_shard`` and ``merge``.
    """

    unit = "particles"
    progress_unit = "particle-step"
    method = ""
    #: Progress units per item (annealing steps, rungs).
    steps_per_item = 1
    #: Whether the plan's setup draws from a generator seeded with the run's seed (``exact``
    #: takes the caller's own seed instead).
    uses_generator = True

    def __init__(self, dist: Any, seed: int | None, options: dict[str, Any]) -> None:
        self.dist = dist
        self.seed = seed
        self.options = dict(options)
        self.progress_desc = self.method
        self.setup_evals = 0

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"log_partition/{self.method}"

    def _finish_setup(self, generator: torch.Generator) -> None:
        """Record the generator's state after the setup: a one-shard run continues it."""
        self._state = generator.get_state()
        self._setup_device_type = torch.device(generator.device).type

    @classmethod
    def refuse_sharding(cls, options: dict[str, Any]) -> str | None:
        """Why this method cannot be sharded with these options (``None``: it can)."""
        if cls.shardable:
            return None
        return (
            f"method={cls.method!r} has no sharded implementation; drop executor= to run it "
            "in-process"
        )

    # -------------------------------------------------------------------- layout
    def shards(self, num_shards: int) -> list[Shard]:
        if not self.shardable and num_shards != 1:
            raise ValueError(self.refuse_sharding(self.options) or "cannot be sharded")
        sizes = shard_sizes(self.num_items, num_shards)
        if num_shards == 1:
            return [Shard(0, 0, sizes[0], self.seed, self._state)]
        if self.seed is None:
            raise ValueError("a sharded run needs an integer seed")
        seeds = shard_seeds(self.seed, num_shards)
        out, start = [], 0
        for k, n in enumerate(sizes):
            out.append(Shard(k, start, n, seeds[k]))
            start += n
        return out

    def work(self, shard: Shard) -> int:
        return shard.size * self.steps_per_item

    def shard_generator(self, shard: Shard) -> torch.Generator:
        """The shard's generator: the setup's stream continued (one shard on the setup's
        device type) or seeded from the shard's seed."""
        device = self.home_device()
        g = torch.Generator(device=device)
        if shard.generator_state is not None and device.type == self._setup_device_type:
            g.set_state(shard.generator_state.cpu())
        elif shard.generator_state is not None:
            if shard.seed is None:
                raise ValueError(
                    "this plan was set up on another device type and has no seed to restart "
                    "from; create it with an integer seed"
                )
            g.manual_seed(shard_seeds(shard.seed, 1)[0])
        else:
            g.manual_seed(shard.seed)
        return g

    # -------------------------------------------------------------------- identity
    def fingerprint(self) -> dict[str, Any]:
        """What defines the estimate: a shard folder written for another one is refused.

        The target's identity as a sampling checkpoint records it (:func:`run_identity`:
        ``beta``, ``dtype``, ``device`` kind, ``condition``, ``base``, ``support``, the energy's
        type and the digests ``energy_parameters`` and ``energy_code``), plus the method, its
        options (small tensors as values, others as digests), the seed, the shapes and the
        digest of the schedule or ladder the setup chose. ``execute`` compares it field by
        field and raises :class:`~gibbsebm.CheckpointMismatchError` naming what differs.
        """
        ident = run_identity(self.dist, None, method=self.method, options=self.options)
        return {
            "kind": self.kind,
            **ident,
            "seed": self.seed,
            "batch_shape": list(getattr(self.dist, "batch_shape", ())),
            "event_shape": list(self.dist.event_shape),
            "schedule": self.schedule_digest(),
        }

    def schedule_digest(self) -> str | None:
        """Digest of the schedule or ladder the setup chose (``None`` if there is none)."""
        return None

    def home_device(self) -> torch.device:
        return torch.device(self.dist.beta.device)

    def transport_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"the distribution": self.dist}
        parts.update({f"option {k!r}": v for k, v in self.options.items()})
        return parts

    @staticmethod
    def shard_record(run_info: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
        """``diagnostics["shards"]`` of a run mapped by an executor."""
        return {
            **run_info,
            "shard_num_energy_evals": [r["num_energy_evals"] for r in results],
        }
