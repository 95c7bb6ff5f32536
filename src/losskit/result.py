"""The value of a :class:`~losskit.Criterion` on one batch: the total and every keyed part.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", weight=0.5)})
    >>> res = crit(torch.zeros(3), torch.ones(3))
    >>> res.total, res["a"], res.weights["b"]
    (tensor(1.5000), tensor(1.), tensor(0.5000))
    >>> sorted(res.log())
    ['loss', 'loss/a', 'loss/b', 'weight/a', 'weight/b']
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeAlias

import torch
from torch import Tensor

__all__ = ["Backward", "LossResult"]

Count: TypeAlias = Tensor | Callable[[], Tensor]
"""What a key's value averages: a 0-dim tensor, or a function computing it when asked."""


def computed_counts(counts: tuple[Count | None, ...]) -> tuple[Tensor | None, ...]:
    """``counts`` with every function called: each entry a tensor, or None."""
    return tuple(c() if callable(c) else c for c in counts)


class Backward(Protocol):
    """A backward pass that replaces ``total.backward()`` (a gradient-level balancer's).

    Called with the result and returns the weights it applied, or None when they are reported
    later through :meth:`LossResult.report_weights`.
    """

    def __call__(
        self,
        result: LossResult,
        *,
        scale: float,
        grad_scaler: torch.amp.GradScaler | None,
        retain_graph: bool,
    ) -> Tensor | None: ...


def _spent(
    result: LossResult,
    *,
    scale: float,
    grad_scaler: torch.amp.GradScaler | None,
    retain_graph: bool,
) -> Tensor | None:
    raise RuntimeError(
        "this result's backward pass already ran and released what it held; pass "
        "retain_graph=True to the first backward() to run it again"
    )


@functools.lru_cache(maxsize=256)
def _log_names(keys: tuple[str, ...], prefix: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``loss`` and, per key, ``(loss/<key>, weight/<key>)``, with ``prefix``."""
    return f"{prefix}loss", tuple((f"{prefix}loss/{k}", f"{prefix}weight/{k}") for k in keys)


class LossResult:
    """The weighted total, the unweighted part of every enabled key, and the weights applied.

    ``res.total`` carries the graph of every part; ``res[key]`` is the part of ``key`` with its
    graph; ``res.weights[key]`` the weight used in this total (0 for a term skipped as
    non-finite). ``res.log()`` gives detached tensors under stable names and never calls
    ``.item()``, so logging every step costs no host synchronisation.
    """

    __slots__ = (
        "_absent",
        "_backward",
        "_counts",
        "_keys",
        "_monitored",
        "_parts",
        "_weights",
        "total",
    )

    def __init__(
        self,
        total: Tensor,
        keys: tuple[str, ...],
        parts: tuple[Tensor, ...],
        weights: Tensor | tuple[Tensor, ...],
        *,
        monitored: tuple[tuple[str, Tensor], ...] = (),
        backward: Backward | None = None,
        counts: tuple[Count | None, ...] | None = None,
        absent: tuple[str, ...] = (),
    ) -> None:
        """``weights`` has one entry per key (a vector, or its entries detached and unbound);
        ``monitored`` holds ``(key, value)`` of the
        monitor-only terms; ``backward`` replaces ``total.backward()`` (see :class:`Backward`);
        ``counts`` has one entry per key: how many samples or elements its value averages (a
        0-dim tensor, or a function computing it when asked) or None where the term does not
        say; ``absent`` names the optional terms
        whose inputs this batch lacks."""
        self.total = total
        self._keys = keys
        self._parts = parts
        self._weights = weights.detach().unbind() if isinstance(weights, Tensor) else weights
        self._monitored = monitored
        self._backward = backward
        self._counts = counts
        self._absent = absent

    def report_weights(self, weights: Tensor) -> None:
        """Set the weights a gradient-level balancer applied, when it knows them only after
        :meth:`backward` (one entry per key of this result)."""
        self._weights = weights.detach().unbind()

    def __getitem__(self, key: str) -> Tensor:
        try:
            return self._parts[self._keys.index(key)]
        except ValueError:
            for name, value in self._monitored:
                if name == key:
                    return value
            raise KeyError(
                f"no term {key!r} in this result; it holds {list(self._keys)} "
                "(a disabled term is not computed)"
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> tuple[str, ...]:
        """The keys of the terms computed in this result, in the criterion's order."""
        return self._keys

    @property
    def parts(self) -> dict[str, Tensor]:
        """Every computed term's unweighted value by key (graph attached)."""
        return dict(zip(self._keys, self._parts))

    @property
    def counts(self) -> dict[str, Tensor]:
        """How many samples (or elements, per the loss's reduction) each key's value averages:
        the weight its value carries in a mean over batches. A 0-dim tensor on the value's
        device (no host sync); 0 when nothing in the batch carried that label. Keys whose term
        does not report a count are left out (a mean weighs them by the batch instead).

        Example::

            >>> import torch
            >>> res = LossResult(torch.tensor(1.5), ("cls", "aux"),
            ...                  (torch.tensor(1.0), torch.tensor(0.5)), torch.ones(2),
            ...                  counts=(torch.tensor(3.0), None))
            >>> res.counts
            {'cls': tensor(3.)}
        """
        if self._counts is None:
            return {}
        if any(callable(c) for c in self._counts):  # computed once, when first asked
            self._counts = computed_counts(self._counts)
        return {k: c for k, c in zip(self._keys, self._counts) if isinstance(c, Tensor)}

    @property
    def absent(self) -> tuple[str, ...]:
        """The optional terms left out of this result because the batch lacks their inputs."""
        return self._absent

    @property
    def monitored(self) -> dict[str, Tensor]:
        """The values of the monitor-only terms by key (no graph; not in ``total``)."""
        return dict(self._monitored)

    @property
    def weights(self) -> dict[str, Tensor]:
        """The weight each key had in ``total`` (a 0-dim tensor per key)."""
        return dict(zip(self._keys, self._weights))

    def log(self, prefix: str = "") -> dict[str, Tensor]:
        """Detached values for logging: ``loss``, ``loss/<key>`` and ``weight/<key>``.

        Monitor-only terms come last, as ``loss/<key>`` without a ``weight/<key>``.

        ``prefix`` is prepended to every name (``log("val/")`` gives ``val/loss/<key>``).
        """
        total_name, names = _log_names(self._keys, prefix)
        values = {total_name: self.total.detach()}
        for (loss_name, _), part in zip(names, self._parts):
            values[loss_name] = part.detach()
        for (_, weight_name), weight in zip(names, self._weights):
            values[weight_name] = weight
        for key, value in self._monitored:  # monitor-only terms: a loss, no weight
            values[f"{prefix}loss/{key}"] = value
        return values

    def backward(
        self,
        *,
        scale: float = 1.0,
        grad_scaler: torch.amp.GradScaler | None = None,
        **kwargs: Any,
    ) -> None:
        """Backpropagate ``scale * total`` (through ``grad_scaler.scale`` when given).

        ``scale`` weighs this batch within an accumulation window; ``kwargs`` go to
        ``Tensor.backward`` (``retain_graph``, ...). With a gradient-level balancer the
        balancer does the backward pass (only ``retain_graph`` is accepted) and
        :attr:`weights` then reports the weights it applied.
        """
        if not self._keys and not self.total.requires_grad:
            return  # a skipped step (every trained term absent): nothing to backpropagate
        if self._backward is not None:
            unknown = set(kwargs) - {"retain_graph"}
            if unknown:
                raise TypeError(
                    f"a gradient-level balancer's backward takes retain_graph only, got {unknown}"
                )
            retain = bool(kwargs.get("retain_graph", False))
            applied = self._backward(
                self, scale=scale, grad_scaler=grad_scaler, retain_graph=retain
            )
            if not retain:
                self._backward = _spent  # what it captured (activations) can be freed now
            if applied is not None:
                self.report_weights(applied)
            return
        loss = self.total if scale == 1.0 else self.total * scale
        if grad_scaler is not None:
            loss = grad_scaler.scale(loss)
        loss.backward(**kwargs)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={p.detach()!r}" for k, p in zip(self._keys, self._parts))
        return f"LossResult(total={self.total.detach()!r}, {parts})"
