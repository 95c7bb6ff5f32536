"""Several optimizers on one forward pass (multi-task routing), and validation's forwards."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit as lk


class TwoTasks(nn.Module):
    """A trunk shared by two heads; ``calls`` counts forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 8)
        self.cls = nn.Linear(8, 3)
        self.reg = nn.Linear(8, 1)
        self.calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls += 1
        h = torch.tanh(self.trunk(batch["x"]))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1)}


def _data(n: int, size: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        {
            "x": torch.randn(size, 5, generator=g),
            "label": torch.randint(0, 3, (size,), generator=g),
            "y": torch.randn(size, generator=g),
        }
        for _ in range(n)
    ]


def _criterion() -> lk.Criterion:
    return lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("mse", input="value", target="y", weight=0.5),
        }
    )


def _trainer(model: TwoTasks, **kwargs: object) -> lk.engine.Trainer:
    # The trunk is in both optimizers: each must step it on its own task's gradient only.
    cls_opt = torch.optim.SGD([*model.trunk.parameters(), *model.cls.parameters()], lr=0.1)
    reg_opt = torch.optim.SGD([*model.trunk.parameters(), *model.reg.parameters()], lr=0.05)
    return lk.engine.Trainer(
        model,
        _criterion(),
        {"cls": cls_opt, "reg": reg_opt},
        routes={"cls": ["cls"], "reg": ["reg"]},
        progress=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_shared_forward_runs_one_forward_per_step_and_per_validation_batch() -> None:
    model = TwoTasks()
    train, val = _data(6, 4), _data(2, 4)
    _trainer(model, shared_forward=True).fit(train, val, epochs=3)
    assert model.calls == 3 * len(train) + 3 * len(val)  # was 2 per step and per val batch


def test_per_route_forwards_stay_by_default_and_validation_runs_once() -> None:
    model = TwoTasks()
    train, val = _data(6, 4), _data(2, 4)
    _trainer(model).fit(train, val, epochs=3)
    assert model.calls == 3 * 2 * len(train) + 3 * len(val)


def test_each_optimizer_steps_on_its_own_keys_from_the_one_forward() -> None:
    torch.manual_seed(0)
    model = TwoTasks()
    ref = copy.deepcopy(model)
    data = _data(3, 4)
    trainer = _trainer(model, shared_forward=True, accumulate=2)
    trainer.fit(data, epochs=1)

    def step(window: list[dict[str, torch.Tensor]]) -> None:
        sizes = [len(b["y"]) for b in window]
        grads: dict[str, list[torch.Tensor]] = {}
        own = {
            "cls": [*ref.trunk.parameters(), *ref.cls.parameters()],
            "reg": [*ref.trunk.parameters(), *ref.reg.parameters()],
        }
        for name, params in own.items():
            total = [torch.zeros_like(p) for p in params]
            for batch, size in zip(window, sizes):
                out = ref(batch)
                loss = (
                    F.cross_entropy(out["logits"], batch["label"])
                    if name == "cls"
                    else 0.5 * F.mse_loss(out["value"], batch["y"])
                )
                for t, g in zip(total, torch.autograd.grad(loss * size / sum(sizes), params)):
                    t += g
            grads[name] = total
        with torch.no_grad():  # both gradients taken before either optimizer steps
            for name, lr in (("cls", 0.1), ("reg", 0.05)):
                for p, g in zip(own[name], grads[name]):
                    p -= lr * g

    step(data[:2])
    step(data[2:])
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    assert all(p.grad is None for p in model.parameters())


def test_shared_forward_refuses_a_forward_per_optimizer() -> None:
    model = TwoTasks()

    def fwd(m: nn.Module, b: object) -> object:
        return m(b)

    with pytest.raises(lk.errors.ConfigError, match="one forward function"):
        _trainer(model, shared_forward=True, forward={"cls": fwd, "reg": fwd})


def test_a_run_file_turns_the_shared_forward_on() -> None:
    from losskit.config import load_config
    from losskit.run import build

    term = {"loss": "cross_entropy", "input": "logits", "target": "label"}
    cfg = load_config(
        {
            "model": {"source": "digits_mlp", "input": "pixels"},
            "data": {"source": "digits"},
            "terms": {"cls": term, "ink": {"loss": "mse", "input": "ink", "target": "ink"}},
            "optimizers": {
                "a": {"name": "sgd", "lr": 0.1, "keys": ["cls"]},
                "b": {"name": "sgd", "lr": 0.1, "keys": ["ink"]},
            },
            "trainer": {"shared_forward": True},
        }
    )
    trainer, _, _ = build(cfg, progress=False)
    assert trainer.shared_forward
    assert trainer.routes == {"a": ("cls",), "b": ("ink",)}
