"""``convergence.png``: the validation metric over steps per case and task, with its band."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from losskit.benchmarking._report import CaseResult

__all__ = ["band", "plot_curves"]


def band(curves: Sequence[Sequence[float]], points: int) -> tuple[list[float], ...]:
    """Mean, min and max over seeds at each of ``points`` evaluations (NaN past a diverged
    seed's end; NaN where no seed has a value).

    Example::

        >>> band([[0.5, 0.7], [0.3]], 2)
        ([0.4, 0.7], [0.3, 0.7], [0.5, 0.7])
    """
    mean, low, high = [], [], []
    for i in range(points):
        values = [c[i] for c in curves if i < len(c)]
        mean.append(sum(values) / len(values) if values else math.nan)
        low.append(min(values) if values else math.nan)
        high.append(max(values) if values else math.nan)
    return mean, low, high


def plot_curves(cases: Sequence[CaseResult], settings: Mapping[str, Any], path: Path) -> None:
    """One panel per task: each case's mean metric over seeds, the min-max band, the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from losskit.benchmarking._report import save_figure
    from losskit.report import literal

    tasks = {task["name"]: task for task in settings.get("tasks", [])}
    names = [
        t for t in tasks if any(r.task == t and r.applicable for c in cases for r in c.convergence)
    ]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for index, case in enumerate(cases):
            colour = f"C{index % 10}"  # one colour per case across the panels
            for run in case.convergence:
                if run.task != name or not run.applicable:
                    continue
                mean, low, high = band(run.curves, len(run.eval_steps))
                ax.plot(run.eval_steps, mean, color=colour, label=literal(case.name))
                ax.fill_between(run.eval_steps, low, high, color=colour, alpha=0.2)
        task = tasks[name]
        # An untrained regressor's R² can be far below 0; the approach to the target is the story.
        ax.set_ylim(bottom=max(ax.get_ylim()[0], task["target"] - 1.0))
        ax.axhline(task["target"], color="grey", linestyle="--", linewidth=1)
        ax.set_title(literal(f"{name} (target {task['metric']} {task['target']:g})"), fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(literal(f"validation {task['metric']}"))
        ax.legend(fontsize="small")
    fig.suptitle(
        f"losskit bench: convergence over {settings.get('seeds', '?')} seeds (band: min-max)"
    )
    fig.tight_layout()
    save_figure(fig, path)
