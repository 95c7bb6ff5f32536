"""The log never lags its checkpoint: sinks are synced to disk before a checkpoint is renamed
into place, and a corrupt log found at the end of a run is one clear error that keeps the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app
from losskit.engine import _checkpoint
from losskit.tracking import Tracker, sinks

runner = CliRunner()


class _Disk:
    """Records how many bytes of each file were fsynced, to compare with its size later."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: dict[str, int] = {}
        self.renamed: list[tuple[str, dict[str, int], dict[str, int]]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            real_fsync(fd)
            path = os.readlink(f"/proc/self/fd/{fd}")
            self.synced[path] = os.fstat(fd).st_size

        def replace(src: Any, dst: Any) -> None:
            logs = {
                str(p): p.stat().st_size
                for p in Path(dst).parent.glob("metrics.*")
                if p.suffix in (".jsonl", ".csv")
            }
            self.renamed.append((str(dst), logs, dict(self.synced)))
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(_checkpoint.os, "replace", replace)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd")
def test_the_log_is_on_disk_before_each_checkpoint_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _Disk(monkeypatch)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    crit = lk.Criterion({"mse": lk.Term("mse", input=0, target="y")})
    data = [{"x": torch.randn(4, 3), "y": torch.randn(4)} for _ in range(3)]
    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=lambda m, b: (m(b["x"]).squeeze(-1),),
        run_dir=tmp_path,
        progress=False,
    )
    trainer.fit(data, data, epochs=3)
    checkpoints = [r for r in disk.renamed if r[0].endswith(".pt")]
    assert len(checkpoints) >= 3
    for target, logs, synced in checkpoints:
        assert logs, target
        for log, size in logs.items():
            assert synced.get(log) == size, f"{log} not on disk before {target} was renamed"


def test_tracker_sync_puts_every_sink_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _Disk(monkeypatch)
    tracker = Tracker([sinks.JSONL(tmp_path), sinks.CSV(tmp_path)])
    tracker.update({"loss": torch.tensor(0.5)})
    tracker.flush()
    tracker.sync()
    for name in ("metrics.jsonl", "metrics.csv"):
        path = tmp_path / name
        assert disk.synced[str(path)] == path.stat().st_size > 0
    tracker.close()


_CONFIG = (
    '[run]\nepochs = {epochs}\n[model]\nsource = "digits_mlp"\ninput = "pixels"\n'
    "options = {{ hidden = 16 }}\n"
    '[data]\nsource = "digits"\nbatch_size = 512\n'
    '[terms.cls]\nloss = "cross_entropy"\ninput = "logits"\ntarget = "label"\n'
    "[optimizer]\nlr = 0.01\n"
)


def test_a_corrupt_log_line_at_the_end_of_a_run_is_the_report_error_and_keeps_the_run(
    tmp_path: Path,
) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text(_CONFIG.format(epochs=1))
    two.write_text(_CONFIG.format(epochs=2))
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(one), "--out", str(out), "--quiet"]).exit_code == 0
    log = out / "metrics.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([lines[0], "{not json\n", *lines[1:]]))
    result = runner.invoke(app, ["run", str(two), "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip().splitlines()
    assert len(error) == 1, result.stderr
    assert "metrics.jsonl:2" in error[0]
    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 2
    assert report.stderr.strip() == error[0]
    for name in ("summary.json", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
