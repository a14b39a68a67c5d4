"""Replay buffer of persistent negative chains (Du & Mordatch 2019; Grathwohl et al. 2020).

Persistent contrastive divergence (Tieleman 2008) keeps the negative chains alive from one
parameter update to the next. A replay buffer generalises this: it holds ``capacity`` chain
states; each update draws starts from it, and with probability ``reinit_prob`` a start is a
fresh draw from ``init_fn`` instead (the restarts keep the buffer from collapsing onto a few
modes). The chains moved by the sampler are written back where they came from.

References
----------
.. [1] T. Tieleman, "Training restricted Boltzmann machines using approximations to the
   likelihood gradient", ICML 2008.
.. [2] Y. Du and I. Mordatch, "Implicit generation and modeling with energy-based models",
   NeurIPS 2019 (reinitialisation probability 0.05).
.. [3] W. Grathwohl et al., "Your classifier is secretly an energy based model and you should
   treat it like one", ICLR 2020 (buffer of 10,000 with ``reinit_prob`` 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """A fixed-size store of chain states with random restarts.

    Parameters
    ----------
    capacity : int
        Number of stored chains.
    reinit_prob : float
        Probability in [0, 1] that a drawn start is replaced by a fresh ``init_fn`` draw.
    init_fn : callable
        ``init_fn(n, generator) -> Tensor`` shaped ``(n, *event_shape)``: fresh chain starts.
        Its dtype and device are the buffer's.
    event_shape : tuple of int, optional
        Expected shape of one state; checked against every ``init_fn`` output (default: the
        shape of the first output).

    Raises
    ------
    ValueError
        On a non-positive capacity, a probability outside [0, 1], or an ``init_fn`` whose
        output is not a floating tensor shaped ``(n, *event_shape)``.

    Examples
    --------
    >>> import torch
    >>> init = lambda n, g: torch.rand(n, 2, generator=g)
    >>> buf = ReplayBuffer(100, 0.05, init)
    >>> g = torch.Generator().manual_seed(0)
    >>> starts, idx = buf.sample(8, g)
    >>> buf.update(idx, starts + 1.0)
    >>> starts.shape, len(buf)
    (torch.Size([8, 2]), 100)
    """

    def __init__(
        self,
        capacity: int,
        reinit_prob: float,
        init_fn: Callable[[int, torch.Generator | None], torch.Tensor],
        *,
        event_shape: tuple[int, ...] | torch.Size | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if not (isinstance(reinit_prob, (int, float)) and 0.0 <= reinit_prob <= 1.0):
            raise ValueError(f"reinit_prob must be a number in [0, 1], got {reinit_prob!r}")
        if not callable(init_fn):
            raise ValueError("init_fn must be callable as init_fn(n, generator) -> (n, *event)")
        self.capacity = capacity
        self.reinit_prob = float(reinit_prob)
        self.init_fn = init_fn
        self.event_shape = None if event_shape is None else torch.Size(event_shape)
        self.states: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.states is None else self.states.shape[0]

    def _fresh(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        out = self.init_fn(n, generator)
        if not isinstance(out, torch.Tensor) or not out.dtype.is_floating_point:
            raise ValueError(
                f"init_fn({n}, generator) must return a floating tensor shaped (n, *event_shape), "
                f"got {type(out).__name__}"
                + (f" of dtype {out.dtype}" if isinstance(out, torch.Tensor) else "")
            )
        if out.dim() < 1 or out.shape[0] != n:
            raise ValueError(
                f"init_fn({n}, generator) returned shape {tuple(out.shape)}; expected "
                f"({n}, *event_shape)"
            )
        if self.event_shape is None:
            self.event_shape = out.shape[1:]
        elif out.shape[1:] != self.event_shape:
            raise ValueError(
                f"init_fn({n}, generator) returned shape {tuple(out.shape)}; expected "
                f"({n}, {', '.join(map(str, self.event_shape))}) (the data's event shape)"
            )
        return out.detach()

    def _ensure(self, generator: torch.Generator | None) -> torch.Tensor:
        if self.states is None:
            self.states = self._fresh(self.capacity, generator).clone()
        return self.states

    def sample(
        self,
        n: int,
        generator: torch.Generator | None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` chain starts and their slots.

        Slots are drawn without replacement (``n <= capacity``) unless ``indices`` names
        them (one persistent chain per training example, for conditional energies). Each
        start is then replaced, with probability ``reinit_prob``, by a fresh ``init_fn`` draw.

        Returns
        -------
        (Tensor, Tensor)
            Starts ``(n, *event_shape)`` and slot indices ``(n,)`` (for ``update``).
        """
        states = self._ensure(generator)
        dev = states.device
        if indices is None:
            if n > self.capacity:
                raise ValueError(f"cannot draw {n} chains from a buffer of {self.capacity}")
            idx = torch.randperm(self.capacity, generator=generator, device=dev)[:n]
        else:
            idx = indices.to(dev)
        starts = states[idx]
        if self.reinit_prob > 0:
            fresh_mask = (
                torch.rand(idx.shape[0], generator=generator, device=dev) < self.reinit_prob
            )
            fresh = self._fresh(idx.shape[0], generator).to(starts.dtype)
            m = fresh_mask.reshape((-1,) + (1,) * (starts.dim() - 1))
            starts = torch.where(m, fresh, starts)
        return starts, idx

    def update(self, indices: torch.Tensor, states: torch.Tensor) -> None:
        """Write the moved chains back to their slots."""
        buf = self._ensure(None) if self.states is None else self.states
        if states.shape[1:] != buf.shape[1:]:
            raise ValueError(
                f"states of shape {tuple(states.shape)} do not fit a buffer of {tuple(buf.shape)}"
            )
        buf[indices.to(buf.device)] = states.detach().to(buf.dtype)

    def state_dict(self) -> dict:
        """Plain data (tensors, numbers) for ``torch.save``/``torch.load(weights_only=True)``."""
        return {
            "capacity": self.capacity,
            "reinit_prob": self.reinit_prob,
            "states": None if self.states is None else self.states.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict`` output (capacity must match)."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"checkpoint buffer has capacity {state['capacity']}, this one {self.capacity}"
            )
        if not math.isclose(float(state["reinit_prob"]), self.reinit_prob):
            raise ValueError(
                f"checkpoint buffer has reinit_prob {state['reinit_prob']}, "
                f"this one {self.reinit_prob}"
            )
        s = state["states"]
        self.states = None if s is None else s.clone()
        if s is not None:
            self.event_shape = s.shape[1:]

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(capacity={self.capacity}, reinit_prob={self.reinit_prob}, "
            f"filled={self.states is not None})"
        )
