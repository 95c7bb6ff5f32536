"""`losskit run CONFIG.toml` unchanged under `torchrun --nproc-per-node 2` (gloo, CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from losskit.tracking import load


def test_losskit_run_under_torchrun_writes_one_run_folder_with_global_means(
    tmp_path: Path,
) -> None:
    demo = resources.files("losskit").joinpath("demo.toml").read_text()
    config = tmp_path / "demo.toml"
    config.write_text(demo.replace("epochs = 20", "epochs = 1"))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    command += ["--master-port", port, "-m", "losskit", "run", str(config), "--out", str(out)]
    try:
        done = subprocess.run(
            [*command, "--quiet"], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("losskit run hung under torchrun")
    assert done.returncode == 0, done.stderr[-4000:]
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "metrics.jsonl",
        "last.pt",
        "summary.json",
        "report.html",
    }
    # The summary table is printed once (rank 0), the log holds 2-process records.
    assert done.stdout.count("training time") == 1
    history = load(out)
    assert {r.world for r in history.records} == {2}
    summary = json.loads((out / "summary.json").read_text())
    # 1,437 training samples, 64 per process: 12 optimizer steps in the epoch.
    assert summary["steps"] == 12
