"""The config reference: each section of a run file and the constructor its tables go to."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from _text import annotation, cell, default, options_table, parse

from losskit import components, config

# Sections whose tables hold the arguments of a registered component, by the section's name.
_NAMED = {
    "optimizer": ("name", components.OPTIMIZERS),
    "scheduler": ("name", components.LR_SCHEDULERS),
    "logging": ("[logging.NAME]", components.SINKS),
}
_BUILT_INS = {
    "[model] source": components.MODELS,
    "[data] source": components.DATA,
    "[trainer] metrics": components.METRICS,
}


def _models(annotation: Any) -> list[Any]:
    """The pydantic models inside a field's annotation (``X | None``, ``dict[str, X]``)."""
    if hasattr(annotation, "model_fields"):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _declared(model: Any) -> list[str]:
    rows = ["| Field | Default | Type | Description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        value = (
            inspect.Parameter.empty
            if info.is_required()
            else info.get_default(call_default_factory=True)
        )
        rows.append(
            f"| `{name}` | {default(value)} | {cell(annotation(info.annotation))} "
            f"| {cell(info.description or '')} |"
        )
    return rows


def _constructor_section(section: str, lead: str = "Every other field is") -> list[str]:
    func = config.constructor(section)
    supplied = config.SUPPLIED.get(section, {})
    owner = f"{func.__module__.split('._')[0]}.{func.__qualname__}"
    lines = [
        f"{lead} an argument of `{owner}`, checked against its signature when the file is read:",
        "",
        options_table(func, parse(func).params, skip=frozenset(supplied)),
    ]
    if supplied:
        lines += ["", "Supplied by the runner, not the file:", ""]
        lines += [f"- `{name}`: {cell(where)}" for name, where in supplied.items()]
    return lines


def _named_section(section: str) -> list[str]:
    field, registry = _NAMED[section]
    supplied = frozenset(config.SUPPLIED.get(section, {}))
    lines = [
        f"`{field}` picks one of the {len(registry)} registered names; the other fields are "
        "that class's arguments:",
        "",
    ]
    for entry in registry.entries():
        aliases = f" (also {', '.join(f'`{a}`' for a in entry.aliases)})" if entry.aliases else ""
        factory = entry.factory
        lines += [
            f"### `{entry.name}`{aliases}",
            "",
            cell(entry.description or parse(factory).text.split("\n")[0]),
            "",
            options_table(factory, parse(factory).params, skip=supplied | {"params", "optimizer"}),
            "",
        ]
    return lines


def page() -> str:
    """The whole config reference."""
    lines = [
        "# Config reference",
        "",
        "A run file (TOML, `losskit run FILE`) holds the constructors' arguments; this page is "
        "generated from `losskit.config.RunConfig`, the constructors' signatures and the "
        "component registries, so it lists what the code accepts. How to write one: "
        "[`losskit.config`](api/config.md).",
        "",
        "## Top-level keys",
        "",
    ]
    lines += _constructor_section("criterion", "Every top-level key besides the sections is")
    for name, info in config.RunConfig.model_fields.items():
        lines += ["", f"## `[{name}]`", ""]
        models = _models(info.annotation)
        for model in models:
            summary = parse(model).text
            if summary:
                lines += [summary, ""]
        if name == "logging" and info.description:
            lines += [cell(info.description), ""]
        if name in ("terms",):
            lines += [*_declared(models[0]), "", *_constructor_section("terms"), ""]
            lines += ["The loss's own options: its page in the [catalogue](losses/index.md)."]
        elif name == "trainer":
            lines += _constructor_section("trainer")
        elif name in _NAMED or name == "optimizers":
            if models:
                lines += [*_declared(models[0]), ""]
            if name != "optimizers":
                lines += _named_section(name)
            else:
                lines.append("Each `[optimizers.NAME]` table is an `[optimizer]` table.")
        elif models:
            lines += _declared(models[0])
    lines += ["", "## Built-in names", ""]
    for field, registry in _BUILT_INS.items():
        lines += [f"### {field}", "", "| Name | Description |", "|---|---|"]
        lines += [f"| `{n}` | {cell(d)} |" for n, d in registry.available().items()]
        lines.append("")
    return "\n".join(lines)


def pages() -> dict[str, str]:
    """The config reference by its path under docs/."""
    return {"reference/config.md": page()}
