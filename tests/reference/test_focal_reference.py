"""The focal losses against torchvision's published formula, MONAI and kornia: values and input
gradients, every reduction, float32.

Each peer's conventions are mapped onto losskit's arguments explicitly:

- torchvision / MONAI (sigmoid, scalar alpha) / kornia ``binary_focal_loss_with_logits``: ``alpha``
  weighs positives, ``1 - alpha`` negatives, as in losskit's ``focal``. For soft targets the peers
  differ from each other (kornia weighs two focal terms by ``t`` and ``1 - t``; torchvision uses one
  factor ``(1 - p_t)`` with ``p_t = p t + (1 - p)(1 - t)``); losskit follows torchvision, so the
  MONAI and kornia comparisons use hard 0/1 targets.
- kornia ``focal_loss`` / MONAI softmax: a scalar ``alpha`` weighs class 0 by ``1 - alpha`` and the
  other classes by ``alpha``; losskit's ``softmax_focal`` refuses ``alpha`` and takes that as
  ``weight=[1 - alpha, alpha, ..., alpha]``. Their ``"none"`` is a ``(N, C, *S)`` map that is zero
  off the target class (summed over dim 1 here), and their ``"mean"`` divides by ``N C S`` where
  losskit divides by the summed weights of the counted positions, as ``F.cross_entropy``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import losskit.losses._classification  # noqa: F401  (registers the losses)
from losskit.losses._classification import FocalLoss, SoftmaxFocalLoss

monai_losses = pytest.importorskip("monai.losses")
kornia_losses = pytest.importorskip("kornia.losses")

REDUCTIONS = ("mean", "sum", "none")


def torchvision_sigmoid_focal(x: Tensor, t: Tensor, alpha: float | None, gamma: float) -> Tensor:
    """torchvision.ops.sigmoid_focal_loss, reduction='none', as published."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        loss = alpha_t * loss
    return loss


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()


def _value_and_grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().clone().requires_grad_()
    value = fn(x)
    # A fixed random cotangent, so that the gradient of "none" is checked in full.
    cotangent = torch.randn(value.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(value, x, cotangent.to(value.dtype))
    return value.detach(), grad


def _assert_same(
    ours: Callable[[Tensor], Tensor],
    theirs: Callable[[Tensor], Tensor],
    x: Tensor,
    **tolerance: float,
) -> None:
    value, grad = _value_and_grad(ours, x)
    ref_value, ref_grad = _value_and_grad(theirs, x)
    torch.testing.assert_close(value, ref_value.to(value.dtype), **tolerance)
    torch.testing.assert_close(grad, ref_grad.to(grad.dtype), **tolerance)


def _binary_case(case: str, shape: tuple[int, ...] = (4, 3, 5, 6)) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3
    hard = torch.randint(0, 2, shape, generator=g).float()
    if case == "random":
        return x, hard
    if case == "soft":
        return x, torch.rand(shape, generator=g)
    if case == "confident":  # logits of +-15 to +-30, mostly on the right side
        x = (hard * 2 - 1) * (15 + 15 * torch.rand(shape, generator=g))
        x.view(-1)[::7] *= -1
        return x, hard
    if case == "zeros":
        return torch.zeros(shape), hard
    raise AssertionError(case)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["random", "soft", "confident", "zeros"])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 2.0), (0.8, 0.5), (None, 0.0)])
def test_binary_focal_matches_torchvision_formula(
    reduction: str, case: str, alpha: float | None, gamma: float
) -> None:
    x, t = _binary_case(case)
    loss = FocalLoss(gamma=gamma, alpha=alpha, reduction=reduction, impl="eager")  # type: ignore[arg-type]

    def reference(x: Tensor) -> Tensor:
        # In float64: the published float32 formula cancels in 1 - p_t at confident logits.
        return _reduce(torchvision_sigmoid_focal(x.double(), t.double(), alpha, gamma), reduction)

    _assert_same(lambda x: loss(x, t), reference, x)
    if case == "random":  # and the formula run in float32 itself
        _assert_same(
            lambda x: loss(x, t),
            lambda x: _reduce(torchvision_sigmoid_focal(x, t, alpha, gamma), reduction),
            x,
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 2.0), (0.6, 1.5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_focal_matches_monai(
    reduction: str, alpha: float | None, gamma: float, weighted: bool
) -> None:
    x, t = _binary_case("random")
    weight = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    ours = FocalLoss(gamma=gamma, alpha=alpha, weight=weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    # MONAI's "sum" first averages over the spatial dims; its "none" summed is the plain sum.
    theirs = monai_losses.FocalLoss(
        gamma=gamma,
        alpha=alpha,
        weight=weight,
        reduction="mean" if reduction == "mean" else "none",
    )
    ref = (lambda v: v.sum()) if reduction == "sum" else (lambda v: v)
    _assert_same(lambda x: ours(x, t), lambda x: ref(theirs(x, t)), x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 3.0), (0.9, 0.0)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", ["random", "confident"])
def test_binary_focal_matches_kornia(
    reduction: str, alpha: float | None, gamma: float, weighted: bool, case: str
) -> None:
    x, t = _binary_case(case)
    weight = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    ours = FocalLoss(gamma=gamma, alpha=alpha, weight=weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    _assert_same(
        lambda x: ours(x, t),
        lambda x: kornia_losses.binary_focal_loss_with_logits(
            x, t, alpha=alpha, gamma=gamma, reduction=reduction, weight=weight
        ),
        x,
    )


def test_soft_targets_follow_torchvision_not_kornia() -> None:
    """With soft targets the peers disagree; losskit's focal is torchvision's formula."""
    x, t = _binary_case("soft")
    ours = FocalLoss(gamma=2.0, alpha=0.25, reduction="none", impl="eager")(x, t)
    torch.testing.assert_close(ours, torchvision_sigmoid_focal(x, t, 0.25, 2.0))
    kornia = kornia_losses.binary_focal_loss_with_logits(x, t, alpha=0.25, gamma=2.0)
    assert not torch.allclose(ours, kornia, atol=1e-4)


def _multiclass_case(
    shape: tuple[int, ...] = (3, 4, 5, 6), ignore: bool = False
) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    n, c, *spatial = shape
    x = torch.randn(shape, generator=g) * 2
    y = torch.randint(0, c, (n, *spatial), generator=g)
    if ignore:
        y.view(-1)[::5] = -100
    return x, y


def _weight_from_alpha(alpha: float | None, weight: Tensor | None, classes: int) -> Tensor | None:
    """kornia's / MONAI's softmax alpha as losskit's per-class weight (class 0: 1 - alpha)."""
    if alpha is None:
        return weight
    from_alpha = torch.tensor([1 - alpha] + [alpha] * (classes - 1))
    return from_alpha if weight is None else from_alpha * weight


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(None, 2.0), (0.25, 2.0), (0.7, 0.5), (None, 0.0)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_softmax_focal_matches_kornia(
    reduction: str, alpha: float | None, gamma: float, weighted: bool, ignore: bool
) -> None:
    x, y = _multiclass_case(ignore=ignore)
    classes = x.shape[1]
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5]) if weighted else None
    ours_weight = _weight_from_alpha(alpha, weight, classes)
    ours = SoftmaxFocalLoss(gamma=gamma, weight=ours_weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]

    def theirs(x: Tensor) -> Tensor:
        kw = {"alpha": alpha, "gamma": gamma, "weight": weight, "ignore_index": -100}
        if reduction == "none":
            return kornia_losses.focal_loss(x, y, reduction="none", **kw).sum(1)
        total = kornia_losses.focal_loss(x, y, reduction="sum", **kw)
        if reduction == "sum":
            return total
        # losskit's mean: divide by the summed weights of the counted positions.
        w = torch.ones(classes) if ours_weight is None else ours_weight
        valid = y != -100
        return total / w[y.clamp_min(0)][valid].sum()

    _assert_same(lambda x: ours(x, y), theirs, x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(None, 2.0), (0.25, 1.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_focal_matches_monai(
    reduction: str, alpha: float | None, gamma: float, weighted: bool
) -> None:
    x, y = _multiclass_case()
    classes = x.shape[1]
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5]) if weighted else None
    ours_weight = _weight_from_alpha(alpha, weight, classes)
    ours = SoftmaxFocalLoss(gamma=gamma, weight=ours_weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    monai = monai_losses.FocalLoss(
        gamma=gamma,
        alpha=alpha,
        weight=weight,
        use_softmax=True,
        to_onehot_y=True,
        reduction="none",
    )

    def theirs(x: Tensor) -> Tensor:
        per_position = monai(x, y.unsqueeze(1)).sum(1)
        if reduction == "none":
            return per_position
        if reduction == "sum":
            return per_position.sum()
        w = torch.ones(classes) if ours_weight is None else ours_weight
        return per_position.sum() / w[y].sum()

    _assert_same(lambda x: ours(x, y), theirs, x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5, 6)])
def test_softmax_focal_at_gamma_zero_is_cross_entropy(
    reduction: str, weighted: bool, shape: tuple[int, ...]
) -> None:
    x, y = _multiclass_case(shape, ignore=True)
    weight = torch.linspace(0.5, 2.0, shape[1]) if weighted else None
    ours = SoftmaxFocalLoss(gamma=0.0, weight=weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    _assert_same(
        lambda x: ours(x, y),
        lambda x: F.cross_entropy(x, y, weight=weight, reduction=reduction),
        x,
    )
