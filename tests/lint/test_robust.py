"""The linter never fails on odd logs: constant, zero, negative, non-finite, one record."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from losskit.lint import lint
from losskit.tracking import Tracker, sinks

values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, math.nan, math.inf, -math.inf]),
)


def _write(run: Path, rows: list[tuple[float, float, float]], every: int) -> None:
    with Tracker([sinks.JSONL(run)], every=every) as tracker:
        for i, (a, b, w) in enumerate(rows, start=1):
            tracker.update(
                {
                    "loss": torch.tensor(a + w * b, dtype=torch.float64),
                    "loss/a": torch.tensor(a, dtype=torch.float64),
                    "loss/b": torch.tensor(b, dtype=torch.float64),
                    "weight/b": torch.tensor(w, dtype=torch.float64),
                    "weight/a": torch.tensor(1.0),
                }
            )
            if i % 7 == 0:
                tracker.update({"loss/a": torch.tensor(a)}, split="val")
                tracker.end_epoch()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(values, values, values), min_size=1, max_size=120),
    every=st.integers(1, 12),
)
def test_lint_survives_any_values(rows: list[tuple[float, float, float]], every: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp), rows, every)
        for finding in lint(tmp):
            assert finding.start <= finding.end
            assert finding.key.startswith("loss")


def test_constant_zero_and_negative_losses_have_no_findings(tmp_path: Path) -> None:
    _write(tmp_path / "zero", [(0.0, 0.0, 1.0)] * 100, 10)
    _write(tmp_path / "negative", [(-1.0 - 0.01 * i, -0.5, 1.0) for i in range(100)], 10)
    assert lint(tmp_path / "zero") == []
    assert lint(tmp_path / "negative") == []
