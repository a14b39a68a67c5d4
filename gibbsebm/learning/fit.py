"""``fit``: train an energy by contrastive divergence, score matching or NCE, with monitors.

One loop for every method: shuffle the data with the run's generator, compute the method's
loss on each mini-batch (``gibbsebm.learning.losses``), step the optimizer, and after
each epoch run the monitors and append a row to ``history``. Everything (the generator, the
replay buffer, NCE's ``log_z``) lives on the energy's device and dtype; the data must already
be there. A checkpoint holds plain data (tensors, numbers, strings, lists, dicts: loadable
with ``torch.load(weights_only=True)``) and is written atomically after every epoch, so a run
that resumes from it continues exactly where the interrupted one stood: same parameters,
optimizer state, replay buffer, generator state, monitor state and history.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..constraints import support_values
from ..runtime.plan import resolve_seed
from .buffer import ReplayBuffer
from .losses import GaussianNoise, cd_loss, dsm_loss, energy_of, nce_loss, ssm_loss
from .monitors import MonitorContext
from .negatives import DISCRETE_SAMPLERS, draw_negatives

__all__ = ["fit", "FitResult", "NonFiniteLossError", "trainable", "METHODS"]

#: ``method=`` names of ``fit``.
METHODS = ("pcd", "cd", "dsm", "ssm", "nce")
_CHECKPOINT_VERSION = 1
# monitors' per-epoch seeds: run seed + this prime times the epoch
_MONITOR_SEED_STRIDE = 1_000_003


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; ``epoch`` and ``batch`` say where.

    The energy holds the parameters of the last completed epoch (restored), and the
    checkpoint, if any, is the one written after that epoch.
    """

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


@dataclass
class FitResult:
    """Output of ``fit``.

    Attributes
    ----------
    energy : nn.Module
        The trained energy (the same object that was passed in).
    history : list of dict
        One row per epoch: ``epoch``, ``loss`` and ``loss_stderr`` (mean over the epoch's
        mini-batches and its standard error), ``acceptance`` and ``effective_beta`` of the
        negative sampler (CD methods), ``time_s``, and every monitor's numbers.
    method : str
    seed : int
        The run's seed (pass it again to resume from a checkpoint).
    log_z : float or None
        NCE's learned \\(\\log Z\\).
    buffer : ReplayBuffer or None
        PCD's replay buffer.
    optimizer : torch.optim.Optimizer
    start_epoch : int
        Epochs already done when this call started (from a checkpoint).
    """

    energy: Any
    history: list[dict]
    method: str
    seed: int
    log_z: float | None = None
    buffer: ReplayBuffer | None = None
    optimizer: Any = None
    start_epoch: int = 0
    noise: Any = None
    info: dict = field(default_factory=dict)

    def curve(self, key: str) -> list[float]:
        """The values of ``key`` over the epochs (``nan`` where absent)."""
        return [float(row.get(key, float("nan"))) for row in self.history]


def trainable(module: torch.nn.Module, names: Sequence[str] | None = None) -> torch.nn.Module:
    """Turn floating buffers of ``module`` (e.g. an RBM's ``W``, ``b``, ``c``) into parameters.

    The built-in energies keep their numbers in buffers; ``fit`` trains parameters.
    Works in place and returns ``module``.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.energies import RBM
    >>> rbm = trainable(RBM.random(4, 2, generator=torch.Generator().manual_seed(0)))
    >>> sorted(n for n, _ in rbm.named_parameters())
    ['W', 'b', 'c']
    """
    for mod in module.modules():
        for name, buf in list(mod.named_buffers(recurse=False)):
            if buf is None or not buf.dtype.is_floating_point:
                continue
            if names is not None and name not in names:
                continue
            del mod._buffers[name]
            mod.register_parameter(name, torch.nn.Parameter(buf.detach().clone()))
    return module


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_inputs(
    energy: Any, data: Any, condition: Any, method: str
) -> tuple[torch.device, torch.dtype, list[torch.nn.Parameter]]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    if not isinstance(energy, torch.nn.Module):
        raise ValueError(
            f"energy must be a torch.nn.Module with parameters, got {type(energy).__name__}"
        )
    params = [p for p in energy.parameters() if p.requires_grad]
    if not params:
        hint = ""
        if any(b.dtype.is_floating_point for b in energy.buffers()):
            hint = (
                "; its numbers are buffers (as in the built-in energies): make them "
                "parameters with gibbsebm.learning.trainable(energy)"
            )
        raise ValueError(f"the energy {type(energy).__name__} has no trainable parameters{hint}")
    device, dtype = params[0].device, params[0].dtype
    if not isinstance(data, torch.Tensor):
        raise ValueError(
            f"data must be a tensor shaped (N, *event_shape), got {type(data).__name__}"
        )
    if data.dim() < 2 or data.shape[0] < 2:
        raise ValueError(
            f"data must be shaped (N, *event_shape) with N >= 2, got shape {tuple(data.shape)} "
            "(a single event dimension still needs the batch dimension: data[:, None])"
        )
    if data.device != device:
        raise ValueError(
            f"data is on {data.device} but the energy's parameters are on {device}: "
            f"move one of them (data.to({str(device)!r}))"
        )
    if data.dtype != dtype:
        raise ValueError(
            f"data has dtype {data.dtype} but the energy's parameters have {dtype}: "
            f"convert it (data.to({dtype}))"
        )
    if not torch.isfinite(data).all():
        raise ValueError("data has NaN or infinite values")
    ev = getattr(energy, "event_shape", None)
    if ev is not None and len(ev) and tuple(ev) != tuple(data.shape[1:]):
        raise ValueError(
            f"data has event shape {tuple(data.shape[1:])} but the energy's event_shape is "
            f"{tuple(ev)}"
        )
    if condition is not None:
        if not isinstance(condition, torch.Tensor) or condition.shape[:1] != data.shape[:1]:
            raise ValueError(
                "condition must be a tensor with one row per data row, shaped (N, *x_shape)"
            )
        if condition.device != device:
            raise ValueError(f"condition is on {condition.device}, the energy on {device}")
        if method == "nce":
            raise ValueError(
                "method='nce' learns one log Z; a conditional energy has a log Z(x) per input"
            )
    probe = data[:2]
    try:
        with torch.no_grad():
            energy_of(energy, probe, None if condition is None else condition[:2])
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: say what failed and where
        raise ValueError(
            f"the energy could not be evaluated on data rows of shape {tuple(data.shape[1:])}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return device, dtype, params


def _default_sampler(energy: Any, discrete: bool) -> str:
    from ..energies.rbm import RBM

    if isinstance(energy, RBM):
        return "block_gibbs"
    return "gwg" if discrete else "ula"


def _default_init_fn(data: torch.Tensor, support: Any, discrete: bool) -> Callable:
    if discrete:
        vals = support_values(support, dtype=data.dtype, device=data.device)
        if vals is None:
            raise ValueError("a discrete support needs init_fn= (fresh chain starts)")

        def init_discrete(n: int, generator: torch.Generator | None) -> torch.Tensor:
            idx = torch.randint(
                len(vals), (n,) + tuple(data.shape[1:]), generator=generator, device=data.device
            )
            return vals[idx]

        return init_discrete
    mean = data.mean(0)
    std = data.std(0).clamp_min(1e-6)

    def init_gaussian(n: int, generator: torch.Generator | None) -> torch.Tensor:
        eps = torch.randn(
            (n,) + tuple(data.shape[1:]), generator=generator, dtype=data.dtype, device=data.device
        )
        return mean + std * eps

    return init_gaussian


def _draw_k(draw: Callable, generator: torch.Generator, start: torch.Tensor, k: int) -> Any:
    return draw(start, num_steps=k, generator=generator)


def _load_checkpoint(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read the checkpoint {path!r}: {exc}") from exc


def _save_checkpoint(path: str, state: dict) -> None:
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(
    energy: torch.nn.Module,
    data: torch.Tensor,
    method: str = "pcd",
    *,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    condition: torch.Tensor | None = None,
    support: Any = None,
    sampler: str | None = None,
    sampler_options: dict | None = None,
    step_params: dict | None = None,
    num_steps: int | None = None,
    buffer: ReplayBuffer | None = None,
    buffer_capacity: int | None = None,
    reinit_prob: float | None = None,
    init_fn: Callable[[int, torch.Generator | None], torch.Tensor] | None = None,
    l2_weight: float = 0.0,
    noise_std: float | None = None,
    num_projections: int = 1,
    noise: Any = None,
    noise_ratio: float = 1.0,
    log_z: float | None = None,
    scheduler: Callable[[Any], Any] | None = None,
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    monitors: Sequence[Any] = (),
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    seed: int | None = None,
) -> FitResult:
    """Train ``energy`` on ``data`` and measure what it learned after every epoch.

    Parameters
    ----------
    energy : torch.nn.Module
        ``energy(y) -> (N,)`` (or ``energy(x, y)`` with ``condition``), with trainable
        parameters (``trainable`` turns the built-in energies' buffers into parameters).
        Its parameters' device and dtype are the run's.
    data : Tensor
        Training examples ``(N, *event_shape)`` on the energy's device, in its dtype.
    method : {"pcd", "cd", "dsm", "ssm", "nce"}
        ``pcd``: contrastive divergence with negatives from a replay buffer of persistent
        chains; ``cd``: CD-k, chains started at the batch; ``dsm``: denoising score matching;
        ``ssm``: sliced score matching; ``nce``: noise-contrastive estimation with a learned
        ``log Z``.
    epochs : int
        Total epochs; a resumed run trains only the missing ones.
    batch_size : int
        Mini-batch size (the last batch of an epoch may be smaller).
    optimizer : torch.optim.Optimizer, optional
        Over the energy's parameters (default ``Adam(lr=lr)``). For NCE, ``log_z`` is added
        to it as a parameter group.
    lr : float
        Learning rate of the default optimizer.
    condition : Tensor, optional
        Inputs ``x`` ``(N, *x_shape)`` of a conditional energy, aligned with ``data``. PCD
        then keeps one persistent chain per training example.
    support : Constraint, optional
        Support of y (default: the energy's ``support``, else real).
    sampler : str, optional
        Kernel for CD/PCD negatives (``gibbsebm.samplers.registry.get_spec``): default
        ``block_gibbs`` for an RBM, ``gwg`` for other discrete y, ``ula`` otherwise.
    sampler_options : dict, optional
        Kernel options, e.g. ``{"step_size": 1.0, "noise_scale": 0.01}`` for SGLD-style ULA
        (the effective beta it implies is recorded in ``history``).
    step_params : dict, optional
        Overrides of the kernel's step parameters.
    num_steps : int, optional
        Kernel steps per update (default 1 for ``block_gibbs``/``gwg``/``metropolis``, else
        20).
    buffer : ReplayBuffer, optional
        PCD's buffer; default ``ReplayBuffer(buffer_capacity, reinit_prob, init_fn)``.
    buffer_capacity : int, optional
        Default: ``min(N, 10000)`` (at least ``batch_size``); ``N`` with a condition.
    reinit_prob : float, optional
        Default 0.05 for continuous y (Du & Mordatch 2019), 0 for discrete y (Tieleman 2008).
    init_fn : callable, optional
        Fresh chain starts ``init_fn(n, generator)``; default: independent Gaussians with the
        data's per-coordinate mean and standard deviation (continuous), uniform over the
        support values (discrete).
    l2_weight : float
        L2 penalty on the energies of CD/PCD (Du & Mordatch 2019).
    noise_std : float, optional
        DSM noise level (default: 0.1 times the data's mean coordinate standard deviation).
    num_projections : int
        SSM projections per example.
    noise : object, optional
        NCE noise with ``sample(n, generator)`` and ``log_prob(y)`` (default
        ``GaussianNoise.fit`` to the data).
    noise_ratio : float
        NCE noise draws per data point.
    log_z : float, optional
        NCE's initial \\(\\log Z\\) (default 0; pass ``FitResult.log_z`` to continue).
    scheduler : callable, optional
        ``scheduler(optimizer) -> torch.optim.lr_scheduler.LRScheduler``, stepped once per
        epoch (its state is checkpointed).
    extra_loss : callable, optional
        ``extra_loss(y_batch, indices) -> scalar`` added to the loss (e.g. the cross-entropy
        of a JEM classifier on the batch's labels, ``labels[indices]``).
    monitors : sequence
        Objects called after every epoch (``gibbsebm.learning.monitors``); a monitor
        with an ``every`` attribute runs every ``every`` epochs and after the last one.
    checkpoint : path, optional
        Written after every epoch; if it exists when ``fit`` starts, the run resumes from it
        (give the same ``seed``).
    progress : bool
        A tqdm bar over epochs.
    seed : int, optional
        Seed of the run's generator (``None``: fresh, kept in ``FitResult.seed``).

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        On data of the wrong shape, dtype or device, an energy without parameters, an
        ``init_fn`` that returns the wrong shape, or a checkpoint of another run.
    NonFiniteLossError
        (a ``ValueError``) when the loss becomes NaN/inf; the energy is restored to the last
        completed epoch and the checkpoint keeps that epoch.

    Examples
    --------
    >>> import torch
    >>> from gibbsebm.learning import fit
    >>> class Quadratic(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.mu = torch.nn.Parameter(torch.zeros(2))
    ...     def forward(self, y):
    ...         return 0.5 * ((y - self.mu) ** 2).sum(-1)
    >>> data = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) + 3.0
    >>> res = fit(Quadratic(), data, "dsm", epochs=30, batch_size=64, lr=0.1, progress=False,
    ...           seed=0)
    >>> bool(((res.energy.mu - 3.0).abs() < 0.3).all())
    True
    """
    t_start = time.perf_counter()
    device, dtype, params = _check_inputs(energy, data, condition, method)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    n = data.shape[0]
    event_shape = data.shape[1:]
    if support is None:
        support = getattr(energy, "support", None)
    discrete = bool(getattr(support, "is_discrete", False))
    ckpt_path = None if checkpoint is None else os.fspath(checkpoint)
    seed = resolve_seed(seed, ckpt_path)

    generator = torch.Generator(device=device)
    generator.manual_seed(seed)

    # ---- method-specific state
    log_z_init = log_z
    log_z = None
    if method == "nce":
        if discrete:
            raise ValueError("method='nce' with the default noise needs continuous y")
        log_z = torch.nn.Parameter(
            torch.tensor(float(log_z_init or 0.0), dtype=dtype, device=device)
        )
        if noise is None:
            noise = GaussianNoise.fit(data)
    if method in ("dsm", "ssm") and discrete:
        raise ValueError(f"method={method!r} needs continuous y (scores are gradients in y)")
    if method == "dsm":
        if noise_std is None:
            noise_std = 0.1 * float(data.reshape(n, -1).std(0).mean())
        if not (noise_std > 0 and math.isfinite(noise_std)):
            raise ValueError(f"noise_std must be a positive finite number, got {noise_std!r}")

    if optimizer is None:
        optimizer = torch.optim.Adam(params + ([log_z] if log_z is not None else []), lr=lr)
    elif log_z is not None:
        optimizer.add_param_group({"params": [log_z]})

    sched = None if scheduler is None else scheduler(optimizer)
    cd_like = method in ("cd", "pcd")
    if sampler is None:
        sampler = _default_sampler(energy, discrete)
    if num_steps is None:
        num_steps = 1 if sampler in DISCRETE_SAMPLERS else 20
    if init_fn is None and (method == "pcd" or monitors):
        init_fn = _default_init_fn(data, support, discrete)
    if method == "pcd" and buffer is None:
        cap = n if condition is not None else max(batch_size, min(n, 10000))
        buffer = ReplayBuffer(
            cap,
            (0.0 if discrete else 0.05) if reinit_prob is None else reinit_prob,
            init_fn,
            event_shape=event_shape,
        )
    elif buffer is not None and buffer.event_shape is None:
        buffer.event_shape = event_shape
    if buffer is not None and condition is not None and buffer.capacity != n:
        raise ValueError(
            f"with a condition, PCD keeps one chain per example: buffer capacity must be {n}"
        )

    draw = functools.partial(
        draw_negatives,
        energy,
        sampler=sampler,
        sampler_options=sampler_options,
        step_params=step_params,
        support=support,
    )

    # ---- resume
    history: list[dict] = []
    start_epoch = 0
    if ckpt_path is not None and os.path.exists(ckpt_path):
        ck = _load_checkpoint(ckpt_path)
        if ck.get("version") != _CHECKPOINT_VERSION or ck.get("method") != method:
            raise ValueError(
                f"checkpoint {ckpt_path!r} is of method {ck.get('method')!r}, this run is "
                f"{method!r}"
            )
        if ck.get("seed") != seed:
            raise ValueError(
                f"checkpoint {ckpt_path!r} was written by a run with seed {ck.get('seed')}, "
                f"this one has seed {seed}: pass seed={ck.get('seed')} to resume it"
            )
        energy.load_state_dict(ck["energy"])
        optimizer.load_state_dict(ck["optimizer"])
        generator.set_state(ck["generator"])
        if sched is not None and ck.get("scheduler") is not None:
            sched.load_state_dict(ck["scheduler"])
        if buffer is not None and ck.get("buffer") is not None:
            st = dict(ck["buffer"])
            if st["states"] is not None:
                st["states"] = st["states"].to(device)
            buffer.load_state_dict(st)
        if log_z is not None and ck.get("log_z") is not None:
            with torch.no_grad():
                log_z.copy_(ck["log_z"])
        for m in monitors:
            ms = (ck.get("monitors") or {}).get(getattr(m, "name", ""))
            if ms is not None and hasattr(m, "load_state_dict"):
                m.load_state_dict(ms)
        history = list(ck.get("history", []))
        start_epoch = int(ck["epoch"])

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=epochs,
            initial=min(start_epoch, epochs),
            desc=f"fit {method}",
            unit="epoch",
            leave=False,
        )

    def good_state() -> dict:
        return {k: v.detach().clone() for k, v in energy.state_dict().items()}

    last_good = good_state()
    for epoch in range(start_epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=generator, device=device)
        losses: list[float] = []
        acc_sum, eff_beta, nonfinite, nb = 0.0, float("nan"), 0, 0
        for b, s in enumerate(range(0, n, batch_size)):
            idx = perm[s : s + batch_size]
            y = data[idx]
            x = None if condition is None else condition[idx]
            if cd_like:
                if method == "cd":
                    start, slots = y, None
                else:
                    start, slots = buffer.sample(
                        y.shape[0], generator, indices=idx if condition is not None else None
                    )
                neg = draw(start, num_steps=num_steps, generator=generator, condition=x)
                if slots is not None:
                    buffer.update(slots, neg.samples)
                loss = cd_loss(energy, y, neg.samples, condition=x, l2_weight=l2_weight)
                acc_sum += neg.acceptance
                eff_beta = neg.effective_beta
                nonfinite += neg.nonfinite
            elif method == "dsm":
                loss = dsm_loss(energy, y, noise_std, generator, condition=x)
            elif method == "ssm":
                loss = ssm_loss(energy, y, generator, condition=x, num_projections=num_projections)
            else:
                loss = nce_loss(energy, y, log_z, noise, generator, noise_ratio=noise_ratio)
            if extra_loss is not None:
                loss = loss + extra_loss(y, idx)
            value = float(loss.detach())
            if not math.isfinite(value):
                energy.load_state_dict(last_good)
                where = (
                    f"; the checkpoint {ckpt_path!r} keeps epoch {epoch - 1}" if ckpt_path else ""
                )
                if bar is not None:
                    bar.close()
                raise NonFiniteLossError(
                    f"the {method} loss became {value} at epoch {epoch} (batch {b}); the energy "
                    f"was restored to its parameters after epoch {epoch - 1}{where}. Lower the "
                    "learning rate or the sampler's step size, or add l2_weight",
                    epoch,
                    b,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(value)
            nb += 1
        if sched is not None:
            sched.step()
        lt = torch.tensor(losses, dtype=torch.float64)
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(lt.mean()),
            "loss_stderr": float(lt.std() / math.sqrt(len(losses)))
            if len(losses) > 1
            else float("nan"),
        }
        if cd_like:
            row.update(acceptance=acc_sum / nb, effective_beta=eff_beta, nonfinite=nonfinite)
        if log_z is not None:
            row["log_z"] = float(log_z.detach())
        if monitors:
            mseed = (seed + _MONITOR_SEED_STRIDE * epoch) % (2**63)
            mgen = torch.Generator(device=device)
            mgen.manual_seed(mseed)
            ctx = MonitorContext(
                energy=energy,
                epoch=epoch,
                seed=mseed,
                generator=mgen,
                init_fn=init_fn,
                draw=functools.partial(_draw_k, draw, mgen),
                event_shape=event_shape,
            )
            for m in monitors:
                every = int(getattr(m, "every", 1) or 1)
                if epoch % every == 0 or epoch == epochs:
                    row.update({k: float(v) for k, v in m(ctx).items()})
        row["time_s"] = time.perf_counter() - t0
        history.append(row)
        last_good = good_state()
        if ckpt_path is not None:
            _save_checkpoint(
                ckpt_path,
                {
                    "version": _CHECKPOINT_VERSION,
                    "method": method,
                    "seed": seed,
                    "epoch": epoch,
                    "energy": last_good,
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "scheduler": None if sched is None else sched.state_dict(),
                    "buffer": None if buffer is None else buffer.state_dict(),
                    "log_z": None if log_z is None else log_z.detach().clone(),
                    "monitors": {
                        getattr(m, "name", str(i)): m.state_dict()
                        for i, m in enumerate(monitors)
                        if hasattr(m, "state_dict")
                    },
                    "history": history,
                },
            )
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.4g}")
            bar.update(1)
    if bar is not None:
        bar.close()
    return FitResult(
        energy=energy,
        history=history,
        method=method,
        seed=seed,
        log_z=None if log_z is None else float(log_z.detach()),
        buffer=buffer,
        optimizer=optimizer,
        start_epoch=start_epoch,
        noise=noise,
        info={
            "sampler": sampler if cd_like else None,
            "num_steps": num_steps if cd_like else None,
            "noise_std": noise_std,
            "wall_time_s": time.perf_counter() - t_start,
        },
    )
