"""Forward+backward time of a case: warm-up, repeats, median and spread, device synchronised.

Built on ``torch.utils.benchmark.Timer``, which synchronises CUDA around each block and reports
the median and interquartile range of per-run times; the run count adapts to ``min_run_time``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils import benchmark

__all__ = ["Timing", "time_step"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over measured blocks, the interquartile range, the runs."""

    median_s: float
    iqr_s: float
    runs: int


def time_step(step: Callable[[], object], *, warmup: int = 2, min_run_time: float = 0.2) -> Timing:
    """Time ``step()`` (which should run forward and backward) after ``warmup`` calls.

    Example::

        >>> import torch
        >>> x = torch.randn(64, 8, requires_grad=True)
        >>> t = time_step(lambda: x.square().mean().backward(), min_run_time=0.01)
        >>> t.median_s > 0 and t.runs >= 1
        True
    """
    for _ in range(warmup):
        step()
    timer = benchmark.Timer(
        stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads()
    )
    measured = timer.blocked_autorange(min_run_time=min_run_time)
    runs = sum(measured.number_per_run for _ in measured.raw_times)
    return Timing(float(measured.median), float(measured.iqr), runs)
