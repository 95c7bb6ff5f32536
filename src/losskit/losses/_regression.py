"""Regression losses beyond ``torch.nn``: Poisson, log-cosh, quantile (pinball), Charbonnier.

Registry names (family ``"regression"``): ``poisson``, ``log_cosh``, ``quantile`` (alias
``pinball``) and ``charbonnier``. Input and target have the same shape and are never broadcast
(the quantile loss adds one trailing dimension of quantiles to the input). Half-precision inputs
are computed in float32; ``reduction="none"`` returns the input's dtype, ``"mean"`` and ``"sum"``
return float32. Gradients flow to the target as well when it requires them.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> losses.get("pinball", quantiles=[0.1, 0.9])
    QuantileLoss(quantiles=(0.1, 0.9), reduction='mean')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses import _elementwise as _kernels
from losskit.losses._elementwise import Impl, Reduction, compute_dtype
from losskit.losses.contracts import Check, Contract, ContractedLoss
from losskit.losses.registry import register

__all__ = ["CharbonnierLoss", "LogCoshLoss", "PoissonLoss", "QuantileLoss"]

_FAMILY = "regression"
_VALUES = Contract("values", "continuous", "same")


def _reduce(loss: Tensor, reduction: Reduction, dtype: torch.dtype) -> Tensor:
    if reduction == "none":
        return loss.to(dtype)
    return loss.mean() if reduction == "mean" else loss.sum()


def _positive(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return value


@register("poisson", family=_FAMILY, aliases=("poisson_loss",))
class PoissonLoss(ContractedLoss, nn.Module):
    """Poisson negative log-likelihood of counts, from a log-rate or a rate.

    With ``log_input=True`` (the input is the log-rate ``x``, any real): ``exp(x) - t * x``.
    With ``log_input=False`` (the input is the rate ``r >= 0``): ``r - t * log(r + eps)``.
    ``full=True`` adds Stirling's approximation of ``log(t!)``, ``t log t - t + log(2 pi t) / 2``,
    for targets above 1 (as ``torch.nn.PoissonNLLLoss``, whose values these are), so the loss is
    the full negative log-likelihood and is near 0 at a perfect prediction of large counts.
    Targets are checked to be non-negative, and rates too.

    Args:
        log_input: whether the input is the log of the rate (recommended: no ``eps`` needed).
        full: add the Stirling term.
        eps: added to the rate before the log when ``log_input=False``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        >>> import torch
        >>> poisson = PoissonLoss()
        >>> log_rate = torch.log(torch.tensor([2.0, 5.0]))
        >>> poisson(log_rate, torch.tensor([2.0, 4.0]))
        tensor(-0.4120)
        >>> PoissonLoss(full=True)(log_rate, torch.tensor([2.0, 4.0]))
        tensor(1.4925)
    """

    contract: ClassVar[Contract] = Contract("values", "non_negative", "same")
    loss_name: ClassVar[str] = "poisson"

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        eps: float = 1e-8,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.log_input = log_input
        self.full = full
        self.eps = _positive(owner, "eps", eps)
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        if not log_input:
            self.__dict__["contract"] = Contract("non_negative", "non_negative", "same")
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        x = input.to(compute_dtype(input.dtype))
        t = target.to(x.dtype)
        loss = torch.exp(x) - t * x if self.log_input else x - t * torch.log(x + self.eps)
        if self.full:
            # Only above 1, as torch; the safe count keeps the target's gradient finite at 0.
            large = t > 1
            c = torch.where(large, t, 2.0)
            stirling = c * torch.log(c) - c + 0.5 * torch.log(2 * math.pi * c)
            loss = loss + torch.where(large, stirling, 0.0)
        return _reduce(loss, self.reduction, input.dtype)

    def extra_repr(self) -> str:
        return f"log_input={self.log_input}, full={self.full}, reduction={self.reduction!r}"


@register("log_cosh", family=_FAMILY, aliases=("logcosh",))
class LogCoshLoss(ContractedLoss, nn.Module):
    """Log-cosh loss ``log(cosh(x - t))``: quadratic near 0, linear (slope 1) far away.

    Computed stably as ``|d| + log1p(exp(-2|d|)) - log 2`` (``cosh`` overflows in float32 from
    ``|d| > 89``) with the gradient ``tanh(d)`` from a fused kernel.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        impl: ``"auto"`` runs a ``torch.compile``'d fused kernel from 65,536 elements and the
            eager kernel below; ``"compiled"`` or ``"eager"`` force one.

    Example::

        >>> import torch
        >>> LogCoshLoss()(torch.tensor([0.0, 1.0, 200.0]), torch.zeros(3))
        tensor(66.5802)
    """

    contract: ClassVar[Contract] = _VALUES
    loss_name: ClassVar[str] = "log_cosh"

    def __init__(
        self, reduction: Reduction = "mean", impl: Impl = "auto", check: Check = "first"
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.impl: Impl = _kernels.check_impl(owner, impl)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        return _kernels.elementwise_loss(
            _kernels.LOG_COSH, input, target, (), self.reduction, self.impl
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("quantile", family=_FAMILY, aliases=("pinball",))
class QuantileLoss(ContractedLoss, nn.Module):
    """Quantile (pinball) loss of one or several quantiles: ``max(q d, (q - 1) d)``, ``d = t - x``.

    With one quantile (a float) input and target have the same shape. With several (a
    sequence, even of one), the input has one trailing dimension more, holding the prediction of
    each quantile: input ``(..., Q)`` against target ``(...)``. At ``q = 0.5`` the loss is half
    the absolute error.

    Args:
        quantiles: a quantile in (0, 1), or a sequence of them.
        reduction: ``"mean"`` over every element and quantile, ``"sum"``, or ``"none"`` (the
            input's shape).

    Example::

        >>> import torch
        >>> pinball = QuantileLoss([0.1, 0.5, 0.9])
        >>> pred = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
        >>> pinball(pred, torch.tensor([1.5, 1.0]))
        tensor(0.0750)
    """

    contract: ClassVar[Contract] = Contract("values", "continuous", "any")
    loss_name: ClassVar[str] = "quantile"
    quantile_values: Tensor

    def __init__(
        self,
        quantiles: float | Sequence[float] = 0.5,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.several = not isinstance(quantiles, (int, float))
        values = tuple(float(q) for q in quantiles) if self.several else (float(quantiles),)  # type: ignore[union-attr, arg-type]
        if not values or not all(0.0 < q < 1.0 for q in values):
            raise ConfigError(
                f"{owner}: quantiles must lie in (0, 1) (and be at least one), got {quantiles!r}"
            )
        self.quantiles = values
        self.register_buffer("quantile_values", torch.tensor(values), persistent=False)
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        if self.several:
            expected = (*target.shape, len(self.quantiles))
            if tuple(input.shape) != expected:
                raise LossInputError(
                    f"{self.display_name}: input has shape {tuple(input.shape)} and target "
                    f"{tuple(target.shape)}: expected input {expected}, the target's shape plus "
                    f"a trailing dim of the {len(self.quantiles)} quantiles {self.quantiles}"
                )
        elif input.shape != target.shape:
            raise LossInputError(
                f"{self.display_name}: target has shape {tuple(target.shape)} and input "
                f"{tuple(input.shape)}: with one quantile give both the same shape (for several, "
                "pass quantiles as a sequence and give the input a trailing quantile dim)"
            )
        x = input.to(compute_dtype(input.dtype))
        t = target.to(x.dtype)
        if self.several:
            t = t.unsqueeze(-1)
        q = self.quantile_values.to(x.dtype) if self.several else self.quantiles[0]
        d = t - x
        loss = torch.maximum(q * d, (q - 1) * d)
        return _reduce(loss, self.reduction, input.dtype)

    def extra_repr(self) -> str:
        shown = self.quantiles if self.several else self.quantiles[0]
        return f"quantiles={shown}, reduction={self.reduction!r}"


@register("charbonnier", family=_FAMILY, aliases=("pseudo_huber_l1",))
class CharbonnierLoss(ContractedLoss, nn.Module):
    """Charbonnier loss ``sqrt((x - t)^2 + eps^2)``: a smooth L1 (as in LapSRN, EDVR).

    Its minimum, at a perfect prediction, is ``eps`` (not 0); for large errors it approaches the
    absolute error. kornia's ``charbonnier_loss`` is this loss with ``eps=1`` minus 1. The
    gradient ``d / sqrt(d^2 + eps^2)`` comes from a fused kernel.

    Args:
        eps: the smoothing scale, > 0, in the units of the data.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        impl: ``"auto"``, ``"compiled"`` or ``"eager"``, as for :class:`LogCoshLoss`.

    Example::

        >>> import torch
        >>> CharbonnierLoss(eps=1e-3)(torch.tensor([0.0, 3.0]), torch.tensor([0.0, -1.0]))
        tensor(2.0005)
    """

    contract: ClassVar[Contract] = _VALUES
    loss_name: ClassVar[str] = "charbonnier"

    def __init__(
        self,
        eps: float = 1e-3,
        reduction: Reduction = "mean",
        impl: Impl = "auto",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.eps = _positive(owner, "eps", eps)
        self.reduction: Reduction = _kernels.check_reduction(owner, reduction)
        self.impl: Impl = _kernels.check_impl(owner, impl)
        self._init_check(check)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self.check_inputs(input, target)
        return _kernels.elementwise_loss(
            _kernels.CHARBONNIER, input, target, (self.eps,), self.reduction, self.impl
        )

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
