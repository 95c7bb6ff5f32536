"""Feature-level aggregation under two gloo processes: the Gramian all-reduced over the ranks
gives every rank the full batch's weights, so two ranks on half batches train exactly like one
process on the full batch."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.testing import assert_close

FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}


@pytest.fixture(scope="module")
def ranks(worker: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    results: list[Any] = worker.launch("features", tmp_path_factory.mktemp("features"))
    return results


@pytest.mark.parametrize("balancer", ["upgrad@features", "mgda@features"])
def test_two_ranks_on_half_batches_equal_one_process_on_the_full_batch(
    worker: Any, ranks: list[Any], balancer: str
) -> None:
    trainer, summary = worker.fit(balancer)
    assert summary.steps == 5
    alone = worker.state(trainer)["params"]
    for result in ranks:
        assert result[balancer]["steps"] == 5
        assert_close(result[balancer]["params"], alone)
        assert_close(result[balancer]["train"], summary.train, **FLOAT32)
    # The aggregator moved the weights away from the term weights (1, 0.5).
    assert summary.train["weight/a"] != 1.0
    first, second = (r[balancer]["params"] for r in ranks)
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
