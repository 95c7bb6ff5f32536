"""Compound presets: keyed terms whose parts are logged and balanced on their own."""

from __future__ import annotations

import pytest
import torch

import losskit as lk
from losskit import losses
from losskit.errors import ConfigError


def _segmentation_batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=g)
    return {"logits": logits}, {"mask": torch.randint(0, 3, (2, 5, 5), generator=g)}


def test_dice_ce_terms_are_the_catalogue_losses_weighted() -> None:
    outputs, batch = _segmentation_batch()
    crit = lk.Criterion(lk.presets.dice_ce(target="mask", dice_weight=0.3, ce_weight=2.0))
    res = crit(outputs, batch)
    dice = losses.get("dice")(outputs["logits"], batch["mask"])
    ce = losses.get("cross_entropy")(outputs["logits"], batch["mask"])
    torch.testing.assert_close(res["dice"], dice)
    torch.testing.assert_close(res["ce"], ce)
    torch.testing.assert_close(res.total, 0.3 * dice + 2.0 * ce)
    assert {"loss/dice", "loss/ce", "weight/dice", "weight/ce"} <= set(res.log())


def test_ignore_index_and_options_reach_both_losses() -> None:
    outputs, batch = _segmentation_batch()
    batch["mask"][0, 0] = 255
    terms = lk.presets.dice_ce(
        target="mask",
        ignore_index=255,
        dice={"include_background": False},
        ce={"label_smoothing": 0.1},
    )
    res = lk.Criterion(terms)(outputs, batch)
    dice = losses.get("dice", ignore_index=255, include_background=False)
    ce = losses.get("cross_entropy", ignore_index=255, label_smoothing=0.1)
    torch.testing.assert_close(res["dice"], dice(outputs["logits"], batch["mask"]))
    torch.testing.assert_close(res["ce"], ce(outputs["logits"], batch["mask"]))


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_modes_pair_dice_with_bce_and_focal(mode: str) -> None:
    channels = 1 if mode == "binary" else 3
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, channels, 4, 4, generator=g)
    target = torch.randint(0, 2, (2, channels, 4, 4), generator=g).float()
    out, batch = {"logits": logits}, {"target": target}
    res = lk.Criterion(
        {
            **lk.presets.dice_ce(mode=mode),
            **lk.presets.dice_focal(mode=mode, keys=("dice2", "focal")),
        }
    )(out, batch)  # type: ignore[arg-type]
    torch.testing.assert_close(
        res["ce"], torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    )
    torch.testing.assert_close(res["focal"], losses.get("focal", gamma=2.0)(logits, target))
    torch.testing.assert_close(res["dice"], res["dice2"])


def test_dice_focal_beside_another_term_with_a_schedule() -> None:
    outputs, batch = _segmentation_batch()
    outputs["depth"] = torch.zeros(2)
    batch["depth"] = torch.ones(2)
    warmup = lk.schedules.LinearWarmup(0.0, 1.0, steps=2)
    crit = lk.Criterion(
        {
            **lk.presets.dice_focal(target="mask", focal_weight=warmup, gamma=1.5),
            "depth": lk.Term("l1", input="depth", target="depth"),
        }
    )
    res = crit(outputs, batch)
    focal = losses.get("softmax_focal", gamma=1.5)(outputs["logits"], batch["mask"])
    torch.testing.assert_close(res["focal"], focal)
    assert float(res.weights["focal"]) == 0.0
    crit.step()
    assert float(crit(outputs, batch).weights["focal"]) == 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: lk.presets.dice_ce(mode="softmax"), r"presets.dice_ce: mode must be one of"),  # type: ignore[arg-type]
        (lambda: lk.presets.dice_focal(keys=("a", "a")), r"keys must be two different term keys"),
        (
            lambda: lk.presets.dice_ce(mode="binary", ignore_index=255),
            r"ignore_index is for class-index",
        ),
        (lambda: lk.presets.dice_ce(ce={"gamma": 2.0}), r"unknown argument 'gamma'"),
    ],
)
def test_errors(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        call()
