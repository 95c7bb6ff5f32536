"""Balancer advice from measurements: the cheapest first-tier method, on a constructed table."""

from __future__ import annotations

import pytest

from losskit.balancers._advice import advise, measured
from losskit.errors import ConfigError


def _row(mean: float, tier: int, step: float, findings: tuple[str, ...] = ()) -> dict:
    return {
        "mean": mean,
        "ci95": [mean - 0.01, mean + 0.01],
        "tier": tier,
        "step_vs_sum": step,
        "memory_vs_sum": 1.0,
        "findings": list(findings),
    }


FIGURES = {
    "seeds": 10,
    "command": "python benchmarks/balancer_table.py",
    "tasks": {
        "multidigits": {
            "sum": _row(0.940, 1, 1.0),
            "upgrad": _row(0.945, 1, 2.5),
            "mgda": _row(0.930, 2, 2.4),
            "random": _row(0.941, 1, 0.95, ("divergence",)),
            "mean": _row(0.939, 1, 0.9, ("overfitting",)),
        },
        "demo_tasks": {
            "sum": _row(0.90, 2, 1.0),
            "uncertainty": _row(0.95, 1, 1.1),
            "upgrad": _row(0.952, 1, 2.0),
        },
    },
}


def test_cheapest_clean_first_tier_method_is_advised() -> None:
    advice = advise("similar", FIGURES)
    # random diverged (out); mean is as cheap as sum (within SAME_COST): sum is preferred
    assert advice.start_with == "sum"
    assert advice.first_tier == ("mean", "sum", "upgrad")
    assert [r.method for r in advice.table] == ["upgrad", "random", "sum", "mean", "mgda"]
    assert "0.9400 [0.9300, 0.9500]" in advice.why
    assert "(upgrad, 0.9450)" in advice.why
    different = advise("different", FIGURES)
    assert different.start_with == "uncertainty"
    assert different.first_tier == ("uncertainty", "upgrad")


def test_wide_first_tier_points_to_tune() -> None:
    wide = advise("similar", FIGURES)
    assert "losskit tune" in wide.tune_when
    assert wide.tune_when.startswith("3 of 5 balancers are not separable")


def test_unknown_case_and_task_are_refused() -> None:
    with pytest.raises(ConfigError, match="scales must be one of"):
        advise("huge", FIGURES)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no measurements for 'nope'"):
        measured("nope", FIGURES)
