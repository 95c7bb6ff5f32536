"""Shared pieces of the balancer tests: a small multi-task model and its batch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import losskit as lk

HEADS = 3


class Net(nn.Module):
    """A shared trunk and one linear head per task; ``h`` is the shared representation."""

    def __init__(self, heads: int = HEADS) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8))
        self.heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(heads))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {"h": h, **{f"y{i}": head(h).squeeze(-1) for i, head in enumerate(self.heads)}}


def make_batch(seed: int = 0, n: int = 16, heads: int = HEADS) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    # Targets that pull the trunk different ways: the tasks conflict.
    batch = {"x": x}
    for i in range(heads):
        batch[f"t{i}"] = (-1) ** i * (i + 1) * torch.randn(n, generator=g) + i
    return batch


def terms(heads: int = HEADS) -> dict[str, lk.Term]:
    return {f"k{i}": lk.Term("mse", input=f"y{i}", target=f"t{i}") for i in range(heads)}


def grads(model: nn.Module) -> list[Tensor]:
    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()
    ]


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    return Net()
