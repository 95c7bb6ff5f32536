"""Class-imbalance helpers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

import losskit as lk


def test_inverse_weights_by_hand() -> None:
    raw = torch.tensor([1 / 90, 1 / 9, 1.0], dtype=torch.float64)
    expected = (raw * 3 / raw.sum()).float()
    torch.testing.assert_close(lk.class_weights([90, 9, 1]), expected)
    torch.testing.assert_close(lk.class_weights(torch.tensor([90.0, 9.0, 1.0])), expected)


def test_weights_from_targets_count_them() -> None:
    targets = torch.tensor([[0, 0, 1], [0, 2, 2]])  # counts 3, 1, 2
    torch.testing.assert_close(
        lk.class_weights(lk.class_counts(targets)), lk.class_weights([3, 1, 2])
    )
    torch.testing.assert_close(
        lk.class_weights(lk.class_counts(targets, 4)), lk.class_weights([3, 1, 2, 0])
    )


def test_sqrt_inverse_and_effective_number_by_hand() -> None:
    raw = torch.tensor([1 / math.sqrt(4), 1 / math.sqrt(1)])
    torch.testing.assert_close(lk.class_weights([4, 1], "sqrt_inverse"), raw * 2 / raw.sum())
    beta = 0.9
    eff = torch.tensor([(1 - beta) / (1 - beta**n) for n in (90, 9, 1)], dtype=torch.float64)
    torch.testing.assert_close(
        lk.class_weights([90, 9, 1], "effective_number", beta=beta), (eff * 3 / eff.sum()).float()
    )


def test_effective_number_tends_to_uniform_and_inverse() -> None:
    uniform = lk.class_weights([100, 10, 1], "effective_number", beta=0.0)
    torch.testing.assert_close(uniform, torch.ones(3))
    near_inverse = lk.class_weights([100, 10, 1], "effective_number", beta=0.999999)
    torch.testing.assert_close(near_inverse, lk.class_weights([100, 10, 1]), rtol=1e-3, atol=1e-4)


def test_absent_class_gets_zero_not_infinity() -> None:
    weights = lk.class_weights([5, 0, 5])
    torch.testing.assert_close(weights, torch.tensor([1.5, 0.0, 1.5]))
    assert torch.isfinite(weights).all()


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1, 2],), {"method": "log"}, "method must be"),
        (([1, 2],), {"beta": 1.0}, "beta must be in"),
        (([0, 0],), {}, "every class count is 0"),
        (([-1, 2],), {}, "counts must be >= 0"),
        ((torch.tensor([[0, 5]]),), {}, "class_counts"),
    ],
)
def test_class_weights_errors(args: tuple[object], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(lk.ConfigError, match=match):
        lk.class_weights(*args, **kwargs)


def test_pos_weight_by_hand_and_with_bce() -> None:
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    weights = lk.pos_weight(targets)
    torch.testing.assert_close(weights, torch.tensor([3.0, 3.0, 1 / 3]))
    loss = lk.losses.get("bce_logits", pos_weight=weights)
    logits = torch.randn(4, 3)
    torch.testing.assert_close(
        loss(logits, targets),
        torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights),
    )


def test_pos_weight_without_positives_warns() -> None:
    with pytest.warns(lk.LossKitWarning, match=r"class\(es\) \[1\] have no positive"):
        weights = lk.pos_weight(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(weights, torch.tensor([1.0, 1.0]))
    with pytest.raises(lk.ConfigError, match="must be 0 or 1"):
        lk.pos_weight(torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize(
    ("targets", "num_classes", "match"),
    [
        (torch.tensor([0, 5]), 3, "hold class 5, but num_classes is 3"),
        (torch.tensor([-1, 0]), None, "class indices >= 0"),
        (torch.tensor([0.0, 1.0]), None, "integer class indices"),
    ],
)
def test_class_counts_errors(targets: torch.Tensor, num_classes: int | None, match: str) -> None:
    with pytest.raises(lk.ConfigError, match=match):
        lk.class_counts(targets, num_classes)
