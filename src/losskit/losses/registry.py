"""The loss registry: catalogue names (and aliases) mapped to loss factories.

Names in config files and in :class:`losskit.Term` resolve here, so no code branches on loss
names. User losses join with the :func:`register` decorator.

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

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from losskit.errors import ConfigError

__all__ = ["LossSpec", "available", "get", "register", "resolve", "unregister"]

LossFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=LossFactory)


@dataclass(frozen=True)
class LossSpec:
    """One catalogue entry: its name, what it is, and how to build it."""

    name: str
    factory: LossFactory
    description: str
    family: str
    aliases: tuple[str, ...] = field(default=())


_SPECS: dict[str, LossSpec] = {}
_ALIASES: dict[str, str] = {}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


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
    canonical = _normalise(name)
    alias_names = tuple(_normalise(a) for a in aliases)

    def decorator(factory: F) -> F:
        for n in (canonical, *alias_names):
            if n in _SPECS or n in _ALIASES:
                raise ConfigError(
                    f"loss name {n!r} is already registered (as {resolve(n).name!r}); "
                    "call losskit.losses.unregister first to replace it"
                )
        _SPECS[canonical] = LossSpec(
            name=canonical,
            factory=factory,
            description=description if description is not None else _summary(factory),
            family=family,
            aliases=alias_names,
        )
        for alias in alias_names:
            _ALIASES[alias] = canonical
        return factory

    return decorator


def unregister(name: str) -> None:
    """Remove ``name`` (given by its canonical name) and its aliases from the registry."""
    spec = resolve(name)
    del _SPECS[spec.name]
    for alias in spec.aliases:
        _ALIASES.pop(alias, None)


def resolve(name: str) -> LossSpec:
    """The :class:`LossSpec` for a name or alias; unknown names get close-match suggestions."""
    key = _normalise(name)
    key = _ALIASES.get(key, key)
    try:
        return _SPECS[key]
    except KeyError:
        known = sorted([*_SPECS, *_ALIASES])
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"unknown loss {name!r}{hint} (losskit.losses.available() lists all "
            f"{len(_SPECS)} losses)"
        ) from None


def get(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with ``kwargs``.

    Example::

        >>> get("cross_entropy", label_smoothing=0.1)
        CrossEntropyLoss()
    """
    spec = resolve(name)
    try:
        return spec.factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"loss {spec.name!r} cannot be built with {kwargs}: {exc}") from exc


def available(family: str | None = None) -> list[LossSpec]:
    """Every registered loss, sorted by name, optionally only those of one ``family``.

    Example::

        >>> "mse" in [spec.name for spec in available("regression")]
        True
    """
    specs = sorted(_SPECS.values(), key=lambda s: s.name)
    return [s for s in specs if family is None or s.family == family]
