"""Classification losses beyond ``torch.nn``: focal, asymmetric, hinge, soft targets, distillation.

Registry names (family ``"classification"``): ``focal`` (sigmoid: binary and multi-label),
``softmax_focal`` (multi-class), ``asymmetric``, ``hinge``, ``squared_hinge``,
``multiclass_hinge``, ``multiclass_squared_hinge``, ``soft_target_cross_entropy``,
``distillation_kl`` and ``z_loss``. The sigmoid and softmax focal losses are two names, never one
loss that picks a path from the shapes it is given.

One meaning of each weighting argument, as across the catalogue:

- ``weight``: per-class weights of shape ``(C,)``, along dim 1 of the input. In the losses on
  class indices, each position's loss is multiplied by the weight of its target class and
  ``"mean"`` divides by the sum of those weights over the positions that count (those not
  ``ignore_index``), as ``F.cross_entropy`` does; with no position counting the result is 0 with a
  zero gradient (``F.cross_entropy`` gives NaN). In the sigmoid losses each element's loss is
  multiplied by the weight of its class and ``"mean"`` averages over all elements, as
  ``BCEWithLogitsLoss(weight=...)`` does.
- ``alpha``: the focal loss's balance of positives and negatives, as torchvision: ``alpha``
  weighs the positive term and ``1 - alpha`` the negative one. Only the sigmoid focal loss has it.
- ``pos_weight``: the weight of positive examples per class (``BCEWithLogitsLoss``'s), along
  dim 1; the sigmoid focal loss takes it (kornia's).

Half-precision inputs are computed in float32; ``reduction="none"`` returns the input's dtype,
``"mean"`` and ``"sum"`` return float32 (a float16 sum overflows at 65504).

Example::

    >>> import torch
    >>> from losskit import losses
    >>> losses.get("focal", gamma=2.0)
    FocalLoss(gamma=2.0, alpha=0.25, reduction='mean')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses import _elementwise as _kernels
from losskit.losses._elementwise import Impl, Reduction, compute_dtype
from losskit.losses._options import check_number as _check_number
from losskit.losses.contracts import Check, Contract, ContractedLoss, as_float_target
from losskit.losses.registry import register

__all__ = [
    "AsymmetricLoss",
    "DistillationKLLoss",
    "FocalLoss",
    "HingeLoss",
    "MulticlassHingeLoss",
    "MulticlassSquaredHingeLoss",
    "SoftTargetCrossEntropyLoss",
    "SoftmaxFocalLoss",
    "SquaredHingeLoss",
    "ZLoss",
]

_FAMILY = "classification"


def _class_weight(owner: str, weight: Sequence[float] | Tensor | None) -> Tensor | None:
    """``weight`` as a float32 ``(C,)`` tensor of finite, non-negative values (or None)."""
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32) if not isinstance(weight, Tensor) else weight
    if w.ndim != 1 or not w.is_floating_point():
        raise ConfigError(
            f"{owner}: weight must be a 1-D float tensor of per-class weights (C,), got "
            f"shape {tuple(w.shape)} and dtype {str(w.dtype).removeprefix('torch.')}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ConfigError(f"{owner}: weight must be finite and non-negative, got {w.tolist()}")
    return w


def _check_weight_fits(name: str, weight: Tensor | None, input: Tensor) -> None:
    if weight is None:
        return
    classes = input.shape[1] if input.ndim > 1 else None
    if classes is None or weight.shape[0] != classes:
        got = f"{classes} classes along dim 1" if classes is not None else "no class dim"
        raise LossInputError(
            f"{name}: weight has {weight.shape[0]} entries (one per class), but the input of "
            f"shape {tuple(input.shape)} has {got}; give weight of shape (C,) for input (N, C, ...)"
        )


def _check_class_scores(name: str, input: Tensor, what: str) -> None:
    if input.ndim < 2:
        raise LossInputError(
            f"{name}: input has shape {tuple(input.shape)}, expected {what} of shape (N, C, ...) "
            "with the classes along dim 1"
        )


def _check_two_classes(name: str, input: Tensor, hint: str) -> None:
    if input.shape[1] < 2:
        raise LossInputError(
            f"{name}: input of shape {tuple(input.shape)} has {input.shape[1]} class along dim 1; "
            f"{hint}"
        )


def _reduce(loss: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def _reduce_positions(loss: Tensor, wt: Tensor, reduction: Reduction, dtype: torch.dtype) -> Tensor:
    """Reduce per-position losses already multiplied by their weights ``wt`` (0 where ignored)."""
    if reduction == "none":
        return loss.to(dtype)
    total = loss.sum()
    if reduction == "sum":
        return total
    denominator = wt.sum()
    return torch.where(denominator > 0, total / torch.where(denominator > 0, denominator, 1), 0.0)


def _target_weights(
    target: Tensor, weight: Tensor | None, ignore_index: int | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Class indices safe to gather with (ignored ones set to 0), and each position's weight."""
    valid = (
        torch.ones_like(target, dtype=torch.bool)
        if ignore_index is None
        else target != ignore_index
    )
    safe = torch.where(valid, target, 0)
    wt = valid.to(dtype)
    if weight is not None:
        wt = wt * weight.to(dtype)[safe]
    return safe, wt


@register("focal", family=_FAMILY, aliases=("sigmoid_focal", "binary_focal"))
class FocalLoss(ContractedLoss, nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) for binary and multi-label targets.

    Every element of the input is an independent logit; the target has the input's shape and
    holds 0/1 labels or soft labels in [0, 1]. Per element, with ``p = sigmoid(x)``, ``p_t =
    p t + (1 - p)(1 - t)`` and ``alpha_t = alpha t + (1 - alpha)(1 - t)``::

        loss = alpha_t * (1 - p_t) ** gamma * bce_with_logits(x, t)

    (torchvision's ``sigmoid_focal_loss``), computed in log space with a hand-derived gradient:
    finite at logits of +-100 and for ``gamma < 1`` where probabilities saturate. For multi-class
    problems with one label per position use ``"softmax_focal"``.

    Args:
        gamma: focusing exponent, >= 0 (0 gives binary cross-entropy).
        alpha: weight of the positive term in [0, 1]; ``1 - alpha`` weighs the negative term.
            ``None`` weighs both by 1.
        weight: per-class weights ``(C,)`` multiplying the loss of each element of class ``c``
            (dim 1); ``"mean"`` still averages over all elements.
        reduction: ``"mean"`` over the elements that count, ``"sum"``, or ``"none"`` (the
            input's shape, 0 where an element does not count).
        impl: ``"auto"`` runs a ``torch.compile``'d fused kernel from 65,536 elements and the
            eager kernel below; ``"compiled"`` or ``"eager"`` force one (see
            :mod:`losskit.losses._elementwise`).
        pos_weight: weight of the positive term, a number or one per class ``(C,)`` along
            dim 1 (kornia's ``pos_weight``; ``BCEWithLogitsLoss``'s for ``gamma=0``): the
            cross-entropy inside the focal term becomes ``w t softplus(-x) + (1 - t) softplus(x)``.
        ignore_index: elements whose target equals it do not count: loss 0, no gradient, and
            ``"mean"`` divides by the elements left (kornia and smp divide by all of them:
            their mean is ``reduction="sum"`` divided by ``input.numel()``).
        include_background: ``False`` leaves channel 0 (dim 1) out, as MONAI's focal loss does;
            ``"mean"`` divides by the elements of the other channels.

    Integer or bool 0/1 targets are cast to the input's dtype; other integers are refused.

    Example::

        >>> import torch
        >>> focal = FocalLoss(gamma=2.0, alpha=0.25)
        >>> logits = torch.tensor([[3.0, -2.0], [0.5, 100.0]], requires_grad=True)
        >>> labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> loss = focal(logits, labels)
        >>> loss
        tensor(0.0711, grad_fn=<_ElementwiseBackward>)
        >>> loss.backward()
        >>> bool(torch.isfinite(logits.grad).all())
        True
    """

    contract: ClassVar[Contract] = Contract("logits", "binary", "same")
    loss_name: ClassVar[str] = "focal"
    renamed_options: ClassVar[Mapping[str, str]] = {
        "use_softmax": "MONAI's use_softmax=True is the 'softmax_focal' loss (class-index "
        "targets); this one is its sigmoid form",
        "to_onehot_y": "MONAI's to_onehot_y=True is the 'softmax_focal' loss with class-index "
        "targets, or a one-hot float target of the input's shape here",
        "smooth_factor": "no label smoothing on the focal loss; smp's smooth_factor is on "
        "bce_with_logits as label_smoothing=2*smooth_factor",
    }
    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
        impl: Impl = "auto",
        check: Check = "first",
        *,
        pos_weight: float | Sequence[float] | Tensor | None = None,
        ignore_index: int | None = None,
        include_background: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.gamma = _check_number(owner, "gamma", gamma, low=0.0)
        self.alpha = None if alpha is None else _check_number(owner, "alpha", alpha, low=0, high=1)
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.impl: Impl = _kernels.check_impl(owner, impl)
        self.register_buffer("weight", _class_weight(owner, weight))
        self.register_buffer("pos_weight", _positive_weight(owner, pos_weight))
        self.ignore_index = ignore_index
        self.include_background = bool(include_background)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target, ignore_index=self.ignore_index)
        _check_weight_fits(self.display_name, self.weight, input)
        target = as_float_target(target, input)
        if self.ignore_index is None and self.pos_weight is None and self.include_background:
            return _kernels.elementwise_loss(
                _kernels.FOCAL,
                input,
                target,
                (self.gamma, self.alpha),
                self.reduction,
                self.impl,
                weight=self.weight,
            )
        return self._counted(input, target)

    def _counted(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss with per-element weights: ignored elements, background, positives."""
        name, dtype = self.display_name, compute_dtype(input.dtype)
        by_class = (1, -1) + (1,) * (input.ndim - 2)
        counted: Tensor | None = None
        if self.ignore_index is not None:
            counted = target != self.ignore_index
            target = target.masked_fill(~counted, 0.0)
        if not self.include_background:
            _check_class_scores(name, input, "logits")
            _check_two_classes(name, input, "include_background=False would leave no channel")
            keep = torch.ones(input.shape[1], dtype=torch.bool, device=input.device)
            keep = keep.index_fill(0, torch.tensor([0], device=input.device), False)
            counted = keep.view(by_class) if counted is None else counted & keep.view(by_class)
        w = torch.ones((), dtype=dtype, device=input.device)
        if counted is not None:
            w = counted.to(dtype)
        if self.weight is not None:
            w = w * self.weight.to(dtype).view(by_class)
        kernel = _kernels.FOCAL
        params: tuple[object, ...] = (self.gamma, self.alpha)
        if self.pos_weight is not None:
            pw = self.pos_weight.to(dtype)
            if pw.ndim:
                _check_weight_fits(name, pw, input)
                pw = pw.view(by_class)
            pw = pw.expand(input.shape).reshape(-1)
            kernel, params = _kernels.FOCAL_POS_WEIGHT, (self.gamma, self.alpha, pw)
        reduction: Reduction = "none" if self.reduction == "none" else "sum"
        loss = _kernels.elementwise_loss(
            kernel,
            input,
            target,
            params,
            reduction,
            self.impl,
            element_weight=w.expand(input.shape),
        )
        if self.reduction != "mean":
            return loss
        if counted is None:
            return loss / input.numel()
        return _safe_mean(loss, counted.expand(input.shape).sum())

    def extra_repr(self) -> str:
        extra = "" if self.include_background else ", include_background=False"
        if self.ignore_index is not None:
            extra += f", ignore_index={self.ignore_index}"
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}{extra}"


def _positive_weight(
    owner: str, pos_weight: float | Sequence[float] | Tensor | None
) -> Tensor | None:
    """``pos_weight`` as a float32 number or ``(C,)`` tensor of finite values >= 0 (or None)."""
    if pos_weight is None:
        return None
    w = torch.as_tensor(pos_weight, dtype=torch.float32).detach().clone()
    if w.ndim > 1 or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ConfigError(
            f"{owner}: pos_weight must be a number or a 1-D sequence (C,) of finite values >= 0, "
            f"got {w.tolist()}"
        )
    return w


def _safe_mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count``, and 0 (with a zero gradient) when nothing counts."""
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


@register("softmax_focal", family=_FAMILY, aliases=("multiclass_focal",))
class SoftmaxFocalLoss(ContractedLoss, nn.Module):
    """Softmax focal loss for multi-class targets: one class index per position.

    Per position, with ``p_t`` the softmax probability of the target class::

        loss = weight[t] * (1 - p_t) ** gamma * -log(p_t)

    With ``gamma=0`` it equals ``F.cross_entropy`` (same ``weight``, ``ignore_index`` and
    ``"mean"``). A single-channel input is refused: a softmax over one class is always 1, so the
    loss would silently be 0 (MONAI#2509); binary problems take ``"focal"``.

    Args:
        gamma: focusing exponent, >= 0.
        weight: per-class weights ``(C,)``: each position's loss is multiplied by the weight of
            its target class and ``"mean"`` divides by the sum of those weights.
        ignore_index: target value of positions that do not count (``None``: every position
            counts). With none counting, ``"mean"`` is 0.
        reduction: ``"mean"`` (weighted, as above), ``"sum"``, or ``"none"`` (the target's
            shape).
        impl: ``"auto"``, ``"compiled"`` or ``"eager"``, as for :class:`FocalLoss`.
        alpha: not accepted: ``alpha`` is the sigmoid focal loss's positive/negative balance and
            means nothing across softmax classes (MONAI#8117 dropped it silently). The scalar
            ``alpha`` of kornia's and MONAI's softmax focal losses (``1 - alpha`` for class 0,
            ``alpha`` for the others) is ``weight=[1 - alpha, alpha, ..., alpha]`` here.

    Example::

        >>> import torch
        >>> focal = SoftmaxFocalLoss(gamma=2.0, weight=[0.5, 1.0, 1.0])
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
        >>> focal(logits, torch.tensor([0, 1, -100]))
        tensor(0.0019)
        >>> focal(logits[:, :1], torch.tensor([0, 0, 0]))
        Traceback (most recent call last):
        ...
        losskit.errors.LossInputError: SoftmaxFocalLoss ('softmax_focal'): input of shape \
(3, 1) has 1 class along dim 1; a softmax over one class is always 1 and the loss would be 0: \
for a binary problem use 'focal' (sigmoid) with a float 0/1 target of the input's shape, or \
give two logits per position
    """

    contract: ClassVar[Contract] = Contract("logits", "class_indices", "class_dim")
    loss_name: ClassVar[str] = "softmax_focal"
    weight: Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        weight: Sequence[float] | Tensor | None = None,
        ignore_index: int | None = -100,
        reduction: Reduction = "mean",
        impl: Impl = "auto",
        alpha: None = None,
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if alpha is not None:
            raise ConfigError(
                f"{owner}: alpha is the sigmoid focal loss's positive/negative balance and has "
                "no meaning across softmax classes; pass per-class weights weight=(C,) instead "
                f"(kornia's and MONAI's softmax alpha={alpha!r} is weight=[1 - alpha, alpha, ..., "
                "alpha], class 0 being the background)"
            )
        self.gamma = _check_number(owner, "gamma", gamma, low=0.0)
        self.ignore_index = ignore_index
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.impl: Impl = _kernels.check_impl(owner, impl)
        self.register_buffer("weight", _class_weight(owner, weight))
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target, ignore_index=self.ignore_index)
        name = self.display_name
        _check_class_scores(name, input, "logits")
        _check_two_classes(
            name,
            input,
            "a softmax over one class is always 1 and the loss would be 0: for a binary problem "
            "use 'focal' (sigmoid) with a float 0/1 target of the input's shape, or give two "
            "logits per position",
        )
        _check_weight_fits(name, self.weight, input)
        return _kernels.softmax_focal_loss(
            input,
            target,
            self.gamma,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.impl,
            name=name,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


@register("asymmetric", family=_FAMILY, aliases=("asl", "asymmetric_loss"))
class AsymmetricLoss(ContractedLoss, nn.Module):
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021).

    Per element, with ``p = sigmoid(x)`` and the shifted probability ``p_m = max(p - clip, 0)``::

        loss = -t (1 - p) ** gamma_pos * log(p) - (1 - t) p_m ** gamma_neg * log(1 - p_m)

    Easy negatives are down-weighted harder than positives (``gamma_neg > gamma_pos``) and
    negatives with ``p <= clip`` are discarded. Soft targets weigh the two terms by ``t`` and
    ``1 - t``. Computed in log space with a hand-derived gradient (no NaN under AMP, cf.
    Alibaba-MIIL/ASL#53). The reference implementation sums (``reduction="sum"`` matches it).

    Args:
        gamma_pos: focusing exponent of the positive term, >= 0 (the paper uses 0).
        gamma_neg: focusing exponent of the negative term, >= 0 (the paper uses 4).
        clip: probability margin ``m`` in [0, 1) shifting the negatives (the paper uses 0.05).
        reduction: ``"mean"`` over elements, ``"sum"``, or ``"none"`` (the input's shape).
        impl: ``"auto"``, ``"compiled"`` or ``"eager"``, as for :class:`FocalLoss`.

    Example::

        >>> import torch
        >>> asl = AsymmetricLoss()
        >>> asl(torch.tensor([[4.0, -3.0, -1.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
        tensor(0.0062)
    """

    contract: ClassVar[Contract] = Contract("logits", "binary", "same")
    loss_name: ClassVar[str] = "asymmetric"

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        reduction: Reduction = "mean",
        impl: Impl = "auto",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.gamma_pos = _check_number(owner, "gamma_pos", gamma_pos, low=0.0)
        self.gamma_neg = _check_number(owner, "gamma_neg", gamma_neg, low=0.0)
        self.clip = _check_number(owner, "clip", clip, low=0.0, high=1.0)
        if self.clip == 1.0:
            raise ConfigError(f"{owner}: clip must be below 1 (it discards every negative)")
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.impl: Impl = _kernels.check_impl(owner, impl)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        return _kernels.elementwise_loss(
            _kernels.ASYMMETRIC,
            input,
            as_float_target(target, input),
            (self.gamma_pos, self.gamma_neg, self.clip),
            self.reduction,
            self.impl,
        )

    def extra_repr(self) -> str:
        return (
            f"gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, clip={self.clip}, "
            f"reduction={self.reduction!r}"
        )


@register("hinge", family=_FAMILY, aliases=("binary_hinge",))
class HingeLoss(ContractedLoss, nn.Module):
    """Binary hinge loss ``max(0, margin - s * x)`` on raw scores, with ``s = 2t - 1``.

    Targets are hard 0/1 labels of the input's shape (floats), the same targets as
    ``bce_with_logits`` and ``focal`` take, so one batch feeds all three; they are checked to be
    exactly 0 or 1 (a -1 gets a hint to map +-1 labels with ``(y + 1) / 2``). ``squared_hinge``
    squares the hinge.

    Args:
        margin: the margin, > 0.
        reduction: ``"mean"`` over elements, ``"sum"``, or ``"none"`` (the input's shape).

    Example::

        >>> import torch
        >>> hinge = HingeLoss()
        >>> hinge(torch.tensor([2.0, 0.5, -0.5]), torch.tensor([1.0, 1.0, 1.0]))
        tensor(0.6667)
    """

    contract: ClassVar[Contract] = Contract("values", "hard_binary", "same")
    loss_name: ClassVar[str] = "hinge"
    squared: ClassVar[bool] = False

    def __init__(
        self, margin: float = 1.0, reduction: Reduction = "mean", check: Check = "first"
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.margin = _check_number(owner, "margin", margin, low=0.0, low_open=True)
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        x = input.to(compute_dtype(input.dtype))
        sign = 2 * target.to(x.dtype) - 1
        loss = (self.margin - sign * x).clamp_min(0)
        if self.squared:
            loss = loss.square()
        if self.reduction == "none":
            return loss.to(input.dtype)
        return _reduce(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


@register("squared_hinge", family=_FAMILY, aliases=("binary_squared_hinge",))
class SquaredHingeLoss(HingeLoss):
    """Binary squared hinge loss ``max(0, margin - s * x) ** 2``, ``s = 2t - 1``, 0/1 targets.

    Example::

        >>> import torch
        >>> SquaredHingeLoss()(torch.tensor([2.0, 0.5, -0.5]), torch.tensor([1.0, 1.0, 0.0]))
        tensor(0.1667)
    """

    loss_name: ClassVar[str] = "squared_hinge"
    squared: ClassVar[bool] = True


@register("multiclass_hinge", family=_FAMILY, aliases=("crammer_singer",))
class MulticlassHingeLoss(ContractedLoss, nn.Module):
    """Multi-class hinge loss of Crammer and Singer: ``max(0, margin + max_{j != t} x_j - x_t)``.

    One hinge per position, on the best wrong class (``torch.nn.MultiMarginLoss``, registered as
    ``multi_margin``, is the other convention: the mean over all wrong classes of their hinges).
    Input ``(N, C, *S)`` raw scores, target ``(N, *S)`` class indices. ``multiclass_squared_hinge``
    squares the hinge.

    Args:
        margin: the margin, > 0.
        weight: per-class weights ``(C,)``: each position's loss is multiplied by the weight of
            its target class and ``"mean"`` divides by the sum of those weights.
        ignore_index: target value of positions that do not count (``None``: all count). With
            none counting, ``"mean"`` is 0.
        reduction: ``"mean"`` (weighted, as above), ``"sum"``, or ``"none"`` (the target's shape).

    Example::

        >>> import torch
        >>> hinge = MulticlassHingeLoss()
        >>> scores = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
        >>> hinge(scores, torch.tensor([0, 1]))
        tensor(0.7500)
    """

    contract: ClassVar[Contract] = Contract("logits", "class_indices", "class_dim")
    loss_name: ClassVar[str] = "multiclass_hinge"
    squared: ClassVar[bool] = False
    weight: Tensor | None

    def __init__(
        self,
        margin: float = 1.0,
        weight: Sequence[float] | Tensor | None = None,
        ignore_index: int | None = -100,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.margin = _check_number(owner, "margin", margin, low=0.0, low_open=True)
        self.ignore_index = ignore_index
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.register_buffer("weight", _class_weight(owner, weight))
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target, ignore_index=self.ignore_index)
        name = self.display_name
        _check_class_scores(name, input, "scores")
        _check_two_classes(name, input, "a multi-class hinge needs at least two classes")
        _check_weight_fits(name, self.weight, input)
        x = input.to(compute_dtype(input.dtype))
        safe, wt = _target_weights(target, self.weight, self.ignore_index, x.dtype)
        index = safe.unsqueeze(1)
        true_score = x.gather(1, index).squeeze(1)
        best_other = x.scatter(1, index, -math.inf).amax(1)
        loss = (self.margin + best_other - true_score).clamp_min(0)
        if self.squared:
            loss = loss.square()
        return _reduce_positions(loss * wt, wt, self.reduction, input.dtype)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"
        )


@register("multiclass_squared_hinge", family=_FAMILY)
class MulticlassSquaredHingeLoss(MulticlassHingeLoss):
    """Squared Crammer-Singer hinge: ``max(0, margin + max_{j != t} x_j - x_t) ** 2``.

    Example::

        >>> import torch
        >>> hinge = MulticlassSquaredHingeLoss()
        >>> hinge(torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.5, 1.0]]), torch.tensor([0, 1]))
        tensor(1.1250)
    """

    loss_name: ClassVar[str] = "multiclass_squared_hinge"
    squared: ClassVar[bool] = True


@register("soft_target_cross_entropy", family=_FAMILY, aliases=("soft_ce",))
class SoftTargetCrossEntropyLoss(ContractedLoss, nn.Module):
    """Cross-entropy of logits against target distributions (mixup, cutmix, label smoothing).

    Per position ``-sum_c weight[c] * t'_c * log_softmax(x)_c`` with the smoothed target
    ``t' = (1 - label_smoothing) * t + label_smoothing / C``, over the classes along dim 1: the
    same values as ``F.cross_entropy`` with probability targets, but the targets are checked to
    be distributions (in [0, 1], summing to 1 over dim 1) and the input not to be one.

    Args:
        label_smoothing: in [0, 1]: the mass moved to the uniform distribution.
        weight: per-class weights ``(C,)`` multiplying each class's term; ``"mean"`` averages
            over positions (``F.cross_entropy`` with probability targets does the same).
        reduction: ``"mean"`` over positions, ``"sum"``, or ``"none"`` (shape ``(N, *S)``).

    Example::

        >>> import torch
        >>> ce = SoftTargetCrossEntropyLoss(label_smoothing=0.1)
        >>> ce(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.7, 0.3, 0.0]]))
        tensor(0.8765)
    """

    contract: ClassVar[Contract] = Contract("logits", "probabilities", "same")
    loss_name: ClassVar[str] = "soft_target_cross_entropy"
    weight: Tensor | None

    def __init__(
        self,
        label_smoothing: float = 0.0,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.label_smoothing = _check_number(
            owner, "label_smoothing", label_smoothing, low=0.0, high=1.0
        )
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.register_buffer("weight", _class_weight(owner, weight))
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        name = self.display_name
        if not target.is_floating_point() and not target.is_complex():
            raise LossInputError(
                f"{name}: target has dtype {str(target.dtype).removeprefix('torch.')}, expected "
                "float distributions of the input's shape; for class indices use "
                "'cross_entropy', or one-hot them: F.one_hot(target, C).movedim(-1, 1).float()"
            )
        self.check_inputs(input, target)
        _check_class_scores(name, input, "logits")
        _check_weight_fits(name, self.weight, input)
        x = input.to(compute_dtype(input.dtype))
        t = target.to(x.dtype)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / x.shape[1]
        if self.weight is not None:
            t = t * self.weight.to(x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))
        loss = -(t * F.log_softmax(x, 1)).sum(1)
        if self.reduction == "none":
            return loss.to(input.dtype)
        return _reduce(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"


@register("distillation_kl", family=_FAMILY, aliases=("kd", "kd_kl", "knowledge_distillation"))
class DistillationKLLoss(ContractedLoss, nn.Module):
    """Knowledge-distillation loss (Hinton et al. 2015): ``T^2 KL(teacher_T || student_T)``.

    ``input`` is the student's logits and ``target`` the teacher's, both ``(N, C, *S)`` with the
    classes along dim 1; both are softened by the temperature ``T`` (``softmax(z / T)``) and the
    KL divergence of the student's from the teacher's distribution is multiplied by ``T^2`` so
    that its gradient keeps the scale of a hard-label loss as ``T`` changes. The teacher's logits
    are used as given: detach them (``teacher.detach()``) unless the teacher should learn too.

    Args:
        temperature: the softening temperature ``T`` > 0 (values of 1 to 4 are common).
        reduction: ``"mean"`` over positions (``KLDivLoss``'s ``"batchmean"`` for ``(N, C)``),
            ``"sum"``, or ``"none"`` (shape ``(N, *S)``).

    Example::

        >>> import torch
        >>> kd = DistillationKLLoss(temperature=2.0)
        >>> student = torch.tensor([[1.0, 0.0, -1.0]])
        >>> kd(student, torch.tensor([[2.0, 0.5, -1.0]]))
        tensor(0.0674)
        >>> kd(student, student)
        tensor(0.)
    """

    contract: ClassVar[Contract] = Contract("logits", "logits", "same")
    loss_name: ClassVar[str] = "distillation_kl"

    def __init__(
        self, temperature: float = 1.0, reduction: Reduction = "mean", check: Check = "first"
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = _check_number(owner, "temperature", temperature, low=0, low_open=True)
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        _check_class_scores(self.display_name, input, "student logits")
        dtype = compute_dtype(torch.promote_types(input.dtype, target.dtype))
        temperature = self.temperature
        log_student = F.log_softmax(input.to(dtype) / temperature, 1)
        log_teacher = F.log_softmax(target.to(dtype) / temperature, 1)
        kl = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(1)
        loss = kl * temperature**2
        if self.reduction == "none":
            return loss.to(input.dtype)
        return _reduce(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


@register("z_loss", family=_FAMILY)
class ZLoss(ContractedLoss, nn.Module):
    """The z-loss of PaLM (Chowdhery et al. 2022): ``logsumexp(logits) ** 2`` per position.

    It keeps the softmax normaliser ``log Z`` near 0, which stabilises large-vocabulary training.
    It takes the logits alone: ``lk.Term("z_loss", input="logits", weight=1e-4)`` (PaLM's
    coefficient goes in the term's weight, not in the loss).

    Args:
        dim: the class dimension of the logits (1, as everywhere in the catalogue; -1 for
            language-model logits ``(B, T, V)``).
        reduction: ``"mean"`` over positions, ``"sum"``, or ``"none"`` (the input without
            ``dim``).

    Example::

        >>> import torch
        >>> ZLoss()(torch.zeros(2, 4))
        tensor(1.9218)
    """

    contract: ClassVar[Contract] = Contract("logits", "any", "class_dim")
    loss_name: ClassVar[str] = "z_loss"

    def __init__(self, dim: int = 1, reduction: Reduction = "mean", check: Check = "first") -> None:
        super().__init__()
        self.dim = dim
        self.reduction: Reduction = _kernels.check_reduction(type(self).__name__, reduction)
        self.__dict__["contract"] = Contract("logits", "any", "class_dim", class_dim=dim)
        self._init_check(check)

    def forward(self, input: Tensor) -> Tensor:
        if not -input.ndim <= self.dim < input.ndim or input.ndim < 2:
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, expected logits "
                f"with the classes along dim {self.dim} and at least one other dim"
            )
        self.check_inputs(input)
        loss = torch.logsumexp(input.to(compute_dtype(input.dtype)), self.dim).square()
        if self.reduction == "none":
            return loss.to(input.dtype)
        return _reduce(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, reduction={self.reduction!r}"
