"""Checks of a loss's options when it is built (private, shared by the loss families).

A bad option (``huber`` with ``delta=-1``, ``cross_entropy`` with ``label_smoothing=1.5``) is
refused with a :class:`~losskit.errors.ConfigError` naming the loss and the option where the
loss is made (``losses.get``, ``Term(...)``, a config file), not at its first call.

Example::

    >>> check_number("HuberLoss ('huber')", "delta", -1, low=0.0, low_open=True)
    Traceback (most recent call last):
    ...
    losskit.errors.ConfigError: HuberLoss ('huber'): delta must lie in (0, inf), got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from losskit.errors import ConfigError

__all__ = ["check_choice", "check_number"]


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite number in the range, else a ConfigError."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {name} must be a number, got {value!r}") from None
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bracket = "(" if low_open else "["
        upper = "inf)" if high == math.inf else f"{high:g}]"
        raise ConfigError(f"{owner}: {name} must lie in {bracket}{low:g}, {upper}, got {number!r}")
    return number


def check_choice(owner: str, name: str, value: object, choices: Sequence[object]) -> None:
    """A ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(map(repr, choices))
        raise ConfigError(f"{owner}: {name} must be one of {listed}, got {value!r}")
