"""The Tracker's means: batch-weighted, across flushes and epochs, without host syncs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

import losskit as lk
from losskit.errors import ConfigError, NonFiniteLossError
from losskit.tracking import Record, Tracker, _buffer, load, sinks


@pytest.fixture(params=["host", "stacked"], autouse=True)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test through both compaction paths: CPU reads, and the accelerator's stack and
    single copy (forced here on the CPU)."""
    if request.param == "stacked":
        monkeypatch.setattr(_buffer, "reads_on_host", lambda device: False)
    return str(request.param)


class Collect:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.closed = False

    def write(self, record: Record) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def weighted_mean(values: list[float], weights: list[float]) -> float:
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)


def test_interval_means_are_batch_weighted() -> None:
    sink = Collect()
    tracker = Tracker([sink])
    values, sizes = [1.0, 4.0, 2.5], [8, 24, 16]
    for v, n in zip(values, sizes):
        tracker.update({"loss": torch.tensor(v), "acc": torch.tensor(v / 10)}, batch_size=n)
    (record,) = tracker.flush()
    assert record is sink.records[0]
    assert record.kind == "interval"
    assert record.split == "train"
    assert record.count == 48
    assert record.updates == 3
    assert_close(record.values["loss"], weighted_mean(values, sizes))
    assert_close(record.values["acc"], weighted_mean([v / 10 for v in values], sizes))
    assert record.steps == (1, 2, 3)
    assert_close(list(record.points["loss"]), values)


def test_epoch_means_span_flushes_and_reset_per_epoch() -> None:
    tracker = Tracker(every=3)
    epochs = [
        ([0.5, 1.5, 2.0, 3.0, 0.25, 4.0, 1.0], [10, 20, 30, 5, 15, 25, 35]),
        ([2.0, 6.0], [1, 3]),
    ]
    flushed = []
    for values, sizes in epochs:
        for v, n in zip(values, sizes):
            tracker.update({"loss": torch.tensor(v)}, batch_size=n)
        flushed.append(tracker.latest())
        (record,) = tracker.end_epoch()
        assert record.kind == "epoch"
        assert_close(record.values["loss"], weighted_mean(values, sizes))
        assert record.updates == len(values)
        assert record.count == sum(sizes)
    # Before end_epoch, the latest interval of the first epoch was its second (updates 4-6).
    assert_close(flushed[0]["loss"], weighted_mean([3.0, 0.25, 4.0], [5, 15, 25]))
    assert tracker.epoch == 2
    assert tracker.step == 9


def test_unweighted_and_tensor_batch_sizes() -> None:
    tracker = Tracker()
    tracker.update({"loss": torch.tensor(1.0)})
    tracker.update({"loss": torch.tensor(3.0)})
    tracker.update({"loss": torch.tensor(2.0)}, split="val", batch_size=torch.tensor(3))
    tracker.update({"loss": torch.tensor(6.0)}, split="val", batch_size=torch.tensor(1.0))
    records = {r.split: r for r in tracker.flush()}
    assert_close(records["train"].values["loss"], 2.0)
    assert_close(records["val"].values["loss"], 3.0)
    assert records["val"].steps == (2, 2)  # validation does not advance the step


def test_loss_result_is_logged_under_its_log_names() -> None:
    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", weight=0.5)})
    tracker = Tracker()
    logs = []
    for shift in (0.0, 1.0, 2.0):
        res = crit(torch.zeros(4, requires_grad=True), torch.full((4,), shift))
        logs.append({k: float(v) for k, v in res.log().items()})
        tracker.update(res, batch_size=2, extra={"lr": 0.1})
    (record,) = tracker.flush()
    assert list(record.values) == ["loss", "loss/a", "loss/b", "weight/a", "weight/b", "lr"]
    for key in logs[0]:
        assert_close(record.values[key], sum(log[key] for log in logs) / 3)
        assert_close(list(record.points[key]), [log[key] for log in logs])
    assert_close(record.values["lr"], 0.1)


def test_keys_appearing_and_missing() -> None:
    tracker = Tracker()
    tracker.update({"loss": torch.tensor(1.0)}, batch_size=1)
    tracker.update({"loss": torch.tensor(2.0), "aux": torch.tensor(10.0)}, batch_size=1)
    tracker.update({"aux": torch.tensor(20.0), "loss": torch.tensor(3.0)}, batch_size=3)
    (record,) = tracker.flush()
    assert_close(record.values["loss"], (1 + 2 + 9) / 5)
    assert_close(record.values["aux"], (10 + 60) / 4)
    assert record.points["aux"] == (None, 10.0, 20.0)
    tracker.update({"loss": torch.tensor(5.0)})
    (record,) = tracker.flush()
    assert set(record.values) == {"loss"}  # aux was not logged in this interval
    (epoch,) = tracker.end_epoch()
    assert_close(epoch.values["aux"], (10 + 60) / 4)
    assert_close(epoch.values["loss"], (1 + 2 + 9 + 5) / 6)


def test_plain_numbers_and_more_than_a_compaction_block() -> None:
    tracker = Tracker()
    n = 2 * _buffer._COMPACT_EVERY + 7
    for i in range(n):
        tracker.update({"loss": torch.tensor(float(i)), "lr": 0.5}, batch_size=1 + i % 3)
    (record,) = tracker.flush()
    sizes = [1 + i % 3 for i in range(n)]
    assert_close(record.values["loss"], weighted_mean([float(i) for i in range(n)], sizes))
    assert record.points["lr"] == (0.5,) * n
    assert record.steps == tuple(range(1, n + 1))


def test_update_does_not_touch_accelerator_values(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an accelerator ("stacked"), update neither reads a value (a host sync) nor runs a
    kernel; on the CPU ("host") it reads the values at once, keeping no tensor alive."""
    tracker = Tracker()
    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")})
    res = crit(torch.zeros(2, requires_grad=True), torch.ones(2))
    values = {"loss": torch.tensor(1.0), "acc": torch.tensor(0.5)}
    tracker.update(values, batch_size=4)  # the first update of a layout inspects shapes
    tracker.update(res, batch_size=torch.tensor(4))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("update read or computed a value")

    if path == "stacked":
        for name in ("item", "tolist", "__float__", "__bool__", "cpu", "to"):
            monkeypatch.setattr(torch.Tensor, name, forbidden)
    monkeypatch.setattr(torch, "stack", forbidden)
    monkeypatch.setattr(torch, "cat", forbidden)
    for _ in range(_buffer._COMPACT_EVERY // 2 - 2):
        tracker.update(values, batch_size=4)
        tracker.update(res, batch_size=torch.tensor(4))
    rows = tracker._buffers["train"]._rows
    assert len(rows) == _buffer._COMPACT_EVERY - 2
    if path == "host":
        assert all(not isinstance(v, torch.Tensor) for row in rows[2:] for v in row)
    monkeypatch.undo()
    (record,) = tracker.flush()
    assert_close(record.values["loss"], 1.5)  # 1 for the dicts, 1 + 1 for the results
    assert_close(record.values["loss/a"], 1.0)
    assert record.count == 4 * (_buffer._COMPACT_EVERY - 2)


def test_no_graph_is_kept_alive(path: str) -> None:
    x = torch.ones(3, requires_grad=True)
    tracker = Tracker()
    for _ in range(2):
        tracker.update({"loss": (x * 2).sum()})
    for row in tracker._buffers["train"]._rows:
        (buffered,) = row
        if path == "host":
            assert buffered == 6.0  # read at once
        else:
            assert isinstance(buffered, torch.Tensor)
            assert not buffered.requires_grad


def test_nonfinite_terms_are_checked_at_flush_after_writing(tmp_path: Path) -> None:
    crit = lk.Criterion({"a": lk.Term(lambda out, scale: (out * scale).mean())}, check_steps=1)
    tracker = Tracker([sinks.JSONL(tmp_path)], every=3, criterion=crit)
    tracker.update(crit(torch.zeros(2), torch.ones(2)))
    tracker.update(crit(torch.zeros(2), torch.full((2,), math.inf)))
    with pytest.raises(NonFiniteLossError, match="'a'"):
        tracker.update(crit(torch.zeros(2), torch.ones(2)))
    (record,) = load(tmp_path).records
    assert record.points["loss/a"][0] == 0.0
    assert math.isnan(record.points["loss/a"][1])  # the log shows where it went wrong


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"loss": torch.ones(2)}, "must be a scalar"),
        ({"loss": "high"}, "scalar tensor or a number"),
        ({"loss": True}, "scalar tensor or a number"),
    ],
)
def test_bad_values_are_refused(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Tracker().update(values)  # type: ignore[arg-type]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="every"):
        Tracker(every=0)
    with pytest.raises(ConfigError, match="not a sink"):
        Tracker([object()])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="batch_size"):
        Tracker().update({"loss": torch.tensor(1.0)}, batch_size=-1)
    tracker = Tracker()
    tracker.close()
    with pytest.raises(ConfigError, match="closed"):
        tracker.update({"loss": torch.tensor(1.0)})


def test_close_flushes_and_closes_sinks() -> None:
    sink = Collect()
    with Tracker([sink]) as tracker:
        tracker.update({"loss": torch.tensor(1.0)})
    assert len(sink.records) == 1
    assert sink.closed


def test_state_dict_resumes_step_epoch_and_epoch_sums(tmp_path: Path) -> None:
    first = Tracker([sinks.JSONL(tmp_path)])
    first.update({"loss": torch.tensor(2.0)}, batch_size=1)
    first.flush()
    state = first.state_dict()
    first.close()
    second = Tracker([sinks.JSONL(tmp_path)])
    second.load_state_dict(state)
    second.update({"loss": torch.tensor(5.0)}, batch_size=2)
    (epoch,) = second.end_epoch()
    second.close()
    assert_close(epoch.values["loss"], 4.0)
    assert second.step == 2
    assert second.elapsed >= state["elapsed"]
    history = load(tmp_path)
    assert history.series("loss").steps == (1, 2)
    with pytest.raises(ConfigError, match="state_dict"):
        Tracker().load_state_dict({"step": 1})


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 1e3, allow_nan=False),
            st.integers(1, 64),
            st.sampled_from(["train", "val"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_epoch_mean_is_the_weighted_mean_wherever_flushes_fall(
    updates: list[tuple[float, int, str, bool]],
) -> None:
    tracker = Tracker()
    for value, size, split, flush in updates:
        tracker.update({"loss": torch.tensor(value, dtype=torch.float64)}, split, batch_size=size)
        if flush:
            tracker.flush()
    for record in tracker.end_epoch():
        mine = [(v, n) for v, n, s, _ in updates if s == record.split]
        expected = weighted_mean([v for v, _ in mine], [float(n) for _, n in mine])
        assert_close(record.values["loss"], expected, rtol=1e-9, atol=1e-9)
        assert record.count == sum(n for _, n in mine)


def test_low_precision_values_do_not_narrow_the_weights() -> None:
    tracker = Tracker()
    for value, size in ((1.0, 4097), (3.0, 1)):
        tracker.update(
            {"loss": torch.tensor(value, dtype=torch.float16)}, batch_size=torch.tensor(size)
        )
    (record,) = tracker.flush()
    assert record.count == 4098
    assert_close(record.values["loss"], (4097 + 3) / 4098)


def test_scheduled_weights_are_logged_at_every_step() -> None:
    crit = lk.Criterion({"a": lk.Term("mse", weight=lk.schedules.LinearWarmup(0.0, 1.0, steps=4))})
    tracker = Tracker()
    for _ in range(6):
        tracker.update(crit(torch.zeros(2), torch.ones(2)))
        crit.step()
    (record,) = tracker.flush()
    assert_close(list(record.points["weight/a"]), [0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert_close(list(record.points["loss"]), [0.0, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_weights_changed_in_place_are_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPU values are read at once (on an accelerator they are read at the flush, and a tensor
    # changed in place after it is logged is documented as unsupported).
    monkeypatch.setattr(_buffer, "reads_on_host", lambda device: True)
    weights = torch.ones(1)
    tracker = Tracker()
    for value in (1.0, 2.0, 3.0):
        weights.fill_(value)
        tracker.update(lk.LossResult(torch.tensor(value), ("a",), (torch.tensor(1.0),), weights))
    (record,) = tracker.flush()
    assert record.points["weight/a"] == (1.0, 2.0, 3.0)


def test_monitor_only_values_are_logged_after_a_plain_result_with_the_same_keys() -> None:
    # A layout cached for keys ("fit",) must not drop a later result's monitored "mae".
    plain = lk.Criterion({"fit": lk.Term("mse")})
    watched = lk.Criterion({"fit": lk.Term("mse"), "mae": lk.Term("l1", monitor=True)})
    pred, y = torch.zeros(2), torch.tensor([1.0, 3.0])
    tracker = Tracker(every=10)
    tracker.update(plain(pred, y))
    tracker.update(watched(pred, y))
    tracker.flush()
    latest = tracker.latest()
    assert latest["loss/mae"] == pytest.approx(2.0)  # one update carried it
    assert latest["loss/fit"] == pytest.approx(5.0)
