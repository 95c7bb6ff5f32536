"""lk.benchmarking.bench and `losskit bench`: the sigmoid+BCELoss flag and the BCEWithLogits pass,
the stability checks against hand-computed values, the table/JSON/plot outputs with their documented
fields, timing and a child-process memory measurement of a known allocation."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import losskit as lk
from losskit.benchmarking._cases import Case
from losskit.benchmarking._memory import peak_rss_delta
from losskit.benchmarking._stability import EXTREME, precision_errors, scenarios
from losskit.benchmarking._timing import time_step
from losskit.cli import app
from losskit.errors import ConfigError

SHAPE = (16, 4)
MIB = 1024 * 1024


def test_flags_sigmoid_then_bce_and_passes_bce_with_logits() -> None:
    report = lk.benchmarking.bench(
        ["bce_with_logits", "sigmoid+bce"], SHAPE, memory=False, min_run_time=0.01
    )
    logits, sigmoid_bce = report.cases
    assert logits.flags == []
    assert (
        sigmoid_bce.flags[0]
        == f"zero gradient at confidently wrong predictions (|logit| {EXTREME:g})"
    )
    wrong = {s.name: s for s in sigmoid_bce.scenarios}["all_wrong"]
    assert (wrong.value_finite, wrong.grad_finite, wrong.grad_nonzero) == (True, True, False)


def test_extreme_inputs_match_hand_computed_values() -> None:
    # Confidently wrong at |logit| 1e4: BCEWithLogits is 1e4 per element with gradient +-1/n;
    # sigmoid + BCELoss clamps its log at -100 and its gradient through the sigmoid is 0.
    x = torch.full((4,), EXTREME, requires_grad=True)
    t = torch.zeros(4)
    good = F.binary_cross_entropy_with_logits(x, t)
    (g_good,) = torch.autograd.grad(good, x)
    torch.testing.assert_close(good, torch.tensor(EXTREME))
    torch.testing.assert_close(g_good, torch.full((4,), 0.25))
    bad = F.binary_cross_entropy(torch.sigmoid(x), t)
    (g_bad,) = torch.autograd.grad(bad, x)
    torch.testing.assert_close(bad, torch.tensor(100.0))
    assert not g_bad.any()
    # ... and the checks see exactly that.
    checks = {s.name: s for s in scenarios(Case.parse("bce_logits"), SHAPE, torch.device("cpu"))}
    assert checks["all_wrong"].grad_nonzero is True
    assert all(s.value_finite and s.grad_finite for s in checks.values())


def test_precision_errors_grow_as_the_mantissa_shrinks() -> None:
    errors = {
        p.dtype: p
        for p in precision_errors(Case.parse("cross_entropy"), (64, 10), torch.device("cpu"))
    }
    assert errors["float32"].grad_error is not None
    assert errors["float32"].grad_error < 1e-5
    f16, bf16 = errors["float16"].grad_error, errors["bfloat16"].grad_error
    assert f16 is not None
    assert bf16 is not None
    # bfloat16 keeps 8 bits of mantissa, float16 11, float32 24.
    assert errors["float32"].grad_error < f16 < bf16 < 0.05


def test_cli_writes_table_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "bce_with_logits",
            "sigmoid+bce",
            "--shape",
            "16,4",
            "--no-memory",
            "--threads",
            "2",
            "--min-run-time",
            "0.01",
            "--out",
            str(out),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "sigmoid+bce" in result.output
    assert "zero gradient at confidently wrong" in result.output
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["shape"] == [16, 4]
    assert data["settings"]["dtype"] == "float32"
    assert data["settings"]["threads"] == 2
    assert torch.get_num_threads() == 1  # restored (the test session runs one thread)
    fields = {
        "name",
        "time_median_ms",
        "time_iqr_ms",
        "time_runs",
        "peak_memory_mib",
        "memory_method",
        "scenarios",
        "precision",
        "flags",
        "flagged",
        "convergence",
    }
    assert [set(c) for c in data["cases"]] == [fields, fields]
    assert [c["flagged"] for c in data["cases"]] == [False, True]
    assert [s["name"] for s in data["cases"][0]["scenarios"]] == [
        "random",
        "all_correct",
        "all_wrong",
        "empty_mask",
    ]
    assert [p["dtype"] for p in data["cases"][0]["precision"]] == ["float32", "bfloat16", "float16"]
    assert data["cases"][0]["time_median_ms"] > 0
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.png"]  # no temp left


def test_cli_errors() -> None:
    result = CliRunner().invoke(app, ["bench", "focl"])
    assert result.exit_code == 2
    assert "did you mean 'focal'" in result.output
    result = CliRunner().invoke(app, ["bench", "triplet", "--no-memory"])
    assert result.exit_code == 2
    assert "need their own script" in result.output


def test_case_errors() -> None:
    with pytest.raises(ConfigError, match="unknown activation 'tanh'"):
        Case.parse("tanh+bce")
    with pytest.raises(ConfigError, match="shape must be positive"):
        lk.benchmarking.bench(["mse"], (0, 3))


def _sleep_2ms() -> None:
    time.sleep(0.002)


def test_timing_median_of_a_known_step() -> None:
    timing = time_step(_sleep_2ms, warmup=1, min_run_time=0.05)
    assert 0.002 <= timing.median_s < 0.02
    assert timing.runs >= 5
    assert timing.iqr_s >= 0


def test_child_process_peak_memory_of_a_known_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the spawned child imports setups
    setups = importlib.import_module("memory_setups")
    big = peak_rss_delta(setups.allocate_64_mib)
    assert big.method == "rss_peak_reset"
    # A 64 MiB tensor, in a child whose resident size is several hundred MiB before the step.
    assert 62 <= big.peak_mib <= 70
