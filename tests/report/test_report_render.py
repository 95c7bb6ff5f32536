"""The HTML report, its charts and figures, from logs written by the Tracker."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from losskit.cli import app
from losskit.report import (
    Chart,
    Series,
    constant_weights,
    curve_charts,
    ema,
    figures,
    loss_charts,
    render,
    summarize,
    thin,
    weight_charts,
)
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


def page_parts(text: str) -> tuple[str, list[str], list[str], dict[str, Any]]:
    """The page's CSP, its inline styles and scripts, and its chart data."""
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text)
    assert policy
    styles = re.findall(r"<style>(.*?)</style>", text, re.S)
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    data = re.search(r'<script type="application/json" id="losskit-charts">(.*?)</script>', text)
    return policy.group(1), styles, scripts, json.loads(data.group(1)) if data else {}


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


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
    policy, styles, scripts, data = page_parts(text)
    assert "unsafe" not in policy
    assert policy.startswith("default-src 'none'; img-src data:; ")
    # exactly the inline style and scripts on the page are allowed, by their hashes
    assert f"style-src {' '.join(map(sha256, styles))};" in policy
    assert f"script-src {' '.join(map(sha256, scripts))};" in policy
    assert len(scripts) == 2
    assert "uPlot" in scripts[0]
    assert len(data["charts"]) == text.count('<figure class="chart"')
    assert '"lr": 0.003' in html.unescape(text)
    for section in ("Run", "Configuration", "Summary", "Losses", "Weights", "Shares"):
        assert f"<h2>{section}</h2>" in text
    assert text.index("<h2>Losses</h2>") < text.index("<h2>Summary</h2>")  # charts come first
    assert "Diagnostics" not in text  # drawn only when the log holds gradient values


def test_a_page_without_charts_has_no_script(tmp_path: Path) -> None:
    with Tracker([sinks.JSONL(tmp_path)]) as tracker:  # metrics are charted: a custom value
        tracker.update({"custom/value": torch.tensor(0.5)})
    text = render(tmp_path).read_text()
    assert "<script" not in text
    assert "script-src" not in text  # default-src 'none' forbids every script


def test_report_draws_diagnostics_when_logged(tmp_path: Path) -> None:
    history = make_run(tmp_path, diagnostics=True, epochs=1)
    assert ("Diagnostics", "gradient norms") in [
        (c.section, c.title) for c in curve_charts(history)
    ]
    assert ("Diagnostics", "conflict matrix") in [(p.section, p.title) for p in figures(history)]
    assert "<h2>Diagnostics</h2>" in render(tmp_path).read_text()


def test_loss_charts_overlay_splits_and_open_logarithmic(tmp_path: Path) -> None:
    history = make_run(tmp_path)
    charts = {c.title: c for c in loss_charts(history)}
    assert list(charts) == ["loss/a", "loss/b", "loss"]
    assert charts["loss/a"].log  # 100 → 0.0006: five decades
    assert not charts["loss/b"].log
    chart = charts["loss"]
    train, val = chart.series
    assert (train.label, train.smooth, val.label, val.points) == (
        "train",
        "overlay",
        "val (epoch mean)",
        True,
    )
    logged = history.series("loss", "train", "step")
    assert [s for s, v in zip(chart.steps, train.values) if v is not None] == list(logged.steps)
    torch.testing.assert_close(
        [v for v in train.values if v is not None], list(logged.values), rtol=0, atol=0
    )
    epochs = history.series("loss", "val", "epoch")
    shown = {s: v for s, v in zip(chart.steps, val.values) if v is not None}
    assert list(shown) == list(epochs.steps) == [60, 120]
    torch.testing.assert_close(list(shown.values()), list(epochs.values))


def test_constant_weights_take_no_chart_and_no_row(tmp_path: Path) -> None:
    history = make_run(tmp_path)  # weight/a stays 1, weight/b warms up
    assert constant_weights(history) == {"a": 1.0}
    (weights,) = weight_charts(history)
    assert [s.label for s in weights.series] == ["b"]
    text = render(tmp_path).read_text()
    assert "Constant weights (not drawn): a = 1." in text
    summary = text[text.index('id="summary"') : text.index('id="findings"')]
    assert ">weight/a<" not in summary
    assert ">weight/b<" in summary


def test_chart_data_cannot_close_its_script_block(tmp_path: Path) -> None:
    key = "loss/</script><script>alert(1)</script>&amp;"
    with Tracker([sinks.JSONL(tmp_path)]) as tracker:
        for step in range(5):
            tracker.update({key: torch.tensor(float(step))})
    text = render(tmp_path).read_text()
    assert "<script>alert(1)" not in text
    _, _, scripts, data = page_parts(text)
    assert len(scripts) == 2
    assert [c["title"] for c in data["charts"]] == [key]  # the key, unchanged, as data


def test_a_series_must_match_the_steps() -> None:
    with pytest.raises(ValueError, match=r"series 'train' has 2 values for 3 steps"):
        Chart("Losses", "loss", (1, 2, 3), (Series("train", (1.0, 2.0)),))


def test_chart_data_drops_non_finite_values() -> None:
    chart = Chart("Losses", "loss", (1, 2, 3), (Series("t", (1.0, math.nan, math.inf)),))
    assert chart.payload()["series"][0]["y"] == [1.0, None, None]


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


def test_a_long_run_is_thinned_but_keeps_every_epoch_mean() -> None:
    steps = list(range(1, 12_001))
    train = Series("train", [1.0 / s for s in steps], smooth="overlay")
    val = Series("val", [0.5 if s % 1000 == 0 else None for s in steps], points=True)
    small = thin(Chart("Losses", "loss", steps, (train, val)), limit=5000)
    assert len(small.steps) <= 5000 + 12
    assert small.steps[0] == 1
    assert small.steps[-1] == 12_000
    assert [s for s, v in zip(small.steps, small.series[1].values) if v is not None] == list(
        range(1000, 12_001, 1000)
    )
    assert all(v == 1.0 / s for s, v in zip(small.steps, small.series[0].values))
    assert small.caption.startswith("one step in 3 drawn")
