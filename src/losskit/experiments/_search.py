"""A tune's search space over config paths, and its objectives.

``PATH=log(LOW,HIGH)`` (a float on a log scale), ``PATH=float(LOW,HIGH)``,
``PATH=int(LOW,HIGH)`` or ``PATH=[A,B,...]`` (a choice); a TOML run file may hold the same in a
``[search]`` table (``"terms.recon.weight" = "log(1e-3, 10)"``, ``balancer = ["sum", "upgrad"]``).
An objective is ``split/name`` with an optional ``:min`` or ``:max`` (default: ``max`` for a
``metric/...``, ``min`` otherwise).

Example::

    >>> dim = parse_search("terms.recon.weight=log(1e-3,10)")
    >>> dim.path, dim.kind, dim.low, dim.high
    ('terms.recon.weight', 'log', 0.001, 10.0)
    >>> parse_search("balancer=[sum,uncertainty,upgrad]").choices
    ('sum', 'uncertainty', 'upgrad')
    >>> parse_objective("val/metric/accuracy")
    Objective(split='val', name='metric/accuracy', direction='maximize')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from losskit.errors import ConfigError
from losskit.experiments._grid import _split_top_level, parse_value

__all__ = [
    "Dimension",
    "Objective",
    "parse_objective",
    "parse_search",
    "search_table",
    "suggest",
]

_RANGE = re.compile(r"^(log|float|int)\(\s*([^,]+?)\s*,\s*([^,]+?)\s*\)$")


@dataclass(frozen=True)
class Dimension:
    """One searched config path: a range (``log``, ``float``, ``int``) or ``choice``."""

    path: str
    kind: Literal["log", "float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def to_text(self) -> str:
        """The spec this dimension was parsed from (normalised)."""
        if self.kind == "choice":
            return f"{self.path}=[{','.join(_text(c) for c in self.choices)}]"
        return f"{self.path}={self.kind}({self.low:g},{self.high:g})"


@dataclass(frozen=True)
class Objective:
    """What a trial is scored by: the last value of ``split/name`` in its log."""

    split: str
    name: str
    direction: Literal["minimize", "maximize"]

    @property
    def key(self) -> str:
        """``split/name``."""
        return f"{self.split}/{self.name}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _number(spec: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--search {spec}: {text!r} is not a number") from None


def _dimension(spec: str, path: str, value: Any) -> Dimension:
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"--search {spec}: give at least one value in [...]")
        return Dimension(path, "choice", choices=tuple(value))
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        return _dimension(spec, path, [parse_value(v) for v in _split_top_level(inner) if v])
    found = _RANGE.match(text)
    if found is None:
        raise ConfigError(
            f"--search {spec}: expected log(LOW,HIGH), float(LOW,HIGH), int(LOW,HIGH) or [A,B,...]"
        )
    kind, low, high = found.group(1), _number(spec, found.group(2)), _number(spec, found.group(3))
    if not low < high or (kind == "log" and low <= 0):
        raise ConfigError(
            f"--search {spec}: need LOW < HIGH{' and LOW > 0 on a log scale' * (kind == 'log')}"
        )
    return Dimension(path, kind, low, high)  # type: ignore[arg-type]


def parse_search(spec: str) -> Dimension:
    """``"PATH=log(1e-3,10)"``, ``"PATH=float(0,5)"``, ``"PATH=int(1,8)"`` or ``"PATH=[a,b]"``."""
    path, sep, value = spec.partition("=")
    if not sep or not path.strip() or not value.strip():
        raise ConfigError(
            f"--search takes PATH=log(LOW,HIGH)|float(...)|int(...)|[A,B], got {spec!r}"
        )
    return _dimension(spec, path.strip(), value.strip())


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def search_table(table: Mapping[str, Any]) -> list[Dimension]:
    """The dimensions of a ``[search]`` table (nested tables are dotted paths)."""
    return [_dimension(f"[search] {path}", path, value) for path, value in _flatten(table).items()]


def parse_objective(spec: str) -> Objective:
    """``"val/metric/accuracy"``, ``"val/loss:min"`` -> an :class:`Objective`."""
    key, _, way = spec.partition(":")
    split, slash, name = key.strip().partition("/")
    if not slash or not split or not name:
        raise ConfigError(f"--objective takes SPLIT/NAME[:min|max], got {spec!r}")
    if way.strip() not in ("", "min", "max"):
        raise ConfigError(f"--objective {spec}: the direction is min or max, got {way!r}")
    higher = way.strip() == "max" or (not way.strip() and name.startswith("metric/"))
    return Objective(split, name, "maximize" if higher else "minimize")


def _choice(value: Any) -> Any:
    """Optuna's choices are None, bool, int, float or str: a table travels as JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else _text(value)


def suggest(trial: Any, space: Sequence[Dimension]) -> list[tuple[str, Any]]:
    """The overrides an Optuna trial picks in ``space``: ``[(path, value), ...]``."""
    picked: list[tuple[str, Any]] = []
    for dim in space:
        if dim.kind == "choice":
            choices = [_choice(c) for c in dim.choices]
            value = trial.suggest_categorical(dim.path, choices)
            picked.append((dim.path, dim.choices[choices.index(value)]))
        elif dim.kind == "int":
            picked.append((dim.path, trial.suggest_int(dim.path, int(dim.low), int(dim.high))))
        else:
            value = trial.suggest_float(dim.path, dim.low, dim.high, log=dim.kind == "log")
            picked.append((dim.path, value))
    return picked
