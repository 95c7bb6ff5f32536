"""Reading logs back: truncated and corrupt lines, resumed runs, series and rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losskit.errors import LogFormatError, LogNotFoundError
from losskit.tracking import Record, Tracker, load, sinks


def write_run(run: Path, epochs: int = 2, steps: int = 4) -> None:
    with Tracker([sinks.JSONL(run)], every=2) as tracker:
        for epoch in range(epochs):
            for step in range(steps):
                tracker.update({"loss": torch.tensor(float(epoch * steps + step))}, batch_size=2)
            tracker.update({"loss": torch.tensor(10.0 + epoch)}, split="val")
            tracker.end_epoch()


def test_series_of_each_kind(tmp_path: Path) -> None:
    write_run(tmp_path)
    history = load(tmp_path)
    assert history.splits() == ("train", "val")
    assert history.series("loss").steps == tuple(range(1, 9))
    assert history.series("loss").values == tuple(float(i) for i in range(8))
    assert history.series("loss", kind="interval").values == (0.5, 2.5, 4.5, 6.5)
    assert history.series("loss", kind="epoch").values == (1.5, 5.5)
    assert history.series("loss", kind="epoch").epochs == (0, 1)
    val = history.series("loss", "val", kind="epoch")
    assert (val.steps, val.values) == ((4, 8), (10.0, 11.0))
    assert history.series("loss", kind="epoch").best() == (4, 1.5)
    assert history.last_step == 8
    rows = history.rows()
    assert len(rows) == 8 + 2  # train points and one val point per epoch
    assert rows[0] == {
        "split": "train",
        "epoch": 0,
        "time": rows[0]["time"],
        "step": 1,
        "loss": 0.0,
    }
    assert [r["split"] for r in history.rows("epoch")] == ["train", "val", "train", "val"]


def test_truncated_last_line_is_left_out(tmp_path: Path) -> None:
    write_run(tmp_path)
    path = tmp_path / "metrics.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[0][:40])
    history = load(tmp_path)
    assert history.truncated
    assert len(history.records) == len(whole.splitlines())


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    write_run(tmp_path)
    path = tmp_path / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:30] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(LogFormatError, match=r"metrics\.jsonl:3: not a metrics record"):
        load(tmp_path)
    history = load(path, skip_corrupt=True)
    assert history.skipped == (3,)
    assert len(history.records) == len(lines) - 1


def test_missing_log(tmp_path: Path) -> None:
    with pytest.raises(LogNotFoundError, match=r"sinks\.JSONL"):
        load(tmp_path)


def test_a_resumed_run_replaces_what_it_logs_again(tmp_path: Path) -> None:
    first = Tracker([sinks.JSONL(tmp_path)], every=3)
    for i in range(7):  # steps 1-6 flushed, step 7 lost in the "crash"
        first.update({"loss": torch.tensor(float(i))})
    first.sinks[0].close()
    second = Tracker([sinks.JSONL(tmp_path)], every=3)
    second.load_state_dict({"step": 4, "epoch": 0, "elapsed": 0.0})  # the checkpoint at step 4
    for i in range(4):  # steps 5-8
        second.update({"loss": torch.tensor(100.0 + i)})
    second.close()
    series = load(tmp_path).series("loss")
    assert series.steps == (1, 2, 3, 4, 5, 6, 7, 8)
    assert series.values == (0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 103.0)
    intervals = load(tmp_path).series("loss", kind="interval")
    # The first run's second interval (steps 4-6) keeps only step 4's point and loses its mean.
    assert intervals.steps == (3, 7, 8)


@given(
    st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=8
    )
)
def test_records_round_trip_through_json(points: list[float | None]) -> None:
    steps = tuple(range(1, len(points) + 1))
    record = Record(
        kind="interval",
        split="train",
        step=len(points),
        epoch=0,
        time=1.0,
        elapsed=2.0,
        count=3.0,
        updates=len(points),
        values={"loss": points[0]},
        steps=steps,
        points={"loss": tuple(points)},
    )
    back = Record.from_json(record.to_json())

    def same(a: float | None, b: float | None) -> bool:  # points keep 9 significant digits
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-8) or (math.isnan(a) and math.isnan(b))

    assert back.steps == steps
    assert all(same(a, b) for a, b in zip(back.points["loss"], points))
    assert same(back.values["loss"], points[0])
