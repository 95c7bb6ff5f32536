"""`losskit doctor CONFIG.toml` and the ``diagnostics_every`` field of a run configuration."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app
from losskit.config import load_config
from losskit.run import build, run

runner = CliRunner()

DEMO = Path(str(resources.files("losskit").joinpath("demo.toml")))


def test_doctor_on_the_demo_finds_nothing_and_prints_json() -> None:
    result = runner.invoke(app, ["doctor", str(DEMO), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True
    assert data["findings"] == []
    assert list(data["terms"]) == ["cls", "recon", "ink"]
    assert data["terms"]["cls"]["inputs"]["input"]["shape"] == [64, 10]
    shares = [t["share"] for t in data["terms"].values()]
    assert sum(shares) == pytest.approx(1.0)
    assert data["terms"]["recon"]["weight"] == 0.0  # warming up from 0 at step 0
    assert set(data["conflicts"]) == {"cls/recon", "cls/ink", "recon/ink"}


def test_doctor_fails_on_an_error_and_prints_the_advice(tmp_path: Path) -> None:
    text = DEMO.read_text().replace('loss = "cross_entropy"', 'loss = "nll"')
    config = tmp_path / "broken.toml"
    config.write_text(text)
    result = runner.invoke(app, ["doctor", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "log_softmax" in result.output
    assert "contract" in result.output
    assert "what each term reads" in result.output


def test_doctor_reports_a_bad_config_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_a_config_run_logs_diagnostics(tmp_path: Path) -> None:
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(
        update={
            "run": cfg.run.model_copy(update={"epochs": 1}),
            "trainer": cfg.trainer.model_copy(update={"diagnostics_every": 10}),
        }
    )
    result = run(cfg, out=tmp_path, progress=False)
    steps = lk.tracking.load(tmp_path).series("cos/cls/ink", "train", "step").steps
    assert steps == tuple(range(1, result.fit.steps + 1, 10))


def test_the_config_field_is_checked() -> None:
    raw = {
        "model": {"source": "digits_mlp", "input": "pixels"},
        "data": {"source": "digits"},
        "terms": {"cls": {"loss": "cross_entropy", "input": "logits", "target": "label"}},
        "optimizer": {"name": "adam"},
    }
    assert (
        load_config({**raw, "trainer": {"diagnostics_every": 50}}).trainer.diagnostics_every == 50
    )
    with pytest.raises(lk.ConfigError, match=r"trainer: diagnostics_every must be a positive"):
        build(load_config({**raw, "trainer": {"diagnostics_every": 0}}), progress=False)
