"""The registry covers every torch.nn loss by snake_case name, and takes user losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit as lk
from losskit import losses


def _torch_nn_losses() -> set[type]:
    base = nn.modules.loss._Loss
    return {
        obj
        for name in dir(nn)
        if isinstance(obj := getattr(nn, name), type) and issubclass(obj, base) and obj is not base
    } - {nn.modules.loss._WeightedLoss, nn.modules.loss.NLLLoss2d}  # NLLLoss2d: deprecated alias


def test_every_torch_nn_loss_is_registered() -> None:
    registered = [spec.factory for spec in losses.available()]
    missing = {
        cls.__name__
        for cls in _torch_nn_losses()
        if not any(isinstance(f, type) and issubclass(f, cls) for f in registered)
    }
    assert not missing, f"torch.nn losses missing from the registry: {sorted(missing)}"
    head = losses.get("linear_cross_entropy_head", in_features=4, num_classes=3)
    assert head.__class__.__name__ == "LinearCrossEntropyLoss"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("mse", nn.MSELoss),
        ("l2", nn.MSELoss),
        ("l1", nn.L1Loss),
        ("mae", nn.L1Loss),
        ("bce_logits", nn.BCEWithLogitsLoss),
        ("bce_with_logits", nn.BCEWithLogitsLoss),
        ("bce", nn.BCELoss),
        ("cross_entropy", nn.CrossEntropyLoss),
        ("CE", nn.CrossEntropyLoss),
        ("kl-div", nn.KLDivLoss),
        ("poisson_nll", nn.PoissonNLLLoss),
        ("gaussian_nll", nn.GaussianNLLLoss),
        ("ctc", nn.CTCLoss),
        ("multilabel_soft_margin", nn.MultiLabelSoftMarginLoss),
        ("triplet_margin_with_distance", nn.TripletMarginWithDistanceLoss),
    ],
)
def test_names_and_aliases(name: str, cls: type) -> None:
    loss = losses.get(name)
    assert isinstance(loss, cls)
    assert type(loss).__name__ == cls.__name__


def test_kwargs_reach_the_loss_and_values_match_torch() -> None:
    x, y = torch.randn(5, 4), torch.randint(0, 4, (5,))
    loss = losses.get("cross_entropy", label_smoothing=0.2)
    torch.testing.assert_close(loss(x, y), F.cross_entropy(x, y, label_smoothing=0.2))
    with pytest.raises(lk.ConfigError, match="loss 'huber': unknown argument 'gamma'"):
        losses.get("huber", gamma=2.0)


def test_available_has_descriptions_and_families() -> None:
    specs = losses.available()
    assert all(spec.description and spec.family for spec in specs)
    assert {s.name for s in losses.available("regression")} >= {"mse", "l1", "huber"}


def test_register_a_user_loss_and_refuse_a_taken_name() -> None:
    @losses.register("half_mse", family="regression", aliases=("hmse",))
    class HalfMSE(nn.Module):
        """Half the mean squared error."""

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return 0.5 * F.mse_loss(x, y)

    try:
        spec = losses.resolve("hmse")
        assert spec.name == "half_mse"
        assert spec.description == "Half the mean squared error."
        crit = lk.Criterion({"h": lk.Term("half_mse")})
        torch.testing.assert_close(crit(torch.zeros(2), torch.ones(2)).total, torch.tensor(0.5))
        with pytest.raises(lk.ConfigError, match="already registered"):
            losses.register("mse")(HalfMSE)
    finally:
        losses.unregister("half_mse")
    with pytest.raises(lk.ConfigError, match="unknown loss 'hmse'"):
        losses.get("hmse")
