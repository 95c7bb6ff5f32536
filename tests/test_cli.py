"""The `losskit` command through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from losskit.cli import app

runner = CliRunner()

COMMANDS = [
    *("demo", "run", "report", "losses", "recommend", "doctor", "lint"),
    *("compare", "tune", "worker"),
]


@pytest.mark.parametrize("args", [["--help"], *[[c, "--help"] for c in COMMANDS]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_every_command_is_listed() -> None:
    result = runner.invoke(app, ["--help"])
    for command in COMMANDS:
        assert command in result.output


def test_demo_writes_summary_and_report(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--epochs", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    for key in ("cls", "recon", "ink", "total", "metric/accuracy"):
        assert key in result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 3
    assert set(summary["final"]["val"]) >= {"loss/cls", "loss/recon", "loss/ink"}
    assert summary["val_accuracy"] > 0.5
    assert summary["weights"]["ink"] == pytest.approx(0.5)
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (tmp_path / "best.pt").exists()
    again = runner.invoke(app, ["report", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert "report.html" in again.output


def test_a_bad_config_is_reported_with_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[model]\nsource = "digits_mlp"\n[data]\nsource = "digits"\n'
        '[terms.cls]\nloss = "cross_entropy"\nweight = "heavy"\n[optimizer]\nlr = 0.1\n'
    )
    result = runner.invoke(app, ["run", str(config), "--quiet"])
    assert result.exit_code == 2
    assert str(config) in result.output
    assert "terms.cls.weight" in result.output


def test_run_resumes_from_the_run_folder(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        '[run]\nepochs = 2\n[model]\nsource = "digits_mlp"\ninput = "pixels"\n'
        '[data]\nsource = "digits"\nbatch_size = 256\n'
        '[terms.cls]\nloss = "cross_entropy"\ninput = "logits"\ntarget = "label"\n'
        "[optimizer]\nlr = 0.01\n"
    )
    out = tmp_path / "out"
    first = runner.invoke(app, ["run", str(config), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    config.write_text(config.read_text().replace("epochs = 2", "epochs = 3"))
    second = runner.invoke(app, ["run", str(config), "--out", str(out), "--resume", "--quiet"])
    assert second.exit_code == 0, second.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3
    assert summary["steps"] == 3 * 6  # 1438 training images in batches of 256


def test_losses_lists_the_catalogue() -> None:
    result = runner.invoke(app, ["losses", "--family", "regression"])
    assert result.exit_code == 0, result.output
    assert "huber" in result.output
    assert "cross_entropy" not in result.output


def test_recommend_from_flags_and_targets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["recommend", "--task", "regression", "--outliers"])
    assert result.exit_code == 0, result.output
    assert "huber" in result.output
    targets = tmp_path / "y.pt"
    torch.save(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), targets)
    result = runner.invoke(
        app, ["recommend", "--task", "multilabel", "--imbalance", "--targets", str(targets)]
    )
    assert result.exit_code == 0, result.output
    assert "pos_weight=[3.0, 3.0]" in result.output
    assert "asymmetric" in result.output
    assert 'loss = "bce_with_logits"' in result.output


def test_recommend_without_a_terminal_needs_a_task() -> None:
    result = runner.invoke(app, ["recommend"])
    assert result.exit_code == 2
    assert "give --task" in result.output


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "losskit", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout


def test_version_prints_the_package_version() -> None:
    import losskit

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"losskit {losskit.__version__}"


def test_an_unknown_loss_family_is_an_error_listing_the_families() -> None:
    result = runner.invoke(app, ["losses", "--family", "foo"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "no loss family 'foo'; the families are classification," in said
    assert "segmentation" in said
