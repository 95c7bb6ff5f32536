"""When value checks run (private, shared): one literal and one validator for every ``check=``.

A :class:`~losskit.Criterion` (finiteness of the terms) and every catalogue loss (its input
contract) take ``check="first" | "always" | "off"``; both read it through :func:`check_mode`.

Example::

    >>> check_mode("always")
    'always'
    >>> check_mode("sometimes")
    Traceback (most recent call last):
    ...
    losskit.errors.ConfigError: check must be 'first', 'always' or 'off', got 'sometimes'
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from losskit.errors import ConfigError

__all__ = ["CHECKS", "Check", "check_mode"]

Check: TypeAlias = Literal["first", "always", "off"]
"""``"first"``: value checks on the first calls only; ``"always"``: every call; ``"off"``: never."""

CHECKS: tuple[Check, ...] = ("first", "always", "off")


def check_mode(value: object) -> Check:
    """``value`` as a :data:`Check`, or a :class:`~losskit.errors.ConfigError` saying what fits."""
    if value == "first" or value == "always" or value == "off":
        return value
    raise ConfigError(f"check must be 'first', 'always' or 'off', got {value!r}")
