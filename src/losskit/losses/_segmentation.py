"""The Dice family of overlap losses: Dice, generalized Dice, soft Jaccard, Tversky, focal-Tversky.

Every loss takes ``input`` of shape ``(N, C, *spatial)`` of any spatial rank (1D, 2D, 3D, ...)
and names its activation: ``mode="multiclass"`` (the default) takes logits, a softmax over ``C``
and int64 class indices ``(N, *spatial)``; ``mode="multilabel"`` a sigmoid per channel and a
0/1 target of the input's shape (float, or integer and bool cast as kornia does);
``mode="binary"`` the same with one channel. ``from_logits=False`` takes probabilities instead
and applies no activation; ``activation=`` picks another (``"softmax"``, ``"sigmoid"``,
``"none"`` or a callable, MONAI's ``other_act``) while the mode still says what the target is.

For each sample ``n`` and class ``c`` the losses read three sums over the positions that are not
ignored: the intersection ``I = sum p t``, the predicted mass ``P = sum p`` and the target size
``T = sum t``. Conventions shared by the family:

- ``ignore_index``: positions whose target equals it count in none of the sums (intersection and
  cardinality alike); an ignore label such as 255 is never one-hot encoded.
- ``weight`` ``(C,)``: one weight per class of the input, the background included, always with
  the same meaning: a sample's loss is ``sum_c w_c loss_c / sum_c w_c``.
- ``include_background=False`` gives class 0 weight 0 (its column stays in ``reduction="none"``).
- ``classes="all"`` averages over every class; ``"present"`` only over the classes present in
  the sample's (non-ignored) target, a sample without any scoring 0.
- ``batch=True`` sums the statistics over the batch and scores it as one volume; otherwise each
  sample is scored on its own and the losses are averaged (``"mean"``) or summed (``"sum"``)
  over the samples, so ``"sum"`` is ``N`` times ``"mean"``.
- ``reduction="none"`` returns the unweighted per-class losses, ``(N, C)`` or ``(C,)`` with
  ``batch=True``.
- ``average="micro"`` (kornia's default; losskit's is ``"macro"``) sums each class's ``I``,
  ``P`` and ``T``, weighted by ``weight`` (and ``include_background``, ``classes``), and scores
  them once per sample (``reduction="none"``: ``(N,)``). Not on the generalized Dice loss,
  whose weighting is its own.
- ``soft_label`` and ``squared_pred`` are MONAI's: ``I = (P + T - sum |p - t|) / 2`` for soft
  targets, and ``P = sum p^2``, ``T = sum t^2``; both run through plain autograd.
- Peer spellings (MONAI's ``sigmoid``, ``softmax``, ``other_act``, ``to_onehot_y``,
  ``jaccard``; kornia's ``eps``; smp's ``smooth``, ``class_weights``) are refused naming the
  equivalent; docs/coming_from.md maps every option and convention.
- Defined values: a class absent from both the prediction and the target (``P + T = 0``) has
  loss 0 whatever the smoothing constants, so an empty target with an empty prediction scores 0
  (not 1: open-mmlab/mmocr#408), and a fully ignored sample scores 0 with zero gradient (not 0.5:
  open-mmlab/mmsegmentation#2996). A class absent from the target but predicted scores
  ``1 - s_nr / (P + s_dr)`` (Dice; the others alike): 0 for an empty prediction, rising
  towards 1 with the predicted mass. Keep ``smooth_nr > 0`` (the default equals
  ``smooth_dr``): at ``smooth_nr = 0`` such a class scores 1 as soon as ``P > 0``, with zero
  gradient (open-mmlab/mmocr#408 again).
- Half-precision inputs are computed in float32 and the loss is returned in float32.

The statistics have a hand-derived gradient (see :mod:`losskit.losses._overlap`): beyond the
caller's logits and target, the backward pass keeps only the softmax (sigmoid modes: nothing
full-size), which it overwrites with the input gradient, the one full-size buffer of a step.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> dice = losses.DiceLoss()
    >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # (N=1, C=2, H=1, W=2)
    >>> dice(logits, torch.tensor([[[0, 1]]])).item() < 1e-6
    True
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import torch
from torch import Tensor

from losskit.errors import ConfigError
from losskit.losses._overlap import (
    Activation,
    Average,
    ClassSelection,
    Mode,
    OverlapLoss,
    OverlapStats,
    Reduction,
    safe_ratio,
)
from losskit.losses.contracts import Check
from losskit.losses.registry import register

__all__ = [
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "TverskyLoss",
]

WeightType: TypeAlias = Literal["square", "simple", "uniform"]
ClassWeight: TypeAlias = Tensor | list[float] | tuple[float, ...] | None


def _empty(stats: OverlapStats) -> Tensor:
    """Classes absent from both the prediction and the target: their loss is defined as 0."""
    return (stats.mass + stats.count) == 0


@register(
    "dice",
    family="segmentation",
    description="Soft Dice loss 1 - 2|X∩Y|/(|X|+|Y|) per class, any spatial rank.",
    aliases=("soft_dice",),
)
class DiceLoss(OverlapLoss):
    """Soft Dice loss ``1 - (2 I + smooth_nr) / (P + T + smooth_dr)`` per sample and class.

    Args:
        mode: ``"multiclass"`` (softmax, class-index target), ``"multilabel"`` (sigmoid per
            channel, float 0/1 target of the input's shape) or ``"binary"`` (one channel).
        from_logits: ``False`` for inputs that already are probabilities (no activation).
        ignore_index: target value of positions left out of every sum.
        weight: per-class weights ``(C,)``, background included; a sample's loss is
            ``sum_c w_c loss_c / sum_c w_c``.
        include_background: ``False`` gives class 0 weight 0.
        batch: score the batch as one volume (sums over samples) instead of each sample.
        classes: ``"all"`` classes, or only those ``"present"`` in each sample's target.
        average: ``"macro"`` scores each class and averages the losses (weighted by
            ``weight``); ``"micro"`` (kornia's default) sums ``I``, ``P`` and ``T`` over the
            classes, each weighted by ``weight``, and scores them once per sample:
            ``reduction="none"`` then gives ``(N,)`` (``()`` with ``batch``).
        activation: what turns the input into ``p``: ``"softmax"`` over dim 1, ``"sigmoid"``,
            ``"none"``, or a callable (MONAI's ``other_act``, e.g. ``torch.tanh``); default: the
            mode's (softmax for ``"multiclass"``, else sigmoid; none with ``from_logits=False``).
            The mode still says what the target is.
        soft_label: MONAI's formula for soft targets, ``I = (P + T - sum |p - t|) / 2`` (equal to
            ``sum p t`` for 0/1 targets), so that a soft target scores 0 against itself.
        squared_pred: MONAI's ``squared_pred``: ``P = sum p^2`` and ``T = sum t^2``.
        smooth_nr: added to the numerator (MONAI's default); ``smooth_nr = 0`` scores an
            empty class 1 for any predicted mass (see above).
        smooth_dr: added to the denominator (MONAI's default).
        reduction: ``"mean"`` or ``"sum"`` over samples, or ``"none"``: unweighted per-class
            losses ``(N, C)`` (``(C,)`` with ``batch``).
        check: when the input contract checks values (``"first"`` calls, ``"always"``, ``"off"``).

    Example::

        >>> import torch
        >>> loss = DiceLoss(reduction="none")
        >>> logits = torch.zeros(2, 3, 4, 4, 4)  # a 3D batch, uniform predictions
        >>> target = torch.zeros(2, 4, 4, 4, dtype=torch.long)
        >>> loss(logits, target).shape
        torch.Size([2, 3])
        >>> DiceLoss(ignore_index=255)(logits, torch.full((2, 4, 4, 4), 255)).item()
        0.0
        >>> DiceLoss(average="micro", reduction="none")(logits, target).shape
        torch.Size([2])
    """

    loss_name = "dice"

    def class_losses(self, stats: OverlapStats) -> Tensor:
        """``1 - (2 I + smooth_nr) / (P + T + smooth_dr)``, 0 where ``P + T = 0``."""
        i, p, t = stats.intersection, stats.mass, stats.count
        score = safe_ratio(2.0 * i + self.smooth_nr, p + t + self.smooth_dr, _empty(stats))
        return 1.0 - score


@register(
    "jaccard",
    family="segmentation",
    description="Soft Jaccard (IoU) loss 1 - |X∩Y|/|X∪Y| per class, any spatial rank.",
    aliases=("iou", "soft_jaccard", "soft_iou"),
)
class JaccardLoss(OverlapLoss):
    """Soft Jaccard (IoU) loss ``1 - (I + smooth_nr) / (P + T - I + smooth_dr)`` per class.

    Arguments as in :class:`DiceLoss`. MONAI's ``DiceLoss(jaccard=True)`` equals this loss with
    its smoothing constants halved.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[0.5, 0.5]]])  # (N=1, C=1, S=2), binary probabilities
        >>> loss = JaccardLoss("binary", from_logits=False, smooth_nr=0, smooth_dr=0)
        >>> loss(probs, torch.tensor([[[1.0, 0.0]]])).item()  # 1 - 0.5 / 1.5
        0.6666666...
    """

    loss_name = "jaccard"

    def class_losses(self, stats: OverlapStats) -> Tensor:
        """``1 - (I + smooth_nr) / (P + T - I + smooth_dr)``, 0 where ``P + T = 0``."""
        i, p, t = stats.intersection, stats.mass, stats.count
        score = safe_ratio(i + self.smooth_nr, p + t - i + self.smooth_dr, _empty(stats))
        return 1.0 - score


@register(
    "tversky",
    family="segmentation",
    description="Tversky loss: Dice with alpha weighing false positives, beta false negatives.",
)
class TverskyLoss(OverlapLoss):
    """Tversky loss ``1 - (I + s_nr) / (I + alpha FP + beta FN + s_dr)`` per sample and class.

    ``FP = P - I`` and ``FN = T - I`` (Salehi et al., 2017). ``alpha = beta = 0.5`` gives the
    Dice loss with doubled smoothing constants, ``alpha = beta = 1`` the Jaccard loss. Other
    arguments as in :class:`DiceLoss`.

    Args:
        alpha: weight of the false positives.
        beta: weight of the false negatives (raise it to favour recall).

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0]]])  # one false positive
        >>> target = torch.tensor([[[1.0, 0.0, 0.0]]])
        >>> fp_heavy = TverskyLoss("binary", alpha=0.9, beta=0.1, from_logits=False)
        >>> fn_heavy = TverskyLoss("binary", alpha=0.1, beta=0.9, from_logits=False)
        >>> fp_heavy(probs, target) > fn_heavy(probs, target)
        tensor(True)
    """

    loss_name = "tversky"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        from_logits: bool = True,
        ignore_index: int | None = None,
        weight: ClassWeight = None,
        include_background: bool = True,
        batch: bool = False,
        classes: ClassSelection = "all",
        average: Average = "macro",
        activation: Activation | None = None,
        soft_label: bool = False,
        squared_pred: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            mode,
            from_logits=from_logits,
            ignore_index=ignore_index,
            weight=weight,
            include_background=include_background,
            batch=batch,
            classes=classes,
            average=average,
            activation=activation,
            soft_label=soft_label,
            squared_pred=squared_pred,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            reduction=reduction,
            check=check,
        )
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ConfigError(
                f"alpha and beta must be >= 0 and not both 0, got alpha={alpha}, beta={beta}"
            )
        self.alpha = float(alpha)
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, beta={self.beta}"

    def tversky_index(self, stats: OverlapStats) -> Tensor:
        """The smoothed Tversky index per class, 1 where ``P + T = 0``."""
        i, p, t = stats.intersection, stats.mass, stats.count
        denominator = i + self.alpha * (p - i) + self.beta * (t - i) + self.smooth_dr
        return safe_ratio(i + self.smooth_nr, denominator, _empty(stats))

    def class_losses(self, stats: OverlapStats) -> Tensor:
        """``1 - TI`` per class."""
        return 1.0 - self.tversky_index(stats)


@register(
    "focal_tversky",
    family="segmentation",
    description="Focal-Tversky loss (1 - Tversky index)^gamma, for small structures.",
)
class FocalTverskyLoss(TverskyLoss):
    """Focal-Tversky loss ``(1 - TI)^gamma`` per sample and class (Abraham and Khan, 2019).

    ``gamma`` is the exponent itself: the paper writes ``(1 - TI)^(1/gamma)`` with
    ``gamma = 4/3``, our default ``gamma = 0.75``; its ``alpha = 0.7`` weighs the false
    negatives, our ``beta = 0.7`` (defaults ``alpha=0.3, beta=0.7``). Below 1, ``gamma`` raises
    the loss of classes that are nearly right; the gradient at a perfect class (``TI = 1``),
    infinite in the formula, is defined as 0. Other arguments as in :class:`TverskyLoss`.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[0.9, 0.1]]])
        >>> target = torch.tensor([[[1.0, 0.0]]])
        >>> tversky = TverskyLoss("binary", alpha=0.3, beta=0.7, from_logits=False)
        >>> focal = FocalTverskyLoss("binary", gamma=0.75, from_logits=False)
        >>> bool(focal(probs, target) > tversky(probs, target))
        True
    """

    loss_name = "focal_tversky"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        from_logits: bool = True,
        ignore_index: int | None = None,
        weight: ClassWeight = None,
        include_background: bool = True,
        batch: bool = False,
        classes: ClassSelection = "all",
        average: Average = "macro",
        activation: Activation | None = None,
        soft_label: bool = False,
        squared_pred: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            mode,
            alpha=alpha,
            beta=beta,
            from_logits=from_logits,
            ignore_index=ignore_index,
            weight=weight,
            include_background=include_background,
            batch=batch,
            classes=classes,
            average=average,
            activation=activation,
            soft_label=soft_label,
            squared_pred=squared_pred,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            reduction=reduction,
            check=check,
        )
        if not gamma > 0:
            raise ConfigError(f"gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"

    def class_losses(self, stats: OverlapStats) -> Tensor:
        """``(1 - TI)^gamma`` per class, with a finite gradient at ``TI = 1``."""
        base = (1.0 - self.tversky_index(stats)).clamp_min(0.0)
        positive = base > 0
        # pow's gradient at 0 is infinite for gamma < 1 (and 0 * inf = NaN through a where).
        safe = torch.where(positive, base, torch.ones_like(base))
        return torch.where(positive, safe.pow(self.gamma), torch.zeros_like(base))


@register(
    "generalized_dice",
    family="segmentation",
    description="Generalized Dice (Sudre 2017): class weights 1/|Y_c|^2, summed before dividing.",
    aliases=("generalised_dice", "gdl"),
)
class GeneralizedDiceLoss(OverlapLoss):
    """Generalized Dice ``1 - (2 sum_c w_c I_c + s_nr) / (sum_c w_c (P_c + T_c) + s_dr)``.

    Sudre et al. (2017): ``w_c = 1 / T_c^2`` from the target alone, and the classes are summed
    before dividing, so the weights do not cancel (Project-MONAI/MONAI#6765). A class absent
    from a sample's target (``T_c = 0``, an infinite weight: Project-MONAI/MONAI#371) takes the
    largest weight of the classes present in it, as NiftyNet and MONAI do; when no class is
    present every weight is 1 (MONAI: 0, which makes the loss constant), so predicted mass is
    still penalised. Each sample is one loss (``(N,)`` with ``reduction="none"``, a 0-d tensor
    with ``batch=True``); there is no per-class ``weight`` or ``classes``: the weighting is the
    loss. Other arguments as in :class:`DiceLoss`.

    Args:
        w_type: ``"square"`` (``1 / T^2``, the paper's), ``"simple"`` (``1 / T``) or
            ``"uniform"`` (1).

    Example::

        >>> import torch
        >>> logits = torch.randn(2, 4, 8, 8)
        >>> target = torch.randint(0, 3, (2, 8, 8))  # class 3 absent: a finite weight
        >>> GeneralizedDiceLoss(reduction="none")(logits, target).shape
        torch.Size([2])
    """

    loss_name = "generalized_dice"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        w_type: WeightType = "square",
        from_logits: bool = True,
        ignore_index: int | None = None,
        include_background: bool = True,
        batch: bool = False,
        activation: Activation | None = None,
        soft_label: bool = False,
        squared_pred: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            mode,
            from_logits=from_logits,
            ignore_index=ignore_index,
            include_background=include_background,
            batch=batch,
            activation=activation,
            soft_label=soft_label,
            squared_pred=squared_pred,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            reduction=reduction,
            check=check,
        )
        if w_type not in ("square", "simple", "uniform"):
            raise ConfigError(f"w_type must be 'square', 'simple' or 'uniform', got {w_type!r}")
        self.w_type: WeightType = w_type

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, w_type={self.w_type!r}"

    def generalized_weights(self, count: Tensor) -> Tensor:
        """Class weights from the target sizes ``(..., C)``; absent classes as documented."""
        present = count > 0
        if self.w_type == "uniform":
            return torch.ones_like(count)
        safe = torch.where(present, count, torch.ones_like(count))
        w = 1.0 / (safe * safe) if self.w_type == "square" else 1.0 / safe
        w = torch.where(present, w, torch.zeros_like(w))
        largest = w.amax(-1, keepdim=True)
        largest = torch.where(largest > 0, largest, torch.ones_like(largest))
        return torch.where(present, w, largest)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The generalized Dice loss per sample (or of the batch), then ``reduction``."""
        stats = self.stats(input, target)
        i, p, t = stats.intersection, stats.mass, stats.count
        if not self.include_background and i.shape[-1] > 1:
            i, p, t = i[..., 1:], p[..., 1:], t[..., 1:]
        w = self.generalized_weights(t)
        numerator = 2.0 * (w * i).sum(-1) + self.smooth_nr
        cardinality = (w * (p + t)).sum(-1)
        loss = 1.0 - safe_ratio(numerator, cardinality + self.smooth_dr, cardinality == 0)
        if self.reduction == "none":
            return loss
        return loss.mean() if self.reduction == "mean" else loss.sum()
