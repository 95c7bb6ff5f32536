"""The demo model in a LightningModule with LossKitMixin: two ddp_spawn processes log the same
epoch means as one process on the global batch, and the run ends (a hang fails the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    out = tmp_path_factory.mktemp("lightning") / "logged.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "lightning_worker.py"), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the Lightning runs hung (a deadlock at an epoch end?)")
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, dict[str, float]] = torch.load(out)
    return result


@pytest.mark.parametrize("balancer", ["sum", "upgrad"])
def test_ddp_spawn_logs_the_single_process_epoch_means(
    logged: dict[str, dict[str, float]], balancer: str
) -> None:
    single, ddp = logged[f"single/{balancer}"], logged[f"ddp/{balancer}"]
    keys = {f"{s}/{k}" for s in ("train", "val") for k in ("loss", "loss/cls", "weight/ink")}
    assert keys <= set(single)
    assert set(ddp) == set(single)
    # Training keys are also logged per step (the mixin's default): a step's value is the mean
    # of the processes' values on their shares of that step, not what is compared here.
    assert "train/loss/cls_step" in ddp
    assert_close(
        {k: v for k, v in ddp.items() if not k.endswith("_step")},
        {k: v for k, v in single.items() if not k.endswith("_step")},
    )


def test_gradient_balancer_weights_are_logged_after_aggregation(
    logged: dict[str, dict[str, float]],
) -> None:
    # UPGrad's weights differ from the term weights (1 for cls) that a sum would log.
    assert logged["single/sum"]["train/weight/cls"] == 1.0
    assert logged["ddp/upgrad"]["train/weight/cls"] != pytest.approx(1.0, abs=1e-3)
