"""The doctor's console view: rich tables of the keys, the conflict matrix and the findings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from losskit.diagnostics._doctor import Diagnosis


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _inputs(report: Diagnosis) -> Table:
    table = Table(title="what each term reads", title_justify="left")
    for column in ("key", "role", "shape", "dtype", "min", "max", "non-finite"):
        table.add_column(column, justify="left" if column in ("key", "role", "dtype") else "right")
    for key, term in report.terms.items():
        for role, summary in term.inputs.items():
            table.add_row(
                key,
                role,
                str(summary.shape),
                summary.dtype,
                _number(summary.min),
                _number(summary.max),
                str(summary.nonfinite),
                style="red" if summary.nonfinite else None,
            )
    return table


def _terms(report: Diagnosis) -> Table:
    groups = list(dict.fromkeys(g for t in report.terms.values() for g in t.grad_norms))
    table = Table(
        title="value, weighted share and gradient norm (of weight x term) per model part",
        title_justify="left",
    )
    for column in ("key", "value", "weight", "share"):
        table.add_column(column, justify="left" if column == "key" else "right")
    for group in groups:
        table.add_column(f"grad {group}", justify="right")
    for key, term in report.terms.items():
        share = "-" if term.share is None else f"{100 * term.share:.1f}%"
        table.add_row(
            key,
            _number(term.value),
            _number(term.weight),
            share,
            *[_number(term.grad_norms.get(g)) for g in groups],
            style=None if term.finite else "red",
        )
    return table


def _conflicts(report: Diagnosis) -> Table | None:
    if not report.conflicts:
        return None
    names = list(dict.fromkeys(n for pair in report.conflicts for n in pair))
    table = Table(
        title=f"gradient cosine on the {len(report.shared)} shared parameters",
        title_justify="left",
    )
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for a in names:
        cells = []
        for b in names:
            cos = 1.0 if a == b else report.conflicts.get((a, b), report.conflicts.get((b, a)))
            if cos is None:
                cells.append(Text("-"))
            else:
                cells.append(Text(f"{cos:.2f}", style="red" if cos < 0 else ""))
        table.add_row(a, *cells)
    return table


def _findings(report: Diagnosis) -> Group | Text:
    """One finding after another, its message indented below its heading at the full width
    (wrapped once, not folded into a narrow column)."""
    if not report.findings:
        return Text("no problems found", style="green")
    parts: list[Text | Padding] = [Text("findings", style="italic")]
    for finding in report.findings:
        style = "bold red" if finding.severity == "error" else "yellow"
        heading = Text(f"{finding.severity} {finding.kind}", style=style)
        heading.append(f": {finding.key}" if finding.key else "", style="")
        parts += [heading, Padding(Text(finding.message), (0, 0, 0, 2))]
    return Group(*parts)


def render(report: Diagnosis) -> Group:
    """The report as rich renderables, one table after another."""
    parts: list[Table | Text | Group] = [_inputs(report), _terms(report)]
    conflicts = _conflicts(report)
    if conflicts is not None:
        parts.append(conflicts)
    parts.append(_findings(report))
    return Group(*parts)
