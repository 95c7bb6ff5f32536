"""Magnitude normalisation: divide every term by a running estimate of its own size."""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.balancers._protocol import BalancerBase, Capabilities
from losskit.errors import ConfigError

__all__ = ["Magnitude"]


class Magnitude(BalancerBase):
    """Divide each term by a running (EMA) estimate of its magnitude ``|term|``.

    After normalisation every key contributes about its term weight to the total, whatever the
    raw scale of its loss, so the term weights say how much each key matters, not how large it
    happens to be. The estimate is updated on every call made with gradients enabled
    (training; validation under ``torch.no_grad()`` reads it without changing it), device-side,
    with no host synchronisation.

    Args:
        beta: the EMA decay once warmed up (about ``1 / (1 - beta)`` calls of memory).
        warmup: for a key's first ``warmup`` values the estimate is their plain running mean
            (``beta_t = 1 - 1/t``), so it is unbiased from the first call and moves smoothly into
            the EMA; no step uses an estimate made of a single early value for long.
        eps: the smallest magnitude divided by.

    A term that is exactly zero or non-finite leaves its estimate unchanged; a key with no
    estimate yet keeps its term weight. A key absent from a call (an optional term, a ``keys=``
    route) or with nothing to average (count 0, an empty mask) keeps its estimate and its count;
    a count-0 key is reported with weight 0. Under ``torch.distributed`` the estimate
    follows the terms' mean over the processes (one small all-reduce per training call), so
    every rank applies the same weights.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({
        ...     "small": lk.Term(lambda out, batch: 1e-3 * (out - 1).pow(2).mean()),
        ...     "large": lk.Term(lambda out, batch: 1e3 * (out + 1).pow(2).mean(), weight=2.0),
        ... }, balancer="magnitude")
        >>> res = crit(torch.zeros(4), None)
        >>> [round(float(res[k] * res.weights[k]), 4) for k in ("small", "large")]
        [1.0, 2.0]
    """

    capabilities = Capabilities(handles_absence=True)
    magnitude: Tensor
    count: Tensor

    def __init__(self, beta: float = 0.99, warmup: int = 100, eps: float = 1e-12) -> None:
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"Magnitude: beta must be in [0, 1), got {beta}")
        if warmup < 0:
            raise ConfigError(f"Magnitude: warmup must be >= 0, got {warmup}")
        if eps <= 0.0:
            raise ConfigError(f"Magnitude: eps must be > 0, got {eps}")
        self.beta = beta
        self.warmup = warmup
        self.eps = eps
        self.register_buffer("magnitude", torch.zeros(0))
        self.register_buffer("count", torch.zeros(0))

    def bind(self, keys: tuple[str, ...]) -> None:
        super().bind(keys)
        self.magnitude = torch.zeros(len(keys))
        self.count = torch.zeros(len(keys))

    def combine(
        self,
        losses: Tensor,
        weights: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if self.magnitude.device != losses.device:
            self.to(losses.device)
        if torch.is_grad_enabled():
            # Under torch.distributed every rank updates every key from its global mean.
            self._update(*self.across_ranks(losses.detach(), keys, present))
        index = None if keys == self.keys else self.index(keys, losses.device)
        old = self.magnitude if index is None else self.magnitude.index_select(0, index)
        count = self.count if index is None else self.count.index_select(0, index)
        scale = torch.where(count > 0, old.clamp(min=self.eps), 1.0).to(weights.dtype)
        effective = weights / scale
        if present is not None:
            effective = effective * present.to(effective.dtype)
        return torch.dot(losses, effective), effective

    def _update(self, value: Tensor, keys: tuple[str, ...], present: Tensor | None) -> None:
        """Take one value per key of ``keys`` (those ``present``) into the running sizes."""
        index = None if keys == self.keys else self.index(keys, value.device)
        old = self.magnitude if index is None else self.magnitude.index_select(0, index)
        count = self.count if index is None else self.count.index_select(0, index)
        value = value.abs().to(old.dtype)
        seen = torch.isfinite(value) & (value > 0)
        if present is not None:
            seen = seen & present
        count = count + seen.to(count.dtype)
        # The running mean for the first `warmup` values, the EMA afterwards.
        beta = torch.where(count <= self.warmup, 1.0 - 1.0 / count.clamp(min=1.0), self.beta)
        new = torch.where(seen, beta * old + (1.0 - beta) * value, old)
        if index is None:
            self.magnitude.copy_(new)
            self.count.copy_(count)
        else:
            self.magnitude.index_copy_(0, index, new)
            self.count.index_copy_(0, index, count)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, warmup={self.warmup}"
