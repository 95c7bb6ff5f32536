"""The convergence and ratings tables ``losskit bench`` prints (rich)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from losskit.benchmarking._convergence import Spread

if TYPE_CHECKING:
    from rich.table import Table

    from losskit.benchmarking._ratings import Rating
    from losskit.benchmarking._report import CaseResult

__all__ = ["convergence_table", "ratings_table", "spread_text"]


def spread_text(spread: Spread | None, digits: int = 3) -> str:
    """``mean ± std (min-max)`` of the seeds that have the figure, or ``-``.

    Example::

        >>> spread_text(Spread([100.0, 120.0, None]))
        '110 ± 10 (100-120)'
    """
    if spread is None or spread.mean is None:
        return "-"
    return (
        f"{spread.mean:.{digits}g} ± {spread.std:.2g} "
        f"({spread.min:.{digits}g}-{spread.max:.{digits}g})"
    )


def convergence_table(cases: Sequence[CaseResult], settings: Mapping[str, Any]) -> Table:
    """One row per case and task: steps and seconds to the target, best metric, seeds reached."""
    from rich.table import Table

    tasks = {task["name"]: task for task in settings.get("tasks", [])}
    seeds = settings.get("seeds", "?")
    table = Table(title=f"convergence: {seeds} seeds, mean ± std (min-max) over seeds")
    for column in ("case", "task", "target", "steps to target", "s to target", "best", "reached"):
        table.add_column(column, justify="left" if column in ("case", "task") else "right")
    for case in cases:
        for run in case.convergence:
            task = tasks.get(run.task, {})
            target = f"{task['metric']} >= {task['target']:g}" if task else "-"
            if not run.applicable:
                table.add_row(
                    case.name, run.task, target, f"[yellow]not applicable: {run.reason}[/]"
                )
                continue
            reached = f"{run.reached}/{len(run.seeds)}"
            if run.diverged:
                reached += f" [red]({run.diverged} diverged)[/]"
            table.add_row(
                case.name,
                run.task,
                target,
                spread_text(run.steps_to_target),
                spread_text(run.seconds_to_target, 2),
                spread_text(run.best_metric),
                reached,
            )
    return table


def ratings_table(ratings: Sequence[Rating]) -> Table:
    """Cost, memory, convergence speed (per task) and stability in words."""
    from rich.table import Table

    table = Table(title="ratings against the best case of this run (thresholds: docs/bench.md)")
    for column in ("case", "cost", "memory", "convergence speed", "stability"):
        table.add_column(column)
    for r in ratings:
        speed = ", ".join(f"{task} {level}" for task, level in r.speed.items()) or "-"
        table.add_row(r.name, r.cost or "-", r.memory or "-", speed, r.stability or "-")
    return table
