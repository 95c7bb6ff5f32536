"""The loss registry: catalogue names (and aliases) mapped to loss factories.

Names in config files and in :class:`losskit.Term` resolve here, so no code branches on loss
names. User losses join with the :func:`register` decorator. The functions below are the
verbs of :data:`LOSSES`, a :class:`losskit._registry.Registry` like every other name table.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> losses.get("mse")
    MSELoss()
    >>> @losses.register("scaled_l1", family="regression", description="L1 times a scale.")
    ... class ScaledL1(torch.nn.Module):
    ...     def __init__(self, scale: float = 1.0) -> None:
    ...         super().__init__()
    ...         self.scale = scale
    ...     def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ...         return self.scale * (x - y).abs().mean()
    >>> losses.get("scaled_l1", scale=2.0).scale
    2.0
    >>> losses.unregister("scaled_l1")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, TypeVar

from torch import nn

from losskit._registry import Entry, Registry

__all__ = ["LOSSES", "LossSpec", "available", "get", "register", "resolve", "unregister"]

LossSpec: TypeAlias = Entry[nn.Module]
"""One catalogue entry: ``name``, ``factory``, ``description``, ``family`` and ``aliases``."""

F = TypeVar("F", bound=Callable[..., nn.Module])

LOSSES: Registry[nn.Module] = Registry("loss", listing="losskit.losses.available()")
"""Every loss by name."""


def register(
    name: str,
    *,
    family: str = "custom",
    description: str | None = None,
    aliases: Iterable[str] = (),
) -> Callable[[F], F]:
    """Register a loss class or factory under ``name`` (and ``aliases``).

    ``description`` defaults to the first line of the factory's docstring. A name or alias that
    is already taken is refused: unregister the old entry first to replace it.
    """
    return LOSSES.register(name, aliases=aliases, description=description or "", family=family)


def unregister(name: str) -> None:
    """Remove ``name`` (or the entry an alias of it names) and its aliases from the registry."""
    LOSSES.unregister(name)


def resolve(name: str) -> LossSpec:
    """The :class:`LossSpec` for a name or alias; unknown names get close-match suggestions."""
    return LOSSES.resolve(name)


def get(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with ``kwargs``.

    Example::

        >>> get("cross_entropy", label_smoothing=0.1)
        CrossEntropyLoss()
    """
    return LOSSES.create(name, **kwargs)


def available(family: str | None = None) -> list[LossSpec]:
    """Every registered loss, sorted by name, optionally only those of one ``family``.

    Example::

        >>> "mse" in [spec.name for spec in available("regression")]
        True
    """
    return LOSSES.entries(family)
