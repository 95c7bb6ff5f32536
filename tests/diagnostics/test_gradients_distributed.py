"""gradient_health under DistributedDataParallel (gloo, two processes): the extra per-key
backward passes must not disturb DDP's gradient synchronisation (several backward passes with
retain_graph break it: pytorch/pytorch#47260)."""

from __future__ import annotations

import importlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch.multiprocessing as mp

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_training_is_unchanged_by_gradient_health(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(HERE))  # spawned children inherit sys.path
        worker: Any = importlib.import_module("ddp_health_worker")
        context = mp.spawn(
            worker.worker, args=(str(tmp_path), _free_port()), nprocs=worker.WORLD, join=False
        )
        deadline = time.monotonic() + 120
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail("the DDP run with gradient_health hung")
    results = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in range(2)]
    for rank, result in enumerate(results):
        assert "error" not in result, f"rank {rank} failed:\n{result['error']}"
        # The same parameters as without diagnostics: DDP still averaged the gradients.
        assert result["max_difference"] == 0.0
        assert len(result["logged"]) == 4
    # Synchronised: both ranks hold the same parameters, though each saw its own data.
    assert results[0]["parameters"] == results[1]["parameters"]
    # Each rank's health is of its own batch (the Tracker averages them when it flushes).
    assert results[0]["logged"][0] != results[1]["logged"][0]
