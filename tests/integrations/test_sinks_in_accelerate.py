"""AcceleratedCriterion's own tracker writes to sinks: the keys of an Accelerate loop reach
TensorBoard and the JSONL log (``accelerator.log`` never sees them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

import losskit as lk
from losskit.errors import ConfigError
from losskit.integrations.accelerate import AcceleratedCriterion
from losskit.tracking import Tracker, load, sinks


def test_an_accelerate_loop_writes_its_sinks(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    board = sinks.TensorBoard(tmp_path)
    crit = AcceleratedCriterion(
        accelerator,
        model,
        lk.Criterion({"mse": lk.Term("mse")}),
        sinks=[sinks.JSONL(tmp_path), board],
        every=2,
    )
    x, y = torch.randn(16, 3), torch.randn(16)
    for i in range(0, 16, 4):
        with crit.accumulate():
            res = crit(model(x[i : i + 4]).squeeze(-1), y[i : i + 4], batch_size=4)
            crit.backward(res)
            crit.step(optimizer)
    crit.tracker.end_epoch()
    crit.tracker.close()
    history = load(tmp_path)
    losses = history.series("loss").values
    assert len(losses) == 4
    events = EventAccumulator(str(board.path), size_guidance={"scalars": 0})
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss/mse")]
    assert [s for s, _ in logged] == [1, 2, 3, 4]
    torch.testing.assert_close([v for _, v in logged], list(history.series("loss/mse").values))


def test_sinks_go_to_the_tracker_given() -> None:
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 1)
    with pytest.raises(ConfigError, match=r"give sinks and every to your tracker"):
        AcceleratedCriterion(
            accelerator,
            model,
            lk.Criterion({"mse": lk.Term("mse")}),
            tracker=Tracker(),
            sinks=[sinks.CSV("unused")],
        )
