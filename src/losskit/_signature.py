"""Which keyword arguments a callable takes, and the error for one it does not.

The registry checks ``create(name, **kwargs)`` with it and config files check each table with
it, before anything is built, so an unknown field gets a did-you-mean naming what is allowed.

Example::

    >>> def lr_rule(start: float, end: float = 0.0, *, steps: int = 10) -> None: ...
    >>> accepted(lr_rule)
    (('start', 'end', 'steps'), False)
    >>> try:
    ...     check_keywords(lr_rule, ["start", "stpes"], where="schedule 'cosine'")
    ... except ConfigError as exc:
    ...     print(exc)
    schedule 'cosine': unknown argument 'stpes'; did you mean 'steps'? allowed: start, end, steps
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from losskit.errors import ConfigError

__all__ = ["accepted", "check_keywords", "did_you_mean", "renamed_message"]

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted(func: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """The names ``func`` takes by keyword, and whether it also takes any other (``**kwargs``).

    A callable whose signature cannot be read is taken to accept anything.
    """
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return (), True
    names = tuple(p.name for p in parameters if p.kind in _KEYWORD)
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` with the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def renamed_message(key: str, equivalent: str, *, where: str = "", noun: str = "argument") -> str:
    """The error for a peer library's option name that losskit spells differently.

    A callable declares such names in a ``renamed_options`` mapping (name -> what to pass
    instead); :func:`check_keywords` and the losses' constructors report them with this text.
    """
    return f"{where}{noun} {key!r} is another library's name for an option: here, {equivalent}"


def check_keywords(
    func: Callable[..., Any],
    given: Iterable[str],
    *,
    where: str,
    noun: str = "argument",
    supplied: Mapping[str, str] | None = None,
    extra: Iterable[str] = (),
) -> None:
    """Raise :class:`ConfigError` for a name in ``given`` that ``func`` does not take.

    ``supplied`` maps the parameters the caller fills itself to where their values come from
    (they are refused, with that explanation); ``extra`` are
    names the caller accepts besides ``func``'s own. A ``func`` taking ``**kwargs`` accepts all.
    A name in ``func.renamed_options`` (a peer library's spelling) gets its equivalent.
    """
    names, open_ended = accepted(func)
    where = f"{where}: " if where else ""
    taken = dict(supplied or {})
    allowed = [n for n in names if n not in taken] + [n for n in extra if n not in names]
    renamed: Mapping[str, str] = getattr(func, "renamed_options", {})
    for key in given:
        if key in taken:
            raise ConfigError(f"{where}{noun} {key!r} is not set here: it comes from {taken[key]}")
        if key in renamed and key not in allowed:
            raise ConfigError(renamed_message(key, renamed[key], where=where, noun=noun))
        if key not in allowed and not open_ended:
            hint = did_you_mean(key, allowed)
            raise ConfigError(
                f"{where}unknown {noun} {key!r}{hint}{' ' if hint else '; '}allowed: "
                f"{', '.join(allowed)}"
            )
