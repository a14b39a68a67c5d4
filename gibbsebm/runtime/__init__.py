"""The runtime: the shard protocol (:mod:`.plan`), the executors that map shards
(:mod:`.executors`), what gets a shard to a worker (:mod:`.transport`) and the files the library
reads back (:mod:`.files`).

This package sits right above the core: it knows nothing of samplers or estimators, which
describe their work as :class:`~gibbsebm.runtime.plan.Plan` objects.
"""

from .executors import (
    RAY_INSTALL_HINT,
    Executor,
    LocalExecutor,
    RayExecutor,
    ShardError,
    execute,
    resolve_executor,
)
from .plan import (
    Plan,
    Shard,
    resolve_seed,
    run_here,
    same_device,
    shard_seeds,
    shard_sizes,
    shard_stream_seeds,
)
from .transport import UnpicklableError, check_picklable, dumps

__all__ = [
    "Plan",
    "Shard",
    "run_here",
    "execute",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ShardError",
    "UnpicklableError",
    "RAY_INSTALL_HINT",
    "resolve_executor",
    "check_picklable",
    "dumps",
    "shard_sizes",
    "shard_seeds",
    "shard_stream_seeds",
    "same_device",
    "resolve_seed",
]
