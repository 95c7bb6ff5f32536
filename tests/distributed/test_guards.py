"""Guards under two gloo processes: a hand-written loop that forgets synchronize_gradients, DDP
with parameters left without a gradient, Replicas without wrapping, setup() on a live group."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def ranks(worker: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    results: list[Any] = worker.launch("guards", tmp_path_factory.mktemp("guards"))
    return results


def test_criterion_step_refuses_deferred_gradients_and_frees_the_context(
    ranks: list[Any],
) -> None:
    for result in ranks:
        assert result["pending"] == 1
        assert result["context_dropped"] is True
        assert "losskit.engine.distributed.synchronize_gradients" in result["unsynchronized"]
        assert "'upgrad'" in result["unsynchronized"]
    # Once synchronised, both ranks hold the same aggregated update of the trunk.
    first, second = (r["trunk_grad"] for r in ranks)
    assert torch.count_nonzero(first) > 0
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["auto", "runtime"])
def test_ddp_trains_with_a_head_left_without_gradient(ranks: list[Any], name: str) -> None:
    first, second = (r[name] for r in ranks)
    assert first["find_unused"] is True
    for key, value in first["params"].items():
        torch.testing.assert_close(value, second["params"][key], rtol=0, atol=0, msg=key)


def test_find_unused_parameters_stays_off_for_a_plain_criterion(ranks: list[Any]) -> None:
    assert all(r["plain_find_unused"] is False for r in ranks)


def test_replicas_leaves_a_prepared_model_unwrapped(ranks: list[Any]) -> None:
    assert all(r["unwrapped"] is True for r in ranks)


def test_setup_reports_it_did_not_create_an_existing_group(ranks: list[Any]) -> None:
    assert all(r["setup_again"] is False for r in ranks)
