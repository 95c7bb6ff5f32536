"""The balancer protocol: how a Criterion turns its keyed terms into one total (and gradient).

A balancer is bound once to the criterion's keys, combines the stacked terms of every call into a
total and the per-key weights it applied, and advances its state once per optimizer step. A
gradient-level balancer also owns the backward pass (:meth:`GradientBalancer.backward`), which
``LossResult.backward`` hands over to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from losskit.errors import ConfigError, LossKitError

if TYPE_CHECKING:
    from losskit.result import LossResult

__all__ = ["Balancer", "BalancerBase", "BalancingError", "GradientBalancer"]


class BalancingError(LossKitError, RuntimeError):
    """A balancer could not produce weights (a solver failed, a gradient was non-finite, ...)."""


@runtime_checkable
class Balancer(Protocol):
    """What a :class:`~losskit.Criterion` needs from a balancer.

    ``bind(keys)`` is called once with every term key, in order, when the criterion is built.
    ``combine(losses, weights, keys)`` gets the stacked unweighted terms of the enabled ``keys``
    (graph attached) and their term weights (fixed or scheduled) and returns the total to
    backpropagate and the weight each key effectively had in it (d total / d term). ``step()`` is
    called once per optimizer step by ``Criterion.step()``.
    """

    def bind(self, keys: tuple[str, ...]) -> None: ...

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]: ...

    def step(self) -> None: ...


@runtime_checkable
class GradientBalancer(Balancer, Protocol):
    """A balancer that combines per-key gradients inside ``LossResult.backward``.

    ``features(outputs)`` is called by the criterion on every call with gradients enabled and
    returns what ``backward`` needs besides the terms (the shared representation); ``backward``
    then writes the ``.grad`` fields and reports its weights with ``result._set_weights``.
    """

    def features(self, outputs: Any) -> Any: ...

    def backward(
        self,
        result: LossResult,
        context: Any,
        *,
        scale: float,
        grad_scaler: torch.amp.GradScaler | None,
        retain_graph: bool,
    ) -> None: ...


class BalancerBase(nn.Module):
    """Base of the built-in balancers: key bookkeeping and a no-op ``step``.

    Subclasses implement ``combine``; state kept in buffers and parameters lands in the
    criterion's ``state_dict()`` because the criterion registers its balancer as a submodule.
    """

    #: whether ``combine`` is the plain weighted sum (the criterion then keeps its fast path)
    static: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.keys: tuple[str, ...] = ()
        self._indices: dict[tuple[tuple[str, ...], torch.device], Tensor] = {}

    def bind(self, keys: tuple[str, ...]) -> None:
        """Remember the criterion's keys; per-key state is sized and ordered by them."""
        if self.keys and self.keys != tuple(keys):
            raise ConfigError(
                f"{type(self).__name__} is already bound to the keys {list(self.keys)}; "
                f"create a new one for a criterion with the keys {list(keys)}"
            )
        self.keys = tuple(keys)

    def index(self, keys: Sequence[str], device: torch.device) -> Tensor:
        """The positions of ``keys`` among the bound keys, as a long tensor on ``device``."""
        cache_key = (tuple(keys), device)
        found = self._indices.get(cache_key)
        if found is None:
            found = torch.tensor([self.keys.index(k) for k in keys], device=device)
            self._indices[cache_key] = found
        return found

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance per-optimizer-step state (nothing by default)."""

    def extra_repr(self) -> str:
        return f"keys={list(self.keys)}" if self.keys else ""
