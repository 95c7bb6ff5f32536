"""The balancer protocol: how a Criterion turns its keyed terms into one total (and gradient).

A balancer is bound once to the criterion's keys, combines the stacked terms of every call into a
total and the per-key weights it applied, and advances its state once per optimizer step. It
declares what it needs from the criterion, the engine and the integrations in
:class:`Capabilities` (read with :func:`capabilities`); they ask, never test its class. A
gradient-level balancer (``owns_backward``) also does the backward pass
(:meth:`GradientBalancer.backward`), which ``LossResult.backward`` calls.

Example::

    >>> import torch, losskit as lk
    >>> class Doubled(lk.balancers.BalancerBase):
    ...     capabilities = lk.balancers.Capabilities(fixed_weights=True)
    ...     def combine(self, losses, weights, keys):
    ...         return 2 * torch.dot(losses, weights), 2 * weights
    >>> crit = lk.Criterion({"a": lk.Term("mse")}, balancer=Doubled())
    >>> crit(torch.zeros(2), torch.ones(2)).total
    tensor(2.)
    >>> lk.balancers.capabilities(crit.balancer).fixed_weights
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from losskit import _dist
from losskit.errors import ConfigError, LossKitError

if TYPE_CHECKING:
    from losskit.result import LossResult

__all__ = [
    "AbsenceAwareBalancer",
    "Balancer",
    "BalancerBase",
    "BalancingError",
    "Capabilities",
    "GradientBalancer",
    "SynchronizedBalancer",
    "capabilities",
]


@dataclass(frozen=True)
class Capabilities:
    """What a balancer needs, declared on its class (torchmetrics' class flags, as a record).

    Attributes:
        fixed_weights: its weights are a function of the term weights alone (no state, no
            reading of loss values): ranks agree without any exchange.
        backward_per_key: it backpropagates each key on its own (per-key gradients of shared
            parameters), so it refuses losses that allow a single backward pass.
        owns_backward: ``LossResult.backward`` calls its :meth:`GradientBalancer.backward`
            instead of ``total.backward()``; it then reports the weights it applied.
        synchronize: under ``torch.distributed`` it reduces its gradients itself, once per
            optimizer step, through ``synchronize()`` (called by
            :func:`losskit.engine.distributed.synchronize_gradients`); DDP must not average them.
        fsdp_safe: it works on an FSDP2-sharded model (per-key gradients of sharded
            parameters do not exist on one rank).
        rank_consistent: every rank computes the same weights (False when it draws random
            numbers from each process's generator).
        random_draws: it draws random numbers (weights, a projection order); with
            ``rank_consistent`` the draw of rank 0 is shared.
        derivative_weights: the reported weight of each key equals ``d total / d part``.
        handles_absence: it takes ``combine(..., present=mask)``: a bool tensor over the call's
            keys, False where a key's term has nothing to average in the batch (count 0, an
            empty mask), so it can leave that key out without a host sync (see
            :class:`AbsenceAwareBalancer`). Without it the criterion makes today's call and
            the key arrives as a zero term.
        learns_after_step: it learns from how the terms moved across an optimizer step (FAMO):
            after each step the :class:`~losskit.Trainer` recomputes the criterion on the last
            micro-batch under ``torch.no_grad()`` and passes the result to its
            :meth:`StepLearningBalancer.update`; a hand-written loop calls it itself.
    """

    fixed_weights: bool = False
    backward_per_key: bool = False
    owns_backward: bool = False
    synchronize: bool = False
    fsdp_safe: bool = True
    rank_consistent: bool = True
    random_draws: bool = False
    derivative_weights: bool = True
    handles_absence: bool = False
    learns_after_step: bool = False


def capabilities(balancer: object) -> Capabilities:
    """What ``balancer`` declares in its ``capabilities`` attribute (defaults when it has none).

    Example::

        >>> import losskit as lk
        >>> capabilities(lk.balancers.Sum()).fixed_weights
        True
        >>> capabilities(object()) == Capabilities()
        True
    """
    declared = getattr(balancer, "capabilities", None)
    return declared if isinstance(declared, Capabilities) else Capabilities()


class BalancingError(LossKitError, RuntimeError):
    """A balancer could not produce weights (a solver failed, a gradient was non-finite, ...)."""


@runtime_checkable
class Balancer(Protocol):
    """What a :class:`~losskit.Criterion` needs from a balancer.

    ``bind(keys)`` is called once with every term key, in order, when the criterion is built.
    ``combine(losses, weights, keys)`` gets the stacked unweighted terms of the enabled ``keys``
    (graph attached) and their term weights (fixed or scheduled) and returns the total to
    backpropagate and the weight each key effectively had in it (d total / d term). ``step()`` is
    called once per optimizer step by ``Criterion.step()``. A ``capabilities`` attribute (a
    :class:`Capabilities`) is optional: without one the defaults apply.

    ``keys`` may be a subset of the bound keys (a disabled term, a ``keys=`` route, an optional
    term absent from the batch): a stateful balancer then leaves the state of the other keys as
    it was.
    """

    def bind(self, keys: tuple[str, ...]) -> None: ...

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]: ...

    def step(self) -> None: ...


@runtime_checkable
class AbsenceAwareBalancer(Balancer, Protocol):
    """A balancer told which keys of a call have anything to average
    (``Capabilities(handles_absence=True)``).

    The criterion calls ``combine(losses, weights, keys, present=present)`` with ``present`` a
    bool tensor over ``keys`` on the losses' device: False where the term's count is 0 (every
    target ignored, an empty mask; its value is then 0), True where it is positive or the term
    reports no count. ``present`` is None when no term of the call reports a count. The balancer
    should combine the call as if those keys were absent, without host syncs (mask, never
    branch on values), and report weight 0 for them.

    Example::

        >>> import torch, losskit as lk
        >>> class Present(lk.balancers.BalancerBase):
        ...     capabilities = lk.balancers.Capabilities(handles_absence=True)
        ...     def combine(self, losses, weights, keys, present=None):
        ...         weights = weights if present is None else weights * present
        ...         return torch.dot(losses, weights), weights
        >>> crit = lk.Criterion({"a": lk.Term("mse", input="x", target="y", mask="m"),
        ...                      "b": lk.Term("l1", input="x", target="y")}, balancer=Present())
        >>> res = crit({"x": torch.zeros(2)}, {"y": torch.ones(2), "m": torch.zeros(2).bool()})
        >>> res.weights
        {'a': tensor(0.), 'b': tensor(1.)}
    """

    def combine(
        self,
        losses: Tensor,
        weights: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class GradientBalancer(Balancer, Protocol):
    """A balancer that combines per-key gradients inside ``LossResult.backward``.

    Declared with ``Capabilities(owns_backward=True)``. ``features(outputs)`` is called by the
    criterion on every call with gradients enabled and returns what ``backward`` needs besides
    the terms (the shared representation); ``backward`` then writes the ``.grad`` fields and
    returns the weights it applied (None when they are known only later, as under
    ``torch.distributed``, where it reports them with :meth:`LossResult.report_weights`).
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
    ) -> Tensor | None: ...


@runtime_checkable
class SynchronizedBalancer(Balancer, Protocol):
    """A balancer that reduces its own gradients across ranks (``Capabilities(synchronize=True)``).

    ``synchronize()`` is called once per optimizer step, before the optimizer, by
    :func:`losskit.engine.distributed.synchronize_gradients`; it writes the shared parameters'
    ``.grad`` and returns those parameters (DDP must leave them alone).
    """

    def synchronize(self) -> list[Tensor]: ...


@runtime_checkable
class StepLearningBalancer(Balancer, Protocol):
    """A balancer that learns from the terms recomputed after an optimizer step
    (``Capabilities(learns_after_step=True)``, FAMO).

    ``update(result)`` takes the criterion's result on the batch of the last training call,
    recomputed under ``torch.no_grad()`` after the optimizer stepped (before ``Criterion.step()``,
    so that the term weights are the step's). Under ``torch.distributed`` every rank calls it.
    """

    def update(self, recomputed: LossResult) -> None: ...


class BalancerBase(nn.Module):
    """Base of the built-in balancers: key bookkeeping and a no-op ``step``.

    Subclasses implement ``combine``; state kept in buffers and parameters lands in the
    criterion's ``state_dict()`` because the criterion registers its balancer as a submodule.
    """

    #: what this balancer needs from the criterion, the engine and the integrations (a class
    #: attribute; an instance whose needs depend on its options sets its own)
    capabilities: Capabilities = Capabilities()

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
            found = torch.tensor(
                [self.keys.index(k) for k in keys], dtype=torch.long, device=device
            )
            self._indices[cache_key] = found
        return found

    def across_ranks(
        self,
        values: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
        *,
        spread: bool = True,
    ) -> tuple[Tensor, tuple[str, ...], Tensor | None]:
        """The call's values (one per key of ``keys`` on the last dimension) as every rank sees
        them, for state that must agree across ranks; every rank must make the same calls.

        Alone, the arguments as given. Under ``torch.distributed`` with several processes:
        ``(values, self.keys, held)`` over every bound key, from one all-reduce of the values
        scattered into the bound keys and of a presence row (ranks may hold different keys:
        optional terms absent from their batch, count-0 terms). ``held`` marks the keys some
        rank held. With ``spread`` (training calls of a :class:`~losskit.Criterion`, which
        scales each rank's term by its share of the key's samples, ``world * n_r / N``) a
        key's value is the ranks' sum divided by the world size: its global mean over the
        samples. Without, it is the mean over the ranks that held it (unscaled values).

        Example::

            >>> import torch, losskit as lk
            >>> m = lk.balancers.Magnitude()
            >>> m.bind(("a", "b"))
            >>> m.across_ranks(torch.tensor([2.0]), ("b",))   # one process: as given
            (tensor([2.]), ('b',), None)
        """
        size = _dist.world()
        if size == 1:
            return values, keys, present
        index = self.index(keys, values.device)
        if present is None:
            present = torch.ones(len(keys), dtype=torch.bool, device=values.device)
        summed, holders = _dist.keyed_sum(values.detach(), index, present, len(self.keys))
        divisor = summed.new_full((), size) if spread else holders.clamp(min=1.0)
        return summed / divisor, self.keys, holders > 0

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance per-optimizer-step state (nothing by default)."""

    def extra_repr(self) -> str:
        return f"keys={list(self.keys)}" if self.keys else ""
