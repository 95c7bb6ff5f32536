"""Ratings follow the documented thresholds, on constructed measurements."""

from __future__ import annotations

import pytest

from losskit.benchmarking._ratings import (
    COST_RATIOS,
    HALF_ERROR_FLOOR,
    MEMORY_FLOOR_MIB,
    MEMORY_RATIOS,
    SPEED_RATIOS,
    STABILITY_RATIO,
    Measured,
    rate,
)


def test_cost_at_and_past_each_threshold() -> None:
    low, medium = COST_RATIOS
    times = [1.0, low, low * 1.01, medium, medium * 1.01]
    ratings = rate([Measured(str(t), time_s=t * 1e-3) for t in times])
    assert [r.cost for r in ratings] == ["low", "low", "medium", "medium", "high"]
    assert ratings[4].ratios["cost"] == pytest.approx(medium * 1.01)


def test_memory_is_floored_before_the_ratio() -> None:
    low, medium = MEMORY_RATIOS
    peaks = [0.0, MEMORY_FLOOR_MIB * low, MEMORY_FLOOR_MIB * medium, MEMORY_FLOOR_MIB * 5]
    ratings = rate([Measured(str(p), memory_mib=p) for p in peaks])
    assert [r.memory for r in ratings] == ["low", "low", "medium", "high"]


def test_convergence_speed_per_task_and_not_reached_is_low() -> None:
    fast, medium = SPEED_RATIOS
    cases = [
        Measured("a", steps={"digits": 100.0, "regression": 50.0}),
        Measured("b", steps={"digits": 100.0 * fast, "regression": None}),
        Measured("c", steps={"digits": 100.0 * medium}),
        Measured("d", steps={"digits": 100.0 * medium + 1}),
    ]
    speeds = [r.speed for r in rate(cases)]
    assert speeds == [
        {"digits": "high", "regression": "high"},
        {"digits": "high", "regression": "low"},
        {"digits": "medium"},
        {"digits": "low"},
    ]


def test_stability_from_flags_divergence_and_half_precision_error() -> None:
    best = HALF_ERROR_FLOOR * 2
    cases = [
        Measured("ok", flagged=False, half_error=best),
        Measured("below_floor", flagged=False, half_error=HALF_ERROR_FLOOR / 100),
        Measured("edge", flagged=False, half_error=HALF_ERROR_FLOOR * STABILITY_RATIO),
        Measured("imprecise", flagged=False, half_error=HALF_ERROR_FLOOR * STABILITY_RATIO * 1.1),
        Measured("flagged", flagged=True, half_error=best),
        Measured("diverged", flagged=False, half_error=best, diverged=True),
        Measured("unchecked"),
    ]
    assert [r.stability for r in rate(cases)] == [
        "high",
        "high",
        "high",
        "medium",
        "low",
        "low",
        None,
    ]


def test_unmeasured_columns_are_none() -> None:
    (rating,) = rate([Measured("x")])
    assert (rating.cost, rating.memory, rating.speed, rating.stability) == (None, None, {}, None)
