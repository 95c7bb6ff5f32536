"""kornia's own loss tests, ported: the explicit-value cases of ``tests/losses/`` for the losses
losskit has (Dice, Tversky, binary and softmax focal, Lovász hinge and softmax, Charbonnier).

Source: kornia/kornia at commit b4f5a78a13891c7ac4c1cd9695941380273e981d, files
``tests/losses/test_{dice,tversky,focal_loss,lovaz_softmax,lovaz_hinge,charbonnier}.py``
(Apache License 2.0). Each test names its source test; the inputs and expected values are
kornia's, as written (kornia's ``labels`` of shape ``(2, H, W)`` for a batch of 1 broadcast in
its one-hot; here they are given per sample). kornia's tolerance is kept (``rtol=atol=1e-3``
where it states it). The rest of that folder tests losses losskit does not have yet (Cauchy,
Geman-McClure, Welsch, Hausdorff, SSIM, PSNR, total variation, divergences, depth smoothness,
mutual information) or helpers (``one_hot``).

Mapping, where conventions differ (docs/coming_from.md):

- ``eps`` (added to the denominator only) is ``smooth_nr=0, smooth_dr=eps``;
- ``average="micro"`` (kornia's default) and ``"macro"`` have the same names;
- kornia's ``ignore_index=-100`` default: losskit's default is no ignore index;
- a mean over elements with ``ignore_index`` (binary focal): kornia divides by every element,
  losskit by those that count, so kornia's mean is losskit's ``"sum"`` over ``numel``;
- micro averaging with class weights: kornia multiplies both ``p`` and the one-hot target by
  ``w``, so its intersection carries ``w^2``; losskit weighs each of ``I``, ``P``, ``T`` by ``w``
  (the same for 0/1 weights);
- Lovász-softmax: kornia scores every class (``classes="all"``; losskit's default is Berman's
  ``"present"``) and averages ``w_c l_c`` over the classes, losskit divides by ``sum(w)``:
  kornia's is losskit's times ``sum(w) / C``;
- ``charbonnier_loss`` is ``sqrt(d^2 + 1) - 1``: losskit's ``CharbonnierLoss(eps=1)`` minus 1.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.losses import (
    CharbonnierLoss,
    DiceLoss,
    FocalLoss,
    SoftmaxFocalLoss,
    TverskyLoss,
)
from losskit.losses._lovasz import LovaszHingeLoss, LovaszSoftmaxLoss

KORNIA = "kornia/kornia@b4f5a78a13891c7ac4c1cd9695941380273e981d"
TOL = {"rtol": 1e-3, "atol": 1e-3}  # kornia's own, in these tests


def _kornia_dice(average: str = "micro", eps: float = 1e-8, **options: object) -> DiceLoss:
    """kornia's ``DiceLoss(average, eps, weight, ignore_index)`` in losskit's spelling."""
    return DiceLoss(average=average, smooth_nr=0.0, smooth_dr=eps, **options)  # type: ignore[arg-type]


# --- tests/losses/test_dice.py ---


@pytest.mark.parametrize("ignore_index", [-100, None])
def test_dice_all_zeros(ignore_index: int | None) -> None:
    """test_dice.py::TestDiceLoss::test_all_zeros: a confident right prediction scores 0."""
    logits = torch.zeros(2, 3, 1, 2)
    logits[:, 0] = 10.0
    logits[:, 1] = 1.0
    logits[:, 2] = 1.0
    labels = torch.zeros(2, 1, 2, dtype=torch.int64)
    loss = _kornia_dice(ignore_index=ignore_index)(logits, labels)
    torch.testing.assert_close(loss, torch.zeros_like(loss), **TOL)


def test_dice_averaging_micro() -> None:
    """test_dice.py::TestDiceLoss::test_averaging_micro (cardinality 2 * H * W)."""
    eps = 1e-8
    logits = torch.zeros(1, 2, 4, 1)
    logits[:, 0, 0:3] = 10.0
    logits[:, 0, 3:4] = 1.0
    logits[:, 1, 0:3] = 1.0
    logits[:, 1, 3:4] = 10.0
    labels = torch.zeros(1, 4, 1, dtype=torch.int64)
    exp_1_0, exp_10_0 = torch.exp(torch.tensor([1.0])), torch.exp(torch.tensor([10.0]))
    expected_intersection = (3.0 * exp_10_0 + 1.0 * exp_1_0) / (exp_1_0 + exp_10_0)
    expected_cardinality = 8.0
    expected = (1.0 - 2.0 * expected_intersection / (expected_cardinality + eps)).squeeze()
    torch.testing.assert_close(_kornia_dice("micro", eps)(logits, labels), expected, **TOL)


def test_dice_averaging_macro() -> None:
    """test_dice.py::TestDiceLoss::test_averaging_macro."""
    eps = 1e-8
    logits = torch.zeros(1, 2, 1, 4)
    logits[:, 0, :, 0:3] = 10.0
    logits[:, 0, :, 3:4] = 1.0
    logits[:, 1, :, 0:3] = 1.0
    logits[:, 1, :, 3:4] = 10.0
    labels = torch.zeros(1, 1, 4, dtype=torch.int64)
    exp_1_0, exp_10_0 = torch.exp(torch.tensor([1.0])), torch.exp(torch.tensor([10.0]))
    intersection_1 = (3.0 * exp_10_0 + exp_1_0) / (exp_1_0 + exp_10_0)
    intersection_2 = 0.0
    cardinality_1 = 4.0 + (3.0 * exp_10_0 + 1.0 * exp_1_0) / (exp_1_0 + exp_10_0)
    cardinality_2 = 0.0 + (1.0 * exp_10_0 + 3.0 * exp_1_0) / (exp_1_0 + exp_10_0)
    loss_1 = 1.0 - 2.0 * intersection_1 / (cardinality_1 + eps)
    loss_2 = 1.0 - 2.0 * intersection_2 / (cardinality_2 + eps)
    expected = ((loss_1 + loss_2) / 2.0).squeeze()
    torch.testing.assert_close(_kornia_dice("macro", eps)(logits, labels), expected, **TOL)


def _weight_case() -> tuple[Tensor, Tensor]:
    logits = torch.zeros(4, 3, 1, 4)
    logits[:, 0, :, 0] = 100.0
    logits[:, 2, :, 1:] = 100.0
    labels = torch.tensor([0, 1, 2, 2], dtype=torch.int64).expand((4, 1, -1))
    return logits, labels


@pytest.mark.parametrize("avg", ["micro", "macro"])
@pytest.mark.parametrize(
    ("weight", "expected"),
    [([1.0, 0.0, 0.0], 0.0), ([0.0, 1.0, 0.0], 1.0), ([0.0, 0.0, 1.0], 1.0 / 5.0)],
    ids=["class 0 is all correct", "class 1 is all incorrect", "class 2 is partially correct"],
)
def test_dice_weight(avg: str, weight: list[float], expected: float) -> None:
    """test_dice.py::TestDiceLoss::test_weight: one class weighted at a time."""
    logits, labels = _weight_case()
    loss = _kornia_dice(avg, weight=weight)(logits, labels)
    torch.testing.assert_close(loss, torch.tensor(expected), **TOL)


@pytest.mark.parametrize("avg", ["micro", "macro"])
def test_dice_weight_zero_for_an_extra_class(avg: str) -> None:
    """test_dice.py::TestDiceLoss::test_weight, "ignore class 3": a zero-weight extra channel."""
    logits, labels = _weight_case()
    expected = _kornia_dice(avg)(logits, labels)
    padded = torch.cat([logits, logits.new_zeros((4, 1, 1, 4))], dim=1)
    loss = _kornia_dice(avg, weight=[1.0, 1.0, 1.0, 0.0])(padded, labels)
    torch.testing.assert_close(loss, expected, **TOL)


@pytest.mark.parametrize("avg", ["micro", "macro"])
def test_dice_non_binary_weights(avg: str) -> None:
    """test_dice.py::TestDiceLoss::test_weight, "test non binary weights" (its formula)."""
    eps, w_cl_0, w_cl_1 = 1e-8, 0.3, 0.7
    logits, labels = _weight_case()
    labels = labels.squeeze(1)
    if avg == "macro":
        expected = torch.tensor(0.7)
    else:
        dims = (1, 2)
        preds = logits.argmax(1)
        tp_cl_0 = ((preds == 0) & (labels.unsqueeze(1) == 0)).sum(dims)
        tp_cl_1 = ((preds == 1) & (labels.unsqueeze(1) == 1)).sum(dims)
        fnfp_cl_0 = ((preds == 0) ^ (labels.unsqueeze(1) == 0)).sum(dims)
        fnfp_cl_1 = ((preds == 1) ^ (labels.unsqueeze(1) == 1)).sum(dims)
        expected = (
            1
            - 2
            * (w_cl_0 * tp_cl_0 + w_cl_1 * tp_cl_1) ** 2
            / (w_cl_0 * (2 * tp_cl_0 + fnfp_cl_0) + w_cl_1 * (2 * tp_cl_1 + fnfp_cl_1) + eps)
        ).mean()
    weight = torch.tensor([w_cl_0, w_cl_1, 0.0])
    dice = _kornia_dice(avg, eps, weight=weight)
    if avg == "macro":
        loss = dice(logits, labels.unsqueeze(1))
    else:
        # kornia's micro average multiplies both the probabilities and the one-hot target by
        # the class weight, so its intersection carries w^2 and its cardinality w (hence the
        # square in its expected value); losskit weighs each class's three sums by w. The
        # mapping, from losskit's per-class sums (equal for 0/1 weights, as above):
        stats = dice.stats(logits, labels.unsqueeze(1))
        intersection = (stats.intersection * weight.square()).sum(-1)
        cardinality = ((stats.mass + stats.count) * weight).sum(-1)
        loss = (1 - 2 * intersection / (cardinality + eps)).mean()
    torch.testing.assert_close(loss, expected.float(), **TOL)


@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_dice_ignore_index(ignore_index: int) -> None:
    """test_dice.py::TestDiceLoss::test_ignore_index: 1/2."""
    logits = torch.zeros(2, 2, 1, 4)
    logits[:, 0, :, 0] = 100.0
    logits[:, 1, :, 1:] = 100.0
    labels = torch.zeros(2, 1, 4, dtype=torch.int64)
    labels[..., 2:] = ignore_index
    loss = _kornia_dice("micro", ignore_index=ignore_index)(logits, labels)
    torch.testing.assert_close(loss, torch.tensor(0.5), **TOL)


# --- tests/losses/test_tversky.py ---


def _kornia_tversky(alpha: float, beta: float, eps: float = 1e-8, **options: object) -> TverskyLoss:
    """kornia's ``TverskyLoss(alpha, beta, eps, ignore_index)``: micro-averaged, eps below."""
    return TverskyLoss(
        alpha=alpha,
        beta=beta,
        average="micro",
        smooth_nr=0.0,
        smooth_dr=eps,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("ignore_index", [-100, None])
def test_tversky_all_zeros(ignore_index: int | None) -> None:
    """test_tversky.py::TestTverskyLoss::test_all_zeros."""
    logits = torch.zeros(2, 3, 1, 2)
    logits[:, 0] = 10.0
    logits[:, 1] = 1.0
    logits[:, 2] = 1.0
    labels = torch.zeros(2, 1, 2, dtype=torch.int64)
    loss = _kornia_tversky(0.5, 0.5, ignore_index=ignore_index)(logits, labels)
    torch.testing.assert_close(loss, torch.zeros_like(loss), **TOL)


@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_tversky_ignore_index(ignore_index: int) -> None:
    """test_tversky.py::TestTverskyLoss::test_ignore_index: 1/2."""
    logits = torch.zeros(2, 2, 1, 4)
    logits[:, 0, :, 0] = 100.0
    logits[:, 1, :, 1:] = 100.0
    labels = torch.zeros(2, 1, 4, dtype=torch.int64)
    labels[..., 2:] = ignore_index
    loss = _kornia_tversky(0.5, 0.5, ignore_index=ignore_index)(logits, labels)
    torch.testing.assert_close(loss, torch.tensor(0.5), **TOL)


# --- tests/losses/test_focal_loss.py ---


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, None])
def test_binary_focal_same_as_torch_bce(reduction: str, ignore_index: int | None) -> None:
    """test_focal_loss.py::TestBinaryFocalLossWithLogits::test_value_same_as_torch_bce_loss."""
    g = torch.Generator().manual_seed(0)
    logits = torch.rand(2, 3, 2, generator=g)
    labels = torch.rand(2, 3, 2, generator=g)
    focal = FocalLoss(alpha=None, gamma=0, reduction=reduction, ignore_index=ignore_index)  # type: ignore[arg-type]
    expected = F.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)
    torch.testing.assert_close(focal(logits, labels), expected)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_binary_focal_same_as_torch_bce_pos_weight_weight(reduction: str) -> None:
    """...::test_value_same_as_torch_bce_loss_pos_weight_weight: kornia's (C, 1) weights are
    losskit's (C,) along dim 1."""
    g = torch.Generator().manual_seed(1)
    logits = torch.rand(2, 3, 2, generator=g)
    labels = torch.rand(2, 3, 2, generator=g)
    pos_weight = torch.rand(3, 1, generator=g)
    weight = torch.rand(3, 1, generator=g)
    focal = FocalLoss(
        alpha=None,
        gamma=0,
        reduction=reduction,  # type: ignore[arg-type]
        pos_weight=pos_weight.squeeze(1),
        weight=weight.squeeze(1),
    )
    expected = F.binary_cross_entropy_with_logits(
        logits, labels, reduction=reduction, pos_weight=pos_weight, weight=weight
    )
    torch.testing.assert_close(focal(logits, labels), expected)


def test_binary_focal_numeric_stability() -> None:
    """...::TestBinaryFocalLossWithLogits::test_numeric_stability: logits +-100 score 0."""
    logits = torch.tensor([[100.0, -100]])
    labels = torch.tensor([[1.0, 0.0]])
    actual = FocalLoss(gamma=2.0, alpha=0.25, reduction="none")(logits, labels)
    torch.testing.assert_close(actual, torch.tensor([[0.0, 0.0]]))


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_binary_focal_ignore_index_mean_is_sum_over_all_elements(gamma: float) -> None:
    """kornia's ``binary_focal_loss_with_logits(..., ignore_index, reduction="mean")`` divides
    by every element: losskit's ``"sum"`` over ``numel`` (its own mean divides by the elements
    that count). Against kornia itself (0.9.0), as its test_gradcheck_ignore_index input."""
    kornia_losses = pytest.importorskip("kornia.losses")
    g = torch.Generator().manual_seed(2)
    logits = torch.rand(2, 3, 2, generator=g, dtype=torch.float64)
    # 0/1 labels: for soft labels kornia's focal term is not torchvision's (losskit's).
    labels = (torch.rand(2, 3, 2, generator=g, dtype=torch.float64) > 0.5).double()
    labels[torch.rand(2, 3, 2, generator=g) > 0.8] = -100
    expected = kornia_losses.binary_focal_loss_with_logits(
        logits, labels, alpha=0.25, gamma=gamma, reduction="mean", ignore_index=-100
    )
    focal = FocalLoss(gamma=gamma, alpha=0.25, ignore_index=-100, reduction="sum")
    torch.testing.assert_close(focal(logits, labels) / logits.numel(), expected)


@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_softmax_focal_value_ignore_index(ignore_index: int) -> None:
    """test_focal_loss.py::TestFocalLoss::test_value_ignore_index: an ignored position scores as
    an extra class with logit -inf would (0), and the others are unchanged."""
    g = torch.Generator().manual_seed(3)
    logits = torch.rand(2, 3, 3, 2, generator=g)
    labels = torch.randint(3, (2, 3, 2), generator=g)
    ignore = torch.rand(2, 3, 2, generator=g) > 0.6
    labels[ignore] = ignore_index
    extra = labels.clone()
    extra[ignore] = 3
    extra_logits = torch.cat([logits, logits.new_full((2, 1, 3, 2), float("-inf"))], dim=1)
    # losskit's softmax focal loss is one value per position ("none": (N, *S)); kornia's is
    # per class (N, C, *S) with the non-target classes 0: their sums over C agree.
    expected = SoftmaxFocalLoss(gamma=0.5, reduction="none", check="off")(extra_logits, extra)
    actual = SoftmaxFocalLoss(gamma=0.5, reduction="none", ignore_index=ignore_index)(
        logits, labels
    )
    torch.testing.assert_close(actual, expected.masked_fill(ignore, 0.0))


# --- tests/losses/test_lovaz_softmax.py, test_lovaz_hinge.py ---


def test_lovasz_softmax_all_ones() -> None:
    """test_lovaz_softmax.py::TestLovaszSoftmaxLoss::test_all_ones: a perfect prediction."""
    prediction = torch.zeros(2, 2, 1, 2)
    prediction[:, 1] = 100.0
    labels = torch.ones(2, 1, 2, dtype=torch.int64)
    loss = LovaszSoftmaxLoss(classes="all")(prediction, labels)  # kornia scores every class
    torch.testing.assert_close(loss, torch.zeros_like(loss), **TOL)


def test_lovasz_softmax_weight() -> None:
    """test_lovaz_softmax.py::TestLovaszSoftmaxLoss::test_weight: 0.5 with weight [1, 0].

    kornia scores every class (losskit's ``classes="all"``; its default is ``"present"``) and
    averages ``w_c l_c`` over the C classes; losskit divides by ``sum(w)``: kornia's value is
    losskit's times ``sum(w) / C``.
    """
    prediction = torch.zeros(2, 2, 1, 2)
    prediction[:, 0] = 100.0
    labels = torch.ones(2, 1, 2, dtype=torch.int64)
    weight = torch.tensor([1.0, 0.0])
    lovasz = LovaszSoftmaxLoss(weight=weight, classes="all")
    loss = lovasz(prediction, labels) * weight.sum() / 2
    torch.testing.assert_close(loss, 0.5 * torch.ones_like(loss), **TOL)


def test_lovasz_hinge_perfect_prediction() -> None:
    """test_lovaz_hinge.py::TestLovaszHingeLoss::test_perfect_prediction (integer labels)."""
    prediction = torch.ones(2, 1, 1, 2)
    labels = torch.ones(2, 1, 2, dtype=torch.int64).unsqueeze(1)  # kornia's (N, H, W)
    loss = LovaszHingeLoss(check="off")(prediction, labels)
    torch.testing.assert_close(loss, torch.zeros_like(loss), **TOL)


# --- tests/losses/test_charbonnier.py ---


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(1, 2, 9, 9), (2, 4, 3, 6)])
def test_charbonnier_perfect_prediction(reduction: str, shape: tuple[int, ...]) -> None:
    """test_charbonnier.py::TestCharbonnierLoss::test_perfect_prediction: 0, and 0.41421356237
    per element for ones against zeros. kornia's is ``CharbonnierLoss(eps=1)`` minus 1 per
    element."""
    loss = CharbonnierLoss(eps=1.0, reduction=reduction)  # type: ignore[arg-type]
    offset = 1.0 if reduction == "mean" else float(torch.Size(shape).numel())
    img = torch.rand(shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(loss(img, img) - offset, torch.tensor(0.0))
    ones, zeros = torch.ones(shape), torch.zeros(shape)
    expected = torch.tensor(0.41421356237) * (1.0 if reduction == "mean" else offset)
    torch.testing.assert_close(loss(ones, zeros) - offset, expected)


def test_kornia_option_names_get_their_equivalent() -> None:
    """kornia's ``eps`` is refused naming ``smooth_dr``."""
    with pytest.raises(Exception, match="smooth_dr=eps"):
        DiceLoss(eps=1e-8)
