"""DDP with different keys per rank: rank 0 trains on dataset A (keys a, c), rank 1 on dataset B
(keys b, c); the parameters and the logged means equal one process on both batches."""

from __future__ import annotations

from typing import Any

import pytest
from torch.testing import assert_close

# Logged means are float32 values reduced in another order than one process's.
FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}


@pytest.fixture(scope="module")
def ranks(worker: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return worker.launch("partial", tmp_path_factory.mktemp("partial"))


@pytest.mark.parametrize(
    ("name", "balancer", "sizes"),
    [("sum", "sum", (4, 4)), ("magnitude", "magnitude", (4, 4)), ("uneven", "sum", (3, 5))],
)
def test_two_ranks_on_different_datasets_equal_one_process_on_both_batches(
    worker: Any, ranks: list[Any], name: str, balancer: str, sizes: tuple[int, int]
) -> None:
    trainer, summary = worker.fit_partial(balancer, worker.both_batches(*sizes), masked=True)
    assert summary.steps == worker.PARTIAL_STEPS
    expected = worker.state(trainer)["params"]
    for result in ranks:
        assert result[name]["steps"] == worker.PARTIAL_STEPS
        assert_close(result[name]["params"], expected)
        logged = result[name]["train"]
        assert {"loss/a", "loss/b", "loss/c", "weight/a", "weight/b"} <= set(logged)
        if name == "uneven":
            # Per key, the means over the samples that carry it; the total is each rank's
            # (its terms scaled by its shares), weighed by batch size, so not compared here.
            logged = {k: v for k, v in logged.items() if k != "loss"}
            expected_log = {k: v for k, v in summary.train.items() if k != "loss"}
            assert_close(logged, expected_log, **FLOAT32)
        else:
            assert_close(logged, summary.train, **FLOAT32)


def test_the_tracker_given_the_criterion_reduces_different_optional_keys(
    ranks: list[Any],
) -> None:
    # Interval 1: rank 0 (2 samples) logs a = mse(0, 1) = 1 and c = 1; rank 1 (4 samples)
    # logs b = mse(0, 2) = 4 and c = 4. Interval 2: c = 9 on both, a and b on neither.
    for result in ranks:
        first, second = result["tracker"]["first"], result["tracker"]["second"]
        assert_close(first["loss/a"], 1.0)
        assert_close(first["loss/b"], 4.0)
        assert_close(first["loss/c"], (2 * 1.0 + 4 * 4.0) / 6)
        assert_close(first["weight/a"], 1.0)
        assert_close(first["loss"], (2 * 2.0 + 4 * 8.0) / 6)
        assert_close(second, {"loss": 9.0, "loss/c": 9.0, "weight/c": 1.0})


def test_criteria_with_different_keys_still_raise_rank_mismatch(ranks: list[Any]) -> None:
    for result in ranks:
        # Plain terms: the Tracker's flush, with today's message.
        assert "processes logged different splits or keys" in result["plain"]
        assert "'loss/a'" in result["plain"]
        assert "'loss/b'" in result["plain"]
        # Optional terms: the criterion compares its keys at its first training call.
        assert "criteria have different term keys" in result["optional"]
        assert "rank 0: ['a', 'c']" in result["optional"]
        assert "rank 1: ['b', 'c']" in result["optional"]


def test_a_rank_without_any_label_still_takes_part_in_every_step(
    worker: Any, ranks: list[Any]
) -> None:
    # Rank 1's batches hold no label: its steps are skipped, its total is a zero through the
    # outputs, so DDP averages rank 0's doubled terms with zeros: one process on A alone.
    batches = worker.partial_batches("A", 4)
    trainer, _ = worker.fit_partial("magnitude", batches, masked=False, optional_c=True)
    assert [r["skipped"]["skipped"] for r in ranks] == [0, worker.PARTIAL_STEPS]
    for result in ranks:
        assert_close(result["skipped"]["params"], worker.state(trainer)["params"])
