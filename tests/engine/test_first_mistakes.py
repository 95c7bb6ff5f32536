"""The Trainer's answers to a new user's first mistakes (#20): an unknown monitor, a dict batch
without forward=."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import losskit as lk


def _fit(monitor: str, **terms: lk.Term) -> lk.engine.FitSummary:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    crit = lk.Criterion(
        terms or {"cls": lk.Term("cross_entropy", input=lambda out, batch: out, target=1)}
    )
    data = TensorDataset(torch.randn(8, 3), torch.tensor([0, 1] * 4))
    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.SGD(model.parameters(), lr=0.1),
        monitor=monitor,
        progress=False,
        forward=lambda m, batch: m(batch[0]),
    )
    return trainer.fit(DataLoader(data, batch_size=4), DataLoader(data, batch_size=4), epochs=2)


def test_an_unknown_monitor_names_the_values_that_exist() -> None:
    with pytest.raises(lk.ConfigError) as info:
        _fit("val/cls")
    message = str(info.value)
    assert message.startswith(
        "monitor 'val/cls' names no value this run logs: the 'val' split logged "
        "val/loss, val/loss/cls, val/weight/cls; did you mean "
    )
    assert "'val/loss/cls'" in message


def test_a_known_monitor_trains_and_keeps_the_best_epoch() -> None:
    summary = _fit("val/loss/cls")
    assert summary.best_epoch is not None
    assert summary.epochs == 2


def test_a_dict_batch_without_forward_says_to_pass_forward() -> None:
    # (#20) torch's own message was "linear(): argument 'input' must be Tensor, not dict".
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input=lambda o, b: o, target="y")})
    loader = [{"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 0, 1])}]
    trainer = lk.engine.Trainer(
        model, crit, torch.optim.SGD(model.parameters(), lr=0.1), progress=False
    )
    with pytest.raises(
        lk.ConfigError,
        match=r"calls model\(batch\) when no forward= is given, and the batch is a mapping with "
        r"keys \['x', 'y'\].*forward=lambda model, batch: model\(batch\['x'\]\)",
    ):
        trainer.fit(loader, epochs=1)
