"""A private Ray head on the loopback only: the setting Ray needs for it, and the check after.

Used by :class:`gibbsebm.runtime.executors.RayExecutor` when it starts its own head (no
address given); see ``docs/ray.md`` ("Network") for what was measured.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

__all__ = ["LOOPBACK", "is_loopback", "ray_loopback_node", "check_loopback_node"]

#: The address a private Ray head binds to.
LOOPBACK = "127.0.0.1"
#: Ray's switch between "a node address reachable from other machines" (on, the default on
#: Linux) and "the loopback address" (off, the default on macOS and Windows).
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_warned_ray_network = False


def is_loopback(host: Any) -> bool:
    return isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127."))


class ray_loopback_node:
    """Within this block, ``ray.init`` gives a new head the node address ``127.0.0.1``.

    Ray replaces a loopback ``_node_ip_address`` by the host's network address
    (``ray._private.services.resolve_ip_for_localhost``) unless its cluster switch
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is off, as it is by default on macOS and Windows.
    With the node address ``127.0.0.1`` every Ray server of the head binds the loopback
    only: the GCS and raylet gRPC servers (node manager, object manager), the workers' and the
    driver's core-worker servers, the runtime-environment and dashboard agents and the metrics
    agent (measured with Ray 2.60 on Linux; ``docs/ray.md``). The switch is read once, when
    Ray is imported, into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``; this block sets
    it (and the environment variable, for the processes the head spawns) and restores both.
    """

    def __init__(self, ray: Any) -> None:
        self.ray = ray

    def __enter__(self) -> None:
        import importlib

        try:
            self._consts = importlib.import_module("ray._private.ray_constants")
        except ImportError:  # pragma: no cover - another Ray layout; checked after init
            self._consts = None
        self._old_env = os.environ.get(_RAY_CLUSTER_ENV)
        self._old_const = getattr(self._consts, "ENABLE_RAY_CLUSTER", None)
        os.environ[_RAY_CLUSTER_ENV] = "0"
        if self._old_const is not None:
            self._consts.ENABLE_RAY_CLUSTER = False

    def __exit__(self, *exc: Any) -> None:
        if self._old_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = self._old_env
        if self._old_const is not None:
            self._consts.ENABLE_RAY_CLUSTER = self._old_const


def _ray_node_address(ray: Any) -> str | None:
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # Ray API drift: unknown, not reported
        return None


def check_loopback_node(ray: Any) -> None:
    """Warn (once per process) when a private head did not get the loopback node address."""
    global _warned_ray_network
    node = _ray_node_address(ray)
    if node is None or is_loopback(node) or _warned_ray_network:
        return
    _warned_ray_network = True
    warnings.warn(
        f"RayExecutor started a local Ray head whose node address is {node!r}, not 127.0.0.1: "
        "this Ray version ignores the loopback setting, so Ray's servers (GCS, raylet, "
        "workers, agents) may listen on all network interfaces, protected only by Ray's token "
        "authentication. Use a firewall or a network namespace to keep the run off the "
        "network (see docs/ray.md).",
        RuntimeWarning,
        stacklevel=3,
    )
