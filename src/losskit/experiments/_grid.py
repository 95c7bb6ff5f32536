"""A grid of variants over a run configuration: dotted overrides, their product, their names.

Example::

    >>> from importlib import resources
    >>> from losskit.config import load_config
    >>> from losskit.experiments._grid import expand, parse_vary
    >>> base = load_config(resources.files("losskit").joinpath("demo.toml"))
    >>> path, values = parse_vary("terms.recon.loss=mse,l1")
    >>> variants = expand(base, {path: values, "optimizer.lr": [0.001, 0.003]})
    >>> [v.name for v in variants][:2]
    ['terms.recon.loss=mse__optimizer.lr=0.001', 'terms.recon.loss=mse__optimizer.lr=0.003']
    >>> variants[3].config.terms["recon"].loss, variants[3].config.optimizer.lr
    ('l1', 0.003)
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from losskit import losses
from losskit.errors import ConfigError

if TYPE_CHECKING:
    from losskit.config import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Variant", "apply", "expand", "parse_value", "parse_vary", "short_labels", "with_seed"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+\-]")


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its overrides, a folder-safe name, and the validated config."""

    name: str
    overrides: tuple[tuple[str, Any], ...]
    config: RunConfig

    @property
    def label(self) -> str:
        """The overrides as ``path=value, ...`` (``base`` when there are none)."""
        return ", ".join(f"{p}={_text(v)}" for p, v in self.overrides) or "base"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def parse_value(text: str) -> Any:
    """A TOML literal (``0.003``, ``true``, ``{ delta = 0.5 }``) or else the text itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and braces."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """``"terms.reg.loss=mse,l1,huber"`` -> ``("terms.reg.loss", ["mse", "l1", "huber"])``."""
    path, sep, values = spec.partition("=")
    path = path.strip()
    if not sep or not path or not values.strip():
        raise ConfigError(f"--vary takes PATH=VALUE[,VALUE...], got {spec!r}")
    return path, [parse_value(v) for v in _split_top_level(values) if v.strip()]


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or node.get(part) is None:
            where = ".".join(parts[:depth]) or "the configuration"
            known = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(f"--vary {path}: {where} has no table {part!r}; it has {known}")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"--vary {path}: {'.'.join(parts[:-1])} is not a table")
    node[parts[-1]] = value


def apply(base: RunConfig, overrides: Sequence[tuple[str, Any]]) -> RunConfig:
    """``base`` with each dotted ``path`` set to its value, validated again."""
    from losskit.config import load_config

    raw = base.model_dump(mode="json")
    for path, value in overrides:
        _set(raw, path, value)
    try:
        config = load_config(raw)
        for key, term in config.terms.items():  # fail now, not in the middle of the grid
            try:
                losses.get(term.loss, **term.loss_arguments)
            except ConfigError as exc:
                raise ConfigError(f"terms.{key}: {exc}") from None
    except ConfigError as exc:
        shown = ", ".join(f"{p}={_text(v)}" for p, v in overrides)
        raise ConfigError(f"the variant {shown} is not a valid configuration: {exc}") from None
    return config


def _name(overrides: Sequence[tuple[str, Any]]) -> str:
    return "__".join(_UNSAFE.sub("_", f"{p}={_text(v)}") for p, v in overrides) or "base"


def expand(base: RunConfig, vary: Mapping[str, Sequence[Any]]) -> list[Variant]:
    """Every combination of the values in ``vary`` (dotted path -> values), in order."""
    for path, values in vary.items():
        if isinstance(values, (str, bytes)) or not values:
            raise ConfigError(f"vary[{path!r}] must be a non-empty list of values, got {values!r}")
    paths = list(vary)
    variants = []
    names: set[str] = set()
    for combo in itertools.product(*(vary[p] for p in paths)):
        overrides = tuple(zip(paths, combo))
        name = _name(overrides)
        if name in names:
            raise ConfigError(f"two variants share the name {name!r}; give distinct values")
        names.add(name)
        variants.append(Variant(name, overrides, apply(base, overrides)))
    return variants


def with_seed(config: RunConfig, seed: int) -> RunConfig:
    """``config`` with ``run.seed`` set: the model's initialisation and the batch order."""
    return config.model_copy(update={"run": config.run.model_copy(update={"seed": seed})})


def short_labels(labels: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Labels without what they all share: ``(shared, {label: short})``.

    A ``path=value`` part with the same path in every label keeps only its value (the path
    goes to ``shared``); a part equal in every label is dropped.

    Example::

        >>> short_labels(["terms.fit.loss=mse, lr=0.1", "terms.fit.loss=huber, lr=0.1"])
        ('terms.fit.loss, lr=0.1', {'terms.fit.loss=mse, lr=0.1': 'mse', \
'terms.fit.loss=huber, lr=0.1': 'huber'})
    """
    split = [label.split(", ") for label in labels]
    if not split or len({len(parts) for parts in split}) != 1 or len(labels) < 2:
        return "", {label: label for label in labels}
    shared: list[str] = []
    keep: list[int] = []
    for i in range(len(split[0])):
        column = [parts[i] for parts in split]
        paths = {part.partition("=")[0] for part in column}
        if len(set(column)) == 1:
            shared.append(column[0])
        elif len(paths) == 1 and all("=" in part for part in column):
            shared.append(paths.pop())
            keep.append(i)
        else:
            keep.append(-i - 1)
    short = {}
    for label, parts in zip(labels, split):
        shown = [parts[i] if i >= 0 else parts[-i - 1] for i in keep]
        short[label] = ", ".join(p.partition("=")[2] if i >= 0 else p for i, p in zip(keep, shown))
    return ", ".join(shared), short
