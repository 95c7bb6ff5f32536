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
from typing import Any, ClassVar, Literal, TypeAlias

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
_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}
_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang et al.'s five scale weights (MONAI's, pytorch-msssim's)."""


def _window(kind: Window, size: int, sigma: float, dtype: torch.dtype) -> Tensor:
    if kind == "uniform":
        return torch.full((size,), 1.0 / size, dtype=dtype)
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _filter(x: Tensor, g: Tensor, transpose: bool = False) -> Tensor:
    """The window ``g`` applied to each channel of ``x``, separably along each spatial dim: its
    valid positions, or with ``transpose`` the adjoint (zero-padded by the window's length - 1:
    the window is symmetric, so the adjoint filters with the same window)."""
    ndim, channels, size = x.ndim - 2, x.shape[1], g.numel()
    for d in range(ndim):
        shape, padding = [1] * ndim, [0] * ndim
        shape[d], padding[d] = size, (size - 1 if transpose else 0)
        weight = g.view(1, 1, *shape).expand(channels, 1, *shape)
        x = _CONV[ndim](x, weight, padding=padding, groups=channels)
    return x


def _stacked(maps: Sequence[Tensor]) -> Tensor:
    """``maps`` concatenated along the channels, channels innermost for 2 and 3 spatial dims:
    the depthwise convolution runs about twice as fast on that layout (oneDNN, CPU)."""
    first = maps[0]
    layout = _CHANNELS_LAST.get(first.ndim - 2)
    if layout is None:
        return torch.cat(list(maps), 1)
    n, c = first.shape[:2]
    out = torch.empty(
        (n, c * len(maps), *first.shape[2:]),
        dtype=first.dtype,
        device=first.device,
        memory_format=layout,
    )
    for i, m in enumerate(maps):
        out[:, i * c : (i + 1) * c].copy_(m)
    return out


def _moments(x: Tensor, y: Tensor, g: Tensor) -> Tensor:
    """The window means of ``x, y, x^2, y^2, x y``, stacked along the channels."""
    return _filter(_stacked([x, y, x * x, y * y, x * y]), g)


def _terms(stats: Tensor, c1: float, c2: float) -> tuple[Tensor, ...]:
    """From the window means ``(mx, my, mxx, myy, mxy)`` stacked along the channels: the
    luminance ``a1 / b1`` and contrast-structure ``a2 / b2`` numerators and denominators."""
    mx, my, mxx, myy, mxy = stats.chunk(5, 1)
    # Each pair rounds alike when x == y, so that SSIM(x, x) is exactly 1.
    mx_my, mx_mx, my_my = mx * my, mx * mx, my * my
    a2 = torch.sub(mxy, mx_my).mul_(2).add_(c2)  # 2 cov + C2
    b2 = torch.sub(mxx, mx_mx).add_(torch.sub(myy, my_my)).add_(c2)  # var x + var y + C2
    a1 = mx_my.mul_(2).add_(c1)
    b1 = mx_mx.add_(my_my).add_(c1)
    return mx, my, a1, b1, a2, b2


def _per_position(grad: Tensor | None, like: Tensor) -> Tensor | None:
    """A per-sample gradient of a mean over channels and positions, per position."""
    if grad is None:
        return None
    return grad.view(-1, *([1] * (like.ndim - 1))) / like[0].numel()


class _StructuralSimilarity(torch.autograd.Function):
    """Per-sample means of the SSIM and ``cs`` maps of ``x`` against ``y`` (valid positions).

    One grouped convolution filters the five moment maps; the backward pass filters the three
    (four when ``y`` needs a gradient) coefficient maps of the chain rule with the adjoint
    window, instead of differentiating through the convolution and a dozen elementwise steps:
    ``d/dx = G'(ax) + 2 x G'(b) + y G'(c)``, with ``ax``, ``b``, ``c`` the derivatives in the
    window means ``mx``, ``mxx``, ``mxy``. With ``l = a1 / b1`` (luminance) and
    ``cs = a2 / b2``, ``SSIM = l cs`` and
    ``dSSIM/dmx = 2 my (cs / b1 - l / b2) - 2 mx SSIM (1 / b1 - 1 / b2)``,
    ``dSSIM/dmxx = -SSIM / b2``, ``dSSIM/dmxy = 2 l / b2``;
    ``dcs/dmx = 2 (mx cs - my) / b2``, ``dcs/dmxx = -cs / b2``, ``dcs/dmxy = 2 / b2``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, g: Tensor, c1: float, c2: float) -> Any:
        mx, my, a1, b1, a2, b2 = _terms(_moments(x, y, g), c1, c2)
        inv_b1, inv_b2 = b1.reciprocal_(), b2.reciprocal_()
        lum, cs = a1.mul_(inv_b1), a2.mul_(inv_b2)
        dims = tuple(range(1, x.ndim))
        # Copies of the two means, so that the other three window means are freed.
        ctx.save_for_backward(x, y, g, mx.clone(), my.clone(), lum, cs, inv_b1, inv_b2)
        ctx.constants = (c1, c2)
        ctx.set_materialize_grads(False)
        return (lum * cs).mean(dims), cs.mean(dims)

    @staticmethod
    def backward(ctx: Any, g_ssim: Tensor | None, g_cs: Tensor | None) -> Any:
        x, y, g, mx, my, lum, cs, inv_b1, inv_b2 = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the maps as functions of x and y
            c1, c2 = ctx.constants
            mx, my, a1, b1, a2, b2 = _terms(_moments(x, y, g), c1, c2)
            inv_b1, inv_b2 = 1 / b1, 1 / b2
            lum, cs = a1 * inv_b1, a2 * inv_b2
        ssim = lum * cs
        gs, gc = _per_position(g_ssim, mx), _per_position(g_cs, mx)
        u = v = b = c = None
        if gs is not None:
            u = (cs * inv_b1).sub_(lum * inv_b2).mul_(gs)
            v = (inv_b1 - inv_b2).mul_(ssim).mul_(gs)
            b = (ssim * inv_b2).mul_(-gs)
            c = (lum * inv_b2).mul_(2 * gs)
        if gc is not None:
            gc_b2 = inv_b2 * gc
            u = -gc_b2 if u is None else u.sub_(gc_b2)
            v = (-cs * gc_b2) if v is None else v.addcmul_(cs, gc_b2, value=-1)
            b = (-cs * gc_b2) if b is None else b.addcmul_(cs, gc_b2, value=-1)
            c = 2 * gc_b2 if c is None else c.add_(gc_b2, alpha=2)
        del ssim, lum, cs, inv_b1, inv_b2
        if u is None or v is None or b is None or c is None:
            return None, None, None, None, None
        need_x, need_y = ctx.needs_input_grad[:2]
        maps = [(my * u).sub_(mx * v).mul_(2)] if need_x else []
        if need_y:
            maps.append((mx * u).sub_(my * v).mul_(2))
        stacked = [_stacked([*maps, b, c])]
        del maps, u, v, b, c, mx, my  # freed before the filter's buffers are allocated
        adjoint = _filter(stacked.pop(), g, transpose=True).chunk(2 + need_x + need_y, 1)
        tb, tc = adjoint[-2], adjoint[-1]
        gx = torch.addcmul(adjoint[0], x, tb, value=2).addcmul_(y, tc) if need_x else None
        gy = torch.addcmul(adjoint[-3], y, tb, value=2).addcmul_(x, tc) if need_y else None
        return gx, gy, None, None, None


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

    def _ssim_cs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample means of the SSIM map and of the contrast-structure map ``cs``."""
        if self.padding == "same":
            pad = (self.window_size // 2,) * (2 * (x.ndim - 2))
            x, y = F.pad(x, pad, mode="reflect"), F.pad(y, pad, mode="reflect")
        g = _window(self.window, self.window_size, self.sigma, x.dtype).to(x.device)
        c1, c2 = (self.k1 * self.data_range) ** 2, (self.k2 * self.data_range) ** 2
        ssim, cs = _StructuralSimilarity.apply(x, y, g, c1, c2)  # type: ignore[no-untyped-call]
        return ssim, cs

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
        k1: the luminance term's stabilising constant, ``C1 = (k1 L)^2``.
        k2: the contrast-structure term's stabilising constant, ``C2 = (k2 L)^2``.
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
        window_size: as for :class:`SSIMLoss`.
        sigma: as for :class:`SSIMLoss`.
        window: as for :class:`SSIMLoss`.
        data_range: as for :class:`SSIMLoss`.
        k1: as for :class:`SSIMLoss`.
        k2: as for :class:`SSIMLoss`.
        padding: as for :class:`SSIMLoss`.
        reduction: as for :class:`SSIMLoss`.

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
