"""The demo model in an Accelerate loop with AcceleratedCriterion: two processes log the same
epoch means and end with the same parameters as one process on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any]]:
    out = tmp_path_factory.mktemp("accelerate")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "accelerate_worker.py"), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the Accelerate runs hung")
    assert done.returncode == 0, done.stderr[-4000:]
    single = torch.load(out / "single.pt", weights_only=False)
    return single, [torch.load(out / f"ddp-{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("run", ["sum", "upgrad"])
def test_two_processes_log_and_train_as_one_on_the_global_batch(
    runs: tuple[Any, list[Any]], run: str
) -> None:
    single, ranks = runs
    for result in ranks:
        assert result[run]["steps"] == single[run]["steps"] == 8
        assert_close(result[run]["history"], single[run]["history"])
        assert_close(result[run]["params"], single[run]["params"])
    if run == "upgrad":  # the aggregated weights, not the term weights, are logged
        assert ranks[0][run]["history"][-1]["train"]["weight/cls"] != pytest.approx(1.0, abs=1e-3)
