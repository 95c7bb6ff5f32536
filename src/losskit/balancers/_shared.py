"""Naming the shared part of a model: a module, several, or their parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from torch import Tensor, nn

from losskit.errors import ConfigError

__all__ = ["Shared", "shared_modules", "trainable"]

Shared: TypeAlias = nn.Module | Iterable[nn.Module | Tensor]
"""The shared parameters: a module, or an iterable of modules and parameters."""


def _entries(shared: Shared) -> list[nn.Module | Tensor]:
    if isinstance(shared, nn.Module):
        return [shared]
    if isinstance(shared, Tensor):
        return [shared]
    entries = list(shared)
    for entry in entries:
        if not isinstance(entry, (nn.Module, Tensor)):
            raise ConfigError(f"shared= takes modules and parameters, got a {type(entry).__name__}")
    if not entries:
        raise ConfigError("shared= is empty: name the shared module or its parameters")
    return entries


def shared_modules(shared: Shared) -> list[nn.Module] | None:
    """The modules named, or None when some entries are bare parameters."""
    entries = _entries(shared)
    if all(isinstance(e, nn.Module) for e in entries):
        return [e for e in entries if isinstance(e, nn.Module)]
    return None


def trainable(shared: Shared) -> list[Tensor]:
    """The parameters that currently require a gradient (frozen ones are left out), deduplicated."""
    seen: set[int] = set()
    found: list[Tensor] = []
    for entry in _entries(shared):
        params = entry.parameters() if isinstance(entry, nn.Module) else [entry]
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                found.append(p)
    return found
