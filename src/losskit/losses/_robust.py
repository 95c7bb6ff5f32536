"""The robust family: Cauchy, Geman-McClure, Welsch and Barron's general and adaptive loss.

All are Barron's (2019, "A General and Adaptive Robust Loss Function") ``rho(d, alpha, c)`` of
the residual ``d = input - target`` with scale ``c``, for ``z = (d / c)^2``:

- ``alpha = 2``: ``z / 2`` (L2); ``alpha = 1``: ``sqrt(z + 1) - 1`` (Charbonnier, pseudo-Huber);
- ``alpha = 0``: ``log(z / 2 + 1)`` (Cauchy, Lorentzian);
- ``alpha = -2``: ``2 z / (z + 4)`` (Geman-McClure);
- ``alpha -> -inf``: ``1 - exp(-z / 2)`` (Welsch, Leclerc); ``alpha -> +inf``: ``exp(z / 2) - 1``;
- otherwise ``|alpha - 2| / alpha * ((z / |alpha - 2| + 1)^(alpha / 2) - 1)``.

With ``scale=1`` the Cauchy, Geman-McClure and Welsch losses are kornia's ``cauchy_loss``,
``geman_mcclure_loss`` and ``welsch_loss``. Registry names (family ``"robust"``): ``cauchy``,
``geman_mcclure``, ``welsch``, ``barron`` (alias ``general_robust``) and ``adaptive_robust``.
Input and target have the same shape and are never broadcast; half-precision inputs are computed
in float32.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> d, zero = torch.tensor([0.0, 1.0, 10.0]), torch.zeros(3)
    >>> bool(losses.get("barron", alpha=0.0)(d, zero) == losses.get("cauchy")(d, zero))
    True
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses._elementwise import (
    Kernel,
    Reduction,
    check_reduction,
    compute_dtype,
    elementwise_loss,
)
from losskit.losses.contracts import Check, Contract, ContractedLoss
from losskit.losses.registry import register

__all__ = [
    "AdaptiveRobustLoss",
    "BarronLoss",
    "CauchyLoss",
    "GemanMcClureLoss",
    "WelschLoss",
]

_FAMILY = "robust"
_EPS = 1e-5  # how far the general formula keeps alpha from its removable singularities 0 and 2


def barron_rho(z: Tensor, alpha: float | Tensor) -> Tensor:
    """Barron's ``rho`` of the squared scaled residual ``z = (d / c)^2`` at shape ``alpha``.

    A float ``alpha`` of 0, 2 or +-inf takes the paper's limit; a tensor ``alpha`` (the adaptive
    loss) is kept ``1e-5`` away from 0 and 2, where the formula is 0 / 0 (Barron's reference
    code does the same at float32's epsilon), which moves the value by about ``1e-5``.

    Example::

        >>> import torch
        >>> barron_rho(torch.tensor([4.0]), -2.0)  # Geman-McClure: 2 z / (z + 4)
        tensor([1.])
    """
    if not isinstance(alpha, Tensor):
        if alpha == 2.0:
            return z / 2
        if alpha == 0.0:
            return torch.log1p(z / 2)
        if alpha == -math.inf:
            return -torch.expm1(-z / 2)
        if alpha == math.inf:
            return torch.expm1(z / 2)
        gap = abs(alpha - 2)
        return gap / alpha * torch.expm1(alpha / 2 * torch.log1p(z / gap))
    beta = (alpha - 2).abs().clamp_min(_EPS)
    safe = torch.where(alpha >= 0, 1.0, -1.0) * alpha.abs().clamp_min(_EPS)
    return beta / safe * torch.expm1(safe / 2 * torch.log1p(z / beta))


# Double-exponential (exp-sinh) quadrature of Z(alpha) = 2 int_0^inf exp(-rho(x^2, alpha)) dx:
# x = exp(pi/2 sinh t) makes both the algebraic tail at alpha -> 0 and the Gaussian one at
# alpha = 2 decay double-exponentially in t, so 201 points give log Z to ~1e-8 (tested).
_QUAD_T = 3.2
_QUAD_POINTS = 201


@functools.lru_cache(maxsize=8)
def _quadrature(device: torch.device) -> tuple[Tensor, Tensor]:
    """Nodes ``x^2`` and weights, made once per device (no copy to the device per call)."""
    t = torch.linspace(-_QUAD_T, _QUAD_T, _QUAD_POINTS, dtype=torch.float64, device=device)
    x = torch.exp(math.pi / 2 * torch.sinh(t))
    weight = (t[1] - t[0]) * x * (math.pi / 2) * torch.cosh(t)
    return x * x, 2 * weight


def log_partition(alpha: Tensor) -> Tensor:
    """``log Z(alpha)`` of Barron's distribution ``exp(-rho(x, alpha, 1)) / Z(alpha)``, alpha >= 0.

    Computed by quadrature in float64 (differentiable in ``alpha``), where Barron's code reads a
    precomputed spline: ``Z(0) = pi sqrt(2)``, ``Z(2) = sqrt(2 pi)``, ``Z(1) = 2 e K_1(1)``.

    Example::

        >>> import math, torch
        >>> float(log_partition(torch.tensor(2.0))) - math.log(math.sqrt(2 * math.pi)) < 1e-6
        True
    """
    z, weight = _quadrature(alpha.device)
    a = alpha.to(torch.float64).unsqueeze(-1)
    density = torch.exp(-barron_rho(z, a))
    return torch.log((weight * density).sum(-1)).to(alpha.dtype)


def _positive(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return value


def _reduce(loss: Tensor, reduction: Reduction, dtype: torch.dtype) -> Tensor:
    if reduction == "none":
        return loss.to(dtype)
    return loss.mean() if reduction == "mean" else loss.sum()


def _barron_value(x: Tensor, t: Tensor, scale: float, alpha: float) -> Tensor:
    x = x.to(compute_dtype(x.dtype))
    d = (x - t.to(x.dtype)) / scale
    return barron_rho(d * d, alpha)


def _barron_dx(x: Tensor, t: Tensor, scale: float, alpha: float) -> Tensor:
    """``d rho / d x = (d / c^2) (z / |alpha - 2| + 1)^(alpha / 2 - 1)``, and its limits."""
    x = x.to(compute_dtype(x.dtype))
    d = (x - t.to(x.dtype)) / scale
    z = d * d
    slope = d / scale
    if alpha == 2.0:
        return slope
    if alpha == 0.0:
        return slope / (z / 2 + 1)
    if alpha == -math.inf:
        return slope * torch.exp(-z / 2)
    if alpha == math.inf:
        return slope * torch.exp(z / 2)
    return slope * torch.pow(z / abs(alpha - 2) + 1, alpha / 2 - 1)


_BARRON = Kernel("barron", _barron_value, _barron_dx, residual=True)
"""Barron's loss at a fixed shape, fused as the focal loss is (:mod:`._elementwise`)."""


class _FixedShapeLoss(ContractedLoss, nn.Module):
    """Barron's loss at a fixed ``alpha`` (set by the subclass) and scale."""

    contract: ClassVar[Contract] = Contract("values", "continuous", "same")
    alpha: float = 1.0

    def __init__(
        self, scale: float = 1.0, reduction: Reduction = "mean", check: Check = "first"
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.scale = _positive(owner, "scale", scale)
        self.reduction: Reduction = check_reduction(owner, reduction)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        return elementwise_loss(
            _BARRON, input, target, (self.scale, self.alpha), self.reduction, "auto"
        )

    def extra_repr(self) -> str:
        return f"scale={self.scale}, reduction={self.reduction!r}"


@register("cauchy", family=_FAMILY, aliases=("lorentzian",))
class CauchyLoss(_FixedShapeLoss):
    """Cauchy (Lorentzian) loss ``log(((x - t) / c)^2 / 2 + 1)``: Barron's ``alpha = 0``.

    Args:
        scale: ``c`` > 0, the residual below which the loss is near quadratic.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        >>> import torch
        >>> CauchyLoss()(torch.tensor([0.0, 2.0]), torch.zeros(2))
        tensor(0.5493)
    """

    loss_name: ClassVar[str] = "cauchy"
    alpha = 0.0


@register("geman_mcclure", family=_FAMILY)
class GemanMcClureLoss(_FixedShapeLoss):
    """Geman-McClure loss ``2 z / (z + 4)``, ``z = ((x - t) / c)^2``: Barron's ``alpha = -2``.

    Example::

        >>> import torch
        >>> GemanMcClureLoss(reduction="none")(torch.tensor([0.0, 2.0]), torch.zeros(2))
        tensor([0., 1.])
    """

    loss_name: ClassVar[str] = "geman_mcclure"
    alpha = -2.0


@register("welsch", family=_FAMILY, aliases=("leclerc",))
class WelschLoss(_FixedShapeLoss):
    """Welsch (Leclerc) loss ``1 - exp(-((x - t) / c)^2 / 2)``: Barron's ``alpha -> -inf``.

    Example::

        >>> import torch
        >>> WelschLoss(reduction="sum")(torch.tensor([0.0, 100.0]), torch.zeros(2))
        tensor(1.)
    """

    loss_name: ClassVar[str] = "welsch"
    alpha = -math.inf


@register("barron", family=_FAMILY, aliases=("general_robust",))
class BarronLoss(_FixedShapeLoss):
    """Barron's general robust loss ``rho(x - t, alpha, c)`` at a fixed shape ``alpha``.

    Args:
        alpha: the shape, any real or ``+-inf``: 2 is L2 (halved), 1 Charbonnier, 0 Cauchy,
            -2 Geman-McClure, ``-inf`` Welsch; lower is more robust to outliers.
        scale: ``c`` > 0, the width of the loss's quadratic bowl.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        >>> import torch
        >>> charbonnier = BarronLoss(alpha=1.0, reduction="none")
        >>> charbonnier(torch.tensor([0.0, 3.0]), torch.tensor([0.0, -1.0]))  # sqrt(17) - 1
        tensor([0.0000, 3.1231])
    """

    loss_name: ClassVar[str] = "barron"

    def __init__(
        self,
        alpha: float = 1.0,
        scale: float = 1.0,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(scale, reduction, check)
        alpha = float(alpha)
        if math.isnan(alpha):
            raise ConfigError("BarronLoss: alpha must be a number or +-inf, got nan")
        self.alpha = alpha

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, " + super().extra_repr()


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


@register("adaptive_robust", family=_FAMILY, aliases=("adaptive_barron",))
class AdaptiveRobustLoss(ContractedLoss, nn.Module):
    """Barron's adaptive robust loss: the negative log-likelihood with a learnable shape and scale.

    Per element ``rho(d, alpha, c) + log(c) + log Z(alpha)``, ``d = input - target``, the NLL of
    Barron's distribution (paper eq. 16-17). ``alpha = lo + (hi - lo) sigmoid(a)`` and
    ``c = scale_lo + softplus(s)`` are learned through the latents ``a`` and ``s`` (parameters of
    this module: give them to the optimizer, e.g. with ``criterion.parameters()``). ``log Z`` is
    the exact partition function by quadrature (:func:`log_partition`), not Barron's spline.

    Args:
        alpha_lo: the lower end of the shape's range, ``0 <= alpha_lo < alpha_hi`` (the NLL
            needs ``alpha >= 0``); with ``alpha_hi``, Barron's defaults keep the shape inside
            (0, 2), between Cauchy and L2.
        alpha_hi: the upper end of the shape's range.
        alpha_init: the starting shape (default: the middle of the range).
        scale_lo: the smallest scale, > 0; ``scale_init`` the starting scale, > ``scale_lo``.
        num_dims: ``None`` learns one shape and scale; an int ``D`` one per position of the
            input's last dim, of size ``D`` (Barron's per-dimension version).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        >>> import torch
        >>> loss = AdaptiveRobustLoss()
        >>> loss.alpha.item(), loss.scale.item()
        (1.0, 1.0)
        >>> loss(torch.zeros(3), torch.zeros(3))  # log Z(1) = log(2 e K1(1))
        tensor(1.1855, grad_fn=<MeanBackward0>)
    """

    contract: ClassVar[Contract] = Contract("values", "continuous", "same")
    loss_name: ClassVar[str] = "adaptive_robust"

    def __init__(
        self,
        alpha_lo: float = 0.001,
        alpha_hi: float = 1.999,
        alpha_init: float | None = None,
        scale_lo: float = 1e-5,
        scale_init: float = 1.0,
        num_dims: int | None = None,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        lo, hi = float(alpha_lo), float(alpha_hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
            raise ConfigError(
                f"{owner}: need finite 0 <= alpha_lo < alpha_hi (the NLL is defined for "
                f"alpha >= 0), got alpha_lo={alpha_lo!r}, alpha_hi={alpha_hi!r}"
            )
        init = (lo + hi) / 2 if alpha_init is None else float(alpha_init)
        if not lo < init < hi:
            raise ConfigError(
                f"{owner}: alpha_init must lie strictly inside ({lo}, {hi}), got {alpha_init!r}"
            )
        self.scale_lo = _positive(owner, "scale_lo", scale_lo)
        if not float(scale_init) > self.scale_lo:
            raise ConfigError(
                f"{owner}: scale_init must exceed scale_lo={self.scale_lo}, got {scale_init!r}"
            )
        if num_dims is not None and (not isinstance(num_dims, int) or num_dims < 1):
            raise ConfigError(f"{owner}: num_dims must be None or an int >= 1, got {num_dims!r}")
        self.alpha_lo, self.alpha_hi, self.num_dims = lo, hi, num_dims
        shape = () if num_dims is None else (num_dims,)
        a0 = _logit((init - lo) / (hi - lo))
        s0 = _inverse_softplus(float(scale_init) - self.scale_lo)
        self.latent_alpha = nn.Parameter(torch.full(shape, a0))
        self.latent_scale = nn.Parameter(torch.full(shape, s0))
        self.reduction: Reduction = check_reduction(owner, reduction)
        self._init_check(check)

    @property
    def alpha(self) -> Tensor:
        """The current shape, in ``[alpha_lo, alpha_hi]``."""
        return self.alpha_lo + (self.alpha_hi - self.alpha_lo) * torch.sigmoid(self.latent_alpha)

    @property
    def scale(self) -> Tensor:
        """The current scale, above ``scale_lo``."""
        return self.scale_lo + F.softplus(self.latent_scale)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        if self.num_dims is not None and (input.ndim == 0 or input.shape[-1] != self.num_dims):
            raise LossInputError(
                f"{self.display_name}: input has shape {tuple(input.shape)}, expected a last dim "
                f"of num_dims={self.num_dims} (one shape and scale per position)"
            )
        x = input.to(compute_dtype(input.dtype))
        alpha, scale = self.alpha.to(x.dtype), self.scale.to(x.dtype)
        d = (x - target.to(x.dtype)) / scale
        nll = barron_rho(d * d, alpha) + torch.log(scale) + log_partition(alpha)
        return _reduce(nll, self.reduction, input.dtype)

    def extra_repr(self) -> str:
        dims = "" if self.num_dims is None else f", num_dims={self.num_dims}"
        return (
            f"alpha_lo={self.alpha_lo}, alpha_hi={self.alpha_hi}{dims}, "
            f"reduction={self.reduction!r}"
        )
