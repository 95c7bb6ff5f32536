"""Which balancer to start with, answered from measurements shipped with losskit.

``benchmarks/balancer_table.py`` runs every balancer through ``losskit compare`` on the two
shipped multi-task benchmarks -- *multidigits* (two tasks whose losses are on the same scale)
and the demo's three tasks (losses on very different scales) -- and its figures ship as
``losskit/balancers/measured.json``. The advice reads them: start with the cheapest method in
the first tier (not separable from the best by the 95% confidence intervals), know what each
gradient-level method costs per step, and run ``losskit tune`` when the first tier is wide (the
choice of balancer matters less than the weights) or your tasks differ from these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from losskit.errors import ConfigError

__all__ = ["BalancerAdvice", "Measured", "advise", "measured"]

Scales = Literal["similar", "different"]

#: Findings that disqualify a method's runs (it diverged, went non-finite or starved a key);
#: others (overfitting, a plateau) describe the task and budget, not the balancer.
DISQUALIFYING = frozenset(
    {"nonfinite", "divergence", "share_collapse", "term_diverges_while_total_falls"}
)

#: A method within this multiple of a summed step's time costs the same as far as the table can
#: tell (its times come from runs on a shared CPU); among those the plain ``sum`` is preferred,
#: having nothing to tune and no state.
SAME_COST = 1.25

#: The shipped benchmark that stands for each case.
TASK_OF: dict[str, str] = {"similar": "multidigits", "different": "demo_tasks"}


@dataclass(frozen=True)
class Measured:
    """One balancer on one benchmark: the mean test metric over seeds, its 95% confidence
    interval, ``compare``'s tier (1: not separable from the best), the time of a training step
    and its peak memory relative to ``sum``, and the linter's findings on its runs."""

    method: str
    mean: float
    ci95: tuple[float, float]
    tier: int | None
    step_vs_sum: float
    memory_vs_sum: float | None
    findings: tuple[str, ...]


@dataclass(frozen=True)
class BalancerAdvice:
    """What to start with for one case, and why, with the costs behind it.

    Attributes:
        scales: ``"similar"`` or ``"different"`` loss scales.
        start_with: ``sum`` when it is in the first tier, else the cheapest balancer there
            (time per step; within :data:`SAME_COST` of a summed step counts as equal).
        why: the measurement behind it, in one sentence.
        first_tier: every balancer not separable from the best, cheapest first.
        table: every measured balancer on this case, best mean first.
        tune_when: when ``losskit tune`` is the better next step.
        source: the benchmark, its seeds and the command that reproduces it.
    """

    scales: Scales
    start_with: str
    why: str
    first_tier: tuple[str, ...]
    table: tuple[Measured, ...]
    tune_when: str
    source: str


@cache
def _shipped() -> dict[str, Any]:
    text = resources.files("losskit.balancers").joinpath("measured.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def measured(task: str, figures: Mapping[str, Any] | None = None) -> tuple[Measured, ...]:
    """The measured rows of one benchmark (``"multidigits"`` or ``"demo_tasks"``), best mean
    first, from ``figures`` (the JSON line of ``benchmarks/balancer_table.py``) or the shipped
    measurements.

    Example::

        >>> rows = measured("multidigits")
        >>> "sum" in [row.method for row in rows]
        True
    """
    data = figures if figures is not None else _shipped()
    try:
        rows = data["tasks"][task]
    except KeyError:
        raise ConfigError(
            f"no measurements for {task!r}; measured: {sorted(data.get('tasks', {}))}"
        ) from None
    table = [
        Measured(
            method=name,
            mean=float(row["mean"]),
            ci95=(float(row["ci95"][0]), float(row["ci95"][1])),
            tier=row.get("tier"),
            step_vs_sum=float(row["step_vs_sum"]),
            memory_vs_sum=row.get("memory_vs_sum"),
            findings=tuple(row.get("findings", ())),
        )
        for name, row in rows.items()
    ]
    return tuple(sorted(table, key=lambda r: -r.mean))


def advise(scales: Scales = "similar", figures: Mapping[str, Any] | None = None) -> BalancerAdvice:
    """Which balancer to start with when the losses are on ``"similar"`` or ``"different"``
    scales, from the measurements (the shipped ones unless ``figures`` is given).

    Example::

        >>> advice = advise("similar")
        >>> advice.start_with in advice.first_tier
        True
    """
    if scales not in TASK_OF:
        raise ConfigError(f"scales must be one of {sorted(TASK_OF)}, got {scales!r}")
    data = figures if figures is not None else _shipped()
    task = TASK_OF[scales]
    table = measured(task, data)
    clean = [r for r in table if r.tier == 1 and not DISQUALIFYING.intersection(r.findings)]
    first = sorted(clean or [r for r in table if r.tier == 1], key=lambda r: r.step_vs_sum)
    if not first:
        raise ConfigError(f"the measurements of {task!r} rank no method in the first tier")
    cheap = [r for r in first if r.step_vs_sum <= SAME_COST]
    pick = next((r for r in cheap if r.method == "sum"), cheap[0] if cheap else first[0])
    best = table[0]
    seeds = data.get("seeds", "?")
    case = "losses on one scale" if scales == "similar" else "losses on very different scales"
    why = (
        f"on {task} ({case}, {seeds} seeds) its mean test metric {pick.mean:.4f} "
        f"[{pick.ci95[0]:.4f}, {pick.ci95[1]:.4f}] is not separable from the best "
        f"({best.method}, {best.mean:.4f}), at {pick.step_vs_sum:.2f}x the time of a summed step"
    )
    wide = len(first) >= 2 and 2 * len(first) >= len(table)
    tune_when = (
        f"{len(first)} of {len(table)} balancers are not separable here: the choice of balancer "
        "matters less than the term weights, so `losskit tune` over the weights (and the "
        "balancer as one more choice) is the better next step when the metric matters"
        if wide
        else "run `losskit tune` when your tasks differ from these benchmarks (more keys, "
        "other losses), searching the weights and the balancer together"
    )
    return BalancerAdvice(
        scales=scales,
        start_with=pick.method,
        why=why,
        first_tier=tuple(r.method for r in first),
        table=table,
        tune_when=tune_when,
        source=str(data.get("command", "python benchmarks/balancer_table.py")),
    )
