"""Checks at the library's boundary: clear ``ValueError`` messages for bad input.

Everything here may synchronise with the device (it inspects values); it is called
only where a user hands data to the library, never inside a sampler step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "check_beta",
    "check_energy_output",
    "check_finite",
    "module_device_dtype",
    "as_beta_tensor",
    "check_beta_cast",
    "MAX_ITERATIONS",
    "MAX_BOOTSTRAP",
    "MAX_BINS",
    "MAX_DRAW_ELEMENTS",
    "check_count",
    "check_in_support",
    "check_float32_magnitude",
    "warn_sampling",
]

#: Largest number of sampler iterations per chain (``num_warmup + num_samples * thin``) that
#: :func:`gibbsebm.sample` accepts; larger requests are refused instead of running for years.
#: Override by assigning ``gibbsebm._validation.MAX_ITERATIONS``.
MAX_ITERATIONS = 10**9

#: Largest number of values the draws of one :func:`gibbsebm.sample` call may hold
#: (``num_chains * prod(batch) * prod(event) * (num_samples + 1)``, about 64 GB in float64).
MAX_DRAW_ELEMENTS = 8 * 10**9

#: Largest number of bootstrap replicates the calibration functions accept (overridable the
#: same way).
MAX_BOOTSTRAP = 10**6

#: Largest number of calibration bins (``n_bins=10**9`` would allocate gigabytes per row).
MAX_BINS = 10**5


def check_count(value: Any, name: str, *, lo: int = 1, hi: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) in ``[lo, hi]``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int,)):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}") from None
    if value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ValueError(
            f"{name} = {value} exceeds the limit {hi} (gibbsebm._validation refuses requests "
            "that would run for days; raise the limit there if you really mean it)"
        )
    return int(value)


def warn_sampling(message: str, stacklevel: int = 3) -> None:
    """Emit a warning about a sampling run (one place, so its category can change)."""
    import warnings

    warnings.warn(message, UserWarning, stacklevel=stacklevel)


def check_in_support(support: Any, value: torch.Tensor, what: str = "init") -> None:
    """Raise ``ValueError`` if a finite discrete ``support`` does not contain ``value``.

    ``value`` has the chains on its leading dimension; the message names the chains.
    """
    from .constraints import support_values

    vals = support_values(
        support, dtype=value.dtype if value.dtype.is_floating_point else None, device=value.device
    )
    if vals is None:
        return
    ok = (value[..., None] == vals.to(value.dtype)).any(-1)
    ok = ok.reshape(ok.shape[0], -1).all(-1) if ok.dim() else ok
    if not bool(ok.all()):
        bad = (~ok).nonzero().flatten().tolist()
        raise ValueError(
            f"{what} is outside the support {support} (values {vals.tolist()}) for chains "
            f"{bad[:10]}{' ...' if len(bad) > 10 else ''}"
        )


def check_float32_magnitude(e: torch.Tensor, beta: Any = 1.0) -> None:
    """Warn when ``|beta * E| * eps`` exceeds 1 in a 32-bit (or narrower) dtype.

    At such magnitudes the difference of two energies (what every acceptance test uses) has
    no correct digits.
    """
    if not e.dtype.is_floating_point or e.dtype == torch.float64:
        return
    eps = torch.finfo(e.dtype).eps
    b = beta.detach().abs().max().item() if isinstance(beta, torch.Tensor) else abs(float(beta))
    fin = e.detach()[torch.isfinite(e.detach())]
    if fin.numel() == 0:
        return
    mag = fin.abs().max().item() * b
    if mag * eps > 1.0:
        warn_sampling(
            f"|beta * energy| reaches {mag:.3g} at the initial positions: in {e.dtype} "
            f"(eps {eps:.2g}) differences of such values have no correct digits, so acceptance "
            "tests are meaningless; use float64 (energy.double(), init in float64) or subtract "
            "a constant from the energy",
            stacklevel=4,
        )


def check_beta(beta: Any, *, allow_inf: bool = False, name: str = "beta") -> None:
    """Raise ``ValueError`` unless every entry of ``beta`` is a positive number.

    Parameters
    ----------
    beta : float or Tensor
        Inverse temperature(s).
    allow_inf : bool
        Accept ``math.inf`` (the zero-temperature limit) where it has a meaning.
    name : str
        Name used in the error message.
    """
    if isinstance(beta, torch.Tensor):
        if not (beta.dtype.is_floating_point or beta.dtype in (torch.int32, torch.int64)):
            raise ValueError(
                f"{name} must be a real number or a real tensor, got dtype {beta.dtype}"
            )
        b = beta.detach()
        if torch.isnan(b).any():
            raise ValueError(f"{name} must be a positive number, got NaN")
        if (b <= 0).any():
            raise ValueError(
                f"{name} must be > 0 (an inverse temperature), got min {b.min().item()}"
            )
        if not allow_inf and torch.isinf(b).any():
            raise ValueError(f"{name} must be finite here, got inf")
        return
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {beta!r}") from None
    if math.isnan(b):
        raise ValueError(f"{name} must be a positive number, got NaN")
    if b <= 0:
        raise ValueError(f"{name} must be > 0 (an inverse temperature), got {b}")
    if math.isinf(b) and not allow_inf:
        raise ValueError(f"{name} must be finite here, got inf")


def as_beta_tensor(
    beta: Any, *, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """Validate ``beta`` and return it as a floating tensor."""
    check_beta(beta)
    if isinstance(beta, torch.Tensor):
        t = beta.detach()
        if not t.dtype.is_floating_point:
            t = t.to(dtype or torch.get_default_dtype())
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        if device is not None and t.device != torch.device(device):
            t = t.to(device)
    else:
        t = torch.tensor(float(beta), dtype=dtype or torch.get_default_dtype(), device=device)
    return check_beta_cast(t, beta)


def check_beta_cast(t: torch.Tensor, beta: Any) -> torch.Tensor:
    """Return ``t`` (``beta`` cast to its working dtype) unless the cast made it 0 or inf.

    :func:`check_beta` runs in the caller's precision; 1e-300 becomes 0 and 1e39 becomes
    inf in float32, so the check is repeated in the dtype beta is used in.
    """
    if t.device.type != "meta" and (not bool(torch.isfinite(t).all()) or bool((t <= 0).any())):
        raise ValueError(
            f"beta {beta!r} is not a positive finite number in {t.dtype} (it under- or "
            f"overflows there: representable range {torch.finfo(t.dtype).tiny:.3g} to "
            f"{torch.finfo(t.dtype).max:.3g}); use float64 or rescale the energy"
        )
    return t


def check_finite(t: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if ``t`` has NaN or infinite entries."""
    bad = ~torch.isfinite(t)
    if bad.any():
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(
            f"{what} has non-finite values: {n_nan} NaN and {n_inf} inf out of {t.numel()}"
        )


def check_energy_output(e: Any, n: int, *, finite: bool = False, name: str = "energy") -> None:
    """Check that an energy returned a floating tensor of shape ``(n,)``.

    Parameters
    ----------
    e : object
        What the energy returned.
    n : int
        Number of inputs passed in the batch.
    finite : bool
        Also require every value to be finite.
    """
    if not isinstance(e, torch.Tensor):
        raise ValueError(
            f"{name} must return a torch.Tensor of shape ({n},), got {type(e).__name__}"
        )
    if not e.dtype.is_floating_point:
        raise ValueError(f"{name} must return a floating-point tensor, got dtype {e.dtype}")
    if tuple(e.shape) != (n,):
        raise ValueError(
            f"{name} must return one value per input, shape ({n},), got shape {tuple(e.shape)}; "
            "energies take y shaped (N, *event_shape) and return (N,)"
        )
    if finite:
        check_finite(e, f"{name} output")


def module_device_dtype(fn: Callable) -> tuple[torch.device | None, torch.dtype | None]:
    """Device and dtype of the first parameter or buffer of a module (``None`` otherwise)."""
    if isinstance(fn, torch.nn.Module):
        for t in fn.parameters():
            return t.device, t.dtype
        for t in fn.buffers():
            if t.dtype.is_floating_point:
                return t.device, t.dtype
    return None, None


def check_same_device(fn: Callable, t: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` if a module's parameters and ``t`` live on different devices/dtypes."""
    device, dtype = module_device_dtype(fn)
    if device is not None and device != t.device:
        raise ValueError(
            f"{what} is on device {t.device} but the energy's parameters are on {device}; "
            "move one of them (tensors must follow the energy's device)"
        )
    if dtype is not None and t.dtype.is_floating_point and dtype != t.dtype:
        raise ValueError(
            f"{what} has dtype {t.dtype} but the energy's parameters have dtype {dtype}; "
            "cast one of them"
        )
