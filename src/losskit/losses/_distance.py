"""Hausdorff distance losses of Karimi & Salcudean (2019, "Reducing the Hausdorff Distance in
Medical Image Segmentation with Convolutional Neural Networks"): distance-transform and erosion.

Registry names (family ``"segmentation"``): ``hausdorff_dt`` (MONAI's ``HausdorffDTLoss``) and
``hausdorff_er`` (kornia's ``HausdorffERLoss`` and ``HausdorffERLoss3D``). Both take 2D or 3D
inputs ``(N, C, H, W[, D])`` in the modes of the Dice family (``"multiclass"``: logits and
class indices; ``"multilabel"`` / ``"binary"``: sigmoid and a float 0/1 target of the input's
shape; ``from_logits=False`` for probabilities) and give per-class losses ``(N, C)`` with
``reduction="none"``; ``"mean"`` averages them (over the classes, then the samples).

The exact Euclidean distance transform is computed on the input's device in torch (separable
passes, Saito & Toriwaki 1994), with no gradient, as the paper prescribes: no scipy or cupy. Its
cost grows with the largest distance in the images (each pass stops once no value can improve),
not with the square of their side.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> hd = losses.get("hausdorff_dt", mode="binary", from_logits=False)
    >>> target = torch.zeros(1, 1, 5, 5)
    >>> target[..., 1:3, 1:3] = 1.0
    >>> float(hd(target, target))
    0.0
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from losskit.errors import ConfigError, LossInputError
from losskit.losses._class_maps import class_maps
from losskit.losses._overlap import Mode, Reduction, SegmentationLoss
from losskit.losses.contracts import Check
from losskit.losses.registry import register

__all__ = ["HausdorffDTLoss", "HausdorffERLoss"]


def _min_plus_pass(f: Tensor, dim: int, unreached: float) -> Tensor:
    """``out[i] = min_j f[j] + (i - j)^2`` along ``dim``: one separable pass of the squared EDT.

    Offsets ``k = |i - j|`` are tried in increasing order, each as two shifted minimums over the
    whole tensor, until ``k^2`` exceeds every value still to improve: the work grows with the
    largest distance in the images, not with their length squared. Lines holding no value below
    ``unreached`` (no source anywhere on them) cannot improve and do not hold the loop.
    """
    moved = f.movedim(dim, -1)
    out = moved.clone()
    length = moved.shape[-1]
    if out.numel() == 0:
        return out.movedim(-1, dim)
    reachable = (moved < unreached).any(-1, keepdim=True)
    k = 1
    while k < length and k * k < float(torch.where(reachable, out, 0.0).amax()):
        step = float(k * k)
        head, tail = out[..., :-k], out[..., k:]
        torch.minimum(head, moved[..., k:] + step, out=head)
        torch.minimum(tail, moved[..., :-k] + step, out=tail)
        k += 1
    return out.movedim(-1, dim)


def _line_distance(sources: Tensor, far: int) -> Tensor:
    """Distance along the last dim to the nearest ``True`` (at least ``far`` where none): the
    first pass, linear in the length, from the last source before and the first after."""
    length = sources.shape[-1]
    index = torch.arange(length, device=sources.device)
    before = torch.where(sources, index, -far).cummax(-1).values
    after = torch.where(sources, index, length + far).flip(-1).cummin(-1).values.flip(-1)
    return torch.minimum(index - before, after - index)


def _squared_edt(sources: Tensor, ndim: int) -> Tensor:
    """Squared distance of every position to the nearest ``True`` of ``sources`` over the last
    ``ndim`` dims (a value above every real one where there is none)."""
    first = sources.ndim - ndim
    far = sum(sources.shape[first:]) + 1  # far^2 exceeds every squared distance in the image
    f = _line_distance(sources.movedim(first, -1), far).movedim(-1, first)
    f = f.to(torch.float32).square()
    for dim in range(first + 1, sources.ndim):
        f = _min_plus_pass(f, dim, float(far * far))
    return f


_IMAGES_CHUNK = 1 << 16
"""Elements per group of images whose distance fields are computed together: the transform's
temporaries (int64 line distances, shifted copies) then stay a few MiB and in cache instead of
several times the batch's size."""


@torch.no_grad()
def distance_field(mask: Tensor, ndim: int) -> Tensor:
    """Distance of each position to the nearest position of the other side of ``mask``.

    Inside the mask the distance to the background, outside the distance to the foreground
    (MONAI's ``fg_dist + bg_dist``); 0 everywhere in an image (the last ``ndim`` dims) that is
    all foreground or all background, where the transform is undefined.

    Example::

        >>> import torch
        >>> distance_field(torch.tensor([[False, True, True, True]]), 1)
        tensor([[1., 1., 2., 3.]])
    """
    spatial = mask.shape[mask.ndim - ndim :]
    images = mask.bool().reshape(-1, *spatial)
    out = torch.empty(images.shape, dtype=torch.float32, device=mask.device)
    step = max(1, _IMAGES_CHUNK // max(1, images[0].numel()))
    for start in range(0, images.shape[0], step):
        out[start : start + step] = _images_distance_field(images[start : start + step], ndim)
    return out.reshape(mask.shape)


def _images_distance_field(mask: Tensor, ndim: int) -> Tensor:
    """:func:`distance_field` of a bool stack of images ``(B, *spatial)``."""
    flat = mask.flatten(-ndim)
    mixed = (flat.any(-1) & ~flat.all(-1)).reshape(mask.shape[:-ndim] + (1,) * ndim)
    # Two calls rather than one on a stacked pair: the smaller copies stay in cache (faster).
    inside = _squared_edt(~mask, ndim).sqrt()
    outside = _squared_edt(mask, ndim).sqrt()
    return torch.where(mixed, torch.where(mask, inside, outside), 0.0)


def _cross_mean(x: Tensor) -> Tensor:
    """The mean of each position of ``x`` ``(B, *spatial)`` and its ``2 d`` neighbours along the
    ``d`` spatial dims, zero beyond the edges: kornia's convolution with a cross of weight
    ``1 / (2 d + 1)``, as shifted sums (a one-channel convolution's backward pass cost 5x
    its forward pass here)."""
    ndim = x.ndim - 1
    padded = F.pad(x, (1, 1) * ndim)
    inner = (slice(None), *(slice(1, -1),) * ndim)
    total = padded[inner]  # a view: the first sum below makes the new tensor
    for d in range(1, ndim + 1):
        for shifted in (slice(None, -2), slice(2, None)):
            index = list(inner)
            index[d] = shifted
            total = total + padded[tuple(index)]
    return total / (2 * ndim + 1)


class _WeightedSquaredError(torch.autograd.Function):
    """Per-map means ``(N, C)`` of ``w (p - t)^2`` over the positions of ``p`` ``(N, C, *S)``.

    Saves its three inputs, alive anyway, instead of autograd's difference, square and product
    maps: the peak memory of a step holds one full-size temporary fewer than it would.
    """

    @staticmethod
    def forward(ctx: Any, p: Tensor, t: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(p, t, w)
        return torch.sub(p, t).square_().mul_(w).flatten(2).mean(-1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        p, t, w = ctx.saved_tensors
        scale = (grad * (2 / p[0, 0].numel())).reshape(*grad.shape, *(1,) * (p.ndim - 2))
        grad_p = torch.sub(p, t).mul_(w).mul_(scale)
        return grad_p, (-grad_p if ctx.needs_input_grad[1] else None), None


class _SpatialSegmentationLoss(SegmentationLoss):
    """A segmentation loss of 2D or 3D class maps, without ``ignore_index`` or ``batch``."""

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        from_logits: bool = True,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
        include_background: bool = True,
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

    def spatial_maps(self, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The checked class maps ``(N, C, *spatial)`` of a 2D or 3D input."""
        if input.ndim not in (4, 5):
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, expected a 2D "
                "(N, C, H, W) or 3D (N, C, H, W, D) batch"
            )
        self.checked(input, target)
        return class_maps(self, input, target)


@register("hausdorff_dt", family="segmentation", aliases=("hausdorff",))
class HausdorffDTLoss(_SpatialSegmentationLoss):
    """Distance-transform Hausdorff loss: the mean of ``(p - t)^2 (d_p^alpha + d_t^alpha)``.

    ``d_p`` and ``d_t`` are the distance fields (:func:`distance_field`) of the prediction
    thresholded at 0.5 and of the target, per sample and class, without gradient; errors far
    from either boundary weigh most, so the loss targets the largest boundary deviations.

    Args:
        alpha: the exponent of the distances (the paper's and MONAI's 2).
        mode: as for :class:`~losskit.losses.DiceLoss`.
        from_logits: as for :class:`~losskit.losses.DiceLoss`.
        weight: as for :class:`~losskit.losses.DiceLoss`.
        include_background: as for :class:`~losskit.losses.DiceLoss`. MONAI's default
            ``include_background=False`` is this loss's ``include_background=False``.
        reduction: as for :class:`~losskit.losses.DiceLoss`.

    Example::

        >>> import torch
        >>> loss = HausdorffDTLoss(mode="binary", from_logits=False, reduction="none")
        >>> target = torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]])
        >>> loss(torch.tensor([[[[0.0, 1.0, 1.0, 1.0]]]]), target)  # one pixel 1 off, d = 1
        tensor([[0.5000]])
    """

    loss_name: ClassVar[str] = "hausdorff_dt"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        alpha: float = 2.0,
        from_logits: bool = True,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
        include_background: bool = True,
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
        if not float(alpha) > 0:
            raise ConfigError(f"HausdorffDTLoss: alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        p, t = self.spatial_maps(input, target)
        ndim = p.ndim - 2
        distance = distance_field(p.detach() > 0.5, ndim).pow_(self.alpha)
        distance.add_(distance_field(t > 0.5, ndim).pow_(self.alpha))
        loss = _WeightedSquaredError.apply(p, t, distance.to(p.dtype))  # type: ignore[no-untyped-call]
        return self.reduce(loss, torch.ones_like(loss))


@register("hausdorff_er", family="segmentation", aliases=("hausdorff_erosion",))
class HausdorffERLoss(_SpatialSegmentationLoss):
    """Erosion Hausdorff loss: ``k`` soft erosions of ``(p - t)^2``, weighted ``(i + 1)^alpha``.

    Each erosion convolves the map with a cross (weight ``1 / (2 d + 1)`` in ``d`` dims),
    subtracts 0.5, clips at 0 and min-max normalises per sample and class, as kornia's
    ``HausdorffERLoss`` (2D) and ``HausdorffERLoss3D``; the loss of a sample and class is the
    mean over positions of the weighted sum, a unitless surrogate of the distance.

    Args:
        alpha: the exponent of the weights ``(i + 1)^alpha``.
        k: the number of erosions.
        mode: as for :class:`~losskit.losses.DiceLoss`.
        from_logits: as for :class:`~losskit.losses.DiceLoss`; kornia's inputs are
            probabilities with class-index targets: ``from_logits=False``.
        weight: as for :class:`~losskit.losses.DiceLoss`.
        include_background: as for :class:`~losskit.losses.DiceLoss`.
        reduction: as for :class:`~losskit.losses.DiceLoss`.

    Example::

        >>> import torch
        >>> loss = HausdorffERLoss(from_logits=False)
        >>> target = torch.zeros(1, 5, 5, dtype=torch.long)
        >>> float(loss(torch.nn.functional.one_hot(target, 2).movedim(-1, 1).float(), target))
        0.0
    """

    loss_name: ClassVar[str] = "hausdorff_er"

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        alpha: float = 2.0,
        k: int = 10,
        from_logits: bool = True,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
        include_background: bool = True,
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
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"HausdorffERLoss: k must be an int >= 1, got {k!r}")
        self.alpha, self.k = float(alpha), k

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        p, t = self.spatial_maps(input, target)
        n, c, *spatial = p.shape
        bound = (p - t).square().reshape(n * c, *spatial)
        # A few maps at a time, each group's erosions recomputed in the backward pass: only the
        # maps are kept, not k erosions' worth of intermediates, and a group stays in cache.
        step = max(1, _IMAGES_CHUNK // max(1, bound[0].numel()))
        loss = torch.cat(
            [
                checkpoint(self._eroded_mean, group, use_reentrant=False)
                for group in torch.split(bound, step)
            ]
        ).reshape(n, c)
        return self.reduce(loss, torch.ones_like(loss))

    def _eroded_mean(self, bound: Tensor) -> Tensor:
        """Per-map means of the weighted sum of ``k`` erosions of ``bound`` ``(B, *spatial)``."""
        eroded = torch.zeros_like(bound)
        dims = tuple(range(1, bound.ndim))
        for i in range(self.k):
            erosion = (_cross_mean(bound) - 0.5).clamp_min(0.0)
            high, low = erosion.amax(dims, keepdim=True), erosion.amin(dims, keepdim=True)
            span = high - low
            erosion = torch.where(
                span != 0, (erosion - low) / torch.where(span != 0, span, 1.0), erosion
            )
            eroded = eroded + erosion * (i + 1) ** self.alpha
            bound = erosion
        return eroded.flatten(1).mean(-1)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, k={self.k}, " + super().extra_repr()
