"""Report text is text: keys and names reach matplotlib as literal strings, never mathtext
(the browser side, where keys must stay text too, is in tests/report)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from matplotlib.text import Text
from typer.testing import CliRunner

from losskit.cli import app
from losskit.report import curve_charts, figures, literal, render
from losskit.tracking import Tracker, load, sinks

NAMES = ["$$", "a$b", "$x$", "back\\slash", "under_score", "50%", "\\$"]


def _make_run(run: Path) -> None:
    with Tracker([sinks.JSONL(run)], every=5) as tracker:
        for step in range(1, 41):
            values = {"loss": torch.tensor(1.0 / step)}
            for i, name in enumerate(NAMES):
                values[f"loss/{name}"] = torch.tensor(1.0 + i + 1.0 / step)
                values[f"weight/{name}"] = torch.tensor(0.5)
                values[f"grad_norm/{name}"] = torch.tensor(0.1 * (i + 1))
            values[f"cos/{NAMES[0]}/{NAMES[1]}"] = torch.tensor(-0.2)
            values[f"cos/{NAMES[2]}/{NAMES[3]}"] = torch.tensor(0.4)
            tracker.update(values, batch_size=4)
            if step % 20 == 0:
                tracker.update({f"loss/{NAMES[0]}": torch.tensor(0.3)}, split="val")
                tracker.end_epoch()


def _shown(text: Text) -> tuple[str, bool]:
    """What matplotlib draws for ``text``, and whether it draws it as mathtext."""
    shown, math = text._preprocess_math(text.get_text())  # the step Text.draw takes
    return str(shown), bool(math)


@pytest.mark.parametrize("name", [*NAMES, "", "plain", "$", "\\\\$$"])
def test_literal_shows_the_string_itself(name: str) -> None:
    assert _shown(Text(text=literal(name))) == (name, False)


def test_a_report_with_dollars_and_backslashes_in_its_keys_renders_literally(
    tmp_path: Path,
) -> None:
    _make_run(tmp_path)
    plots = figures(load(tmp_path))
    drawn: set[str] = set()
    for plot in plots:
        plot.figure.savefig(io.BytesIO(), format="png")  # mathtext errors surface when drawn
        for text in plot.figure.findobj(Text):
            shown, math = _shown(text)
            assert not math, f"{text.get_text()!r} in {plot.title!r} is drawn as mathtext"
            drawn.add(shown)
    for name in NAMES:
        assert name in drawn  # a legend entry or tick label
    # the curves are charts drawn by the browser, their titles data (see tests/report)
    titles = [chart.title for chart in curve_charts(load(tmp_path))]
    assert [f"loss/{name}" for name in NAMES] == titles[1 : len(NAMES) + 1]
    assert f"{NAMES[0]} / {NAMES[1]}" in drawn
    assert render(tmp_path).stat().st_size > 10_000


def test_losskit_report_renders_keys_with_dollars(tmp_path: Path) -> None:
    _make_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").exists()


def test_bench_plot_draws_case_names_literally(tmp_path: Path) -> None:
    from losskit.benchmarking._report import BenchReport, CaseResult, _plot

    report = BenchReport(cases=[CaseResult(name, None, None, [], []) for name in NAMES[:3]])
    _plot(report, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0
