"""Per-key counts in the Tracker: ``loss/<key>`` is the mean over the samples that carried the
key's label (``sum(value * count) / sum(count)``), everything else keeps the batch weighting."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

import losskit as lk
from losskit.tracking import Record, Tracker, _buffer, sinks


@pytest.fixture(params=["host", "stacked"], autouse=True)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both compaction paths: CPU reads, and the accelerator's stack and single copy."""
    if request.param == "stacked":
        monkeypatch.setattr(_buffer, "reads_on_host", lambda device: False)
    return str(request.param)


def result(
    parts: dict[str, float],
    counts: dict[str, float | None],
    *,
    total: float | None = None,
    dtype: torch.dtype = torch.float32,
    absent: Sequence[str] = (),
) -> lk.LossResult:
    """A result with unit weights; ``counts[key]`` as a 0-dim CPU tensor (None: not reported)."""
    keys = tuple(parts)
    return lk.LossResult(
        torch.tensor(sum(parts.values()) if total is None else total),
        keys,
        tuple(torch.tensor(parts[k]) for k in keys),
        torch.ones(len(keys)),
        counts=tuple(
            None if counts.get(k) is None else torch.tensor(counts[k], dtype=dtype) for k in keys
        ),
        absent=tuple(absent),
    )


def only(records: list[Record]) -> Record:
    (record,) = records
    return record


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_a_batch_without_labels_does_not_halve_the_mean(dtype: torch.dtype) -> None:
    # The issue: 4 labelled samples with error 1, then a batch where no sample has the label.
    tracker = Tracker()
    tracker.update(result({"a": 1.0}, {"a": 4}, dtype=dtype), batch_size=4)
    tracker.update(result({"a": 0.0}, {"a": 0}, dtype=dtype), batch_size=4)
    record = only(tracker.flush())
    assert record.values["loss/a"] == 1.0  # 0.5 when weighted by the batches
    assert record.values["loss"] == 0.5  # the total keeps the batch weighting
    assert record.values["weight/a"] == 1.0
    assert record.points["loss/a"] == (1.0, None)  # no labelled sample at the second step
    assert record.points["loss"] == (1.0, 0.0)
    assert record.count == 8


def test_counts_weigh_their_key_and_batch_sizes_the_rest() -> None:
    tracker = Tracker()
    # "a" averages 3 then 1 samples; "b" reports no count and is weighed by the batch.
    tracker.update(result({"a": 2.0, "b": 1.0}, {"a": 3}, total=10.0), batch_size=8)
    tracker.update(result({"a": 6.0, "b": 4.0}, {"a": 1}, total=20.0), batch_size=2)
    values = only(tracker.flush()).values
    assert_close(values["loss/a"], (2.0 * 3 + 6.0 * 1) / 4)  # 3.0
    assert_close(values["loss/b"], (1.0 * 8 + 4.0 * 2) / 10)  # 1.6
    assert_close(values["loss"], (10.0 * 8 + 20.0 * 2) / 10)  # 12.0
    assert values["weight/a"] == values["weight/b"] == 1.0


def test_counts_without_batch_sizes_still_weigh_their_key() -> None:
    tracker = Tracker()
    tracker.update(result({"a": 2.0}, {"a": 3}, total=2.0))
    tracker.update(result({"a": 6.0}, {"a": 1}, total=6.0))
    values = only(tracker.flush()).values
    assert values["loss/a"] == 3.0
    assert values["loss"] == 4.0  # every update weighs 1


def test_a_key_counted_zero_times_in_an_interval_is_not_logged(tmp_path: Path) -> None:
    tracker = Tracker([sinks.JSONL(tmp_path)])
    tracker.update(result({"a": 0.0, "b": 2.0}, {"a": 0, "b": 2}), batch_size=4)
    tracker.update(result({"a": 0.0, "b": 5.0}, {"a": 0, "b": 1}), batch_size=4)
    first = only(tracker.flush())
    assert "loss/a" not in first.values
    assert "loss/a" not in first.points
    assert first.values["loss/b"] == 3.0
    assert first.values["weight/a"] == 1.0
    assert first.values["loss"] == 3.5
    tracker.update(result({"a": 4.0, "b": 1.0}, {"a": 2, "b": 1}), batch_size=4)
    second = only(tracker.flush())
    assert second.values["loss/a"] == 4.0
    assert second.values["loss/b"] == 1.0
    tracker.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "loss/a" not in lines[0]["values"]
    assert lines[0]["values"]["loss/b"] == 3.0
    assert lines[1]["values"]["loss/a"] == 4.0


def test_a_key_left_out_of_some_results() -> None:
    # An optional term "a" is absent from the second batch (not in res.keys()).
    tracker = Tracker()
    tracker.update(result({"a": 1.0, "b": 2.0}, {"a": 2, "b": 4}), batch_size=4)
    tracker.update(result({"b": 3.0}, {"b": 4}, absent=("a",)), batch_size=4)
    tracker.update(result({"a": 7.0, "b": 1.0}, {"a": 1, "b": 2}), batch_size=2)
    record = only(tracker.flush())
    assert_close(record.values["loss/a"], (1.0 * 2 + 7.0 * 1) / 3)  # 3.0
    assert_close(record.values["loss/b"], (2.0 * 4 + 3.0 * 4 + 1.0 * 2) / 10)  # 2.2
    assert_close(record.values["weight/a"], 1.0)
    assert record.points["loss/a"] == (1.0, None, 7.0)
    assert_close(record.values["loss"], (3.0 * 4 + 3.0 * 4 + 8.0 * 2) / 10)  # 4.0


def test_counts_of_results_with_extras_and_mapping_updates() -> None:
    tracker = Tracker()
    tracker.update(result({"a": 2.0}, {"a": 3}), batch_size=8, extra={"lr": 0.5})
    tracker.update({"loss": torch.tensor(4.0), "loss/a": torch.tensor(6.0)}, batch_size=1)
    tracker.update(result({"a": 10.0}, {"a": 0}), batch_size=8, extra={"lr": 0.25})
    values = only(tracker.flush()).values
    # The mapping's "loss/a" has no count: the batch size (1) weighs it.
    assert_close(values["loss/a"], (2.0 * 3 + 6.0 * 1) / 4)  # 3.0; the third is counted 0 times
    assert_close(values["loss"], (2.0 * 8 + 4.0 * 1 + 10.0 * 8) / 17)
    assert_close(values["lr"], (0.5 * 8 + 0.25 * 8) / 16)


def test_the_record_count_is_the_batch_weight_not_a_count() -> None:
    tracker = Tracker()
    tracker.update(result({"tok": 1.0}, {"tok": 100}), batch_size=4)
    tracker.update(result({"tok": 2.0}, {"tok": 300}), batch_size=4)
    record = only(tracker.flush())
    assert record.values["loss/tok"] == 1.75
    assert record.count == 8
    (epoch,) = tracker.end_epoch()
    assert epoch.count == 8


def test_epoch_means_weigh_every_interval_by_its_counts() -> None:
    tracker = Tracker()
    tracker.update(result({"a": 1.0}, {"a": 4}), batch_size=4)
    tracker.update(result({"a": 0.0}, {"a": 0}), batch_size=4)
    assert only(tracker.flush()).values["loss/a"] == 1.0
    tracker.update(result({"a": 0.0}, {"a": 0}), batch_size=4)
    assert "loss/a" not in only(tracker.flush()).values
    tracker.update(result({"a": 4.0}, {"a": 2}), batch_size=4)
    tracker.update(result({"a": 0.5}, {"a": 2}), batch_size=4)
    assert only(tracker.flush()).values["loss/a"] == 2.25
    (epoch,) = tracker.end_epoch()
    assert_close(epoch.values["loss/a"], (1.0 * 4 + 4.0 * 2 + 0.5 * 2) / 8)  # 1.625
    assert_close(epoch.values["loss"], (1.0 + 0.0 + 0.0 + 4.0 + 0.5) / 5)  # equal batches
    state = tracker.state_dict()
    assert "loss/a" not in state["epoch_sums"]  # the epoch is over
    tracker.update(result({"a": 0.0}, {"a": 0}), batch_size=4)
    (epoch,) = tracker.end_epoch()
    assert "loss/a" not in epoch.values
    assert epoch.values["loss"] == 0.0


def test_a_value_counted_zero_times_adds_nothing_even_when_not_finite() -> None:
    tracker = Tracker()
    tracker.update(result({"a": 2.0}, {"a": 1}, total=2.0), batch_size=1)
    tracker.update(result({"a": float("nan")}, {"a": 0}, total=0.0), batch_size=1)
    record = only(tracker.flush())
    assert record.values["loss/a"] == 2.0
    assert record.points["loss/a"] == (2.0, None)


def test_many_updates_over_several_layouts_and_compactions() -> None:
    rng = random.Random(0)
    tracker = Tracker(every=None)
    sums = {"a": 0.0, "b": 0.0, "loss": 0.0}
    weights = {"a": 0.0, "b": 0.0, "loss": 0.0}
    for _ in range(2 * _buffer._COMPACT_EVERY + 37):
        size = rng.randint(1, 8)
        count = float(rng.randint(0, size))  # how many of the batch's samples carry "a"
        a = float(rng.randint(1, 9)) if count else 0.0
        b = float(rng.randint(1, 9))
        if rng.random() < 0.2:  # "a" left out of the result
            parts: dict[str, float] = {"b": b}
        else:
            parts = {"a": a, "b": b}
            sums["a"] += a * count
            weights["a"] += count
        counted = rng.random() < 0.5  # "b" reports its count in some results only
        tracker.update(result(parts, {"a": count, "b": size if counted else None}), batch_size=size)
        sums["b"] += b * size
        sums["loss"] += sum(parts.values()) * size
        weights["b"] += size
        weights["loss"] += size
    values = only(tracker.flush()).values
    for key, name in (("a", "loss/a"), ("b", "loss/b"), ("loss", "loss")):
        assert_close(values[name], sums[key] / weights[key])


def test_update_with_counts_does_not_touch_accelerator_values(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an accelerator ("stacked") the counts are kept as references, like the values."""
    tracker = Tracker()
    res = result({"a": 2.0, "b": 1.0}, {"a": 3, "b": 1})
    tracker.update(res, batch_size=4)  # the first update of a layout inspects shapes

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("update read or computed a value")

    if path == "stacked":
        for name in ("item", "tolist", "__float__", "__bool__", "cpu", "to"):
            monkeypatch.setattr(torch.Tensor, name, forbidden)
    monkeypatch.setattr(torch, "stack", forbidden)
    monkeypatch.setattr(torch, "cat", forbidden)
    for _ in range(_buffer._COMPACT_EVERY - 2):
        tracker.update(res, batch_size=4)
    monkeypatch.undo()
    values = only(tracker.flush()).values
    assert values["loss/a"] == 2.0
    assert values["loss/b"] == 1.0
