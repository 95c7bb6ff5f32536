"""Matthews correlation coefficient loss (Abhishek & Hamarneh 2021): ``1 - MCC`` of soft counts.

Registry name ``mcc`` (alias ``matthews``), family ``"segmentation"``. The modes, activations,
``weight``, ``include_background`` and reductions are those of the Dice family
(:mod:`losskit.losses._segmentation`): ``reduction="none"`` gives the per-class losses ``(N, C)``.
MONAI's ``MCCLoss`` computes the same value (its ``sigmoid=True`` / ``softmax=True`` are this
loss's ``mode="multilabel"`` / ``"multiclass"``; its ``to_onehot_y`` is implied by class-index
targets).

Example::

    >>> import torch
    >>> from losskit import losses
    >>> mcc = losses.get("mcc", mode="binary", from_logits=False)
    >>> target = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    >>> float(mcc(target, target))
    0.0
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from losskit.errors import LossInputError
from losskit.losses._class_maps import class_maps
from losskit.losses._overlap import Mode, Reduction, SegmentationLoss
from losskit.losses.contracts import Check
from losskit.losses.registry import register

__all__ = ["MCCLoss"]


@register("mcc", family="segmentation", aliases=("matthews",))
class MCCLoss(SegmentationLoss):
    """Matthews correlation loss ``1 - (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``.

    The counts are soft sums over the positions of each sample and class (``TP = sum p t``, ...).
    A perfect prediction (``FP = FN = 0``) scores 0 even when a class is empty, where the ratio
    would read 0 / 0.

    Args:
        mode: ``"multiclass"`` (softmax, class-index target), ``"multilabel"`` (sigmoid per
            channel, float target of the input's shape) or ``"binary"`` (one channel).
        from_logits: ``False`` for inputs that already are probabilities.
        weight: per-class weights ``(C,)``; ``include_background=False`` gives class 0 weight 0.
        batch: sum the counts over the batch and score it as one set (per-class losses ``(C,)``);
            the way to score classification outputs ``(N, C)``, one position per sample.
        smooth_nr: added to the numerator (MONAI's default).
        smooth_dr: added to the denominator, under the root (MONAI's default).
        reduction: ``"mean"`` or ``"sum"`` over samples, or ``"none"``: per-class ``(N, C)``.

    Example::

        >>> import torch
        >>> loss = MCCLoss(mode="binary", from_logits=False, reduction="none")
        >>> # TP 1.5, FP 0.3, FN 0.5, TN 1.7: 1 - (2.55 - 0.15) / sqrt(1.8 * 2 * 2 * 2.2)
        >>> loss(torch.tensor([[[0.9, 0.2, 0.6, 0.1]]]), torch.tensor([[[1.0, 0.0, 1.0, 0.0]]]))
        tensor([[0.3970]])
    """

    loss_name: ClassVar[str] = "mcc"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        from_logits: bool = True,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
        include_background: bool = True,
        batch: bool = False,
        smooth_nr: float = 0.0,
        smooth_dr: float = 1e-5,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            mode,
            from_logits=from_logits,
            weight=weight,
            include_background=include_background,
            batch=batch,
            reduction=reduction,
            check=check,
        )
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.checked(input, target)
        p, t = class_maps(self, input, target)
        if self.batch:  # (C, N * positions): the batch scored as one volume
            p, t = (
                p.transpose(0, 1).reshape(p.shape[1], -1),
                t.transpose(0, 1).reshape(t.shape[1], -1),
            )
        elif p.ndim == 2:
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, one position per "
                "sample and class, where MCC is undefined (constant, zero gradient); score the "
                "batch as one set with batch=True, or give (N, C, *spatial) maps"
            )
        else:
            p, t = p.reshape(*p.shape[:2], -1), t.reshape(*t.shape[:2], -1)  # (N, C, positions)
        tp, fp = (p * t).sum(-1), (p * (1 - t)).sum(-1)
        fn, tn = ((1 - p) * t).sum(-1), ((1 - p) * (1 - t)).sum(-1)
        numerator = tp * tn - fp * fn + self.smooth_nr
        denominator = torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn) + self.smooth_dr)
        loss = torch.where((fp == 0) & (fn == 0), 0.0, 1 - numerator / denominator)
        return self.reduce(loss, torch.ones_like(loss))
