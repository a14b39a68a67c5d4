"""The driver's step loop: warmup, recording, progress and checkpoints (driver layer)."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from ._json import to_jsonable
from .runtime.files import atomic_write_bytes
from .samplers.base import SamplerSpec

__all__ = ["_run_flat"]

_CHECKPOINT_VERSION = 1


# ---------------------------------------------------------------------------------- progress
class _Progress:
    """tqdm bar over warmup + sampling iterations: draws/s (all chains) and mean acceptance.

    ``progress=True`` shows it when stderr is a terminal, ``"always"`` forces it, ``False``
    hides it. The acceptance is read from the device only when the bar refreshes.
    """

    def __init__(self, progress: bool | str, total: int, desc: str, num_chains: int = 1) -> None:
        self.bar = None
        if progress is False or total == 0:
            return
        if progress is True:
            if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
                return
        elif progress != "always":
            raise ValueError(f"progress must be True, False or 'always', got {progress!r}")
        from tqdm import tqdm

        # one iteration moves every chain: count draws (all chains) so the rate is draws/s
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="draw",
            unit_scale=num_chains if num_chains > 1 else False,
            dynamic_ncols=True,
            leave=True,
        )
        self.acc_sum = None
        self.count = 0
        self.every = max(1, total // 200)

    def update(self, phase: str, info: Any) -> None:
        if self.bar is None:
            return
        acc = getattr(info, "acceptance_prob", None)
        if acc is not None:
            m = acc.detach().double().mean()
            self.acc_sum = m if self.acc_sum is None else self.acc_sum + m
            self.count += 1
        self.bar.update(1)
        if self.bar.n % self.every == 0 and self.acc_sum is not None:
            self.bar.set_postfix_str(f"{phase} acc={float(self.acc_sum) / self.count:.3f}")
            self.acc_sum, self.count = None, 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------- driver core
def _as_tensor_field(value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.full((like.shape[0],), value, device=like.device)


def _fingerprint(**kw: Any) -> str:
    return json.dumps(to_jsonable(kw, nonfinite="keep", max_tensor_numel=16), sort_keys=True)


def _atomic_save(obj: Any, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(buf.getvalue(), path)


def _run_flat(
    spec: SamplerSpec,
    logdensity_fn: Callable,
    position: torch.Tensor,
    generator: torch.Generator | None,
    *,
    num_samples: int,
    num_warmup: int,
    thin: int,
    progress: bool | str,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int,
    fingerprint: str,
) -> dict:
    """Run on flattened chains; returns flat arrays ``(C, D, ...)``."""
    total_iters = num_warmup + num_samples * thin
    bar = _Progress(progress, total_iters, spec.name, position.shape[0])
    try:
        if spec.run is not None:
            if checkpoint is not None:
                raise ValueError(
                    f"checkpoint= is not supported for method={spec.name!r}, which runs its "
                    "own loop"
                )
            out = spec.run(
                generator,
                position,
                logdensity_fn,
                num_samples,
                num_warmup,
                thin,
                lambda i, st, info: bar.update("sample" if i >= num_warmup else "warmup", info),
            )
            out.setdefault("extra", {})
            return out

        params = dict(spec.default_params)
        ckpt = None
        if checkpoint is not None and os.path.exists(checkpoint):
            ckpt = torch.load(checkpoint, map_location=position.device, weights_only=False)
            if not isinstance(ckpt, dict) or ckpt.get("version") != _CHECKPOINT_VERSION:
                raise ValueError(f"{checkpoint} is not a gibbsebm checkpoint")
            if ckpt["fingerprint"] != fingerprint:
                raise ValueError(
                    f"checkpoint {checkpoint} belongs to a different run (method, options, "
                    "chains, draws or seed differ); delete it or pass another path"
                )
        if ckpt is None:
            state = spec.init(position, logdensity_fn)
            adapt_info: dict = {}
            if spec.adapt is not None:
                state, params, adapt_info = spec.adapt(
                    generator,
                    state,
                    logdensity_fn,
                    num_warmup,
                    params,
                    lambda i, st, info: bar.update("warmup", info),
                )
            else:
                for _ in range(num_warmup):
                    state, info = spec.step(generator, state, logdensity_fn, **params)
                    bar.update("warmup", info)
            start = 0
            buffers: dict[str, torch.Tensor] | None = None
            extra_buf: dict[str, torch.Tensor] | None = None
            draws = torch.empty(
                (position.shape[0], num_samples) + tuple(position.shape[1:]),
                dtype=position.dtype,
                device=position.device,
            )
            logd = None
        else:
            state, params, adapt_info = ckpt["state"], ckpt["params"], ckpt["adapt_info"]
            generator.set_state(ckpt["generator_state"])
            start = ckpt["k"]
            draws, buffers, extra_buf, logd = (
                ckpt["draws"],
                ckpt["stats"],
                ckpt["extra"],
                ckpt["logdensity"],
            )
            if bar.bar is not None:
                bar.bar.update(num_warmup + start * thin)

        def save(k: int) -> None:
            if checkpoint is None:
                return
            _atomic_save(
                {
                    "version": _CHECKPOINT_VERSION,
                    "fingerprint": fingerprint,
                    "k": k,
                    "state": state,
                    "params": params,
                    "adapt_info": adapt_info,
                    "generator_state": generator.get_state(),
                    "draws": draws,
                    "stats": buffers,
                    "extra": extra_buf,
                    "logdensity": logd,
                },
                checkpoint,
            )

        if ckpt is None:
            save(0)
        c = position.shape[0]
        for k in range(start, num_samples):
            for _ in range(thin):
                state, info = spec.step(generator, state, logdensity_fn, **params)
                bar.update("sample", info)
            if buffers is None:
                buffers = {}
                for name, value in info._asdict().items():
                    v = _as_tensor_field(value, state.position)
                    buffers[name] = torch.empty(
                        (c, num_samples) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
                    )
                logd = torch.empty(
                    (c, num_samples), dtype=state.logdensity.dtype, device=position.device
                )
                if spec.extra_draws is not None:
                    extra_buf = {}
                    for name, v in spec.extra_draws(state).items():
                        extra_buf[name] = torch.empty(
                            (c, num_samples) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
                        )
            draws[:, k] = state.position
            logd[:, k] = state.logdensity
            for name, value in info._asdict().items():
                buffers[name][:, k] = _as_tensor_field(value, state.position)
            if extra_buf is not None:
                for name, v in spec.extra_draws(state).items():
                    extra_buf[name][:, k] = v
            if checkpoint is not None and (k + 1) % checkpoint_every == 0 and k + 1 < num_samples:
                save(k + 1)
        if checkpoint is not None:
            save(num_samples)
        return {
            "draws": draws,
            "stats": buffers or {},
            "extra": extra_buf or {},
            "logdensity": logd
            if logd is not None
            else torch.empty((c, 0), dtype=position.dtype, device=position.device),
            "params": params,
            "adapt_info": adapt_info,
        }
    finally:
        bar.close()
