"""The Trainer on two gloo processes equals one process on the global batch; rank 0 writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from losskit.tracking import load

# Logged means are float32 values read back as Python floats: two ranks reduce them in another
# order than one process, so they agree to float32 precision, not float64's default tolerance.
FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}


@pytest.fixture(scope="module")
def ranks(spawned: tuple[Path, list[Any]]) -> tuple[Path, list[Any]]:
    root, out = spawned
    return root, [result["trainer"] for result in out]


@pytest.mark.parametrize(
    "balancer", ["sum", "magnitude", "upgrad", "mgda", "imtl_g", "cagrad", "aligned_mtl"]
)
def test_two_ranks_on_half_batches_equal_one_process_on_the_full_batch(
    worker: Any, ranks: tuple[Path, list[Any]], balancer: str
) -> None:
    _, out = ranks
    trainer, summary = worker.fit(balancer)
    assert summary.steps == 5
    for result in out:
        assert_close(result[balancer]["params"], worker.state(trainer)["params"])
        # The logged epoch means are the global ones, on every rank.
        assert_close(result[balancer]["train"], summary.train, **FLOAT32)
        assert_close(result[balancer]["val"], summary.val, **FLOAT32)
    if balancer not in ("sum", "magnitude"):
        # The weights the aggregator gave, logged after the once-per-step aggregation.
        assert summary.train["weight/a"] != 1.0


def test_accumulation_under_ddp_equals_the_large_batch(
    worker: Any, ranks: tuple[Path, list[Any]]
) -> None:
    _, out = ranks
    trainer, summary = worker.fit("sum")
    for result in out:
        assert_close(result["accumulate"]["params"], worker.state(trainer)["params"])
        assert_close(result["accumulate"]["train"], summary.train, **FLOAT32)


def test_routed_optimizers_under_ddp_equal_one_process(
    worker: Any, ranks: tuple[Path, list[Any]]
) -> None:
    _, out = ranks
    trainer, summary = worker.fit("sum", accumulate=2, routed=True)
    for result in out:
        assert_close(result["routed"]["params"], worker.state(trainer)["params"])
        assert_close(result["routed"]["train"], summary.train, **FLOAT32)


def test_only_rank_zero_writes_logs_and_checkpoints(
    worker: Any, ranks: tuple[Path, list[Any]]
) -> None:
    root, _ = ranks
    for balancer in ("sum", "magnitude", "upgrad", "mgda"):
        assert not (root / f"{balancer}-rank1").exists()
        written = root / f"{balancer}-rank0"
        assert {p.name for p in written.iterdir()} >= {"metrics.jsonl", "last.pt", "best.pt"}
        assert {r.world for r in load(written).records} == {2}


def test_resume_after_a_kill_under_two_ranks_equals_the_uninterrupted_run(
    worker: Any, ranks: tuple[Path, list[Any]]
) -> None:
    root, out = ranks
    # The killed run had written epoch 1's checkpoint and log, nothing of epoch 2's end.
    killed = load(root / worker.KILLED)
    assert [r.epoch for r in killed.records if r.kind == "epoch"] == [0, 0]  # train, val
    checkpoint = torch.load(root / worker.KILLED / "last.pt", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 5)
    for result in out:
        resume = result["resume"]
        assert_close(resume["resumed"], resume["whole"])
    # Ranks identical, parameters and the learned log-variances alike.
    assert_close(out[0]["resume"]["resumed"], out[1]["resume"]["resumed"], rtol=0, atol=0)
    assert torch.equal(
        out[0]["resume"]["whole"]["criterion"]["balancer.scalarizer.log_var"],
        out[1]["resume"]["whole"]["criterion"]["balancer.scalarizer.log_var"],
    )
