"""Asymmetric, hinge, soft-target cross-entropy, distillation and z-loss against their published
formulas (or ``torch.nn.functional``): values and input gradients, every reduction, float32."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.losses._classification import (
    AsymmetricLoss,
    DistillationKLLoss,
    HingeLoss,
    MulticlassHingeLoss,
    MulticlassSquaredHingeLoss,
    SoftTargetCrossEntropyLoss,
    SquaredHingeLoss,
    ZLoss,
)

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()


def _value_and_grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().clone().requires_grad_()
    value = fn(x)
    cotangent = torch.randn(value.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(value, x, cotangent.to(value.dtype))
    return value.detach(), grad


def _assert_same(
    ours: Callable[[Tensor], Tensor], theirs: Callable[[Tensor], Tensor], x: Tensor
) -> None:
    value, grad = _value_and_grad(ours, x)
    ref_value, ref_grad = _value_and_grad(theirs, x)
    torch.testing.assert_close(value, ref_value.to(value.dtype))
    torch.testing.assert_close(grad, ref_grad.to(grad.dtype))


def official_asl(
    x: Tensor, y: Tensor, gamma_neg: float, gamma_pos: float, clip: float, eps: float = 1e-8
) -> Tensor:
    """Alibaba-MIIL/ASL ``AsymmetricLoss.forward``, elementwise (the original returns the sum)."""
    xs_pos = torch.sigmoid(x)
    xs_neg = 1 - xs_pos
    if clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt = xs_pos * y + xs_neg * (1 - y)
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        loss = loss * torch.pow(1 - pt, one_sided_gamma)
    return -loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("gamma_pos", "gamma_neg", "clip"),
    [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.0, 2.0, 0.0), (2.0, 2.0, 0.2), (0.0, 0.0, 0.0)],
)
def test_asymmetric_matches_official_formula(
    reduction: str, gamma_pos: float, gamma_neg: float, clip: float
) -> None:
    g = torch.Generator().manual_seed(0)
    # |x| < 12: the original's log(max(p, 1e-8)) clamp never binds.
    x = torch.randn(8, 20, generator=g) * 4
    x = x.clamp(-12, 12)
    y = (torch.rand(8, 20, generator=g) < 0.2).float()
    ours = AsymmetricLoss(gamma_pos, gamma_neg, clip, reduction=reduction, impl="eager")  # type: ignore[arg-type]

    def theirs(x: Tensor) -> Tensor:
        return _reduce(official_asl(x.double(), y.double(), gamma_neg, gamma_pos, clip), reduction)

    _assert_same(lambda x: ours(x, y), theirs, x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.5])
@pytest.mark.parametrize("squared", [False, True])
def test_binary_hinge_matches_formula(reduction: str, margin: float, squared: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, generator=g) * 2
    y = torch.randint(0, 2, (10, 3), generator=g).float()
    cls = SquaredHingeLoss if squared else HingeLoss
    ours = cls(margin=margin, reduction=reduction)  # type: ignore[arg-type]

    def theirs(x: Tensor) -> Tensor:
        hinge = torch.relu(margin - (2 * y - 1) * x)
        return _reduce(hinge**2 if squared else hinge, reduction)

    _assert_same(lambda x: ours(x, y), theirs, x)


def crammer_singer(x: Tensor, y: Tensor, margin: float, squared: bool) -> Tensor:
    """Per-row loop over the definition: max(0, margin + max_{j != y} x_j - x_y)."""
    rows = []
    for scores, label in zip(x, y.tolist()):
        others = torch.cat([scores[:label], scores[label + 1 :]])
        hinge = torch.relu(margin + others.max() - scores[label])
        rows.append(hinge**2 if squared else hinge)
    return torch.stack(rows)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_hinge_matches_crammer_singer(
    reduction: str, squared: bool, weighted: bool
) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    y[3] = -100
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0]) if weighted else None
    cls = MulticlassSquaredHingeLoss if squared else MulticlassHingeLoss
    ours = cls(margin=0.7, weight=weight, reduction=reduction)  # type: ignore[arg-type]
    valid = y != -100
    w = (weight if weight is not None else torch.ones(5))[y.clamp_min(0)] * valid

    def theirs(x: Tensor) -> Tensor:
        loss = crammer_singer(x, y.clamp_min(0), 0.7, squared) * w
        if reduction == "mean":
            return loss.sum() / w.sum()
        return _reduce(loss, reduction)

    _assert_same(lambda x: ours(x, y), theirs, x)


def test_multiclass_hinge_on_images_is_the_per_pixel_loss() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 5, generator=g)
    y = torch.randint(0, 4, (2, 3, 5), generator=g)
    ours = MulticlassHingeLoss(reduction="none")(x, y)
    flat = crammer_singer(x.movedim(1, -1).reshape(-1, 4), y.reshape(-1), 1.0, False)
    torch.testing.assert_close(ours, flat.reshape(2, 3, 5))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4)])
def test_soft_target_cross_entropy_matches_torch(
    reduction: str, label_smoothing: float, weighted: bool, shape: tuple[int, ...]
) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 2
    t = torch.randn(shape, generator=g).softmax(1)
    weight = torch.linspace(0.5, 2.0, shape[1]) if weighted else None
    ours = SoftTargetCrossEntropyLoss(label_smoothing, weight=weight, reduction=reduction)  # type: ignore[arg-type]
    _assert_same(
        lambda x: ours(x, t),
        lambda x: F.cross_entropy(
            x, t, weight=weight, label_smoothing=label_smoothing, reduction=reduction
        ),
        x,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4)])
def test_distillation_matches_hinton_formula(
    reduction: str, temperature: float, shape: tuple[int, ...]
) -> None:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(shape, generator=g) * 2
    teacher = torch.randn(shape, generator=g) * 3
    ours = DistillationKLLoss(temperature, reduction=reduction)  # type: ignore[arg-type]

    def theirs(s: Tensor) -> Tensor:
        p_teacher = torch.softmax(teacher.double() / temperature, 1)
        log_student = torch.log_softmax(s.double() / temperature, 1)
        kl = (p_teacher * (p_teacher.log() - log_student)).sum(1)
        return _reduce(kl * temperature**2, reduction)

    _assert_same(lambda s: ours(s, teacher), theirs, student)
    if reduction == "mean" and len(shape) == 2:  # KLDivLoss's "batchmean", the usual recipe
        expected = F.kl_div(
            F.log_softmax(student / temperature, 1),
            F.softmax(teacher / temperature, 1),
            reduction="batchmean",
        ) * (temperature**2)
        torch.testing.assert_close(ours(student, teacher), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("shape", "dim"), [((6, 5), 1), ((2, 7, 9), -1), ((2, 5, 3, 4), 1)])
def test_z_loss_matches_palm_formula(reduction: str, shape: tuple[int, ...], dim: int) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    ours = ZLoss(dim=dim, reduction=reduction)  # type: ignore[arg-type]
    _assert_same(
        ours,
        lambda x: _reduce(torch.log(torch.exp(x.double()).sum(dim)) ** 2, reduction),
        x,
    )
