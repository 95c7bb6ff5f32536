"""Docstrings and signatures as Markdown, for the generated reference pages."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from griffe import Docstring

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|math):`~?([^`]+)`")
_PLAIN = inspect.Parameter.empty


@dataclass(frozen=True)
class Parsed:
    """A google-style docstring: its prose, its arguments and its example."""

    text: str
    params: Mapping[str, str]
    example: str


def markdown(text: str) -> str:
    """reST roles as code spans and ``Word::`` literal-block markers as ``Word:``."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)


def parse(obj: object) -> Parsed:
    """The docstring of ``obj`` split into prose, arguments and example (no griffe warnings)."""
    doc = inspect.getdoc(obj) or ""
    texts: list[str] = []
    params: dict[str, str] = {}
    example = ""
    for section in Docstring(doc).parse("google", warnings=False):
        kind = section.kind.value
        if kind == "text":
            chunk = str(section.value)
            if re.search(r"^Examples?::?\s*$", chunk, flags=re.MULTILINE):
                head, _, tail = re.split(r"^(Examples?::?)\s*$", chunk, maxsplit=1, flags=re.M)
                texts.append(head)
                example = example or inspect.cleandoc(tail)
            else:
                texts.append(chunk)
        elif kind in ("parameters", "other_parameters", "attributes"):
            for param in section.value:
                params.setdefault(param.name, " ".join(str(param.description).split()))
        elif kind == "examples":
            example = example or "\n".join(str(v[1]) for v in section.value)
    return Parsed(markdown("\n\n".join(t.strip() for t in texts if t.strip())), params, example)


def cell(text: object) -> str:
    """``text`` made safe for one Markdown table cell."""
    return markdown(" ".join(str(text).split())).replace("|", "\\|")


def annotation(value: object) -> str:
    """A parameter's annotation as short text."""
    if value is _PLAIN:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__name__
    return re.sub(r"\b(?:typing|collections\.abc|torch\.nn\.modules\.[\w.]+)\.", "", str(value))


def default(value: object) -> str:
    """A parameter's default as code, or *required*."""
    if value is _PLAIN:
        return "*required*"
    return f"`{value!r}`".replace("|", "\\|")


def literal_values(func: Callable[..., Any], name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` annotation of ``func``'s parameter ``name`` allows, or ()."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # a hint naming an optional dependency
        return ()
    hint = hints.get(name)
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    return ()


def options_table(
    func: Callable[..., Any],
    descriptions: Mapping[str, str],
    *,
    skip: frozenset[str] = frozenset(),
) -> str:
    """A Markdown table of ``func``'s keyword parameters: name, default, type, description."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return "*No signature available.*\n"
    rows = ["| Option | Default | Type | Description |", "|---|---|---|---|"]
    for param in signature.parameters.values():
        if param.name in skip or param.name == "self":
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            name = ("*" if param.kind is param.VAR_POSITIONAL else "**") + param.name
            rows.append(f"| `{name}` |  |  | {cell(descriptions.get(param.name, ''))} |")
            continue
        rows.append(
            f"| `{param.name}` | {default(param.default)} | {cell(annotation(param.annotation))} "
            f"| {cell(descriptions.get(param.name, ''))} |"
        )
    if len(rows) == 2:
        return "*No options.*\n"
    return "\n".join(rows) + "\n"
