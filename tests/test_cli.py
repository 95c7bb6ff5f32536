"""The `losskit` command through its entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from losskit.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["losses", "--help"]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_demo_prints_every_key() -> None:
    result = runner.invoke(app, ["demo", "--steps", "60"])
    assert result.exit_code == 0, result.output
    for key in ("cls", "reg", "recon", "total"):
        assert key in result.output


def test_losses_lists_the_catalogue() -> None:
    result = runner.invoke(app, ["losses", "--family", "regression"])
    assert result.exit_code == 0, result.output
    assert "huber" in result.output
    assert "cross_entropy" not in result.output


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "losskit", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout
