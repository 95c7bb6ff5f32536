"""The sinks: JSONL and CSV files that survive resumes and kills, the console, TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console as RichConsole
from torch.testing import assert_close

from losskit.errors import LossKitWarning, MissingDependencyError
from losskit.tracking import Record, Sink, Tracker, load, sinks


def log_steps(tracker: Tracker, values: list[float], **extra: float) -> None:
    for value in values:
        tracker.update(
            {"loss": torch.tensor(value), **{k: torch.tensor(v) for k, v in extra.items()}}
        )


def test_builtins_satisfy_the_protocol(tmp_path: Path) -> None:
    for sink in (sinks.Console(), sinks.JSONL(tmp_path), sinks.CSV(tmp_path)):
        assert isinstance(sink, Sink)


def test_jsonl_writes_one_strict_json_line_per_record(tmp_path: Path) -> None:
    with Tracker([sinks.JSONL(tmp_path)], every=2) as tracker:
        log_steps(tracker, [1.0, 2.0, float("nan")])
        tracker.end_epoch()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # two intervals and the epoch
    for line in lines:
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))
    history = load(tmp_path)
    assert [r.kind for r in history.records] == ["interval", "interval", "epoch"]
    values = history.series("loss").values
    assert values[:2] == (1.0, 2.0)
    assert values[2] != values[2]  # NaN comes back as NaN


def test_jsonl_resume_appends_and_cuts_an_unfinished_line(tmp_path: Path) -> None:
    with Tracker([sinks.JSONL(tmp_path)]) as tracker:
        log_steps(tracker, [1.0])
    path = tmp_path / "metrics.jsonl"
    with path.open("a") as f:
        f.write('{"kind":"interval","split":"tr')  # a writer killed mid-line
    assert load(tmp_path).truncated
    state = {"step": 1, "epoch": 0, "elapsed": 1.0}
    tracker = Tracker([sinks.JSONL(tmp_path)])
    tracker.load_state_dict(state)
    log_steps(tracker, [2.0])
    with pytest.warns(LossKitWarning, match="unfinished last line"):
        tracker.close()
    history = load(tmp_path)
    assert not history.truncated
    assert history.series("loss").steps == (1, 2)
    assert path.read_text().count("\n") == 2


def test_csv_grows_its_header_and_resumes(tmp_path: Path) -> None:
    with Tracker([sinks.CSV(tmp_path)], every=2) as tracker:
        log_steps(tracker, [1.0, 2.0])
        log_steps(tracker, [3.0, 4.0], acc=0.5)  # a new column mid-run
        tracker.end_epoch()
    with Tracker([sinks.CSV(tmp_path)]) as tracker:  # a resumed run continues the file
        log_steps(tracker, [5.0], acc=0.75)
    with (tmp_path / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["kind", "split", "epoch", "step", "time", "elapsed", "loss", "acc"]
    assert [r["kind"] for r in rows] == ["step"] * 4 + ["epoch", "step"]
    assert [r["loss"] for r in rows] == ["1.0", "2.0", "3.0", "4.0", "2.5", "5.0"]
    assert [r["acc"] for r in rows] == ["", "", "0.5", "0.5", "0.5", "0.75"]
    assert not list(tmp_path.glob("*.tmp"))


def test_csv_without_points_writes_interval_rows(tmp_path: Path) -> None:
    with Tracker([sinks.CSV(tmp_path)], points=False) as tracker:
        log_steps(tracker, [1.0, 3.0])
    with (tmp_path / "metrics.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["kind"] == "interval"
    assert float(row["loss"]) == 2.0


def test_console_quiet_writes_nothing() -> None:
    out = io.StringIO()
    sink = sinks.Console(console=RichConsole(file=out), quiet=True)
    with Tracker([sink]) as tracker:
        log_steps(tracker, [1.0])
        tracker.end_epoch()
    assert out.getvalue() == ""


def test_console_prints_plain_periodic_lines_with_eta_when_piped() -> None:
    out = io.StringIO()
    sink = sinks.Console(console=RichConsole(file=out, width=200), total=6, every=0.0)
    assert sink.plain
    assert not sink.quiet
    with Tracker([sink], every=2) as tracker:
        for value in (1.0, 1.0, 3.0, 3.0, 5.0, 5.0):
            tracker.update({"loss": torch.tensor(value)})
        tracker.end_epoch()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines[:3]] == [
        "train step 2/6 (33%)",
        "train step 4/6 (67%)",
        "train step 6/6 (100%)",
    ]
    assert all("ETA 0:00:" in line for line in lines[:3])
    assert lines[0].endswith("loss 1")
    assert lines[2].endswith("loss 5")
    assert lines[3] == "epoch 0 train  loss 3"
    assert "\x1b" not in out.getvalue()  # no terminal codes in a log file


def test_console_shows_values_in_a_terminal() -> None:
    out = io.StringIO()
    screen = RichConsole(file=out, force_terminal=True, width=120, color_system=None)
    with Tracker([sinks.Console(total=4, console=screen)], every=2) as tracker:
        for value in (0.5, 0.25, 0.125, 0.0625):
            tracker.update({"loss": torch.tensor(value), "loss/cls": torch.tensor(value / 2)})
        tracker.update({"loss": torch.tensor(1.5)}, split="val")
        tracker.end_epoch()
    text = out.getvalue()
    assert "4/4" in text
    assert "loss 0.09375  cls 0.04688" in text
    assert "epoch 0 train  loss 0.2344  cls 0.1172" in text
    assert "epoch 0 val  loss 1.5" in text


def test_tensorboard_writes_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = sinks.TensorBoard(tmp_path)
    with Tracker([board], every=2) as tracker:
        log_steps(tracker, [1.0, 2.0, 3.0, 4.0])
        tracker.update({"loss": torch.tensor(9.0)}, split="val")
        tracker.end_epoch()
    events = EventAccumulator(str(board.path))
    events.Reload()
    train = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert train == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    assert [(e.step, e.value) for e in events.Scalars("val/loss")] == [(4, 9.0)]
    (epoch,) = events.Scalars("epoch/train/loss")
    assert_close(epoch.value, 2.5)


def test_tensorboard_missing_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'losskit\[tensorboard\]'"):
        sinks.TensorBoard(tmp_path)


def test_a_users_sink_plugs_in() -> None:
    class Last:
        record: Record | None = None

        def write(self, record: Record) -> None:
            self.record = record

        def close(self) -> None:
            pass

    sink = Last()
    with Tracker([sink]) as tracker:
        log_steps(tracker, [2.0])
    assert sink.record is not None
    assert sink.record.values == {"loss": 2.0}
