"""Finding a NaN from the command line: check = "always" in a run file, doctor --steps, lint."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losskit.cli import app
from losskit.errors import LossKitWarning

runner = CliRunner()
ENV = {"COLUMNS": "80"}


@pytest.fixture(scope="package")
def nan_run(tmp_path_factory: pytest.TempPathFactory, config_writer: Callable[..., Path]) -> Path:
    """A run that goes non-finite after a few steps and, warned only, logs it to the end."""
    folder = tmp_path_factory.mktemp("nan_run")
    config = config_writer(folder, "warn", lr=1e4, top='check = "always"\nnonfinite = "warn"\n')
    with pytest.warns(LossKitWarning, match="'cls' are non-finite"):
        result = runner.invoke(app, ["run", str(config), "--out", str(folder / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_check_always_in_a_run_file_stops_at_the_step_naming_the_term(
    tmp_path: Path, config_writer: Callable[..., Path]
) -> None:
    config = config_writer(tmp_path, "raise", lr=1e4, top='check = "always"\n')
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 3, result.output  # training stopped, not a usage error (2)
    text = " ".join(result.output.split())
    assert "'cls'" in text
    assert "non-finite at step" in text
    assert "input: shape (64, 10)" in text


def test_doctor_finds_a_later_nan_only_when_it_trains(configs: Path) -> None:
    config = str(configs / "nan.toml")
    first = runner.invoke(app, ["doctor", config, "--json"], env=ENV)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["ok"] is True  # one batch at step 0 looks healthy
    trained = runner.invoke(app, ["doctor", config, "--steps", "10", "--json"], env=ENV)
    assert trained.exit_code == 1, trained.output
    data = json.loads(trained.output)
    (error,) = [f for f in data["findings"] if f["severity"] == "error"]
    assert error["kind"] == "nonfinite"
    assert 1 <= error["start"] <= 10
    assert error["message"].startswith(f"training step {error['start']}: ")
    assert "'cls'" in error["message"]


def test_doctor_checks_several_batches(configs: Path) -> None:
    result = runner.invoke(app, ["doctor", str(configs / "ok.toml"), "--batches", "3"], env=ENV)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_lint_names_the_first_nonfinite_key_and_step_in_one_line(nan_run: Path) -> None:
    logged = [json.loads(line) for line in (nan_run / "metrics.jsonl").read_text().splitlines()]
    steps = [
        step
        for r in logged
        if r["kind"] == "interval" and r["split"] == "train"
        for step, value in zip(r["steps"], r["points"]["loss/cls"])
        if not math.isfinite(float(value))  # the log writes "NaN", "Infinity"
    ]
    result = runner.invoke(app, ["lint", str(nan_run)], env=ENV)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[0] == f"first non-finite: train/loss/cls at step {steps[0]}"


def test_lint_elides_the_runs_common_folder_and_wraps_advice_once(
    nan_run: Path, tmp_path: Path
) -> None:
    grid = tmp_path / "grid-compare"
    for name in ("variant-a-seed0", "variant-b-seed0"):
        shutil.copytree(nan_run, grid / name)
    result = runner.invoke(
        app, ["lint", str(grid / "variant-a-seed0"), str(grid / "variant-b-seed0")], env=ENV
    )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(" in variant-a-seed0")
    assert lines[1].endswith("finding(s) in runs under:")
    assert lines[2] == f"  {grid}"
    assert max(len(line) for line in lines if line != lines[2]) <= 80
    heads = [line for line in lines if line.startswith("error nonfinite")]
    assert heads
    assert all(h.endswith(("(variant-a-seed0)", "(variant-b-seed0)")) for h in heads)
    advice = [i for i, line in enumerate(lines) if line.startswith("  advice: ")]
    for start in advice:  # the advice, wrapped at 80 columns: a few lines, not one word a line
        rest = [line for line in lines[start + 1 : start + 6] if line.startswith("    ")]
        assert len(rest) <= 3
        assert all(len(line) > 40 for line in lines[start : start + len(rest)])


def test_doctor_text_lists_findings_at_full_width(configs: Path) -> None:
    result = runner.invoke(app, ["doctor", str(configs / "nan.toml"), "--steps", "10"], env=ENV)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    at = lines.index("error nonfinite")
    assert lines[at + 1].startswith("  training step ")
    assert len(lines[at + 1].rstrip()) > 50  # the message runs at the full width, not folded


def test_lint_json_lists_the_onset_of_each_key(nan_run: Path) -> None:
    result = runner.invoke(app, ["lint", str(nan_run), "--json"], env=ENV)
    assert result.exit_code == 1, result.output
    found = json.loads(result.output)
    onsets = {(f["split"], f["key"]): f["steps"][0] for f in found if f["kind"] == "nonfinite"}
    text = runner.invoke(app, ["lint", str(nan_run)], env=ENV).output.splitlines()[0]
    assert text == f"first non-finite: train/loss/cls at step {onsets['train', 'loss/cls']}"
    assert onsets["train", "loss"] == onsets["train", "loss/cls"]
