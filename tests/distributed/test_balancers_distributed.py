"""Balancers under two gloo processes: every rank ends with bitwise the same state and weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

# GradDrop draws random masks on each rank (the ranks' generators differ here): rank 0's wins.
BALANCERS = ["magnitude", "uncertainty", "dwa", "gradnorm", "graddrop"]


@pytest.fixture(scope="module")
def ranks(spawned: tuple[Path, list[Any]]) -> list[Any]:
    return [result["balancers"] for result in spawned[1]]


@pytest.mark.parametrize("balancer", BALANCERS)
def test_weights_and_state_are_bitwise_equal_on_every_rank_after_20_steps(
    ranks: list[Any], balancer: str
) -> None:
    first, second = (r[balancer] for r in ranks)
    assert first["steps"] == second["steps"] == 20
    assert torch.equal(first["weights"], second["weights"])
    if balancer != "graddrop":  # (a gradient balancer's weights come with a backward pass)
        # The weights moved away from the term weights: the balancer did something.
        assert not torch.allclose(first["weights"], torch.tensor([1.0, 0.5]))
    assert first["criterion"].keys() == second["criterion"].keys()
    for name, value in first["criterion"].items():
        assert torch.equal(value, second["criterion"][name]), name
    for name, value in first["params"].items():
        assert torch.equal(value, second["params"][name]), name


def test_random_weights_are_refused_under_several_processes(ranks: list[Any]) -> None:
    for result in ranks:
        assert "'RandomWeights' balancer" in result["refused"]
        assert "use another balancer" in result["refused"]
