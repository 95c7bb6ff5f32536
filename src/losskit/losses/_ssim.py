"""Structural similarity losses: SSIM (Wang et al. 2004) and MS-SSIM (Wang et al. 2003).

Registry names (family ``"image"``): ``ssim`` and ``ms_ssim``. Input and target are images
``(N, C, *spatial)`` of 1 to 3 spatial dims and the same shape. Each sample's loss is
``1 - SSIM``, SSIM averaged over its channels and positions (MONAI's ``SSIMLoss`` and its
``MultiScaleSSIMMetric``); ``reduction="none"`` gives these per-sample losses ``(N,)``. kornia's
``ssim_loss(..., padding="same")`` is half this loss with ``padding="same"`` (kornia scores
``(1 - SSIM) / 2`` per pixel). The window is a sampled Gaussian (``sigma``) or uniform, applied
separably; ``padding="valid"`` (the paper's, MONAI's) scores only positions the whole window
covers, ``"same"`` pads by reflection (kornia's). Half-precision inputs are computed in float32.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> float(losses.get("ssim")(x, x))
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses._elementwise import Reduction, check_reduction, compute_dtype
from losskit.losses.contracts import Check, Contract, ContractedLoss
from losskit.losses.registry import register

__all__ = ["MSSSIMLoss", "SSIMLoss"]

Padding: TypeAlias = Literal["valid", "same"]
Window: TypeAlias = Literal["gaussian", "uniform"]
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang et al.'s five scale weights (MONAI's, pytorch-msssim's)."""


def _window(kind: Window, size: int, sigma: float, dtype: torch.dtype) -> Tensor:
    if kind == "uniform":
        return torch.full((size,), 1.0 / size, dtype=dtype)
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


class _StructuralLoss(ContractedLoss, nn.Module):
    """The shared window, constants and checks of SSIM and MS-SSIM."""

    contract: ClassVar[Contract] = Contract("values", "continuous", "same")

    def __init__(
        self,
        window_size: int = 11,
        sigma: float = 1.5,
        window: Window = "gaussian",
        data_range: float = 1.0,
        k1: float = 0.01,
        k2: float = 0.03,
        padding: Padding = "valid",
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
            raise ConfigError(f"{owner}: window_size must be an odd int >= 1, got {window_size!r}")
        if window not in ("gaussian", "uniform"):
            raise ConfigError(f"{owner}: window must be 'gaussian' or 'uniform', got {window!r}")
        if padding not in ("valid", "same"):
            raise ConfigError(f"{owner}: padding must be 'valid' or 'same', got {padding!r}")
        for name, value in (("sigma", sigma), ("data_range", data_range), ("k1", k1), ("k2", k2)):
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ConfigError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
        self.window_size, self.sigma, self.window = window_size, float(sigma), window
        self.data_range, self.k1, self.k2 = float(data_range), float(k1), float(k2)
        self.padding: Padding = padding
        self.reduction: Reduction = check_reduction(owner, reduction)
        self._init_check(check)

    def _images(self, input: Tensor, target: Tensor, scales: int = 1) -> tuple[Tensor, Tensor]:
        self.check_inputs(input, target)
        spatial = tuple(input.shape[2:])
        smallest = self.window_size if self.padding == "valid" else self.window_size // 2 + 1
        need = smallest * 2 ** (scales - 1)
        if input.ndim not in (3, 4, 5) or min(spatial) < need:
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, expected images "
                f"(N, C, *spatial) of 1 to 3 spatial dims, each at least {need} long for "
                f"window_size={self.window_size}, padding={self.padding!r}"
                + (f" and {scales} scales" if scales > 1 else "")
            )
        x = input.to(compute_dtype(input.dtype))
        return x, target.to(x.dtype)

    def _filter(self, x: Tensor) -> Tensor:
        """The window mean of ``x`` per channel, separably along each spatial dim."""
        ndim, channels = x.ndim - 2, x.shape[1]
        g = _window(self.window, self.window_size, self.sigma, x.dtype).to(x.device)
        if self.padding == "same":
            pad = self.window_size // 2
            x = F.pad(x, (pad,) * (2 * ndim), mode="reflect")
        for d in range(ndim):
            shape = [1] * ndim
            shape[d] = self.window_size
            x = _CONV[ndim](x, g.view(1, 1, *shape).expand(channels, 1, *shape), groups=channels)
        return x

    def _ssim_cs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample means of the SSIM map and of the contrast-structure map ``cs``."""
        c1, c2 = (self.k1 * self.data_range) ** 2, (self.k2 * self.data_range) ** 2
        stats = self._filter(torch.cat([x, y, x * x, y * y, x * y], 1))
        mx, my, mxx, myy, mxy = stats.chunk(5, 1)
        cs = (2 * (mxy - mx * my) + c2) / (mxx - mx * mx + myy - my * my + c2)
        ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
        return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)

    def _reduce(self, loss: Tensor, dtype: torch.dtype) -> Tensor:
        if self.reduction == "none":
            return loss.to(dtype)
        return loss.mean() if self.reduction == "mean" else loss.sum()

    def extra_repr(self) -> str:
        return (
            f"window_size={self.window_size}, data_range={self.data_range}, "
            f"padding={self.padding!r}, reduction={self.reduction!r}"
        )


@register("ssim", family="image", aliases=("ssim_loss",))
class SSIMLoss(_StructuralLoss):
    """SSIM loss ``1 - SSIM(x, y)`` per sample, SSIM averaged over channels and positions.

    Args:
        window_size: the odd window length (11 in the paper).
        sigma: the Gaussian window's standard deviation (1.5).
        window: ``"gaussian"`` or ``"uniform"``.
        data_range: the range of the pixel values (1 for [0, 1] images, 255 for bytes).
        k1: the stabilising constants ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``.
        k2: the stabilising constants ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``.
        padding: ``"valid"`` (positions the window covers) or ``"same"`` (reflection padding).
        reduction: ``"mean"`` or ``"sum"`` over samples, or ``"none"`` ``(N,)``.

    Example::

        >>> import torch
        >>> x = torch.zeros(1, 1, 11, 11)
        >>> round(float(SSIMLoss()(x, x + 0.1)), 4)  # luminance only: 1 - (0 + C1)/(0.01 + C1)
        0.9901
    """

    loss_name: ClassVar[str] = "ssim"

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        x, y = self._images(input, target)
        return self._reduce(1 - self._ssim_cs(x, y)[0], input.dtype)


@register("ms_ssim", family="image", aliases=("msssim",))
class MSSSIMLoss(_StructuralLoss):
    """Multi-scale SSIM loss ``1 - prod_s cs_s^w_s`` (SSIM instead of ``cs`` at the coarsest).

    Between scales both images are average-pooled by 2; each scale's mean ``cs`` (and the last
    mean SSIM) is clipped at 0 before the power, as MONAI does. Each spatial dim must be at
    least ``window_size * 2^(scales - 1)`` long (176 for the defaults).

    Args:
        weights: one exponent per scale (Wang et al.'s five by default).
        window_size: as for
            :class:`SSIMLoss`.
        sigma: as for
            :class:`SSIMLoss`.
        window: as for
            :class:`SSIMLoss`.
        data_range: as for
            :class:`SSIMLoss`.
        k1: as for
            :class:`SSIMLoss`.
        k2: as for
            :class:`SSIMLoss`.
        padding: as for
            :class:`SSIMLoss`.
        reduction: as for
            :class:`SSIMLoss`.

    Example::

        >>> import torch
        >>> x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> loss = MSSSIMLoss(weights=(0.5, 0.5), window_size=7)
        >>> float(loss(x, x))
        0.0
    """

    loss_name: ClassVar[str] = "ms_ssim"
    scale_weights: Tensor

    def __init__(
        self,
        weights: Sequence[float] = MS_SSIM_WEIGHTS,
        window_size: int = 11,
        sigma: float = 1.5,
        window: Window = "gaussian",
        data_range: float = 1.0,
        k1: float = 0.01,
        k2: float = 0.03,
        padding: Padding = "valid",
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(window_size, sigma, window, data_range, k1, k2, padding, reduction, check)
        values = tuple(float(w) for w in weights)
        if not values or not all(math.isfinite(w) and w >= 0 for w in values):
            raise ConfigError(
                f"MSSSIMLoss: weights must be one or more finite numbers >= 0, got {weights!r}"
            )
        self.weights = values
        self.register_buffer("scale_weights", torch.tensor(values), persistent=False)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        x, y = self._images(input, target, scales=len(self.weights))
        pool = _POOL[x.ndim - 2]
        factors = []
        for s in range(len(self.weights)):
            ssim, cs = self._ssim_cs(x, y)
            factors.append(ssim if s == len(self.weights) - 1 else cs)
            if s < len(self.weights) - 1:
                x, y = pool(x, 2), pool(y, 2)
        values = torch.stack(factors)  # (scales, N)
        w = self.scale_weights.to(values).unsqueeze(1)
        # where, not relu: the power's infinite slope at 0 must not reach the gradient.
        positive = values > 0
        powered = torch.where(positive, torch.where(positive, values, 1.0) ** w, 0.0)
        return self._reduce(1 - powered.prod(0), input.dtype)
