"""Total variation: a smoothness regulariser of one image tensor, no target.

Registry name ``total_variation`` (alias ``tv``), family ``"image"``. The input is
``(N, C, *spatial)`` of one or more spatial dims; each sample's value sums the absolute
differences of neighbouring positions along every spatial dim, over its channels (anisotropic
TV). kornia's ``total_variation(img, reduction="sum")`` returns the same sums per channel
``(N, C)``; with ``normalize=True`` each dim's differences are averaged instead (kornia's
``reduction="mean"``).

Example::

    >>> import torch
    >>> from losskit import losses
    >>> tv = losses.get("tv", reduction="none")
    >>> tv(torch.tensor([[[[0.0, 1.0], [3.0, 1.0]]]]))  # |1-0| + |1-3| + |3-0| + |1-1|
    tensor([6.])
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from losskit.errors import LossInputError
from losskit.losses._elementwise import Reduction, check_reduction, compute_dtype
from losskit.losses.contracts import Check, Contract, ContractedLoss
from losskit.losses.registry import register

__all__ = ["TotalVariationLoss"]


@register("total_variation", family="image", aliases=("tv",))
class TotalVariationLoss(ContractedLoss, nn.Module):
    """Anisotropic total variation ``sum_d sum |x[i + e_d] - x[i]|`` per sample.

    Args:
        normalize: average each spatial dim's absolute differences (per channel, then summed
            over dims and channels) instead of summing them: independent of the image size.
        reduction: ``"mean"`` or ``"sum"`` over samples, or ``"none"`` ``(N,)``.

    Example::

        >>> import torch
        >>> TotalVariationLoss()(torch.ones(2, 3, 4, 4))
        tensor(0.)
    """

    contract: ClassVar[Contract] = Contract("values", "any", "any")
    loss_name: ClassVar[str] = "total_variation"

    def __init__(
        self, normalize: bool = False, reduction: Reduction = "mean", check: Check = "first"
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.reduction: Reduction = check_reduction(type(self).__name__, reduction)
        self._init_check(check)

    def forward(self, input: Tensor) -> Tensor:
        self.check_inputs(input)
        if input.ndim < 3:
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, expected images "
                "(N, C, *spatial) with at least one spatial dim"
            )
        x = input.to(compute_dtype(input.dtype))
        total = x.new_zeros(x.shape[0])
        for d in range(2, x.ndim):
            diff = x.diff(dim=d).abs().flatten(2)  # (N, C, positions)
            per_channel = diff.mean(-1) if self.normalize and diff.shape[-1] else diff.sum(-1)
            total = total + per_channel.sum(1)
        if self.reduction == "none":
            return total.to(input.dtype)
        return total.mean() if self.reduction == "mean" else total.sum()

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}, reduction={self.reduction!r}"
