"""Two processes on the gloo backend: every rank reports the global mean; rank 0 alone writes."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch.multiprocessing as mp
from torch.testing import assert_close

from losskit.tracking import load

HERE = Path(__file__).parent


def _mean(pairs: list[tuple[float, int]]) -> float:
    return sum(v * n for v, n in pairs) / sum(n for _, n in pairs)


@pytest.fixture(scope="module")
def ddp() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(HERE))  # spawned children inherit sys.path
        yield importlib.import_module("ddp_worker")


@pytest.fixture(scope="module")
def results(
    ddp: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("ddp")
    context = mp.spawn(ddp.worker, args=(str(root), ddp.free_port()), nprocs=ddp.WORLD, join=False)
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the distributed tracker hung")
    out = [json.loads((root / f"result-{r}.json").read_text()) for r in range(ddp.WORLD)]
    for r, result in enumerate(out):
        assert "error" not in result, f"rank {r} failed:\n{result['error']}"
    return root, out


def test_every_rank_reports_the_global_interval_and_epoch_means(
    ddp: Any, results: tuple[Path, list[dict[str, Any]]]
) -> None:
    _, out = results
    train = ddp.TRAIN[0] + ddp.TRAIN[1]
    val = [ddp.VAL[0], ddp.VAL[1]]
    for result in [*out, *(r["stacked"] for r in out)]:
        interval = result["interval"]
        assert interval["train"]["world"] == ddp.WORLD
        assert_close(interval["train"]["values"]["loss"], _mean(train))
        assert_close(
            interval["train"]["values"]["rank"],
            _mean([(1.0, n) for _, n in ddp.TRAIN[1]] + [(0.0, n) for _, n in ddp.TRAIN[0]]),
        )
        assert_close(interval["val"]["values"]["loss"], _mean(val))
        # Per-step points: at each step, the batch-weighted mean over the ranks.
        steps = [_mean([ddp.TRAIN[0][i], ddp.TRAIN[1][i]]) for i in range(3)]
        assert_close(interval["train"]["points"]["loss"], steps)
        assert_close(result["epoch"]["train"]["loss"], _mean(train))
        assert_close(result["epoch"]["val"]["loss"], _mean(val))


def test_only_rank_zero_writes(ddp: Any, results: tuple[Path, list[dict[str, Any]]]) -> None:
    root, _ = results
    assert not (root / "run-rank1").exists()
    history = load(root / "run-rank0")
    assert {r.world for r in history.records} == {ddp.WORLD}
    assert_close(history.series("loss", kind="epoch").values[0], _mean(ddp.TRAIN[0] + ddp.TRAIN[1]))


def test_tensorboard_gets_the_global_means_from_rank_zero(
    ddp: Any, results: tuple[Path, list[dict[str, Any]]]
) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = results
    events = EventAccumulator(str(root / "run-rank0" / "tensorboard"))
    events.Reload()
    steps = [_mean([ddp.TRAIN[0][i], ddp.TRAIN[1][i]]) for i in range(3)]
    train = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in train] == [1, 2, 3]
    assert_close([v for _, v in train], steps)
    (val,) = events.Scalars("val/loss")
    assert_close(val.value, _mean([ddp.VAL[0], ddp.VAL[1]]))
    (epoch,) = events.Scalars("epoch/train/loss")
    assert_close(epoch.value, _mean(ddp.TRAIN[0] + ddp.TRAIN[1]))


def test_keys_differing_across_ranks_raise_on_every_rank(
    ddp: Any, results: tuple[Path, list[dict[str, Any]]]
) -> None:
    _, out = results
    for result in out:
        message = result["mismatch"]
        assert message is not None
        assert "rank 0: 'train': ['loss']" in message
        assert "rank 1: 'train': ['loss', 'loss/aux']" in message
        assert "Tracker(keys=" in message
        assert result["one_sided"] is not None
        assert "rank 1: nothing logged" in result["one_sided"]


def test_declared_keys_reduce_with_weight_zero_where_absent(
    ddp: Any, results: tuple[Path, list[dict[str, Any]]]
) -> None:
    _, out = results
    for result in out:
        assert_close(result["declared"]["loss"], 1.0)
        assert_close(result["declared"]["loss/aux"], 2.0)


def test_per_key_counts_weigh_their_key_over_all_ranks(
    ddp: Any, results: tuple[Path, list[dict[str, Any]]]
) -> None:
    _, out = results
    # "a": (1.0 x 3, 0.0 x 0) on rank 0 and (5.0 x 1, 3.0 x 2) on rank 1.
    for result in [*out, *(r["stacked"] for r in out)]:
        counted = result["counted"]
        assert_close(counted["values"]["loss/a"], (1.0 * 3 + 5.0 * 1 + 3.0 * 2) / 6)
        assert_close(counted["points"]["loss/a"], [(3.0 + 5.0) / 4, 6.0 / 2])
        assert "loss/b" not in counted["values"]  # counted 0 times on every rank
        assert_close(counted["values"]["loss"], (1.0 + 0.0 + 5.0 + 3.0) / 4)  # batches of 4
        assert counted["count"] == 16
