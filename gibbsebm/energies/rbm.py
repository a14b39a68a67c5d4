"""Restricted Boltzmann machine: binary visible and hidden units, hidden units summed out.

.. math::

    E(v, h) = -v^\\top W h - b^\\top v - c^\\top h, \\qquad v \\in \\{0,1\\}^{n_v},\\;
    h \\in \\{0,1\\}^{n_h}.

The energy of v is its free energy with h summed out at the same inverse temperature,

.. math::

    F_\\beta(v) = -\\frac1\\beta \\log \\sum_h e^{-\\beta E(v,h)}
               = -b^\\top v - \\frac1\\beta \\sum_j \\operatorname{softplus}(\\beta (c_j + (v^\\top W)_j)),

so that :class:`gibbsebm.Gibbs` of an :class:`RBM` at beta is the visible marginal of the
tempered joint :math:`e^{-\\beta E(v, h)}`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from .._validation import as_beta_tensor
from .base import EnergyModel

__all__ = ["RBM", "train_rbm_cd", "MAX_ENUMERATED_UNITS"]

#: Largest smaller-layer size for which :meth:`RBM.exact_log_partition` enumerates
#: (2^24 ~ 1.7e7 states, evaluated in chunks).
MAX_ENUMERATED_UNITS = 24
# elements of the largest float64 intermediate (chunk x betas x units) per enumeration chunk
_CHUNK_ELEMENTS = 2**22


def _binary_states(start: int, stop: int, n: int, device: torch.device) -> torch.Tensor:
    """Binary vectors of the integers ``start .. stop-1`` (bit i -> unit i), float64."""
    idx = torch.arange(start, stop, device=device)
    return ((idx[:, None] >> torch.arange(n, device=device)) & 1).to(torch.float64)


def _as_beta_column(beta: Any, ref: torch.Tensor) -> torch.Tensor | float:
    """Beta as a float or an ``(N, 1)`` tensor in ``ref``'s dtype (no value checks)."""
    if isinstance(beta, torch.Tensor):
        beta = beta.to(dtype=ref.dtype)
        return beta.reshape(-1, 1) if beta.dim() == 1 else beta
    return float(beta)


class RBM(EnergyModel):
    """Binary restricted Boltzmann machine; the energy of v is its free energy.

    .. math::

        E(v, h) = -v^\\top W h - b^\\top v - c^\\top h, \\qquad
        F(v) = -b^\\top v - \\sum_j \\operatorname{softplus}(c_j + (v^\\top W)_j),

    and at inverse temperature beta the marginal energy is
    :math:`F_\\beta(v) = -b^\\top v - \\beta^{-1} \\sum_j
    \\operatorname{softplus}(\\beta (c_j + (v^\\top W)_j))` (:meth:`tempered_energy`). The
    exact :math:`\\log Z(\\beta) = \\log \\sum_{v,h} e^{-\\beta E(v,h)}` sums the larger layer
    out analytically and enumerates the smaller one (at most :data:`MAX_ENUMERATED_UNITS`
    units), in chunks with float64 log-sum-exp accumulation.

    Parameters
    ----------
    W : Tensor
        Weights, shape ``(num_visible, num_hidden)``; its dtype and device are the energy's.
    b : Tensor
        Visible biases, shape ``(num_visible,)``.
    c : Tensor
        Hidden biases, shape ``(num_hidden,)``.

    References
    ----------
    P. Smolensky (1986); G. E. Hinton, "Training products of experts by minimizing
    contrastive divergence", Neural Computation 14 (2002).

    Examples
    --------
    >>> import torch
    >>> rbm = RBM.random(6, 3, scale=0.5, generator=torch.Generator().manual_seed(0))
    >>> rbm(torch.zeros(2, 6)).shape
    torch.Size([2])
    >>> from gibbsebm import Gibbs
    >>> d = Gibbs(rbm, beta=0.5)
    >>> round(float(d.log_prob(d.enumerate_support()).exp().sum()), 5)
    1.0
    """

    support = constraints.boolean

    def __init__(self, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        W = torch.as_tensor(W)
        if not W.dtype.is_floating_point:
            W = W.to(torch.get_default_dtype())
        if W.dim() != 2:
            raise ValueError(f"W must have shape (num_visible, num_hidden), got {tuple(W.shape)}")
        nv, nh = W.shape
        if nv < 1 or nh < 1:
            raise ValueError(
                f"W must have at least one visible and one hidden unit, got {tuple(W.shape)}"
            )
        b = torch.as_tensor(b, dtype=W.dtype, device=W.device)
        c = torch.as_tensor(c, dtype=W.dtype, device=W.device)
        if tuple(b.shape) != (nv,):
            raise ValueError(
                f"b must have shape ({nv},) (one bias per visible unit), got {tuple(b.shape)}"
            )
        if tuple(c.shape) != (nh,):
            raise ValueError(
                f"c must have shape ({nh},) (one bias per hidden unit), got {tuple(c.shape)}"
            )
        for name, t in (("W", W), ("b", b), ("c", c)):
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} has non-finite values")
        self.register_buffer("W", W.detach().clone())
        self.register_buffer("b", b.detach().clone())
        self.register_buffer("c", c.detach().clone())
        self.event_shape = torch.Size([nv])

    @classmethod
    def random(
        cls,
        num_visible: int,
        num_hidden: int,
        scale: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> RBM:
        """An RBM with i.i.d. :math:`\\mathcal N(0, \\text{scale}^2)` weights and biases.

        Examples
        --------
        >>> RBM.random(4, 2, scale=0.1, generator=torch.Generator().manual_seed(1)).W.shape
        torch.Size([4, 2])
        """
        if num_visible < 1 or num_hidden < 1:
            raise ValueError(
                f"num_visible and num_hidden must be >= 1, got {num_visible}, {num_hidden}"
            )
        if not (scale >= 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a finite number >= 0, got {scale}")
        kw = dict(dtype=dtype or torch.get_default_dtype(), device=device, generator=generator)
        W = scale * torch.randn(num_visible, num_hidden, **kw)
        b = scale * torch.randn(num_visible, **kw)
        c = scale * torch.randn(num_hidden, **kw)
        return cls(W, b, c)

    @property
    def num_visible(self) -> int:
        return self.W.shape[0]

    @property
    def num_hidden(self) -> int:
        return self.W.shape[1]

    @property
    def has_exact_log_partition(self) -> bool:
        """True when the smaller layer has at most :data:`MAX_ENUMERATED_UNITS` units."""
        return min(self.num_visible, self.num_hidden) <= MAX_ENUMERATED_UNITS

    def extra_repr(self) -> str:
        return f"num_visible={self.num_visible}, num_hidden={self.num_hidden}"

    # ------------------------------------------------------------------ energies
    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Free energy at beta = 1 of ``v`` shaped ``(N, num_visible)``; returns ``(N,)``."""
        v = v.to(self.W.dtype)
        return -(v @ self.b) - F.softplus(self.c + v @ self.W).sum(-1)

    def tempered_energy(self, v: torch.Tensor, beta: Any) -> torch.Tensor:
        """Free energy :math:`F_\\beta(v)` of the tempered joint; ``beta`` scalar or ``(N,)``.

        Examples
        --------
        >>> rbm = RBM.random(3, 2, generator=torch.Generator().manual_seed(0))
        >>> v = torch.ones(1, 3)
        >>> bool(torch.allclose(rbm.tempered_energy(v, 1.0), rbm(v)))
        True
        """
        v = v.to(self.W.dtype)
        bt = _as_beta_column(beta, self.W)
        soft = F.softplus(bt * (self.c + v @ self.W)) / bt
        return -(v @ self.b) - soft.sum(-1)

    def joint_energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h) = -v^\\top W h - b^\\top v - c^\\top h` for ``(N, n_v)``, ``(N, n_h)``."""
        v = v.to(self.W.dtype)
        h = h.to(self.W.dtype)
        return -((v @ self.W) * h).sum(-1) - v @ self.b - h @ self.c

    # ------------------------------------------------------------------ block Gibbs conditionals
    def hidden_probs(self, v: torch.Tensor, beta: Any = 1.0) -> torch.Tensor:
        """:math:`p_\\beta(h_j = 1 \\mid v) = \\sigma(\\beta (c_j + (v^\\top W)_j))`, ``(N, n_h)``.

        ``beta`` is a number or an ``(N,)`` tensor (one per chain); not validated (hot path).
        """
        v = v.to(self.W.dtype)
        return torch.sigmoid(_as_beta_column(beta, self.W) * (self.c + v @ self.W))

    def visible_probs(self, h: torch.Tensor, beta: Any = 1.0) -> torch.Tensor:
        """:math:`p_\\beta(v_i = 1 \\mid h) = \\sigma(\\beta (b_i + (W h)_i))`, ``(N, n_v)``."""
        h = h.to(self.W.dtype)
        return torch.sigmoid(_as_beta_column(beta, self.W) * (self.b + h @ self.W.T))

    def sample_hidden(
        self, v: torch.Tensor, beta: Any = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`h \\sim p_\\beta(h \\mid v)` (units independent), ``(N, n_h)`` in {0, 1}."""
        return torch.bernoulli(self.hidden_probs(v, beta), generator=generator)

    def sample_visible(
        self, h: torch.Tensor, beta: Any = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`v \\sim p_\\beta(v \\mid h)` (units independent), ``(N, n_v)`` in {0, 1}."""
        return torch.bernoulli(self.visible_probs(h, beta), generator=generator)

    # ------------------------------------------------------------------ exact log Z
    def exact_log_partition(self, beta: Any) -> torch.Tensor:
        """Exact :math:`\\log \\sum_{v,h} e^{-\\beta E(v,h)}` (float64, shape of ``beta``).

        The larger layer is summed out in closed form and the smaller one enumerated:
        with hidden enumerated,
        :math:`\\log Z = \\operatorname{logsumexp}_h [\\beta c^\\top h + \\sum_i
        \\operatorname{softplus}(\\beta (b_i + (W h)_i))]`, and symmetrically for visible.

        Raises
        ------
        NotImplementedError
            If both layers have more than :data:`MAX_ENUMERATED_UNITS` units (use an
            estimator such as AIS).

        Examples
        --------
        >>> rbm = RBM(torch.zeros(2, 3), torch.zeros(2), torch.zeros(3))
        >>> round(float(rbm.exact_log_partition(1.0)), 10) == round(5 * math.log(2), 10)  # 2^5 states
        True
        """
        layer = "hidden" if self.num_hidden <= self.num_visible else "visible"
        b64 = as_beta_tensor(beta, dtype=torch.float64, device=self.W.device)
        if b64.numel() > 64:
            return self._enumerated_log_partition(b64, layer)
        # memoised: Gibbs.log_prob asks for log Z at every call. The key holds the buffers'
        # in-place version counters, so modifying W, b or c invalidates it.
        key = (tuple(b64.reshape(-1).tolist()), tuple(b64.shape)) + tuple(
            (id(t), t._version) for t in (self.W, self.b, self.c)
        )
        cache = self.__dict__.setdefault("_log_z_cache", {})
        if key not in cache:
            if len(cache) >= 64:
                cache.clear()
            # the entry holds the buffers themselves, so their ids cannot be reused meanwhile
            cache[key] = (self._enumerated_log_partition(b64, layer), (self.W, self.b, self.c))
        return cache[key][0].clone()

    def _enumerated_log_partition(self, beta: Any, layer: str) -> torch.Tensor:
        """log Z by enumerating ``layer`` ('visible' or 'hidden')."""
        b64 = as_beta_tensor(beta, dtype=torch.float64, device=self.W.device)
        W = self.W.to(torch.float64)
        if layer == "hidden":
            n, weights, own_bias, other_bias = self.num_hidden, W.T, self.c, self.b
        elif layer == "visible":
            n, weights, own_bias, other_bias = self.num_visible, W, self.b, self.c
        else:
            raise ValueError(f"layer must be 'visible' or 'hidden', got {layer!r}")
        if n > MAX_ENUMERATED_UNITS:
            raise NotImplementedError(
                f"exact log Z enumerates 2^{n} states of the {layer} layer; the limit is "
                f"2^{MAX_ENUMERATED_UNITS}. Estimate log Z with gibbsebm.log_partition "
                "(e.g. method='ais') instead"
            )
        own_bias = own_bias.to(torch.float64)
        other_bias = other_bias.to(torch.float64)
        betas = b64.reshape(-1, 1, 1)  # (S, 1, 1)
        width = betas.shape[0] * max(weights.shape[1], 1)
        chunk = 1 << max(0, min(n, int(math.log2(max(1, _CHUNK_ELEMENTS // width)))))
        acc = None
        for start in range(0, 2**n, chunk):
            states = _binary_states(start, min(start + chunk, 2**n), n, self.W.device)  # (C, n)
            pre = states @ weights + other_bias  # (C, m): input to the summed-out layer
            lw = betas[:, :, 0] * (states @ own_bias) + F.softplus(betas * pre).sum(-1)  # (S, C)
            lz = torch.logsumexp(lw, dim=-1)
            acc = lz if acc is None else torch.logaddexp(acc, lz)
        return acc.reshape(b64.shape)


def train_rbm_cd(
    data: torch.Tensor,
    num_hidden: int,
    *,
    epochs: int = 20,
    lr: float = 0.05,
    k: int = 1,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> RBM:
    """Fit an :class:`RBM` to binary data by contrastive divergence (CD-k).

    Initialisation follows Hinton's practical guide: :math:`W_{ij} \\sim \\mathcal N(0,
    0.01^2)`, visible biases :math:`b_i = \\log(p_i / (1 - p_i))` from the data means
    :math:`p_i` (clipped to [1e-3, 1 - 1e-3]), hidden biases 0. Each mini-batch makes the
    stochastic-gradient step

    .. math::

        \\Delta W = \\eta (\\langle v h^\\top \\rangle_{\\text{data}}
        - \\langle v h^\\top \\rangle_{k}), \\quad
        \\Delta b = \\eta (\\langle v \\rangle_{\\text{data}} - \\langle v \\rangle_{k}), \\quad
        \\Delta c = \\eta (\\langle h \\rangle_{\\text{data}} - \\langle h \\rangle_{k}),

    where the data term uses :math:`p(h \\mid v)` and the model term comes from k steps of
    block Gibbs sampling started at the data (hidden probabilities at the last step).

    Parameters
    ----------
    data : Tensor
        Binary training data in {0, 1}, shape ``(num_examples, num_visible)``.
    num_hidden : int
        Number of hidden units.
    epochs : int
        Passes over the data.
    lr : float
        Learning rate :math:`\\eta`.
    k : int
        Gibbs steps per update (CD-k).
    batch_size : int
        Mini-batch size.
    generator : torch.Generator, optional
        Randomness (initial weights, shuffling, Gibbs steps), on ``data``'s device.

    Returns
    -------
    RBM
        The trained machine, in ``data``'s dtype (float ``data``) and device.

    References
    ----------
    G. E. Hinton, "Training products of experts by minimizing contrastive divergence",
    Neural Computation 14, 1771-1800 (2002); G. E. Hinton, "A practical guide to training
    restricted Boltzmann machines", UTML TR 2010-003, sections 3 and 8.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> data = (torch.rand(200, 8, generator=g) < 0.3).float()
    >>> rbm = train_rbm_cd(data, 4, epochs=2, lr=0.1, batch_size=50, generator=g)
    >>> rbm.W.shape
    torch.Size([8, 4])
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or data.shape[0] < 1:
        raise ValueError("data must be a tensor shaped (num_examples, num_visible)")
    if not ((data == 0) | (data == 1)).all():
        raise ValueError("data must be binary, with every entry 0 or 1")
    for name, value in (
        ("num_hidden", num_hidden),
        ("epochs", epochs),
        ("k", k),
        ("batch_size", batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    dtype = data.dtype if data.dtype.is_floating_point else torch.get_default_dtype()
    x = data.to(dtype)
    n, nv = x.shape
    device = x.device
    p = x.mean(0).clamp(1e-3, 1 - 1e-3)
    W = 0.01 * torch.randn(nv, num_hidden, dtype=dtype, device=device, generator=generator)
    b = torch.log(p / (1 - p))
    c = torch.zeros(num_hidden, dtype=dtype, device=device)
    for _ in range(epochs):
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, batch_size):
            v0 = x[order[start : start + batch_size]]
            ph0 = torch.sigmoid(c + v0 @ W)
            h = torch.bernoulli(ph0, generator=generator)
            for _step in range(k):
                v = torch.bernoulli(torch.sigmoid(b + h @ W.T), generator=generator)
                ph = torch.sigmoid(c + v @ W)
                h = torch.bernoulli(ph, generator=generator)
            m = v0.shape[0]
            W = W + lr * (v0.T @ ph0 - v.T @ ph) / m
            b = b + lr * (v0 - v).mean(0)
            c = c + lr * (ph0 - ph).mean(0)
    return RBM(W, b, c)
