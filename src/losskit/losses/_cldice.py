"""Soft clDice (Shit et al. 2021, "clDice - a Novel Topology-Preserving Loss Function for
Tubular Structure Segmentation"): Dice of each mask's soft skeleton against the other mask.

Registry name ``cldice`` (alias ``soft_cldice``), family ``"segmentation"``. Inputs as for the
Dice family (2D or 3D ``(N, C, H, W[, D])``; modes ``"multiclass"``, ``"multilabel"``,
``"binary"``), per-class losses ``(N, C)`` with ``reduction="none"``. MONAI's
``SoftclDiceLoss`` pools every channel of a sample into one score: for one channel (or each
channel taken on its own) the two agree. Pair it with a Dice term in a
:class:`~losskit.Criterion` (MONAI's ``SoftDiceclDiceLoss`` is their weighted sum).

Example::

    >>> import torch
    >>> from losskit import losses
    >>> vessel = torch.zeros(1, 1, 7, 7)
    >>> vessel[..., 3, :] = 1.0
    >>> round(float(losses.get("cldice", mode="binary", from_logits=False)(vessel, vessel)), 4)
    0.0
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.errors import ConfigError, LossInputError
from losskit.losses._class_maps import class_maps
from losskit.losses._overlap import Mode, Reduction, SegmentationLoss
from losskit.losses.contracts import Check
from losskit.losses.registry import register

__all__ = ["SoftClDiceLoss"]


def _erode(x: Tensor) -> Tensor:
    """Soft erosion: the minimum over the cross-shaped neighbourhood (one axis at a time)."""
    ndim = x.ndim - 2
    pool = F.max_pool2d if ndim == 2 else F.max_pool3d
    out = None
    for d in range(ndim):
        size, pad = [1] * ndim, [0] * ndim
        size[d], pad[d] = 3, 1
        eroded = -pool(-x, size, 1, pad)
        out = eroded if out is None else torch.minimum(out, eroded)
    assert out is not None
    return out


def _open(x: Tensor) -> Tensor:
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(_erode(x), 3, 1, 1)


def soft_skeleton(x: Tensor, iterations: int) -> Tensor:
    """The soft skeleton of maps ``(N, C, H, W[, D])`` in [0, 1] (the paper's Algorithm 1).

    Example::

        >>> import torch
        >>> bar = torch.zeros(1, 1, 5, 5)
        >>> bar[..., 1:4, :] = 1.0  # a bar three pixels thick: its skeleton is the middle row
        >>> soft_skeleton(bar, 3)[0, 0, :, 2].tolist()
        [0.0, 0.0, 1.0, 0.0, 0.0]
    """
    skeleton = F.relu(x - _open(x))
    for _ in range(iterations):
        x = _erode(x)
        delta = F.relu(x - _open(x))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


@register("cldice", family="segmentation", aliases=("soft_cldice",))
class SoftClDiceLoss(SegmentationLoss):
    """Soft clDice loss ``1 - 2 Tprec Tsens / (Tprec + Tsens)`` per sample and class.

    ``Tprec = (sum S(p) t + s_nr) / (sum S(p) + s_dr)`` (the predicted skeleton inside the
    target) and ``Tsens = (sum S(t) p + s_nr) / (sum S(t) + s_dr)`` (the target's skeleton
    inside the prediction), ``S`` the soft skeleton of ``iterations`` erosions.

    Args:
        iterations: erosions of the soft skeleton (MONAI's ``iter_``); at least the largest
            half-thickness of the structures.
        smooth_nr: added to the two ratios' numerators (MONAI's default).
        smooth_dr: added to the two ratios' denominators (MONAI's default).
        mode: as for :class:`~losskit.losses.DiceLoss`.
        from_logits: as for :class:`~losskit.losses.DiceLoss`.
        weight: as for :class:`~losskit.losses.DiceLoss`.
        include_background: as for :class:`~losskit.losses.DiceLoss`.
        reduction: as for :class:`~losskit.losses.DiceLoss`.

    Example::

        >>> import torch
        >>> loss = SoftClDiceLoss(mode="binary", from_logits=False)
        >>> target = torch.zeros(1, 1, 7, 7)
        >>> target[..., 3, :] = 1.0
        >>> broken = target.clone()
        >>> broken[..., 3, 3] = 0.0  # the prediction breaks the vessel
        >>> float(loss(broken, target)) > 0.05
        True
    """

    loss_name: ClassVar[str] = "cldice"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        iterations: int = 3,
        from_logits: bool = True,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
        include_background: bool = True,
        smooth_nr: float = 1.0,
        smooth_dr: float = 1.0,
        smooth: float = 1e-4,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            mode,
            from_logits=from_logits,
            weight=weight,
            include_background=include_background,
            reduction=reduction,
            check=check,
        )
        if not isinstance(iterations, int) or iterations < 0:
            raise ConfigError(f"SoftClDiceLoss: iterations must be an int >= 0, got {iterations!r}")
        if not float(smooth) > 0:
            raise ConfigError(f"SoftClDiceLoss: smooth must be > 0, got {smooth!r}")
        self.iterations = iterations
        self.smooth_nr, self.smooth_dr, self.smooth = (
            float(smooth_nr),
            float(smooth_dr),
            float(smooth),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if input.ndim not in (4, 5):
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, expected a 2D "
                "(N, C, H, W) or 3D (N, C, H, W, D) batch"
            )
        self.checked(input, target)
        p, t = class_maps(self, input, target)
        skel_p, skel_t = soft_skeleton(p, self.iterations), soft_skeleton(t, self.iterations)
        dims = tuple(range(2, p.ndim))
        tprec = ((skel_p * t).sum(dims) + self.smooth_nr) / (skel_p.sum(dims) + self.smooth_dr)
        tsens = ((skel_t * p).sum(dims) + self.smooth_nr) / (skel_t.sum(dims) + self.smooth_dr)
        loss = 1 - 2 * tprec * tsens / (tprec + tsens + self.smooth)
        return self.reduce(loss, torch.ones_like(loss))

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, " + super().extra_repr()
