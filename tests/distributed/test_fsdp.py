"""The Trainer with an FSDP2-sharded model on two gloo processes (torch 2.13 supports it on CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from torch.testing import assert_close

# Logged means are float32 values read back as Python floats: two ranks reduce them in another
# order than one process, so they agree to float32 precision, not float64's default tolerance.
FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}


@pytest.fixture(scope="module")
def ranks(spawned: tuple[Path, list[Any]]) -> tuple[Path, list[Any]]:
    root, out = spawned
    return root, [result["fsdp"] for result in out]


@pytest.mark.parametrize("balancer", ["sum", "magnitude"])
def test_sharded_training_equals_one_process_on_the_full_batch(
    worker: Any, ranks: tuple[Path, list[Any]], balancer: str
) -> None:
    _, out = ranks
    # One process with the same accumulation: the same micro-batches, as the global union of the
    # ranks' (the magnitude estimate moves once per micro-batch).
    trainer, summary = worker.fit(balancer, accumulate=out[0][balancer]["accumulate"])
    # The whole parameters are gathered on rank 0 (FSDP2's full state dict, CPU-offloaded).
    assert_close(out[0][balancer]["params"], worker.state(trainer)["params"])
    assert out[1][balancer]["params"] == {}
    for result in out:
        assert_close(result[balancer]["train"], summary.train, **FLOAT32)
        assert_close(result[balancer]["val"], summary.val, **FLOAT32)


def test_checkpoint_of_a_sharded_model_resumes_exactly(ranks: tuple[Path, list[Any]]) -> None:
    root, out = ranks
    assert out[0]["resume"]["resumed"]["params"]  # gathered on rank 0
    for result in out:
        assert_close(result["resume"]["resumed"], result["resume"]["whole"])
    assert not (root / "fsdp-resume-1").exists()  # rank 0 alone wrote the checkpoint


def test_gradient_balancers_are_refused_on_a_sharded_model(ranks: tuple[Path, list[Any]]) -> None:
    for result in ranks[1]:
        assert "cannot run on an FSDP2-sharded model" in result["refused"]
        assert "Use DDP" in result["refused"]
