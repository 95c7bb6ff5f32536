"""Lovász losses: convex surrogates of the Jaccard loss (Berman et al., 2018), any spatial rank.

The Lovász extension of the Jaccard loss of one class is ``sum_k e_(k) g_k``: the errors sorted
in decreasing order, times the increments ``g`` of the Jaccard loss along that order. Both losses
here sort all samples and classes at once (one batched sort, no loop over classes or images:
kornia/kornia#2884) over the flattened spatial positions, so inputs ``(N, C, *spatial)`` of any
rank (1D signals, images, 3D volumes) are scored alike.

- :class:`LovaszHingeLoss` scores binary (or multi-label) logits through hinge errors
  ``1 - z (2 t - 1)``.
- :class:`LovaszSoftmaxLoss` scores softmax probabilities against class indices through the
  errors ``|[y = c] - p_c|``.

``ignore_index`` removes positions from the sort and from the Jaccard counts
(kornia/kornia#3034: peers lack it); ``weight``, ``batch``, ``classes`` and ``reduction`` mean
what they mean for the Dice family (:mod:`losskit.losses._segmentation`). The sort runs in
float32 for half-precision inputs.

Example::

    >>> import torch
    >>> from losskit.losses._lovasz import LovaszSoftmaxLoss
    >>> logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)  # 3D volumes
    >>> target = torch.randint(0, 3, (2, 4, 4, 4))
    >>> LovaszSoftmaxLoss()(logits, target).backward()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losskit.losses._overlap import (
    ClassSelection,
    Mode,
    Reduction,
    SegmentationLoss,
    compute_dtype,
)
from losskit.losses.contracts import Check
from losskit.losses.registry import register

__all__ = ["LovaszHingeLoss", "LovaszSoftmaxLoss"]

ClassWeight = Tensor | list[float] | tuple[float, ...] | None


def lovasz_gradient(foreground: Tensor) -> Tensor:
    """Increments of the Jaccard loss along sorted positions (last dim), Berman's Algorithm 1.

    ``foreground`` holds the sorted 0/1 labels; the union is at least 1 at every position, so
    the result is finite even for an empty foreground.

    Example::

        >>> lovasz_gradient(torch.tensor([1.0, 0.0, 1.0]))
        tensor([0.5000, 0.1667, 0.3333])
    """
    total = foreground.sum(-1, keepdim=True)
    intersection = foreground.cumsum(-1).neg_().add_(total)
    # total + the background so far = intersection + the positions so far: one cumsum, not two.
    seen = torch.arange(1, foreground.shape[-1] + 1, dtype=foreground.dtype, device=total.device)
    # The increments of the Jaccard loss 1 - r are those of -r, r = I / U: in place, no copies.
    ratio = intersection.div_(intersection + seen)
    increments = torch.empty_like(ratio)
    torch.sub(ratio[..., :-1], ratio[..., 1:], out=increments[..., 1:])
    increments[..., :1] = 1.0 - ratio[..., :1]
    return increments


class _LovaszExtension(torch.autograd.Function):
    """``sum_k e_(k) g_k`` over the last dim, with the gradient ``g`` scattered back.

    The increments ``g`` are piecewise constant in the errors, so the gradient in the errors is
    ``g`` (times the hinge's and the mask's 0/1) put back in place by one scatter: no autograd
    through the sort, the gathers and the product, and only the order and ``g`` are kept.
    """

    @staticmethod
    def forward(
        ctx: Any, errors: Tensor, foreground: Tensor, valid: Tensor | None, hinge: bool
    ) -> Tensor:
        keys = errors if valid is None else errors.masked_fill(~valid, float("-inf"))
        sorted_errors, order = keys.sort(-1, descending=True)
        left_out = None
        if valid is not None:  # sorted last; they add nothing and take no gradient
            left_out = sorted_errors == float("-inf")
            sorted_errors.masked_fill_(left_out, 0.0)
        increments = lovasz_gradient(foreground.gather(-1, order).to(errors.dtype))
        if hinge:  # relu: no gradient where the error is clipped (nor where left out, at 0)
            increments.masked_fill_(sorted_errors <= 0, 0.0)
            sorted_errors.clamp_min_(0.0)
        elif left_out is not None:
            increments.masked_fill_(left_out, 0.0)
        ctx.save_for_backward(order, increments)
        ctx.shape = errors.shape
        return (sorted_errors * increments).sum(-1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        order, increments = ctx.saved_tensors
        spread = increments * grad.unsqueeze(-1)
        return spread.new_zeros(ctx.shape).scatter_(-1, order, spread), None, None, None


def lovasz_extension(
    errors: Tensor, foreground: Tensor, valid: Tensor | None, *, hinge: bool
) -> Tensor:
    """The Lovász extension of the Jaccard loss over the last dim: ``(..., S) -> (...)``.

    ``valid`` (broadcastable to ``errors``) marks positions that count; the others sort last
    and add nothing. ``hinge`` clips the errors at 0 (Lovász hinge). ``foreground`` (0/1, bool
    or float) is not differentiated.
    """
    if valid is not None:
        valid = valid.expand(errors.shape)
    out: Tensor = _LovaszExtension.apply(  # type: ignore[no-untyped-call]
        errors, foreground.expand(errors.shape), valid, hinge
    )
    return out


def _pool(t: Tensor) -> Tensor:
    """``(N, C, S)`` -> ``(C, N * S)``: the batch as one volume."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


@register(
    "lovasz_hinge",
    family="segmentation",
    description="Lovász hinge: convex surrogate of the binary Jaccard loss on logits, any rank.",
)
class LovaszHingeLoss(SegmentationLoss):
    """Lovász hinge loss of binary (or per-channel multi-label) logits against 0/1 targets.

    Each sample and channel is scored on its own (``batch=True``: the batch as one volume), and
    its loss is the Lovász extension of ``1 - IoU`` at the hinge errors ``1 - z (2 t - 1)``:
    logits of the right sign and magnitude at least 1 give 0. The input is logits (a hinge on
    probabilities makes no sense), ``target`` a float 0/1 tensor of the input's shape.

    Args:
        mode: ``"binary"`` (one channel) or ``"multilabel"`` (independent channels).
        ignore_index: target value of positions left out (e.g. 255).
        weight: per-channel weights ``(C,)``; a sample's loss is ``sum_c w_c l_c / sum_c w_c``.
        batch: sort the whole batch as one volume (Berman's ``per_image=False``).
        classes: average over ``"all"`` channels or those ``"present"`` in the target.
        reduction: ``"mean"`` / ``"sum"`` over samples, or ``"none"``: ``(N, C)`` (``(C,)``).

    Example::

        >>> import torch
        >>> target = torch.tensor([[[1.0, 0.0, 1.0]]])  # (N=1, C=1, S=3)
        >>> LovaszHingeLoss()(torch.tensor([[[3.0, -3.0, 2.0]]]), target)
        tensor(0.)
        >>> LovaszHingeLoss()(torch.tensor([[[3.0, 1.0, 2.0]]]), target)
        tensor(0.6667)
    """

    loss_name = "lovasz_hinge"
    modes = ("binary", "multilabel")

    def __init__(
        self,
        mode: Mode = "binary",
        *,
        ignore_index: int | None = None,
        weight: ClassWeight = None,
        batch: bool = False,
        classes: ClassSelection = "all",
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            mode,
            ignore_index=ignore_index,
            weight=weight,
            batch=batch,
            classes=classes,
            reduction=reduction,
            check=check,
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The Lovász hinge loss of logits ``input`` against 0/1 ``target``."""
        self.checked(input, target)
        n, c = input.shape[:2]
        z = input.reshape(n, c, -1).to(compute_dtype(input))
        t = target.reshape(n, c, -1).to(z.dtype)
        valid = None if self.ignore_index is None else target.reshape(n, c, -1) != self.ignore_index
        if valid is not None:
            t = t.masked_fill(~valid, 0.0)
        errors = 1.0 - z * (2.0 * t - 1.0)
        if self.batch:
            errors, t = _pool(errors), _pool(t)
            valid = None if valid is None else _pool(valid)
        losses = lovasz_extension(errors, t, valid, hinge=True)
        return self.reduce(losses, t.sum(-1) > 0)


@register(
    "lovasz_softmax",
    family="segmentation",
    description="Lovász-softmax: convex surrogate of the per-class Jaccard loss, any rank.",
)
class LovaszSoftmaxLoss(SegmentationLoss):
    """Lovász-softmax loss of class logits against class indices, per sample and class.

    The errors ``|[y = c] - p_c|`` of the softmax probabilities ``p`` (or of given
    probabilities, ``from_logits=False``) enter the Lovász extension of each class's Jaccard
    loss. A class absent from a sample's target scores its largest probability there; with the
    default ``classes="present"`` (Berman's reference code) such classes leave the average, with
    ``"all"`` (kornia's convention) they stay. A sample without any present class scores 0.

    Args:
        ignore_index: class index of positions left out (e.g. 255); never one-hot encoded.
        weight: per-class weights ``(C,)``; a sample's loss is ``sum_c w_c l_c / sum_c w_c``.
        include_background: ``False`` gives class 0 weight 0.
        batch: sort the whole batch as one volume (Berman's ``per_image=False``).
        classes: ``"present"`` (default) or ``"all"``.
        reduction: ``"mean"`` / ``"sum"`` over samples, or ``"none"``: ``(N, C)`` (``(C,)``).

    Example::

        >>> import torch
        >>> logits = torch.tensor([[[20.0, -20.0], [-20.0, 20.0]]])  # (N=1, C=2, S=2)
        >>> LovaszSoftmaxLoss()(logits, torch.tensor([[0, 1]])).item() < 1e-6
        True
        >>> LovaszSoftmaxLoss(ignore_index=255)(logits, torch.tensor([[1, 255]])).item()
        1.0
    """

    loss_name = "lovasz_softmax"
    modes = ("multiclass",)

    def __init__(
        self,
        *,
        from_logits: bool = True,
        ignore_index: int | None = None,
        weight: ClassWeight = None,
        include_background: bool = True,
        batch: bool = False,
        classes: ClassSelection = "present",
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            "multiclass",
            from_logits=from_logits,
            ignore_index=ignore_index,
            weight=weight,
            include_background=include_background,
            batch=batch,
            classes=classes,
            reduction=reduction,
            check=check,
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The Lovász-softmax loss of logits (or probabilities) ``input`` against indices."""
        self.checked(input, target)
        n, c = input.shape[:2]
        x = input.reshape(n, c, -1)
        dtype = compute_dtype(input)
        p = torch.softmax(x, 1, dtype=dtype) if self.from_logits else x.to(dtype)
        y = target.reshape(n, 1, -1)
        valid = None if self.ignore_index is None else y != self.ignore_index
        classes = torch.arange(c, device=y.device).view(1, c, 1)
        # A comparison, not one_hot: an ignore label such as 255 is never used as an index.
        foreground = y == classes
        if valid is not None:
            valid = valid.expand(n, c, -1)
            foreground = foreground & valid
        errors = torch.where(foreground, 1.0 - p, p)
        fg = foreground
        if self.batch:
            errors, fg = _pool(errors), _pool(fg)
            valid = None if valid is None else _pool(valid)
        losses = lovasz_extension(errors, fg, valid, hinge=False)
        return self.reduce(losses, fg.any(-1))
