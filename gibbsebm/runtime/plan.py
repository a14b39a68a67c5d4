"""The shard protocol: how the sampling driver and every estimator describe their work.

A computation that can be split (chains of a sampling run, particles of annealed importance
sampling, chains climbing a thermodynamic ladder) is written once as a :class:`Plan`:

* the plan's constructor does the setup that must happen once (fit a base, run a pilot, choose
  a schedule), on the caller's generator;
* :meth:`Plan.shards` cuts the work into ``K`` seeded, picklable :class:`Shard` records;
* :meth:`Plan.run_shard` computes one shard (an ordinary in-process computation);
* :meth:`Plan.merge` pools the shards' results into the result type of an unsharded run.

An in-process call runs the same plan with one shard (:func:`run_here`); executors
(:mod:`gibbsebm.runtime.executors`) only map shards, retry, checkpoint finished shards and
report progress. Neither side imports the other's internals: an executor knows plans only
through this protocol, and a plan never knows who runs it.

Shard layout. ``N`` items and ``K`` shards give shard ``k`` the items
``[start_k, start_k + n_k)`` with ``n_k = N // K + (k < N % K)`` (:func:`shard_sizes`).

Seeds. Shard ``k`` of a run seeded with ``seed`` uses ``shard_seeds(seed, K)[k]``
(:class:`numpy.random.SeedSequence` spawning: the streams do not overlap), except that a
one-shard run continues the run's own stream, so that it equals the in-process run bit for bit.
The draws therefore depend only on the seed and the layout, never on where or in which order
the shards run.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "Shard",
    "Plan",
    "run_here",
    "shard_sizes",
    "shard_seeds",
    "shard_stream_seeds",
    "same_device",
    "resolve_seed",
    "tensor_digest",
]


class Shard(NamedTuple):
    """One piece of a plan: which items, and the randomness they use.

    Attributes
    ----------
    index : int
        Position of the shard in the layout (``0 .. K - 1``).
    start, size : int
        The items ``[start, start + size)`` of the plan.
    seed : int or None
        Seed of the shard's generator (shown in messages).
    generator_state : Tensor or None
        State of the run's generator after the plan's setup: a one-shard run continues that
        stream (when it runs on the device type the setup ran on) instead of reseeding.
    """

    index: int
    start: int
    size: int
    seed: int | None
    generator_state: torch.Tensor | None = None


def shard_sizes(num_items: int, num_shards: int) -> list[int]:
    """Items per shard: ``N // K`` each, the first ``N % K`` shards one more.

    Parameters
    ----------
    num_items : int
        Chains or particles to split (``N``).
    num_shards : int
        Number of shards (``K``), ``1 <= K <= N``.

    Returns
    -------
    list of int
        ``K`` sizes summing to ``N``.

    Raises
    ------
    ValueError
        If ``K < 1`` or ``K > N`` (a shard would be empty).

    Examples
    --------
    >>> shard_sizes(10, 4)
    [3, 3, 2, 2]
    """
    for name, v in (("num_items", num_items), ("num_shards", num_shards)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if num_shards > num_items:
        raise ValueError(
            f"{num_shards} shards for {num_items} chains/particles would leave shards empty; "
            "use at most one shard per chain"
        )
    q, r = divmod(num_items, num_shards)
    return [q + (1 if k < r else 0) for k in range(num_shards)]


def shard_seeds(seed: int, num_shards: int) -> list[int]:
    """Independent 63-bit seeds for ``num_shards`` shards of a run seeded with ``seed``.

    Uses :class:`numpy.random.SeedSequence` spawning, so shard streams do not overlap.

    Examples
    --------
    >>> len(shard_seeds(0, 3)), shard_seeds(0, 3) == shard_seeds(0, 3)
    (3, True)
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    children = np.random.SeedSequence(int(seed)).spawn(num_shards)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


def shard_stream_seeds(seed: int, num_shards: int) -> list[int]:
    """Seeds of the shards of a run seeded with ``seed``.

    ``[seed]`` for one shard (so a one-shard run equals the in-process run), else
    :func:`shard_seeds` ``(seed, num_shards)``.

    Examples
    --------
    >>> shard_stream_seeds(7, 1)
    [7]
    >>> len(set(shard_stream_seeds(7, 3)))
    3
    """
    if num_shards == 1:
        return [int(seed)]
    return shard_seeds(seed, num_shards)


def resolve_seed(seed: Any, checkpoint: Any = None) -> int:
    """The run's seed: ``seed`` checked, or a fresh 63-bit one for ``None``.

    A run resumed from an existing ``checkpoint`` must give the seed it was started with.
    """
    if seed is None and checkpoint is not None and os.path.exists(os.fspath(checkpoint)):
        raise ValueError(
            "resuming a checkpoint needs the seed of the original run (Samples.seed / "
            "LogZEstimate.diagnostics['seed'] / the seed you passed)"
        )
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return seed


def tensor_digest(t: torch.Tensor | None) -> str | None:
    """SHA-256 of a tensor's shape, dtype and bytes (identifies ``init`` or a schedule in a
    run's fingerprint); ``None`` for ``None``."""
    if t is None:
        return None
    t = torch.as_tensor(t).detach().to("cpu").contiguous()
    h = hashlib.sha256(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` name the same device (``cuda`` and ``cuda:0`` on the default)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


class Plan(ABC):
    """A computation described as shards (see the module docstring).

    Subclasses set the class attributes and implement :meth:`run_shard` and :meth:`merge`;
    the defaults of the other methods fit plans whose results are dicts of CPU tensors and
    plain values.

    Attributes
    ----------
    kind : str
        What the plan computes (``"sample"``, ``"log_partition/ais"``, ...), recorded in
        checkpoint manifests.
    unit : str
        What the items are, in messages (``"chains"``, ``"particles"``).
    progress_unit : str
        Unit of the run's progress bar (``"draw"``, ``"particle-step"``).
    progress_desc : str
        Label of the progress bar.
    shardable : bool
        Whether the work can be split at all; a plan that is not runs as one shard.
    num_items : int
        Number of items to split.
    seed : int or None
        The run's seed.
    """

    kind: str = "plan"
    unit: str = "items"
    progress_unit: str = "item"
    progress_desc: str = ""
    shardable: bool = True
    num_items: int = 1
    seed: int | None = None

    # -------------------------------------------------------------------- layout
    def shards(self, num_shards: int) -> list[Shard]:
        """The layout of ``num_shards`` shards (seeded; see the module docstring)."""
        if not self.shardable and num_shards != 1:
            raise ValueError(f"{self.kind} cannot be split into shards")
        sizes = shard_sizes(self.num_items, num_shards)
        seeds: Sequence[int | None] = (
            shard_stream_seeds(self.seed, num_shards)
            if self.seed is not None
            else [None] * num_shards
        )
        out, start = [], 0
        for k, n in enumerate(sizes):
            out.append(Shard(k, start, n, seeds[k]))
            start += n
        return out

    def work(self, shard: Shard) -> int:
        """Progress units of ``shard`` (default: its number of items)."""
        return shard.size

    # -------------------------------------------------------------------- computation
    @abstractmethod
    def run_shard(self, shard: Shard, *, progress: bool | str = False) -> Any:
        """Compute one shard; the result must be picklable (it may travel back from a worker)."""

    @abstractmethod
    def merge(self, results: Sequence[Any], run_info: dict[str, Any] | None = None) -> Any:
        """Pool the shards' results (in shard order) into the result of the whole run.

        ``run_info`` is ``None`` for an in-process run; for a run mapped by an executor it
        holds ``executor`` (its description), ``shard_sizes``, ``shard_seeds`` and
        ``shards_from_checkpoint``, to be recorded in the result.
        """

    # -------------------------------------------------------------------- identity, transport
    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity of the run: a shard checkpoint of another run is refused."""
        return {"kind": self.kind, "seed": self.seed, "num_items": self.num_items}

    def transport_parts(self) -> dict[str, Any]:
        """Description -> object for everything a shard needs on a worker (checked before
        anything is submitted)."""
        return {"the plan": self}

    def home_device(self) -> torch.device:
        """The device the plan's tensors live on (results come back there)."""
        return torch.device("cpu")

    def result_to_host(self, result: Any) -> Any:
        """``result`` with its tensors on the CPU (called on workers that ran elsewhere)."""
        return result

    # -------------------------------------------------------------------- shard files
    def save_result(self, result: Any, path: str | os.PathLike) -> None:
        """Store one shard's result (a checkpoint of finished work)."""
        from .files import save_tensors

        save_tensors(result, path)

    def load_result(self, path: str | os.PathLike) -> Any:
        """Read a result written by :meth:`save_result` (safe loader: no code runs)."""
        from .files import load_tensors

        return load_tensors(path)


def run_here(plan: Plan, *, progress: bool | str = False) -> Any:
    """Run ``plan`` in this process as one shard and merge: the in-process path of every
    estimator."""
    (shard,) = plan.shards(1)
    return plan.merge([plan.run_shard(shard, progress=progress)], None)
