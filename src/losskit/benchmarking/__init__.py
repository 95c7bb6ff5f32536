"""Measured answers about losses: time, peak memory and numerical behaviour, side by side.

``bench`` runs each case (a catalogue name, or ``"<activation>+<loss>"`` such as
``"sigmoid+bce"``) on inputs of the given shape, dtype and device and measures:

- forward+backward time (:mod:`~losskit.benchmarking._timing`): warm-up, then the median and
  interquartile range of repeated runs, the device synchronised;
- peak memory of one step (:mod:`~losskit.benchmarking._memory`): CUDA allocator statistics on a
  GPU, a child process's peak resident size on the CPU;
- numerical behaviour (:mod:`~losskit.benchmarking._stability`): finite value and gradient at
  logits of magnitude 1e4, all-correct and all-wrong predictions and an empty mask, a non-zero
  gradient at confidently wrong predictions, and the error against float64 in float32, bfloat16
  and float16.

With ``convergence=True`` (:mod:`~losskit.benchmarking._convergence`), each case also trains a
small standard model on each task of its registry family (:data:`TASKS`: the digits, their
binary attributes, a seeded regression with and without outliers, a seeded segmentation), over
seeds, and reports the steps and seconds to the task's target metric with their spread; a task
the loss cannot train on is reported as not applicable. :meth:`BenchReport.ratings` puts every
column in words (low / medium / high) against the best case of the run
(:mod:`~losskit.benchmarking._ratings`).

A case is flagged when any check fails; ``sigmoid+bce`` is (its gradient vanishes at confidently
wrong logits) and ``bce_with_logits`` is not. The JSON fields are those of
:meth:`BenchReport.to_dict`.

Example::

    >>> import losskit as lk
    >>> report = lk.benchmarking.bench(["bce_with_logits", "sigmoid+bce"], shape=(16, 4),
    ...                                memory=False, min_run_time=0.01)
    >>> [(case.name, bool(case.flags)) for case in report.cases]
    [('bce_with_logits', False), ('sigmoid+bce', True)]
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from losskit.benchmarking._cases import Case, setup_step
from losskit.benchmarking._convergence import (
    CPU_THREADS,
    ConvergenceSettings,
    Spread,
    TaskRun,
    task_runs,
)
from losskit.benchmarking._memory import Memory, measure_cuda, peak_rss_delta
from losskit.benchmarking._ratings import Rating, thresholds
from losskit.benchmarking._report import BenchReport, CaseResult
from losskit.benchmarking._stability import precision_errors, scenarios
from losskit.benchmarking._tasks import TASKS, Task, TaskData
from losskit.benchmarking._timing import time_step
from losskit.errors import ConfigError

__all__ = [
    "TASKS",
    "BenchReport",
    "Case",
    "CaseResult",
    "ConvergenceSettings",
    "Rating",
    "Spread",
    "Task",
    "TaskRun",
    "bench",
]

_DTYPES = ("float32", "float64", "bfloat16", "float16")


def bench(
    cases: Sequence[str] | Mapping[str, Mapping[str, Any]],
    shape: Sequence[int] = (4096, 80),
    *,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    memory: bool = True,
    stability: bool = True,
    min_run_time: float = 0.2,
    threads: int | None = None,
    convergence: bool | ConvergenceSettings = False,
    out: str | Path | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> BenchReport:
    """Measure time, peak memory, numerical behaviour and, on request, convergence speed of each
    case (see the module notes), and rate them against each other.

    Args:
        cases: names (``"focal"``, ``"sigmoid+bce"``) or ``{name: loss kwargs}``.
        shape: the input's shape, classes along dim 1 (targets are derived from it).
        dtype: of the timed and memory-measured inputs (stability checks use their own).
        memory: measure peak memory (on the CPU each case spawns a child process: seconds).
        stability: run the extreme-input and precision checks.
        min_run_time: seconds of timed runs per case.
        threads: intra-op threads for the run (restored afterwards); on a loaded CPU, OpenMP
            threads that wait on each other can make tiny losses look milliseconds slow.
        convergence: train each task's small model with each case (``True``: 3 seeds, full
            budgets; or a :class:`ConvergenceSettings`); see
            :mod:`~losskit.benchmarking._convergence`.
        out: a run folder to write ``bench.json`` and ``bench.png`` into.
        on_step: called as ``on_step(case, "measured" | "trained")`` after each case's
            measurements and after its convergence runs (progress).
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"bench: dtype must be one of {_DTYPES}, got {dtype!r}")
    dims = tuple(int(d) for d in shape)
    if not dims or any(d < 1 for d in dims):
        raise ConfigError(f"bench: shape must be positive sizes, got {tuple(shape)}")
    where = torch.device(device)
    specs = cases.items() if isinstance(cases, Mapping) else ((name, {}) for name in cases)
    parsed = [Case.parse(name, kwargs) for name, kwargs in specs]
    if not parsed:
        raise ConfigError("bench: no cases given; name catalogue losses (losskit losses)")
    for case in parsed:
        case.check_runs(dims)
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"bench: threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    plan = ConvergenceSettings() if convergence is True else convergence or None
    data: dict[str, TaskData] = {}
    try:

        def told(name: str, what: str) -> None:
            if on_step is not None:
                on_step(name, what)

        results = []
        for case in parsed:
            results.append(_measure(case, dims, dtype, where, memory, stability, min_run_time))
            told(case.name, "measured")
        if plan is not None:
            trained = []
            for case, result in zip(parsed, results, strict=True):
                runs = task_runs(case, plan, where, data)
                trained.append(dataclasses.replace(result, convergence=runs))
                told(case.name, "trained")
            results = trained
        settings = _settings(dims, dtype, where, min_run_time)
        if plan is not None:
            settings["convergence"] = _convergence_settings(plan)
        settings["rating_thresholds"] = thresholds()
    finally:
        torch.set_num_threads(before)
    report = BenchReport(results, settings)
    if out is not None:
        report.write(out)
    return report


def _measure(
    case: Case,
    dims: tuple[int, ...],
    dtype: str,
    where: torch.device,
    memory: bool,
    stability: bool,
    min_run_time: float,
) -> CaseResult:
    args = (case.name, dict(case.kwargs), dims, dtype, str(where))
    step = setup_step(*args)
    if where.type == "cuda":
        torch.cuda.synchronize(where)
    timing = time_step(step, min_run_time=min_run_time)
    mem: Memory | None = None
    if memory:
        mem = (
            measure_cuda(step, where) if where.type == "cuda" else peak_rss_delta(setup_step, *args)
        )
    return CaseResult(
        case.name,
        timing,
        mem,
        scenarios(case, dims, where) if stability else [],
        precision_errors(case, dims, where) if stability else [],
    )


def _settings(
    dims: tuple[int, ...], dtype: str, where: torch.device, min_run_time: float
) -> dict[str, Any]:
    return {
        "shape": list(dims),
        "dtype": dtype,
        "device": str(where),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "min_run_time_s": min_run_time,
    }


def _convergence_settings(plan: ConvergenceSettings) -> dict[str, Any]:
    return {
        "seeds": plan.seeds,
        "quick": plan.quick,
        "optimizer": "Adam",
        "deterministic": True,
        "cpu_threads": CPU_THREADS,
        "tasks": [
            {
                "name": task.name,
                "family": task.family,
                "labels": task.labels,
                "metric": task.metric,
                "target": task.target,
                "steps": plan.budget(task),
                "eval_every": task.eval_every,
                "batch": task.batch,
                "lr": task.lr,
                "model": task.model,
            }
            for task in plan.chosen()
        ],
    }
