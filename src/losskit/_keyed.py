"""Exceptions raised inside a term, re-raised naming its key (private; see ``errors.TermError``).

:func:`keyed` builds, from any exception, one of a subclass of both its type and
:class:`~losskit.errors.TermError`, so that ``except KeyError`` in user code still catches a
selector's ``KeyError`` while the message names the term and what it was doing. One subclass is
made per original type and cached. Types whose constructors or messages cannot be rebuilt from a
plain message (``UnicodeError``, exception groups) or that refuse subclasses become a
:class:`~losskit.errors.LossInputError` that is also a ``TermError``; the original is always the
``__cause__`` (the caller raises ``from exc``).

Example::

    >>> err = keyed(KeyError("nope"), "head", "selecting input")
    >>> isinstance(err, KeyError), err.key, str(err)
    (True, 'head', "term 'head': KeyError while selecting input: 'nope'")
"""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

from losskit.errors import LossInputError, TermError

__all__ = ["keyed", "keyed_type"]

# Their constructors take several arguments and their messages are built from them.
_UNREBUILDABLE: tuple[type[BaseException], ...] = (
    UnicodeError,
    *((builtins.BaseExceptionGroup,) if hasattr(builtins, "BaseExceptionGroup") else ()),
)
# Attributes that built-in exceptions keep in C slots rather than in ``__dict__``.
_SLOTS = ("errno", "strerror", "filename", "filename2", "name", "obj", "path", "value")


def _original(cls: type[BaseException]) -> type[BaseException]:
    found: type[BaseException] = getattr(cls, "_keyed_original", cls)
    return found


def _state(exc: BaseException) -> dict[str, Any]:
    state = dict(vars(exc))
    for name in _SLOTS:
        try:
            value = getattr(exc, name, None)
        except Exception:  # a user property that raises: nothing to keep
            continue
        if value is not None and name not in state:
            state[name] = value
    return state


def _restore(exc: BaseException, state: dict[str, Any]) -> None:
    for name, value in state.items():
        # A read-only slot stays unset: the message still tells.
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, name, value)


def _rebuild(original: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle a keyed exception: its class is made at run time, so it is found again here."""
    cls = keyed_type(original)
    exc = cls.__new__(cls, *args)
    BaseException.__init__(exc, *args)
    _restore(exc, state)
    return exc


def _reduce(self: BaseException) -> tuple[Any, ...]:
    return _rebuild, (_original(type(self)), self.args, _state(self))


_MADE: dict[type[BaseException], type[TermError]] = {}  # one keyed class per original type


def keyed_type(cls: type[BaseException]) -> type[TermError]:
    """The subclass of ``cls`` and :class:`TermError` that re-raises a ``cls`` naming a term."""
    cls = _original(cls)
    made = _MADE.get(cls)
    if made is None:
        if cls is not LossInputError and (
            issubclass(cls, _UNREBUILDABLE) or not issubclass(cls, Exception)
        ):
            made = keyed_type(LossInputError)
        else:
            try:
                made = _make(cls)
            except TypeError:  # not subclassable (a final type, a layout or metaclass conflict)
                made = keyed_type(LossInputError)
        _MADE[cls] = made
    return made


def _make(cls: type[BaseException]) -> type[TermError]:
    namespace = {
        "__module__": __name__,
        "__str__": BaseException.__str__,  # the message as written (KeyError would quote it)
        "__reduce__": _reduce,
        "_keyed_original": cls,
    }
    made: type[TermError] = type(f"Keyed{cls.__name__}", (cls, TermError), namespace)
    return made


def keyed(exc: BaseException, key: str, doing: str) -> TermError:
    """``exc`` re-made to name term ``key`` and what it was ``doing``; raise it ``from exc``."""
    name = _original(type(exc)).__name__
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        text = repr(exc)
    message = f"term {key!r}: {name} while {doing}" + (f": {text}" if text else "")
    cls = keyed_type(type(exc))
    try:
        # Around the subclass's own __init__, whose arguments we do not know; its attributes
        # are copied from the original below.
        new = cls.__new__(cls, message)
        BaseException.__init__(new, message)
    except Exception:
        cls = keyed_type(LossInputError)
        new = cls(message)
    else:
        _restore(new, _state(exc))
    new.key = key
    new.doing = doing
    return new
