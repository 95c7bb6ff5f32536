"""One page per balancer from the balancer registry: what it needs, what it costs, its options."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any

from _text import cell, options_table, parse

from losskit import balancers

_LEVELS = {
    "static": "nothing but the term weights",
    "loss": "the loss values of the keys (one backward pass through the weighted total)",
    "gradient": "the gradient of every key with respect to the shared parameters "
    '(`shared=`) or to a shared representation (`features=`, `level="features"`): '
    "one backward pass per key",
}
_TASKS = {
    "multidigits": "multidigits (two tasks, losses on one scale)",
    "demo_tasks": "demo (three tasks, losses on different scales)",
}


def page_path(name: str) -> str:
    """Where the page of the balancer ``name`` lives, relative to docs/."""
    return f"reference/balancers/{name}.md"


def _measured() -> dict[str, Any]:
    text = resources.files("losskit.balancers").joinpath("measured.json").read_text("utf-8")
    found: dict[str, Any] = json.loads(text)
    return found


def _capabilities(entry: Any) -> balancers.Capabilities:
    factory = entry.factory
    if isinstance(factory, balancers.GradientMethod):
        declared = balancers.Gradient.capabilities
        return dataclasses.replace(declared, random_draws=factory.random_draws)
    return balancers.capabilities(factory)


def _cost(name: str, measured: dict[str, Any]) -> list[str]:
    rows = []
    for task, figures in measured["tasks"].items():
        found = figures.get(name)
        if found is None:
            continue
        memory = found.get("memory_vs_sum")
        memory_text = f"{memory:.2f}x" if memory is not None else "-"
        rows.append(
            f"| {_TASKS.get(task, task)} | {found['step_vs_sum']:.2f}x | {memory_text} "
            f"| {found['tier'] if found['tier'] is not None else '-'} "
            f"| {found['mean']:.4f} |"
        )
    if not rows:
        return ["Not in the shipped balancer table (`benchmarks/balancer_table.py`)."]
    return [
        "From the shipped balancer table (`losskit/balancers/measured.json`, "
        f"{measured['seeds']} seeds, `{measured['command']}`):",
        "",
        "| Benchmark | Step time vs `sum` | Peak memory vs `sum` | Tier | Test metric |",
        "|---|---|---|---|---|",
        *rows,
    ]


def render(entry: Any, measured: dict[str, Any]) -> str:
    """The page of one registered balancer."""
    factory = entry.factory
    gradient = isinstance(factory, balancers.GradientMethod)
    built = balancers.Gradient if gradient else factory
    doc = parse(built)
    caps = _capabilities(entry)
    lines = [
        f"# `{entry.name}`",
        "",
        cell(entry.description),
        "",
        "| Field | Value |",
        "|---|---|",
        f"| Level | [{entry.family}](index.md#{entry.family}) |",
        f"| Aliases | {', '.join(f'`{a}`' for a in entry.aliases) or '-'} |",
        f'| Use | `Criterion(..., balancer="{entry.name}")` or `balancer = {{ name = '
        f'"{entry.name}", ... }}` in a config |',
    ]
    if gradient:
        lines.append(
            f"| Aggregator | `torchjd.aggregation.{factory.aggregator}` (extra `balancing`) |"
        )
    else:
        lines.append(
            f"| Class | [`losskit.balancers.{built.__name__}`]"
            f"(../api/balancers.md#losskit.balancers.{built.__name__}) |"
        )
    lines += ["", "## What it needs", "", f"- {_LEVELS.get(entry.family, entry.family)}."]
    if gradient or "shared" in _required(built):
        lines.append("- the shared parameters: `shared=` a module, or a list of them.")
    lines += [
        "",
        "Declared [capabilities](../api/balancers.md#losskit.balancers.Capabilities):",
        "",
        "| Capability | Value |",
        "|---|---|",
        *(f"| `{f.name}` | {getattr(caps, f.name)} |" for f in dataclasses.fields(caps)),
        "",
        "## Cost",
        "",
        *_cost(entry.name, measured),
        "",
        "## Options",
        "",
    ]
    if gradient:
        defaults = ", ".join(f"`{k}={v!r}`" for k, v in factory.defaults.items()) or "none"
        lines += [
            f'`Gradient("{entry.name}", ...)` takes these; any other option goes to '
            f"`torchjd.aggregation.{factory.aggregator}` (defaults set here: {defaults}).",
            "",
            options_table(balancers.Gradient, doc.params, skip=frozenset({"method", "options"})),
        ]
    else:
        lines.append(options_table(built, doc.params))
    lines.append("")
    if doc.text:
        lines += ["## How it works", "", doc.text, ""]
    return "\n".join(lines)


def _required(factory: Any) -> set[str]:
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY} | {
        p.name for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def index(entries: list[Any]) -> str:
    """Every balancer by level."""
    lines = [
        "# Balancers",
        "",
        f"{len(entries)} balancers, generated from the balancer registry "
        "([`losskit.balancers.available()`](../api/balancers.md#losskit.balancers.available)). "
        "When to use which: [Balancing](../../balancing.md).",
        "",
    ]
    for level in (
        "static",
        "loss",
        "gradient",
        *sorted({e.family for e in entries} - set(_LEVELS)),
    ):
        chosen = [e for e in entries if e.family == level]
        if not chosen:
            continue
        lines += [
            f"## {level}",
            "",
            f"Needs {_LEVELS.get(level, level)}.",
            "",
            "| Balancer | Description |",
            "|---|---|",
            *(f"| [`{e.name}`]({e.name}.md) | {cell(e.description)} |" for e in chosen),
            "",
        ]
    return "\n".join(lines)


def pages() -> dict[str, str]:
    """Every balancer page by its path under docs/."""
    entries = balancers.BALANCERS.entries()
    measured = _measured()
    out = {"reference/balancers/index.md": index(entries)}
    out.update({page_path(e.name): render(e, measured) for e in entries})
    return out
