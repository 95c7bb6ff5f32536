"""Recommendations name real catalogue losses with settings that build."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

import losskit as lk
from losskit.recommend import Task, recommend


@pytest.mark.parametrize("task", get_args(Task))
@pytest.mark.parametrize("flags", [{}, {"outliers": True}, {"imbalance": True}])
def test_every_recommendation_builds(task: Task, flags: dict[str, bool]) -> None:
    for rec in recommend(task, **flags):  # type: ignore[arg-type]
        assert rec.why
        lk.losses.get(rec.loss, **rec.options)


def test_settings_come_from_the_targets() -> None:
    labels = torch.tensor([0] * 90 + [1] * 9 + [2])
    (ce, focal) = recommend("multiclass", imbalance=True, targets=labels)
    torch.testing.assert_close(
        ce.options["weight"], lk.class_weights(lk.class_counts(labels), "effective_number")
    )
    assert focal.loss == "softmax_focal"
    assert "weight = [" in ce.toml("cls")


def test_outliers_change_the_advice() -> None:
    assert recommend("regression")[0].loss == "mse"
    assert recommend("regression", outliers=True)[0].loss == "huber"


def test_unknown_task() -> None:
    with pytest.raises(lk.ConfigError, match="task must be one of"):
        recommend("ranking")  # type: ignore[arg-type]
