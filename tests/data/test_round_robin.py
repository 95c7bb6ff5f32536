"""RoundRobin: batches in turn from several loaders, every batch once per pass."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import losskit as lk
from losskit.data import KeyedTensorDataset, RoundRobin


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        ((2, 2), ["a0", "b0", "a1", "b1"]),
        ((3, 1, 2), ["a0", "b0", "c0", "a1", "c1", "a2"]),
        ((0, 2), ["b0", "b1"]),
        ((1,), ["a0"]),
        ((0, 0), []),
    ],
)
def test_turns_until_every_loader_is_exhausted(
    lengths: tuple[int, ...], expected: list[str]
) -> None:
    loaders = [[f"{name}{i}" for i in range(n)] for name, n in zip("abc", lengths)]
    rr = RoundRobin(*loaders)
    assert list(rr) == expected
    assert len(rr) == sum(lengths)


def test_each_pass_restarts_the_loaders_and_they_reshuffle() -> None:
    a = DataLoader(TensorDataset(torch.arange(12)), batch_size=3, shuffle=True)
    b = DataLoader(TensorDataset(torch.arange(100, 104)), batch_size=3, shuffle=True)
    rr = RoundRobin(a, b)
    torch.manual_seed(0)
    passes = [torch.cat([x for (x,) in rr]) for _ in range(3)]
    for seen in passes:
        assert len(seen) == 16
        assert sorted(seen.tolist()) == list(range(12)) + list(range(100, 104))
    assert not all(torch.equal(passes[0], p) for p in passes[1:])


def test_without_loaders_or_lengths_it_says_so() -> None:
    with pytest.raises(lk.ConfigError, match="at least one loader"):
        RoundRobin()
    rr = RoundRobin([1, 2], iter([3]))
    assert list(rr) == [1, 3, 2]
    with pytest.raises(TypeError, match="positions \\[1\\]"):
        len(rr)


def test_the_trainer_trains_optional_terms_on_a_round_robin() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=g)
    only_y = DataLoader(KeyedTensorDataset(x=x[:16], y=x[:16].sum(1)), batch_size=4)
    only_z = DataLoader(KeyedTensorDataset(x=x[16:], z=-x[16:].sum(1)), batch_size=4)
    train = RoundRobin(only_y, only_z)
    model = torch.nn.Linear(3, 2)
    crit = lk.Criterion(
        {
            "y": lk.Term("mse", input="y", target="y", optional=True),
            "z": lk.Term("mse", input="z", target="z", optional=True),
        }
    )
    seen: list[list[str]] = []

    def forward(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seen.append(sorted(batch))
        y, z = m(batch["x"]).unbind(-1)
        return {"y": y, "z": z}

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = lk.engine.Trainer(model, crit, opt, forward=forward, progress=False)
    summary = trainer.fit(train, epochs=2)
    assert summary.steps == 2 * len(train) == 12
    turns = [["x", "y"], ["x", "z"]] * 2 + [["x", "y"]] * 2  # 4 batches of y, then 2 of z
    assert seen == turns * 2
    assert set(summary.train) >= {"loss/y", "loss/z"}
    assert crit.skipped_steps == 0
