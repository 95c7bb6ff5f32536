"""The options losskit took from its peers (#18 item 2), each against the peer or by hand.

Micro averaging (kornia), ``activation`` (MONAI's ``other_act``, ``sigmoid``, ``softmax``),
``soft_label`` and ``squared_pred`` (MONAI) on the overlap losses; ``include_background``,
``ignore_index`` and ``pos_weight`` on the sigmoid focal loss; ``label_smoothing`` and
``ignore_index`` on the binary cross-entropies (smp's SoftBCE); integer 0/1 targets on the
binary and multi-label losses; and the peers' option names refused with their equivalent.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from losskit import losses
from losskit.errors import ConfigError, LossInputError
from losskit.losses import (
    AsymmetricLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    HingeLoss,
    JaccardLoss,
    TverskyLoss,
)
from losskit.losses._lovasz import LovaszHingeLoss

monai_losses = pytest.importorskip("monai.losses")
kornia_losses = pytest.importorskip("kornia.losses")


def _multiclass(seed: int = 0, classes: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, classes, 5, 6, generator=g), torch.randint(
        0, classes, (2, 5, 6), generator=g
    )


def _soft(seed: int = 0, classes: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, classes, 5, 6, generator=g), torch.rand(2, classes, 5, 6, generator=g)


# --- average="micro" (kornia) ---


@pytest.mark.parametrize("ignore_index", [None, 255])
@pytest.mark.parametrize("weight", [None, [0.0, 1.0, 1.0]])
def test_micro_dice_equals_kornia(ignore_index: int | None, weight: list[float] | None) -> None:
    logits, target = _multiclass()
    if ignore_index is not None:
        target[0, :2] = ignore_index
    w = None if weight is None else torch.tensor(weight)
    expected = kornia_losses.dice_loss(
        logits, target, average="micro", eps=1e-8, weight=w, ignore_index=ignore_index
    )
    dice = DiceLoss(
        average="micro", smooth_nr=0.0, smooth_dr=1e-8, weight=weight, ignore_index=ignore_index
    )
    torch.testing.assert_close(dice(logits, target), expected)


def test_micro_tversky_is_kornias_formula() -> None:
    """kornia's ``tversky_loss`` at b4f5a78a (kornia/losses/tversky.py): one index per sample
    over every class, ``I / (I + (alpha + beta) (total - I) + eps)``, ``total`` the positions
    counted."""
    logits, target = _multiclass(1)
    p_true = torch.softmax(logits, 1).gather(1, target.unsqueeze(1)).sum((1, 2, 3))
    total = torch.tensor(float(target[0].numel()))
    expected = 1.0 - (p_true / (p_true + (0.3 + 0.7) * (total - p_true) + 1e-8)).mean()
    tversky = TverskyLoss(alpha=0.3, beta=0.7, average="micro", smooth_nr=0.0, smooth_dr=1e-8)
    torch.testing.assert_close(tversky(logits, target), expected)


def test_installed_kornia_tversky_is_macro_over_present_classes() -> None:
    """The kornia installed here (0.9.0) averages the classes present in each sample instead:
    losskit's ``classes="present"``."""
    logits, target = _multiclass(1)
    expected = kornia_losses.tversky_loss(logits, target, alpha=0.3, beta=0.7, eps=1e-8)
    tversky = TverskyLoss(alpha=0.3, beta=0.7, classes="present", smooth_nr=0.0, smooth_dr=1e-8)
    torch.testing.assert_close(tversky(logits, target), expected)


def test_micro_by_hand_and_its_shapes() -> None:
    """Micro pools the classes' sums: ``1 - 2 sum_c I_c / sum_c (P_c + T_c)`` per sample."""
    probs = torch.tensor([[[0.75, 0.25], [0.25, 0.75]]])  # (N=1, C=2, S=2)
    target = torch.tensor([[0, 0]])
    dice = DiceLoss(average="micro", from_logits=False, smooth_nr=0.0, smooth_dr=0.0)
    torch.testing.assert_close(dice(probs, target), torch.tensor(1 - 2 * 1.0 / 4.0))
    none = DiceLoss(average="micro", reduction="none")
    assert none(*_multiclass()).shape == (2,)
    assert DiceLoss(average="micro", reduction="none", batch=True)(*_multiclass()).shape == ()
    logits, target = _multiclass()
    mean = DiceLoss(average="micro")(logits, target)
    total = DiceLoss(average="micro", reduction="sum")(logits, target)
    torch.testing.assert_close(total, 2 * mean)


@pytest.mark.parametrize("cls", [JaccardLoss, FocalTverskyLoss])
def test_micro_is_macro_for_one_class(cls: type) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 1, 8, generator=g)
    target = torch.randint(0, 2, (3, 1, 8), generator=g).float()
    micro = cls("binary", average="micro")(logits, target)
    torch.testing.assert_close(micro, cls("binary")(logits, target))


def test_average_is_checked() -> None:
    with pytest.raises(ConfigError, match="average must be one of"):
        DiceLoss(average="weighted")  # type: ignore[arg-type]


# --- activation (MONAI's sigmoid / softmax / other_act) ---


@pytest.mark.parametrize(
    ("activation", "monai_options"),
    [
        ("sigmoid", {"sigmoid": True}),
        ("softmax", {"softmax": True}),
        (torch.tanh, {"other_act": torch.tanh}),
        (lambda x: torch.log_softmax(x, 1), {"other_act": lambda x: torch.log_softmax(x, 1)}),
    ],
    ids=["sigmoid", "softmax", "tanh", "log_softmax"],
)
def test_activation_equals_monai(activation: Any, monai_options: dict[str, Any]) -> None:
    logits, target = _multiclass(3)
    expected = monai_losses.DiceLoss(to_onehot_y=True, **monai_options)(logits, target.unsqueeze(1))
    torch.testing.assert_close(DiceLoss(activation=activation)(logits, target), expected)


def test_activation_in_multilabel_mode_equals_monai() -> None:
    logits, target = _soft(4)
    hard = (target > 0.5).float()
    expected = monai_losses.TverskyLoss(softmax=True, alpha=0.4, beta=0.6)(logits, hard)
    tversky = TverskyLoss("multilabel", activation="softmax", alpha=0.4, beta=0.6)
    torch.testing.assert_close(tversky(logits, hard), expected)


def test_activation_none_is_from_logits_false() -> None:
    probs = torch.softmax(_multiclass()[0], 1)
    target = _multiclass()[1]
    torch.testing.assert_close(
        DiceLoss(activation="none")(probs, target), DiceLoss(from_logits=False)(probs, target)
    )


def test_activation_is_checked() -> None:
    with pytest.raises(ConfigError, match="activation must be one of"):
        DiceLoss(activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="from_logits=False says the input already is"):
        DiceLoss(from_logits=False, activation="sigmoid")


# --- soft_label, squared_pred (MONAI) ---


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize(
    ("cls", "monai_cls", "options"),
    [
        (DiceLoss, "DiceLoss", {"soft_label": True}),
        (DiceLoss, "DiceLoss", {"squared_pred": True}),
        (DiceLoss, "DiceLoss", {"soft_label": True, "squared_pred": True}),
        (TverskyLoss, "TverskyLoss", {"soft_label": True, "alpha": 0.3, "beta": 0.7}),
        (GeneralizedDiceLoss, "GeneralizedDiceLoss", {"soft_label": True}),
    ],
)
def test_soft_label_and_squared_pred_equal_monai(
    cls: type, monai_cls: str, options: dict[str, Any], batch: bool
) -> None:
    logits, target = _soft(5)
    expected = getattr(monai_losses, monai_cls)(sigmoid=True, batch=batch, **options)(
        logits, target
    )
    actual = cls("multilabel", batch=batch, **options)(logits, target)
    torch.testing.assert_close(actual, expected)


def test_soft_label_scores_a_soft_target_against_itself_zero() -> None:
    p = torch.rand(2, 1, 9, generator=torch.Generator().manual_seed(6))
    soft = DiceLoss("binary", from_logits=False, soft_label=True)
    plain = DiceLoss("binary", from_logits=False)
    assert float(soft(p, p)) < 1e-6 < float(plain(p, p))


def test_soft_label_and_squared_pred_on_class_indices_with_ignore() -> None:
    """Class-index targets are one-hot (hard): soft_label changes nothing there, squared_pred
    squares the prediction's mass; ignored positions count in no sum."""
    logits, target = _multiclass(7)
    target[1, 0] = 255
    plain = DiceLoss(ignore_index=255)(logits, target)
    soft = DiceLoss(ignore_index=255, soft_label=True)(logits, target)
    torch.testing.assert_close(soft, plain)
    keep = target != 255
    expected = monai_losses.DiceLoss(squared_pred=True, reduction="none")(
        torch.softmax(logits, 1) * keep.unsqueeze(1),
        F.one_hot(target.masked_fill(~keep, 0), 3).movedim(-1, 1).float() * keep.unsqueeze(1),
    )
    squared = DiceLoss(ignore_index=255, squared_pred=True, reduction="none")(logits, target)
    torch.testing.assert_close(squared, expected.reshape(2, 3))


@pytest.mark.parametrize(
    "options",
    [
        {"average": "micro"},
        {"activation": torch.tanh},
        {"activation": "sigmoid", "squared_pred": True},
        {"soft_label": True, "ignore_index": 255},
    ],
    ids=["micro", "callable", "sigmoid-squared", "soft-ignore"],
)
def test_overlap_option_gradients(options: dict[str, Any]) -> None:
    logits, target = _multiclass(8)
    logits = logits[:, :, :2, :3].double().requires_grad_()
    target = target[:, :2, :3].clone()
    target[0, 0, 0] = 255 if "ignore_index" in options else target[0, 0, 0]
    dice = DiceLoss(**options)
    assert torch.autograd.gradcheck(lambda x: dice(x, target), (logits,))


# --- the sigmoid focal loss: include_background, ignore_index, pos_weight ---


def test_focal_include_background_equals_monai() -> None:
    logits, target = _soft(9)
    hard = (target > 0.5).float()
    expected = monai_losses.FocalLoss(include_background=False, gamma=2.0)(logits, hard)
    actual = FocalLoss(gamma=2.0, alpha=None, include_background=False)(logits, hard)
    torch.testing.assert_close(actual, expected)
    with pytest.raises(LossInputError, match="include_background=False would leave no channel"):
        FocalLoss(include_background=False)(logits[:, :1], hard[:, :1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_ignore_index_by_hand(reduction: str) -> None:
    """Ignored elements: loss 0, left out of the mean: the loss of the others alone."""
    logits, target = _soft(10)
    target = (target > 0.5).float()
    target[0, 1] = -1
    keep = target != -1
    focal = FocalLoss(ignore_index=-1, reduction=reduction)  # type: ignore[arg-type]
    elementwise = FocalLoss(reduction="none")(logits[keep], target[keep])
    actual = focal(logits, target)
    if reduction == "none":
        torch.testing.assert_close(actual[keep], elementwise)
        assert bool((actual[~keep] == 0).all())
    else:
        torch.testing.assert_close(actual, getattr(elementwise, reduction)())


def test_focal_everything_ignored_is_zero_with_zero_gradient() -> None:
    logits = torch.randn(2, 3, requires_grad=True)
    loss = FocalLoss(ignore_index=255)(logits, torch.full((2, 3), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert logits.grad is not None
    assert bool((logits.grad == 0).all())


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("pos_weight", [2.5, [1.0, 2.0, 5.0]])
def test_focal_pos_weight_equals_kornia(alpha: float | None, pos_weight: Any) -> None:
    logits, target = _soft(11)
    hard = (target > 0.5).float()
    pw = torch.as_tensor(pos_weight).expand(3)
    expected = kornia_losses.binary_focal_loss_with_logits(
        logits, hard, alpha=alpha, gamma=2.0, reduction="mean", pos_weight=pw, ignore_index=None
    )
    actual = FocalLoss(gamma=2.0, alpha=alpha, pos_weight=pos_weight)(logits, hard)
    torch.testing.assert_close(actual, expected)


def test_focal_pos_weight_at_gamma_zero_is_torch_bce_with_soft_labels() -> None:
    logits, target = _soft(12)
    pw = torch.tensor([1.0, 3.0, 0.5])
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw.view(3, 1, 1))
    actual = FocalLoss(gamma=0.0, alpha=None, pos_weight=pw)(logits, target)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_options_gradcheck(gamma: float) -> None:
    """The hand-derived gradient with a pos_weight, in float64, soft and ignored targets."""
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)
    target[0, 0, :2] = -100
    focal = FocalLoss(
        gamma=gamma,
        pos_weight=[1.0, 2.0, 0.5],
        ignore_index=-100,
        include_background=False,
        impl="eager",
    )
    assert torch.autograd.gradcheck(lambda x: focal(x, target), (logits,))


def test_focal_pos_weight_is_checked() -> None:
    with pytest.raises(ConfigError, match="pos_weight must be a number or a 1-D sequence"):
        FocalLoss(pos_weight=[-1.0])
    with pytest.raises(LossInputError, match="weight has 2 entries"):
        FocalLoss(pos_weight=[1.0, 2.0])(torch.randn(4, 3), torch.zeros(4, 3))


# --- BCE: label_smoothing and ignore_index (smp's SoftBCEWithLogitsLoss) ---


@pytest.mark.parametrize("name", ["bce_with_logits", "bce"])
def test_bce_label_smoothing_by_hand(name: str) -> None:
    g = torch.Generator().manual_seed(14)
    x = torch.randn(4, 3, generator=g)
    x = x if name == "bce_with_logits" else torch.sigmoid(x)
    t = torch.randint(0, 2, (4, 3), generator=g).float()
    smoothed = t * 0.8 + 0.1  # t (1 - s) + s / 2 at s = 0.2
    plain = (
        F.binary_cross_entropy_with_logits if name == "bce_with_logits" else F.binary_cross_entropy
    )
    torch.testing.assert_close(losses.get(name, label_smoothing=0.2)(x, t), plain(x, smoothed))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_ignore_index_by_hand(reduction: str) -> None:
    g = torch.Generator().manual_seed(15)
    x = torch.randn(6, generator=g, requires_grad=True)
    t = torch.tensor([0, 1, 255, 1, 255, 0])
    keep = t != 255
    bce = losses.get(
        "bce_with_logits", ignore_index=255, pos_weight=torch.tensor(2.0), reduction=reduction
    )
    actual = bce(x, t)
    expected = F.binary_cross_entropy_with_logits(
        x[keep], t[keep].float(), pos_weight=torch.tensor(2.0), reduction="none"
    )
    if reduction == "none":
        torch.testing.assert_close(actual[keep], expected)
        assert bool((actual[~keep] == 0).all())
    else:
        torch.testing.assert_close(actual, getattr(expected, reduction)())
    actual.sum().backward()
    assert x.grad is not None
    assert bool((x.grad[~keep] == 0).all())


def test_bce_all_ignored_is_zero() -> None:
    bce = losses.get("bce_with_logits", ignore_index=-100)
    assert float(bce(torch.randn(3), torch.full((3,), -100))) == 0.0


def test_bce_label_smoothing_is_checked() -> None:
    with pytest.raises(ConfigError, match="label_smoothing must lie in"):
        losses.get("bce_with_logits", label_smoothing=1.5)


# --- integer 0/1 targets ---


@pytest.mark.parametrize(
    "make",
    [
        lambda: FocalLoss(),
        lambda: AsymmetricLoss(),
        lambda: HingeLoss(),
        lambda: DiceLoss("multilabel"),
        lambda: TverskyLoss("multilabel", average="micro"),
        lambda: LovaszHingeLoss("multilabel"),
        lambda: losses.get("bce_with_logits"),
        lambda: losses.get("multilabel_soft_margin"),
    ],
    ids=["focal", "asymmetric", "hinge", "dice", "tversky", "lovasz_hinge", "bce", "soft_margin"],
)
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_binary_targets_are_cast(make: Any, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(16)
    logits = torch.randn(2, 3, 8, generator=g)
    target = torch.randint(0, 2, (2, 3, 8), generator=g)
    loss = make()
    torch.testing.assert_close(loss(logits, target.to(dtype)), loss(logits, target.float()))


def test_integer_targets_other_than_0_1_are_refused() -> None:
    with pytest.raises(LossInputError, match=r"values in \[0, 3\], expected binary targets 0 or 1"):
        losses.get("bce_with_logits")(torch.randn(4), torch.tensor([0, 1, 3, 1]))
    # an ignore label is not a value: 255 with ignore_index=255 passes
    focal = FocalLoss(ignore_index=255)
    assert torch.isfinite(focal(torch.randn(4), torch.tensor([0, 1, 255, 1])))


# --- peer option names ---


@pytest.mark.parametrize(
    ("name", "options", "equivalent"),
    [
        ("dice", {"sigmoid": True}, "activation='sigmoid'"),
        ("tversky", {"softmax": True}, "mode='multiclass'"),
        ("generalized_dice", {"to_onehot_y": True}, "class-index targets"),
        ("dice", {"jaccard": True}, "'jaccard' loss"),
        ("jaccard", {"eps": 1e-7}, "smooth_dr=eps"),
        ("focal_tversky", {"smooth": 1.0}, "smooth_nr=s and smooth_dr=s"),
        ("focal", {"use_softmax": True}, "'softmax_focal' loss"),
        ("bce_with_logits", {"smooth_factor": 0.1}, "label_smoothing=2"),
    ],
)
def test_peer_option_names_name_the_equivalent(
    name: str, options: dict[str, Any], equivalent: str
) -> None:
    with pytest.raises(ConfigError, match="another library's name for an option") as info:
        losses.get(name, **options)
    assert equivalent in str(info.value)
    factory = losses.resolve(name).factory
    with pytest.raises(ConfigError, match="another library's name") as info:
        factory(**options)
    assert equivalent in str(info.value)


def test_an_unknown_option_is_still_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown argument 'smoth_nr'; did you mean"):
        losses.get("dice", smoth_nr=0.0)
