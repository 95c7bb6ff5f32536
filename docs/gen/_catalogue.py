"""The loss catalogue: one page per registered loss and an index by family, from the registry."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from _text import cell, literal_values, options_table, parse

from losskit import losses

DOCS = Path(__file__).resolve().parents[1]
_TORCH_DOCS = "https://pytorch.org/docs/stable/generated/torch.nn.{}.html"
_DEPRECATED = frozenset({"size_average", "reduce"})
_SHAPES = {
    "same": "input and target have the same shape (never broadcast)",
    "class_dim": "input `(N, C, *S)`, target `(N, *S)` (class dim 1)",
    "any": "shapes as the loss documents them (not checked against each other)",
}


def page_path(name: str) -> str:
    """Where the catalogue page of the loss ``name`` lives, relative to docs/."""
    return f"reference/losses/{name}.md"


def _torch_base(factory: type) -> type | None:
    for base in factory.__mro__[1:]:
        if base.__module__.startswith("torch.nn") and base.__name__.endswith("Loss"):
            return base
    return None


def _torch_formula(base: type) -> str:
    doc = inspect.getdoc(base) or ""
    match = re.search(r"^\.\. math::\n((?:[ \t]+.*\n|\n)+)", doc, flags=re.MULTILINE)
    return inspect.cleandoc(match.group(1)) if match else ""


def _peer_rows(spec: losses.LossSpec, factory: Any) -> list[str]:
    """Rows of docs/coming_from.md whose losskit column names this loss."""
    names = {f'"{spec.name}"', f"`{spec.name}`", getattr(factory, "__name__", spec.name)}
    rows = []
    for line in (DOCS / "coming_from.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("MONAI", "kornia", "smp"):
            text = " ".join(cells[1:])
            if any(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", text) for n in names):
                rows.append(line)
    return rows


def _reductions(factory: Callable[..., Any], descriptions: dict[str, str]) -> str:
    values = literal_values(factory.__init__, "reduction")  # type: ignore[misc]
    if not values:
        values = tuple(
            dict.fromkeys(
                re.findall(r"'(none|mean|sum|batchmean)'", descriptions.get("reduction", ""))
            )
        )
    if not values:
        return "This loss takes no `reduction` option.\n"
    listed = ", ".join(f'`"{v}"`' for v in values)
    chosen = inspect.signature(factory).parameters["reduction"].default
    return f"`reduction` takes {listed}; the default is `{chosen!r}`.\n"


def render(spec: losses.LossSpec) -> str:
    """The catalogue page of one registered loss."""
    factory: Any = spec.factory
    base = _torch_base(factory) if isinstance(factory, type) else None
    own = base is None
    doc = parse(factory if own else base)
    if "check" not in doc.params:  # torch's docstring: losskit's check option, as documented
        doc = replace(doc, params={**doc.params, "check": parse(losses.DiceLoss).params["check"]})
    class_name = getattr(factory, "__name__", spec.name)
    public = class_name in losses.__all__
    where = (
        f"[`losskit.losses.{class_name}`](../api/losses.md#losskit.losses.{class_name})"
        if public and own
        else f"`{class_name}` (checked `torch.nn.{class_name}`)"
        if base is not None
        else f"`{factory.__module__}.{class_name}`"
    )
    lines = [
        f"# `{spec.name}`",
        "",
        cell(spec.description),
        "",
        "| Field | Value |",
        "|---|---|",
        f"| Family | [{spec.family}](index.md#{spec.family}) |",
        f"| Aliases | {', '.join(f'`{a}`' for a in spec.aliases) or '-'} |",
        f"| Class | {where} |",
        f'| Build | `losses.get("{spec.name}")`, `Term("{spec.name}", ...)`, '
        f'`loss = "{spec.name}"` in a config |',
        "",
        "## Formula",
        "",
    ]
    if own:
        body = doc.text.split("\n\n", 1)
        rest = (
            body[1] if len(body) > 1 and body[0].strip() == spec.description.strip() else doc.text
        )
        lines += [rest or cell(spec.description), ""]
    else:
        formula = _torch_formula(base)
        lines += [f"As `torch.nn.{base.__name__}` computes it (unreduced, per element):", ""]
        lines += ["```text", formula, "```", ""] if formula else []
    contract = getattr(factory, "contract", None)
    lines += ["## Input contract", ""]
    if contract is not None:
        lines += [
            "| | |",
            "|---|---|",
            f"| Input | `{contract.input}` |",
            f"| Target | `{contract.target}` |",
            f"| Shapes | `{contract.shape}`: {_SHAPES.get(contract.shape, '')} |",
            "",
            "Checked on every call (shapes, dtypes, devices) and on the first calls (values), "
            'see [`Contract`](../api/losses.md#losskit.losses.Contract); `check="off"` skips '
            "the value checks.",
            "",
        ]
    else:
        lines += ["No declared contract: the loss checks its own inputs.", ""]
    lines += [
        "## Options",
        "",
        options_table(factory, doc.params, skip=_DEPRECATED),
        "",
        "## Reductions",
        "",
        _reductions(factory, dict(doc.params)),
        "",
        "## Peers",
        "",
    ]
    peers = []
    if base is not None:
        peers.append(
            f"- torch: [`torch.nn.{base.__name__}`]({_TORCH_DOCS.format(base.__name__)}), "
            "same options, with losskit's input checks."
        )
    renamed = getattr(factory, "renamed_options", None) or {}
    peers += [f"- `{option}`: {cell(text)}" for option, text in renamed.items()]
    rows = _peer_rows(spec, factory)
    if rows:
        peers += [
            "",
            "From [Coming from MONAI, kornia, smp](../../coming_from.md):",
            "",
            "| Peer | Peer option | losskit |",
            "|---|---|---|",
            *rows,
        ]
    lines += peers or ["No peer equivalent recorded."]
    lines.append("")
    if own and doc.example:
        lines += ["## Example", "", "```python", doc.example, "```", ""]
    return "\n".join(lines)


def index(specs: list[losses.LossSpec]) -> str:
    """The catalogue's index: every loss by family."""
    lines = [
        "# Loss catalogue",
        "",
        f"{len(specs)} losses, generated from the loss registry "
        "([`losskit.losses.available()`](../api/losses.md#losskit.losses.available)): a loss "
        "registered with `losses.register` appears here. Aliases resolve to the same loss.",
        "",
    ]
    for family in sorted({s.family for s in specs}):
        lines += [
            f"## {family}",
            "",
            "| Loss | Aliases | Input -> target | Description |",
            "|---|---|---|---|",
        ]
        for spec in (s for s in specs if s.family == family):
            contract = getattr(spec.factory, "contract", None)
            io = f"`{contract.input}` -> `{contract.target}`" if contract is not None else ""
            aliases = ", ".join(f"`{a}`" for a in spec.aliases)
            lines.append(
                f"| [`{spec.name}`]({spec.name}.md) | {aliases} | {io} | {cell(spec.description)} |"
            )
        lines.append("")
    return "\n".join(lines)


def pages() -> dict[str, str]:
    """Every catalogue page by its path under docs/."""
    specs = losses.available()
    out = {"reference/losses/index.md": index(specs)}
    out.update({page_path(s.name): render(s) for s in specs})
    return out
