"""One registry type for every name a user or a config file can give: losses, balancers,
schedules, and the models, data, metrics, optimizers and LR schedulers of config runs.

The same verbs everywhere (timm's ``models/_registry.py``): ``register`` (a decorator or a
call), ``get`` (the factory), ``create`` (the built object), ``available`` (names with one-line
descriptions). Names are case-insensitive and ``-`` reads as ``_``; aliases resolve to their
entry; unknown names raise :class:`~losskit.errors.UnknownNameError` (a ``ConfigError`` and a
``KeyError``) naming the registry and the closest names. A factory may be given as
``"package.module:attribute"``, imported on first use, so registering costs no import.

Example::

    >>> colours: Registry[str] = Registry("colour", listing="colours.available()")
    >>> @colours.register("red", aliases=("rouge",), description="The colour of fire.")
    ... def red(shade: int = 0) -> str:
    ...     return f"red{shade}"
    >>> colours.create("ROUGE", shade=2)
    'red2'
    >>> colours.available()
    {'red': 'The colour of fire.'}
    >>> colours.create("rde")
    Traceback (most recent call last):
    ...
    losskit.errors.UnknownNameError: unknown colour 'rde'; did you mean 'red'? (known: red)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

from losskit._signature import check_keywords, did_you_mean
from losskit.errors import ConfigError, UnknownNameError

__all__ = ["Entry", "Registry", "normalise"]

T = TypeVar("T")
_F = TypeVar("_F", bound=Callable[..., Any])

#: up to this many names, an unknown-name error lists them all
_LISTED = 40


def normalise(name: str) -> str:
    """The key a name is stored under: stripped, lower case, ``-`` as ``_``."""
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: what it is and how to build it.

    ``target`` is the factory or its ``"package.module:attribute"`` path; ``factory`` imports
    the path on first use. ``family`` groups entries (a loss's task, a balancer's level).
    """

    name: str
    target: Callable[..., T] | str = field(repr=False)
    description: str = ""
    family: str = ""
    aliases: tuple[str, ...] = ()

    @cached_property
    def factory(self) -> Callable[..., T]:
        """The factory (a class or a function); a path is imported now."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        found: Callable[..., T] = getattr(importlib.import_module(module), attribute)
        return found


def _summary(factory: object) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _qualname(target: object) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", "")
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


class Registry(Generic[T]):
    """Names (and aliases) mapped to factories of ``T``.

    Args:
        kind: what an entry is, for messages (``"loss"``, ``"balancer"``).
        listing: where users see every name (``"losskit.losses.available()"``); unknown-name
            errors point there when the names are too many to list.
    """

    def __init__(self, kind: str, *, listing: str = "") -> None:
        self.kind = kind
        self.listing = listing
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    # -- registering ------------------------------------------------------------------------
    @overload
    def register(
        self,
        name: str,
        factory: None = None,
        *,
        aliases: Iterable[str] = (),
        description: str = "",
        family: str = "",
    ) -> Callable[[_F], _F]: ...

    @overload
    def register(
        self,
        name: str,
        factory: _F | str,
        *,
        aliases: Iterable[str] = (),
        description: str = "",
        family: str = "",
    ) -> _F | str: ...

    def register(
        self,
        name: str,
        factory: _F | str | None = None,
        *,
        aliases: Iterable[str] = (),
        description: str = "",
        family: str = "",
    ) -> Callable[[_F], _F] | _F | str:
        """Register ``factory`` under ``name`` and ``aliases``; without it, a decorator.

        ``description`` defaults to the first line of the factory's docstring (give it with a
        ``"package.module:attribute"`` path, which is not imported here). A taken name or alias
        is refused unless it holds the same factory (a module imported again).
        """

        def add(target: _F | str) -> _F | str:
            entry: Entry[T] = Entry(
                name=normalise(name),
                target=target,
                description=description or ("" if isinstance(target, str) else _summary(target)),
                family=family,
                aliases=tuple(normalise(a) for a in aliases),
            )
            self._refuse_taken(entry)
            self._entries[entry.name] = entry
            self._aliases.update(dict.fromkeys(entry.aliases, entry.name))
            return target

        if factory is not None:
            return add(factory)

        def decorate(target: _F) -> _F:
            add(target)
            return target

        return decorate

    def _refuse_taken(self, entry: Entry[T]) -> None:
        for key in (entry.name, *entry.aliases):
            owner = self._aliases.get(key, key)
            held = self._entries.get(owner)
            if held is None:
                continue
            if _qualname(held.target) != _qualname(entry.target):
                raise ConfigError(
                    f"{self.kind} name {key!r} is already registered (as {owner!r}); "
                    "unregister it first to replace it"
                )
            self.unregister(owner)

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (or an alias of it) resolves to, with its aliases."""
        entry = self.resolve(name)
        del self._entries[entry.name]
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    # -- looking up -------------------------------------------------------------------------
    def resolve(self, name: str, *, family: str | None = None) -> Entry[T]:
        """The entry for ``name`` or an alias (of ``family``, when given).

        Raises :class:`~losskit.errors.UnknownNameError` with the closest names otherwise.
        """
        key = normalise(name)
        entry = self._entries.get(self._aliases.get(key, key))
        if entry is None or (family is not None and entry.family != family):
            raise self._unknown(name, family)
        return entry

    def _unknown(self, name: str, family: str | None) -> UnknownNameError:
        names = self.names(family)
        known = [*names, *(a for a, n in self._aliases.items() if n in names)]
        hint = did_you_mean(normalise(name), known)
        kind = f"{family} {self.kind}" if family else self.kind
        if len(names) <= _LISTED or not self.listing:
            where = f"known: {', '.join(names)}"
        else:
            where = f"{self.listing} lists all {len(names)}"
        return UnknownNameError(f"unknown {kind} {name!r}{hint} ({where})")

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``."""
        return self.resolve(name).factory

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Build the entry ``name`` with ``kwargs``, checked against its factory's signature."""
        entry = self.resolve(name)
        where = f"{self.kind} {entry.name!r}"
        check_keywords(entry.factory, kwargs, where=where)
        try:
            return entry.factory(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where} cannot be built with {kwargs}: {exc}") from exc

    # -- listing ----------------------------------------------------------------------------
    def names(self, family: str | None = None) -> list[str]:
        """Every registered name (aliases aside), sorted, optionally of one ``family``."""
        return sorted(n for n, e in self._entries.items() if family in (None, e.family))

    def entries(self, family: str | None = None) -> list[Entry[T]]:
        """Every entry, sorted by name, optionally of one ``family``."""
        return [self._entries[n] for n in self.names(family)]

    def available(self, family: str | None = None) -> dict[str, str]:
        """Every name (aliases aside) with its one-line description."""
        return {e.name: e.description for e in self.entries(family)}

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalise(name)
        return self._aliases.get(key, key) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
