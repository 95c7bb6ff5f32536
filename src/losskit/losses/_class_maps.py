"""Per-class probability and target maps ``(N, C, *spatial)`` for the losses that compare images
of each class (MCC, Hausdorff, clDice) rather than the Dice family's three sums."""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.losses._elementwise import compute_dtype
from losskit.losses._overlap import SegmentationLoss

__all__ = ["class_maps"]


def class_maps(loss: SegmentationLoss, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The activated input and the float target, both ``(N, C, *spatial)``, in float32 or wider.

    ``mode="multiclass"`` applies a softmax over dim 1 (unless ``from_logits=False``) and one-hot
    encodes the class indices; the other modes a sigmoid and the float target as it is.

    Example::

        >>> import torch
        >>> from losskit.losses import MCCLoss
        >>> p, t = class_maps(MCCLoss(), torch.zeros(1, 2, 3), torch.tensor([[0, 1, 1]]))
        >>> p[0, 0].tolist(), t[0, 1].tolist()
        ([0.5, 0.5, 0.5], [0.0, 1.0, 1.0])
    """
    dtype = compute_dtype(input.dtype)
    if loss.mode == "multiclass":
        p = torch.softmax(input, 1, dtype=dtype) if loss.from_logits else input.to(dtype)
        # A scatter into zeros: no int64 one-hot of twice the float one's size.
        t = torch.zeros_like(p).scatter_(1, target.unsqueeze(1), 1.0)
        return p, t
    p = torch.sigmoid(input.to(dtype)) if loss.from_logits else input.to(dtype)
    return p, target.to(dtype)
