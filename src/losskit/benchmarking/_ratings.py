"""The table in the words people use: low / medium / high per column, from the measurements of
one run, relative to the best case in that run.

Every threshold is here and in docs/bench.md:

- **cost** (forward+backward median time) over the fastest case's: up to
  :data:`COST_RATIOS`\\ [0] ``low``, up to [1] ``medium``, above ``high``;
- **memory** (peak MiB, each floored at :data:`MEMORY_FLOOR_MIB`: smaller CPU deltas are page
  noise) over the leanest case's: the same with :data:`MEMORY_RATIOS`;
- **convergence speed** per task: mean ``steps_to_target`` over the fewest on that task: up to
  :data:`SPEED_RATIOS`\\ [0] ``high``, up to [1] ``medium``, above ``low``; a seed that never
  reached the target, or diverged, makes it ``low``;
- **stability**: ``low`` when a check flagged the case (non-finite value or gradient, a zero
  gradient at confidently wrong predictions) or a convergence seed diverged; ``medium`` when its
  worst finite half-precision gradient error (floored at :data:`HALF_ERROR_FLOOR`) is above
  :data:`STABILITY_RATIO` times the smallest in the run; ``high`` otherwise.

A column is ``None`` when it was not measured (``memory=False``, ``stability=False``, no
convergence, or no case with a figure to compare).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "COST_RATIOS",
    "HALF_ERROR_FLOOR",
    "MEMORY_FLOOR_MIB",
    "MEMORY_RATIOS",
    "SPEED_RATIOS",
    "STABILITY_RATIO",
    "Measured",
    "Rating",
    "rate",
    "thresholds",
]

Level = Literal["low", "medium", "high"]

COST_RATIOS = (1.5, 4.0)
"""Time over the fastest case's: ``low`` cost up to 1.5x, ``medium`` up to 4x, else ``high``."""
MEMORY_RATIOS = (1.5, 4.0)
"""Peak memory over the leanest case's: ``low`` up to 1.5x, ``medium`` up to 4x, else ``high``."""
MEMORY_FLOOR_MIB = 1.0
"""Peaks below this count as this much: on the CPU, resident-size deltas under 1 MiB are noise."""
SPEED_RATIOS = (1.25, 2.0)
"""Mean steps to target over the fewest on the task: ``high`` speed up to 1.25x, ``medium`` up
to 2x, else ``low``."""
STABILITY_RATIO = 10.0
"""Half-precision gradient error above this many times the smallest in the run: ``medium``."""
HALF_ERROR_FLOOR = 1e-3
"""Half-precision errors below this count as this much: bfloat16 rounds at about 4e-3, so
smaller differences between losses are rounding luck, not stability."""


def thresholds() -> dict[str, Any]:
    """The thresholds as a record (written into ``bench.json``)."""
    return {
        "cost_ratios": list(COST_RATIOS),
        "memory_ratios": list(MEMORY_RATIOS),
        "memory_floor_mib": MEMORY_FLOOR_MIB,
        "speed_ratios": list(SPEED_RATIOS),
        "stability_ratio": STABILITY_RATIO,
        "half_error_floor": HALF_ERROR_FLOOR,
    }


@dataclass(frozen=True)
class Measured:
    """What one case's ratings are derived from (``None``: not measured).

    ``steps`` maps a task to the mean steps to target, ``None`` when some seed did not reach it
    (or diverged).
    """

    name: str
    time_s: float | None = None
    memory_mib: float | None = None
    flagged: bool | None = None
    half_error: float | None = None
    diverged: bool = False
    steps: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Rating:
    """One case's ratings and the ratios they come from."""

    name: str
    cost: Level | None
    memory: Level | None
    speed: dict[str, Level]
    stability: Level | None
    ratios: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cost": self.cost,
            "memory": self.memory,
            "convergence_speed": self.speed,
            "stability": self.stability,
            "ratios": self.ratios,
        }


def _level(ratio: float, bounds: tuple[float, float], good: Level, bad: Level) -> Level:
    if ratio <= bounds[0]:
        return good
    return "medium" if ratio <= bounds[1] else bad


def _ratio(value: float | None, best: float | None) -> float | None:
    # Every figure compared is positive: times, floored peaks and errors, steps >= 1.
    return None if value is None or best is None else value / best


def _smallest(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def rate(cases: Sequence[Measured]) -> list[Rating]:
    """Ratings of each case against the best in ``cases`` (see the module notes).

    Example::

        >>> fast = Measured("a", time_s=1e-3, steps={"digits": 100.0})
        >>> slow = Measured("b", time_s=5e-3, steps={"digits": 150.0})
        >>> [(r.cost, r.speed["digits"]) for r in rate([fast, slow])]
        [('low', 'high'), ('high', 'medium')]
    """
    fastest = _smallest([c.time_s for c in cases])
    floor = [None if c.memory_mib is None else max(c.memory_mib, MEMORY_FLOOR_MIB) for c in cases]
    leanest = _smallest(floor)
    halves = [None if c.half_error is None else max(c.half_error, HALF_ERROR_FLOOR) for c in cases]
    half = _smallest(halves)
    tasks = {task for c in cases for task in c.steps}
    fewest = {task: _smallest([c.steps.get(task) for c in cases]) for task in tasks}
    out = []
    for case, mem, half_error in zip(cases, floor, halves, strict=True):
        cost_ratio, mem_ratio = _ratio(case.time_s, fastest), _ratio(mem, leanest)
        half_ratio = _ratio(half_error, half)
        speed_ratio = {task: _ratio(steps, fewest[task]) for task, steps in case.steps.items()}
        speed: dict[str, Level] = {
            task: "low" if r is None else _level(r, SPEED_RATIOS, "high", "low")
            for task, r in speed_ratio.items()
        }
        out.append(
            Rating(
                case.name,
                None if cost_ratio is None else _level(cost_ratio, COST_RATIOS, "low", "high"),
                None if mem_ratio is None else _level(mem_ratio, MEMORY_RATIOS, "low", "high"),
                speed,
                _stability(case, half_ratio),
                {
                    "cost": cost_ratio,
                    "memory": mem_ratio,
                    "convergence_speed": speed_ratio,
                    "half_precision_error": half_ratio,
                },
            )
        )
    return out


def _stability(case: Measured, half_ratio: float | None) -> Level | None:
    if case.flagged or case.diverged:
        return "low"
    if case.flagged is None:
        return None
    if half_ratio is not None and half_ratio > STABILITY_RATIO:
        return "medium"
    return "high"
