"""The curves the detectors read: per-step points and per-interval means of one key.

A :class:`Curve` gives, for every point, the first and the last training step it covers (the
same step for a per-step point; the steps since the previous flush for an interval mean), so a
finding's range covers the steps where the pattern shows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from losskit.tracking import History

__all__ = ["Curve", "acf", "interval_means", "moving_average", "points", "rolling_median"]


@dataclass(frozen=True)
class Curve:
    """Values of one key of one split with the step range each covers."""

    key: str
    split: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.values)

    def finite(self) -> Curve:
        """The same curve without its non-finite values."""
        keep = [i for i, v in enumerate(self.values) if math.isfinite(v)]
        return Curve(
            self.key,
            self.split,
            tuple(self.starts[i] for i in keep),
            tuple(self.ends[i] for i in keep),
            tuple(self.values[i] for i in keep),
        )


def points(history: History, key: str, split: str = "train") -> Curve:
    """The per-step points of ``key`` (the interval means when the log has no points)."""
    series = history.series(key, split, "step")
    if series:
        return Curve(key, split, series.steps, series.steps, series.values)
    return interval_means(history, key, split)


def interval_means(history: History, key: str, split: str = "train") -> Curve:
    """The mean of ``key`` over every logged interval of ``split``, with the steps covered."""
    starts: list[int] = []
    ends: list[int] = []
    values: list[float] = []
    previous = 0
    for record in history.records:
        if record.split != split or record.kind != "interval":
            continue
        value = record.values.get(key)
        first = record.steps[0] if record.steps else previous + 1
        previous = record.step
        if value is None:
            continue
        starts.append(min(first, record.step))
        ends.append(record.step)
        values.append(value)
    return Curve(key, split, tuple(starts), tuple(ends), tuple(values))


def rolling_median(values: Sequence[float], width: int = 3) -> list[float]:
    """Centred running median (shorter windows at the edges): steadies interval means."""
    half = width // 2
    return [statistics.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]


def moving_average(values: Sequence[float], width: int) -> list[float]:
    """Centred running mean (shorter windows at the edges)."""
    half = width // 2
    out = []
    for i in range(len(values)):
        window = values[max(0, i - half) : i + half + 1]
        out.append(sum(window) / len(window))
    return out


def acf(values: Sequence[float], lag: int) -> float:
    """Autocorrelation of ``values`` at ``lag`` (0 when undefined)."""
    n = len(values)
    if lag >= n - 1:
        return 0.0
    mean = sum(values) / n
    centred = [v - mean for v in values]
    denominator = sum(c * c for c in centred)
    if denominator == 0.0:
        return 0.0
    return sum(centred[i] * centred[i + lag] for i in range(n - lag)) / denominator
