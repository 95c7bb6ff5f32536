"""The run report charts what a Trainer logs: metrics beside the losses, and the optimization."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from losskit.report import curve_charts
from losskit.tracking import Tracker, load, sinks


def _log(run: Path) -> None:
    with Tracker([sinks.JSONL(run)]) as tracker:
        for step in range(1, 7):
            tracker.update(
                {"loss": torch.tensor(1.0 / step)},
                "train",
                step=step,
                extra={
                    "lr/default": 0.1 * 0.3**step,
                    "total_grad_norm/default": torch.tensor(float(step)),
                    "speed/step_s": 0.01,
                },
            )
            if step % 3 == 0:
                tracker.update(
                    {"loss": torch.tensor(2.0 / step), "metric/accuracy": torch.tensor(step / 6)},
                    "val",
                    step=step,
                )
                tracker.end_epoch()


def test_metrics_beside_losses_and_the_optimization_charts(tmp_path: Path) -> None:
    _log(tmp_path)
    charts = {(c.section, c.title): c for c in curve_charts(load(tmp_path))}
    assert ("Losses", "loss") in charts
    accuracy = charts[("Losses", "metric/accuracy")]
    (series,) = accuracy.series
    assert [v for v in series.values if v is not None] == [0.5, 1.0]
    lr = charts[("Optimization", "learning rate")]
    assert [s.label for s in lr.series] == ["default"]
    assert lr.series[0].values == pytest.approx([0.1 * 0.3**s for s in range(1, 7)], rel=1e-6)
    assert lr.log  # 0.03 down to 7e-5: over two decades
    norm = charts[("Optimization", "gradient norm before clipping")]
    assert norm.series[0].values == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert ("Optimization", "step time and throughput") in charts
