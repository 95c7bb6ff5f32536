"""A gradient-level balancer does its own backward pass, which an fp16 loss scaler never sees:
the Accelerate and Lightning integrations refuse fp16 mixed precision with it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

import losskit as lk
from losskit.errors import ConfigError
from losskit.integrations.accelerate import AcceleratedCriterion
from losskit.integrations.lightning import LossKitMixin


def _criterion(model: torch.nn.Module) -> lk.Criterion:
    return lk.Criterion(
        {"a": lk.Term("mse"), "b": lk.Term("l1")},
        balancer=lk.balancers.Gradient("upgrad", shared=model),
    )


def test_accelerate_refuses_fp16_with_a_gradient_balancer() -> None:
    model = torch.nn.Linear(3, 2)
    accelerator = Accelerator(cpu=True, mixed_precision="fp16")
    with pytest.raises(ConfigError, match="mixed_precision='bf16'"):
        AcceleratedCriterion(accelerator, model, _criterion(model))
    # A loss-level criterion goes through accelerator.backward (scaled): accepted.
    AcceleratedCriterion(accelerator, model, lk.Criterion({"a": lk.Term("mse")}))


@pytest.mark.parametrize(("precision", "refused"), [("16-mixed", True), ("bf16-mixed", False)])
def test_lightning_refuses_fp16_mixed_with_a_gradient_balancer(
    precision: str, refused: bool
) -> None:
    class Module(LossKitMixin):
        def __init__(self) -> None:
            self.net = torch.nn.Linear(3, 2)
            self.criterion = _criterion(self.net)
            self.trainer = SimpleNamespace(precision=precision, global_step=5)

    module = Module()
    if refused:
        with pytest.raises(ConfigError, match="bf16-mixed"):
            module.on_train_start()
    else:
        module.on_train_start()
        assert module._losskit_seen_step == 5
