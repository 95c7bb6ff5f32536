"""bench.png: an infinite gradient error is shown (marked, at the axis limit), not dropped."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from losskit.benchmarking._report import BenchReport, CaseResult, _precision_bars
from losskit.benchmarking._stability import Precision


def _report() -> BenchReport:
    def case(name: str, fp16: float) -> CaseResult:
        precision = [
            Precision("float32", 1e-7, 2e-7),
            Precision("bfloat16", 1e-3, 3e-3),
            Precision("float16", 1e-4, fp16),
        ]
        return CaseResult(name, None, None, [], precision)

    return BenchReport([case("stable", 5e-4), case("overflows", math.inf)])


def test_an_infinite_error_is_a_marked_bar_at_the_axis_limit() -> None:
    fig, axis = plt.subplots()
    try:
        _precision_bars(axis, _report())
        bars = [p for p in axis.patches if p.get_height() == 0.25]
        assert len(bars) == 6  # three dtypes by two cases, none dropped
        limit = 3e-3 * 10  # ten times the largest finite error
        hatched = [b for b in bars if b.get_hatch() == "//"]
        assert len(hatched) == 1
        assert math.isclose(hatched[0].get_width(), limit)
        assert math.isclose(hatched[0].get_y() + 0.125, 1 + 0.25)  # case 1, the float16 row
        finite = sorted(b.get_width() for b in bars if b.get_hatch() is None)
        assert finite == sorted([2e-7, 3e-3, 5e-4, 2e-7, 3e-3])
        assert [t.get_text() for t in axis.texts] == [" inf"]
        assert axis.get_xlim()[1] > limit
    finally:
        plt.close(fig)


def test_the_report_writes_a_plot_with_an_infinite_error(tmp_path: Path) -> None:
    paths = _report().write(tmp_path)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_whose_only_error_is_infinite_still_plots(tmp_path: Path) -> None:
    only = CaseResult("nan_everywhere", None, None, [], [Precision("float16", None, math.inf)])
    fig, axis = plt.subplots()
    try:
        _precision_bars(axis, BenchReport([only]))
        assert [t.get_text() for t in axis.texts] == [" inf"]
    finally:
        plt.close(fig)
    assert BenchReport([only]).write(tmp_path)["plot"].stat().st_size > 0
