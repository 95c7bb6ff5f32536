"""The presets' totals against MONAI 1.6.1's ``DiceCELoss`` and ``DiceFocalLoss``.

Mapping: ``DiceCELoss(softmax=True, to_onehot_y=True, lambda_dice=a, lambda_ce=b)`` is the
total of ``dice_ce(dice_weight=a, ce_weight=b)``; ``DiceFocalLoss(sigmoid=True, gamma=g,
lambda_focal=b)`` is ``dice_focal(mode="multilabel", gamma=g, focal_weight=b,
focal={"alpha": None})``. ``DiceFocalLoss(softmax=True)`` scores its focal term with a sigmoid
per channel (against the one-hot target): the multi-class preset's Dice term plus a sigmoid
``focal`` term on one-hot targets reproduces it.
"""

from __future__ import annotations

import pytest
import torch

monai_losses = pytest.importorskip("monai.losses")

import losskit as lk  # noqa: E402


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return 2 * torch.randn(3, 4, 6, 5, generator=g), torch.randint(0, 4, (3, 6, 5), generator=g)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.3, 2.0)])
def test_dice_ce_total_is_monais_dice_ce(a: float, b: float) -> None:
    x, y = _case()
    theirs = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, lambda_dice=a, lambda_ce=b)
    crit = lk.Criterion(lk.presets.dice_ce(input="x", target="y", dice_weight=a, ce_weight=b))
    torch.testing.assert_close(crit({"x": x}, {"y": y}).total, theirs(x, y.unsqueeze(1)))


@pytest.mark.parametrize(("gamma", "b"), [(2.0, 1.0), (1.0, 0.5)])
def test_dice_focal_total_is_monais_dice_focal_with_sigmoid(gamma: float, b: float) -> None:
    x, y = _case()
    target = torch.nn.functional.one_hot(y, 4).movedim(-1, 1).float()
    theirs = monai_losses.DiceFocalLoss(sigmoid=True, gamma=gamma, lambda_focal=b)
    presets = lk.presets.dice_focal(
        input="x",
        target="t",
        mode="multilabel",
        gamma=gamma,
        focal_weight=b,
        focal={"alpha": None},
    )
    total = lk.Criterion(presets)({"x": x}, {"t": target}).total
    torch.testing.assert_close(total, theirs(x, target))


def test_monais_softmax_dice_focal_scores_its_focal_term_with_a_sigmoid() -> None:
    # MONAI's DiceFocalLoss(softmax=True) applies the softmax to the Dice term only: its focal
    # term is the sigmoid focal loss of the logits against the one-hot target. The mapping is
    # the multi-class preset's Dice term plus a sigmoid focal term on one-hot targets.
    x, y = _case()
    theirs = monai_losses.DiceFocalLoss(softmax=True, to_onehot_y=True, gamma=2.0)
    dice = lk.presets.dice_focal(input="x", target="y")["dice"]

    def one_hot(outputs: object, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.one_hot(batch["y"], 4).movedim(-1, 1).float()

    focal = lk.Term("focal", input="x", target=one_hot, alpha=None, gamma=2.0)
    total = lk.Criterion({"dice": dice, "focal": focal})({"x": x}, {"y": y}).total
    torch.testing.assert_close(total, theirs(x, y.unsqueeze(1)))
