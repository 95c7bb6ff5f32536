"""The HTML report and its figures, from logs written by the Tracker."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from losskit.cli import app
from losskit.report import ema, figures, render, summarize
from losskit.tracking import History, Tracker, load, sinks


def make_run(run: Path, *, diagnostics: bool = False, steps: int = 60, epochs: int = 2) -> History:
    """Two terms, one warming up; losses falling over three decades; a val split per epoch."""
    with Tracker([sinks.JSONL(run)], every=20) as tracker:
        for step in range(1, steps * epochs + 1):
            weight = min(1.0, step / steps)
            values = {
                "loss/a": torch.tensor(100.0 * 0.94**step),
                "loss/b": torch.tensor(1.0 + 0.1 * (step % 7)),
                "weight/a": torch.tensor(1.0),
                "weight/b": torch.tensor(weight),
            }
            values["loss"] = values["loss/a"] + weight * values["loss/b"]
            if diagnostics:
                values["grad_norm/a"] = torch.tensor(2.0)
                values["grad_norm/b"] = torch.tensor(0.5)
                values["cos/a/b"] = torch.tensor(-0.3)
            tracker.update(values, batch_size=8)
            if step % steps == 0:
                tracker.update({"loss": torch.tensor(5.0 / step)}, split="val")
                tracker.end_epoch()
    return load(run)


def test_report_is_one_self_contained_file(tmp_path: Path) -> None:
    make_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.003, "terms": ["a", "b"]}))
    path = render(tmp_path)
    assert path == tmp_path / "report.html"
    assert not list(tmp_path.glob(".*.tmp"))  # written to a temporary name, then renamed
    text = path.read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in text
    assert "Content-Security-Policy" in text
    assert '"lr": 0.003' in html.unescape(text)
    for section in ("Run", "Configuration", "Summary", "Losses", "Weights", "Shares"):
        assert f"<h2>{section}</h2>" in text
    assert "Diagnostics" not in text  # drawn only when the log holds gradient values


def test_report_draws_diagnostics_when_logged(tmp_path: Path) -> None:
    history = make_run(tmp_path, diagnostics=True, epochs=1)
    titles = [(p.section, p.title) for p in figures(history)]
    assert ("Diagnostics", "gradient norms") in titles
    assert ("Diagnostics", "conflict matrix") in titles
    assert "<h2>Diagnostics</h2>" in render(tmp_path).read_text()


def test_loss_curves_overlay_splits_and_turn_logarithmic(tmp_path: Path) -> None:
    history = make_run(tmp_path)
    plots = {p.title: p for p in figures(history)}
    assert list(plots)[:3] == ["loss/a", "loss/b", "loss"]
    (ax,) = plots["loss/a"].figure.axes
    assert ax.get_yscale() == "log"  # 100 → 0.0006: five decades
    (ax,) = plots["loss/b"].figure.axes
    assert ax.get_yscale() == "linear"
    (ax,) = plots["loss"].figure.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith("train (EMA") for label in labels)
    assert "val (epoch mean)" in labels
    raw = ax.get_lines()[0]
    assert (raw.get_alpha() or 1.0) < 0.5  # raw points faint


def test_shares_stack_to_one(tmp_path: Path) -> None:
    history = make_run(tmp_path)
    (shares,) = [p for p in figures(history) if p.section == "Shares"]
    (ax,) = shares.figure.axes
    highest: dict[float, float] = {}
    for x, y in ax.collections[-1].get_paths()[0].vertices:
        highest[x] = max(y, highest.get(x, -1.0))
    assert list(highest.values()) == pytest.approx([1.0] * len(highest))


def test_summary_final_and_best(tmp_path: Path) -> None:
    make_run(tmp_path)
    rows = {(r.split, r.key): r for r in summarize(load(tmp_path))}
    val = rows[("val", "loss")]
    assert (val.best_step, val.source) == (120, "epoch")
    assert val.final == pytest.approx(5.0 / 120)
    assert val.best == pytest.approx(5.0 / 120)
    weight = rows[("train", "weight/b")]
    assert weight.best is None  # no "best" weight
    assert weight.final == pytest.approx(1.0)


def test_report_without_config_or_epochs(tmp_path: Path) -> None:
    with Tracker([sinks.JSONL(tmp_path)]) as tracker:
        tracker.update({"loss": torch.tensor(1.0)})
    text = render(tmp_path, output=tmp_path / "out" / "r.html").read_text()
    assert "No config.json" in text
    assert "interval means" in text


def test_cli_report(tmp_path: Path) -> None:
    make_run(tmp_path, epochs=1)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    assert (tmp_path / "report.html").stat().st_size > 10_000


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0.0, 0.99))
def test_ema_stays_within_the_values_seen(values: list[float], smoothing: float) -> None:
    for i, smooth in enumerate(ema(values, smoothing)):
        seen = values[: i + 1]
        assert min(seen) - 1e-6 * max(1.0, abs(min(seen))) <= smooth
        assert smooth <= max(seen) + 1e-6 * max(1.0, abs(max(seen)))


def test_ema_of_a_constant_and_without_smoothing() -> None:
    assert ema([3.0] * 5, 0.9) == pytest.approx([3.0] * 5)
    assert ema([1.0, 5.0, 2.0], 0.0) == [1.0, 5.0, 2.0]
    with pytest.raises(ValueError, match="smoothing"):
        ema([1.0], 1.0)
