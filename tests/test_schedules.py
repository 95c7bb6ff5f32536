"""Weight schedules give their documented values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit as lk
from losskit.schedules import Constant, Cosine, Cyclical, LinearWarmup, Schedule, Step


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Constant(0.3), {0: 0.3, 1: 0.3, 10**6: 0.3}),
        (LinearWarmup(0.0, 1.0, steps=100), {0: 0.0, 25: 0.25, 100: 1.0, 5000: 1.0}),
        (LinearWarmup(1.0, 0.0, steps=4, delay=2), {0: 1.0, 2: 1.0, 3: 0.75, 6: 0.0}),
        (Cosine(1.0, 0.0, steps=100), {0: 1.0, 50: 0.5, 100: 0.0, 200: 0.0}),
        (Cosine(0.0, 2.0, steps=4), {1: 1.0 - math.cos(math.pi / 4), 2: 1.0}),
        (Step(boundaries=(10, 20), values=(1.0, 0.1, 0.01)), {0: 1.0, 10: 0.1, 19: 0.1, 20: 0.01}),
        (
            Cyclical(0.0, 1.0, period=10, ratio=0.5),
            {0: 0.0, 2: 0.4, 5: 1.0, 9: 1.0, 10: 0.0, 13: 0.6},
        ),
        (Cyclical(0.1, 1.0, period=10, ratio=1.0, cycles=2), {5: 0.55, 19: 0.91, 20: 1.0, 95: 1.0}),
    ],
)
def test_documented_values(schedule: Schedule, expected: dict[int, float]) -> None:
    for step, value in expected.items():
        assert schedule(step) == pytest.approx(value, abs=1e-12), step


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: LinearWarmup(0.0, 1.0, steps=0), "steps must be > 0"),
        (lambda: Cosine(0.0, 1.0, steps=-1), "steps must be > 0"),
        (
            lambda: Step(boundaries=(5,), values=(1.0,)),
            "len\\(values\\) == len\\(boundaries\\) \\+ 1",
        ),
        (lambda: Step(boundaries=(5, 5), values=(1.0, 2.0, 3.0)), "strictly increasing"),
        (lambda: Cyclical(0.0, 1.0, period=10, ratio=0.0), "ratio must be in"),
        (lambda: lk.Term("mse", weight="high"), "number or a schedule"),
    ],
)
def test_invalid_schedules_are_refused(build: object, match: str) -> None:
    with pytest.raises(lk.ConfigError, match=match):
        build()  # type: ignore[operator]


@given(
    start=st.floats(-10, 10),
    end=st.floats(-10, 10),
    steps=st.integers(1, 1000),
    step=st.integers(0, 5000),
)
def test_warmup_and_cosine_stay_between_their_ends(
    start: float, end: float, steps: int, step: int
) -> None:
    low, high = min(start, end) - 1e-9, max(start, end) + 1e-9
    assert low <= LinearWarmup(start, end, steps=steps)(step) <= high
    assert low <= Cosine(start, end, steps=steps)(step) <= high


@given(steps=st.integers(1, 500), step=st.integers(0, 1000))
def test_warmup_is_monotone(steps: int, step: int) -> None:
    w = LinearWarmup(0.0, 1.0, steps=steps)
    assert w(step) <= w(step + 1)


def test_a_plain_function_is_a_schedule() -> None:
    crit = lk.Criterion({"a": lk.Term("mse", weight=lambda step: 0.5**step)})
    crit.step()
    crit.step()
    res = crit(torch.zeros(2), torch.ones(2))
    torch.testing.assert_close(res.weights["a"], torch.tensor(0.25))
    torch.testing.assert_close(res.total, torch.tensor(0.25))
