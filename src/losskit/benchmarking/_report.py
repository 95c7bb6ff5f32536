"""The results of ``losskit bench``: per-case records, the table, ``bench.json`` and the plot."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from losskit._io import replace_text
from losskit.benchmarking._convergence import TaskRun
from losskit.benchmarking._memory import Memory
from losskit.benchmarking._ratings import Measured, Rating, rate
from losskit.benchmarking._stability import Precision, Scenario
from losskit.benchmarking._timing import Timing

__all__ = ["BenchReport", "CaseResult"]


@dataclass(frozen=True)
class CaseResult:
    """Everything measured for one case; ``flags`` lists what failed, in words."""

    name: str
    timing: Timing | None
    memory: Memory | None
    scenarios: list[Scenario]
    precision: list[Precision]
    convergence: list[TaskRun] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        out = [flag for s in self.scenarios for flag in s.flags]
        for p in self.precision:
            if p.value_error == math.inf:
                out.append(f"non-finite value in {p.dtype}")
            elif p.grad_error == math.inf:
                out.append(f"non-finite gradient in {p.dtype}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "time_median_ms": None if self.timing is None else self.timing.median_s * 1e3,
            "time_iqr_ms": None if self.timing is None else self.timing.iqr_s * 1e3,
            "time_runs": None if self.timing is None else self.timing.runs,
            "peak_memory_mib": None if self.memory is None else self.memory.peak_mib,
            "memory_method": None if self.memory is None else self.memory.method,
            "scenarios": [asdict(s) for s in self.scenarios],
            "precision": [_finite_json(asdict(p)) for p in self.precision],
            "flags": self.flags,
            "flagged": bool(self.flags),
            "convergence": [run.to_dict() for run in self.convergence],
        }

    def measured(self) -> Measured:
        """The figures its ratings are derived from."""
        halves = [
            p.grad_error
            for p in self.precision
            if p.dtype != "float32" and p.grad_error is not None and math.isfinite(p.grad_error)
        ]
        checked = bool(self.scenarios or self.precision)
        runs = [run for run in self.convergence if run.applicable]
        return Measured(
            self.name,
            time_s=None if self.timing is None else self.timing.median_s,
            memory_mib=None if self.memory is None else self.memory.peak_mib,
            flagged=bool(self.flags) if checked else None,
            half_error=max(halves) if halves else None,
            diverged=any(run.diverged for run in runs),
            steps={
                run.task: run.steps_to_target.mean
                if run.steps_to_target is not None and run.reached == len(run.seeds)
                else None
                for run in runs
            },
        )


@dataclass
class BenchReport:
    """The results of :func:`bench` with the settings they were measured under."""

    cases: list[CaseResult]
    settings: dict[str, Any] = field(default_factory=dict)

    def ratings(self) -> list[Rating]:
        """Low / medium / high per column against the best case of this run (see ``_ratings``)."""
        return rate([case.measured() for case in self.cases])

    def to_dict(self) -> dict[str, Any]:
        """``{"settings": {...}, "cases": [{name, time_median_ms, time_iqr_ms, time_runs,
        peak_memory_mib, memory_method, scenarios, precision, flags, flagged, convergence},
        ...], "ratings": [{name, cost, memory, convergence_speed, stability, ratios}, ...]}``."""
        return {
            "settings": self.settings,
            "cases": [c.to_dict() for c in self.cases],
            "ratings": [r.to_dict() for r in self.ratings()],
        }

    def write(self, run_dir: str | Path) -> dict[str, Path]:
        """Write ``bench.json``, ``bench.png`` and, with convergence runs, ``convergence.png``
        into ``run_dir`` (each written then renamed)."""
        folder = Path(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        json_path = folder / "bench.json"
        replace_text(json_path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        plot_path = folder / "bench.png"
        _plot(self, plot_path)
        paths = {"json": json_path, "plot": plot_path}
        if any(run.applicable for case in self.cases for run in case.convergence):
            from losskit.benchmarking._curves import plot_curves

            paths["convergence_plot"] = folder / "convergence.png"
            plot_curves(self.cases, self.settings.get("convergence", {}), paths["convergence_plot"])
        return paths

    def tables(self) -> list[Any]:
        """The tables the CLI prints: measurements, convergence (when run) and ratings."""
        from losskit.benchmarking._tables import convergence_table, ratings_table

        out = [self.table()]
        if any(case.convergence for case in self.cases):
            out.append(convergence_table(self.cases, self.settings.get("convergence", {})))
        out.append(ratings_table(self.ratings()))
        return out

    def table(self) -> Any:
        """A ``rich.table.Table`` of the results (the CLI prints it)."""
        from rich.table import Table

        s = self.settings
        table = Table(
            title=f"losskit bench: shape {tuple(s['shape'])}, {s['dtype']}, {s['device']}"
        )
        for column in (
            "case",
            "time ms (IQR)",
            "peak MiB",
            *(f"err {d}" for d in ("f32", "bf16", "f16")),
            "verdict",
        ):
            table.add_column(column, justify="left" if column in ("case", "verdict") else "right")
        for case in self.cases:
            t = case.timing
            time_text = "-" if t is None else f"{t.median_s * 1e3:.3g} ({t.iqr_s * 1e3:.2g})"
            mem_text = "-" if case.memory is None else f"{case.memory.peak_mib:.3g}"
            errors = []
            for p in case.precision:
                if p.error:
                    errors.append("n/a")
                else:
                    worst = max(p.value_error or 0.0, p.grad_error or 0.0)
                    errors.append(f"{worst:.1e}")
            verdict = "[red]" + "; ".join(case.flags) + "[/]" if case.flags else "[green]ok[/]"
            table.add_row(case.name, time_text, mem_text, *errors, verdict)
        return table


def _finite_json(record: dict[str, Any]) -> dict[str, Any]:
    """Infinite errors as the string ``"inf"``: strict JSON has no infinity."""
    return {k: "inf" if isinstance(v, float) and math.isinf(v) else v for k, v in record.items()}


def _gradient_errors(report: BenchReport, dtype: str) -> list[float | None]:
    """Each case's relative gradient error in ``dtype`` (``inf`` when non-finite; None when
    not measured or exactly 0, which a log axis cannot show)."""
    errors: list[float | None] = []
    for c in report.cases:
        found = next((p for p in c.precision if p.dtype == dtype), None)
        value = None if found is None or found.error else found.grad_error
        errors.append(value if value is not None and value > 0 else None)
    return errors


def _precision_bars(axis: Any, report: BenchReport) -> None:
    """The gradient errors per dtype; an infinite error is a hatched bar to the axis limit,
    marked "inf" (dropped, it would read as the best case)."""
    width = 0.25
    dtypes = ("float32", "bfloat16", "float16")
    table = {dtype: _gradient_errors(report, dtype) for dtype in dtypes}
    finite = [v for errs in table.values() for v in errs if v is not None and math.isfinite(v)]
    limit = max(finite) * 10 if finite else 1.0
    for i, dtype in enumerate(dtypes):
        rows = [k + (i - 1) * width for k in range(len(report.cases))]
        values = [math.nan if v is None else (limit if math.isinf(v) else v) for v in table[dtype]]
        bars = axis.barh(rows, values, height=width, label=dtype)
        for bar, value in zip(bars, table[dtype]):
            if value is not None and math.isinf(value):
                bar.set_hatch("//")
                bar.set_edgecolor("tab:red")
                axis.text(limit, bar.get_y() + width / 2, " inf", va="center", color="tab:red")
    if any(v is not None for errs in table.values() for v in errs):
        low = min(finite) / 4 if finite else limit / 1e3
        axis.set_xlim(low, limit * 4)  # room for the "inf" marks; positive for the log scale


def _plot(report: BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from losskit.report import literal

    names = [literal(c.name) for c in report.cases]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 2.5))
    times = [c.timing.median_s * 1e3 if c.timing else 0.0 for c in report.cases]
    spread = [c.timing.iqr_s * 1e3 if c.timing else 0.0 for c in report.cases]
    colours = ["tab:red" if c.flags else "tab:blue" for c in report.cases]
    left.barh(names, times, xerr=spread, color=colours)
    left.set_xlabel("forward+backward, ms (median, IQR)")
    left.invert_yaxis()
    _precision_bars(right, report)
    right.set_xscale("log")
    right.set_yticks(range(len(names)), names)
    right.invert_yaxis()
    right.set_xlabel("gradient error vs float64 (relative)")
    right.legend(fontsize="small")
    fig.suptitle("losskit bench (red: flagged)")
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Save ``fig`` to a temporary file beside ``path``, rename it over ``path``, close it."""
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
