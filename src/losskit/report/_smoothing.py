"""Smoothing of noisy per-step curves for plots.

Example::

    >>> from losskit.report import ema
    >>> [round(v, 3) for v in ema([1.0, 0.0, 0.0], smoothing=0.5)]
    [1.0, 0.333, 0.143]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["auto_smoothing", "ema"]


def ema(values: Sequence[float], smoothing: float = 0.9) -> list[float]:
    """Exponential moving average, debiased at the start (as TensorBoard draws it).

    ``smoothing`` in ``[0, 1)`` is the weight of the past; 0 returns the values unchanged.
    Non-finite values are passed through and do not enter the average.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    out: list[float] = []
    average, weight = 0.0, 0.0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        average = smoothing * average + (1.0 - smoothing) * value
        weight = smoothing * weight + (1.0 - smoothing)
        out.append(average / weight)
    return out


def auto_smoothing(points: int) -> float:
    """A smoothing weight that averages over about a tenth of the curve (0.6 to 0.99).

    Example::

        >>> from losskit.report._smoothing import auto_smoothing
        >>> auto_smoothing(100), auto_smoothing(100_000)
        (0.8, 0.99)
    """
    return min(0.99, max(0.6, 1.0 - 20.0 / max(points, 1)))
