"""A training run killed with SIGKILL leaves a log that loads and a report that renders."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losskit.cli import app
from losskit.errors import LogFormatError
from losskit.report import render
from losskit.tracking import load

SCRIPT = Path(__file__).with_name("small_run.py")


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("killed")
    log = run / "metrics.jsonl"
    options = ["--epochs", "1000", "--steps", "20", "--every", "5", "--sleep", "0.005"]
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_bytes().count(b"\n") >= 6):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the training script wrote no log in 60 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return run


def test_the_log_of_a_killed_run_loads(killed_run: Path) -> None:
    history = load(killed_run)
    assert history.records
    assert history.splits()[0] == "train"
    steps = history.series("loss").steps
    assert steps == tuple(range(1, len(steps) + 1))  # every flushed step, none twice
    assert len(steps) >= 5


def test_the_report_of_a_killed_run_renders(killed_run: Path) -> None:
    path = render(killed_run)
    text = path.read_text()
    assert text.count('<figure class="chart"') >= 4  # 4 loss curves at least
    assert '"model": "TwoHeads"' in html.unescape(text)  # config.json


def test_a_kill_mid_line_and_a_corrupt_line(killed_run: Path, tmp_path: Path) -> None:
    lines = (killed_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    log = tmp_path / "metrics.jsonl"
    # Killed mid-write: the last line is cut short; it is left out, the report still renders.
    log.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    history = load(tmp_path)
    assert history.truncated
    assert len(history.records) == 4
    assert render(tmp_path).exists()
    # Damage in the middle is an error naming the line, in the library and in the CLI.
    broken = [*lines[:2], "{not json\n", *lines[3:]]
    log.write_text("".join(broken))
    with pytest.raises(LogFormatError, match=r"metrics\.jsonl:3"):
        load(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "metrics.jsonl:3" in result.output.replace("\n", "")
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--skip-corrupt"])
    assert result.exit_code == 0, result.output
    assert "Corrupt log lines left out: 3." in (tmp_path / "report.html").read_text()
