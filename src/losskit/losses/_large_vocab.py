"""Cross-entropy of a linear projection without the ``(N, V)`` logits: large-vocabulary heads.

Registry name ``linear_cross_entropy`` (family ``"classification"``). The loss takes the hidden
states and the projection weight, both selected by key like any input::

    lk.Term("linear_cross_entropy", input=("hidden", "weight"), target="labels")

and runs PyTorch's chunked ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())``,
which processes the rows in chunks and never holds the logits. What torch's chunked path does not
offer is derived exactly from it, at the cost of ``O(N H)`` work, never ``O(N V)``:

- label smoothing: with ``z_j = h . W_j + b_j``, ``lse = logsumexp(z)`` and ``z_bar`` the mean
  logit, the smoothed loss is ``(1 - e)(lse - z_y) + e (lse - z_bar) = ce + e (z_y - z_bar)``,
  where ``ce`` is the unsmoothed loss torch computes chunked, ``z_y = h . W_y + b_y`` and
  ``z_bar = h . mean_j(W_j) + mean(b)``.
- z-loss (PaLM): ``lse = ce + z_y`` per row, so ``z_loss * mean(lse ** 2)`` comes from the
  per-row losses. This uses torch's chunked op without reduction, which recomputes the chunks in
  backward instead of precomputing them in forward (about 1.4x the time of the loss alone).

Where the chunked path cannot apply (under ``torch.jit.trace``) the loss computes the logits and
says so once with a :class:`~losskit.errors.LossKitWarning`; ``chunked=False`` computes them on
request. The chunked op supports one plain ``backward()`` per forward: not ``create_graph=True``,
a second pass over a retained graph, forward-mode AD or ``torch.func.grad``. So gradient-level
balancers and GradNorm refuse a chunked term at construction, and per-key gradient diagnostics
(``gradient_health``, ``Trainer(diagnostics_every=...)``) fail with a message naming
``chunked=False``, which those need.

Example::

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from losskit import losses
    >>> loss = losses.get("linear_cross_entropy", ignore_index=-100)
    >>> h, w = torch.randn(6, 4), torch.randn(10, 4)
    >>> y = torch.tensor([1, 2, 3, -100, 5, 9])
    >>> torch.allclose(loss(h, w, y), F.cross_entropy(h @ w.T, y))
    True
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError, LossKitWarning
from losskit.losses._elementwise import Reduction, check_reduction
from losskit.losses.contracts import (
    FIRST_CALLS,
    Check,
    Contract,
    ContractedLoss,
    _finite,
    check_placement,
)
from losskit.losses.registry import register

__all__ = ["CPU_CHUNK_ROWS", "LinearCrossEntropyLoss"]

CPU_CHUNK_ROWS = 256
"""Rows per chunk on the CPU when no ``options`` are given. torch's default sizes a chunk's logits
like the hidden states (32 rows at N=2048, H=1024, V=32768; 128 at N=8192), and each chunk
reads and writes the whole ``(V, H)`` weight gradient: measured on a 2-core CPU, 32-row chunks
took 2.4x the CPU time of the plain logits path and 256-row chunks 0.8x to 1.1x. A 256-row chunk
of logits is ``256 / H`` of the weight gradient's size (a quarter at H=1024)."""


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


class _PlainBackwardOnly(torch.autograd.Function):
    """Identity whose backward refuses ``create_graph=True`` with a message a user can act on.

    torch's chunked op precomputes its gradients in forward, so a double backward through it
    fails deep in autograd ("element 0 of tensors does not require grad").
    """

    @staticmethod
    def forward(ctx: Any, value: Tensor, name: str) -> Tensor:
        ctx.name = name
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        if torch.is_grad_enabled():  # backward(create_graph=True), torch.autograd.grad(...)
            raise LossInputError(
                f"{ctx.name}: torch's chunked path supports plain backward() only, not "
                "create_graph=True (double backward, gradient penalties); build the loss with "
                "chunked=False for that (it computes the (N, V) logits)"
            )
        if getattr(ctx, "used", False):  # a second pass: retain_graph, per-key gradients
            raise LossInputError(
                f"{ctx.name}: torch's chunked path supports one backward pass per forward; "
                "gradient-level balancers, GradNorm and gradient diagnostics (one pass per "
                "key) need chunked=False (it computes the (N, V) logits)"
            )
        ctx.used = True
        return grad, None


@register(
    "linear_cross_entropy",
    family="classification",
    aliases=("chunked_cross_entropy",),
    description="Cross-entropy of hidden states times a projection weight, never holding the "
    "(N, V) logits (torch's chunked path).",
)
class LinearCrossEntropyLoss(ContractedLoss, nn.Module):
    """Cross-entropy of ``hidden @ weight.T (+ bias)`` against class indices, chunked over rows.

    Called as ``loss(hidden, weight, target)`` or ``loss(hidden, weight, bias, target)``:
    ``hidden`` is ``(N, H)`` or ``(B, T, H)``, ``weight`` the projection ``(V, H)`` (e.g.
    ``model.lm_head.weight``), ``bias`` ``(V,)`` and ``target`` int64 class indices of
    ``hidden``'s shape without its last dim. Equal in value and gradients to
    ``F.cross_entropy(hidden @ weight.T + bias, target, ...)`` without its ``(N, V)`` memory.

    Args:
        ignore_index: targets equal to it do not count (``"mean"`` divides by the rest); with
            every target ignored the mean is 0 with a zero gradient (``F.cross_entropy`` gives
            NaN).
        label_smoothing: in [0, 1], as ``F.cross_entropy``'s.
        z_loss: coefficient of PaLM's ``mean(logsumexp(logits) ** 2)`` over counted rows, added
            to the loss (0 disables it).
        reduction: ``"mean"`` over counted rows, ``"sum"`` or ``"none"`` (``target``'s shape,
            0 at ignored rows).
        chunked: ``False`` computes the logits (torch's reference path), e.g. for double
            backward or ``torch.func``; the default takes torch's chunked path.
        options: torch's ``LinearCrossEntropyOptions`` (chunk size, accumulation dtype);
            ``None`` uses :data:`CPU_CHUNK_ROWS`-row chunks on the CPU and torch's defaults
            elsewhere.

    Example::

        >>> import torch
        >>> loss = LinearCrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
        >>> h = torch.randn(8, 16, requires_grad=True)
        >>> w = torch.randn(100, 16, requires_grad=True)
        >>> value = loss(h, w, torch.randint(0, 100, (8,)))
        >>> value.backward()
        >>> h.grad.shape, w.grad.shape
        (torch.Size([8, 16]), torch.Size([100, 16]))
    """

    contract: ClassVar[Contract] = Contract("values", "class_indices", "any")
    loss_name: ClassVar[str] = "linear_cross_entropy"

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        reduction: Reduction = "mean",
        chunked: bool = True,
        options: torch.nn.LinearCrossEntropyOptions | None = None,
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ConfigError(f"{owner}: label_smoothing must lie in [0, 1], got {label_smoothing}")
        if not (math.isfinite(float(z_loss)) and float(z_loss) >= 0.0):
            raise ConfigError(f"{owner}: z_loss must be a finite number >= 0, got {z_loss}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self.z_loss = float(z_loss)
        self.reduction: Reduction = check_reduction(owner, reduction)
        self.chunked = bool(chunked)
        self.options = options
        self.single_backward = self.chunked  # read by Criterion: one backward pass per forward
        self._warned = False
        self._init_check(check)

    def forward(self, hidden: Tensor, weight: Tensor, *rest: Tensor) -> Tensor:
        if len(rest) not in (1, 2):
            raise LossInputError(
                f"{self.display_name}: expected (hidden, weight, target) or (hidden, weight, "
                f"bias, target), got {2 + len(rest)} tensors"
            )
        bias, target = (None, rest[0]) if len(rest) == 1 else rest
        self._check(hidden, weight, bias, target)
        shape = target.shape
        h = hidden.reshape(-1, hidden.shape[-1])
        y = target.reshape(-1).long()
        valid = y != self.ignore_index
        chunked = self.chunked and not torch._C._get_tracing_state()
        if self.chunked and not chunked:
            self._fallback("torch.jit.trace does not support torch's chunked path")
        needs_rows = self.reduction == "none" or self.z_loss > 0.0
        ce = F.linear_cross_entropy(
            h,
            weight,
            y,
            linear_bias=bias,
            reduction="none" if needs_rows else "sum",
            ignore_index=self.ignore_index,
            options=self._options(h) if chunked else None,
        )
        if chunked and ce.requires_grad:
            ce = _PlainBackwardOnly.apply(ce, self.display_name)  # type: ignore[no-untyped-call]
        hard, eps = ce, self.label_smoothing
        z_y: Tensor | None = None
        if eps > 0.0 or self.z_loss > 0.0:
            safe = torch.where(valid, y, 0)
            z_y = (h * weight[safe]).sum(-1)
            if bias is not None:
                z_y = z_y + bias[safe]
        if eps > 0.0:
            assert z_y is not None
            z_bar = h @ weight.mean(0)
            if bias is not None:
                z_bar = z_bar + bias.mean()
            smooth = torch.where(valid, eps * (z_y - z_bar), 0.0).to(ce.dtype)
            ce = ce + (smooth if needs_rows else smooth.sum())
        if self.z_loss > 0.0:
            assert z_y is not None
            # ce is 0 at ignored rows, where lse is not needed (and not recovered).
            lse = torch.where(valid, hard + z_y.to(hard.dtype), 0.0)
            ce = ce + self.z_loss * lse.square()
        if self.reduction == "none":
            return ce.reshape(shape)
        total = ce.sum() if needs_rows else ce
        if self.reduction == "sum":
            return total
        count = valid.sum()
        return torch.where(count > 0, total / count.clamp_min(1), total * 0.0)

    def _options(self, hidden: Tensor) -> torch.nn.LinearCrossEntropyOptions:
        if self.options is not None:
            return self.options
        if hidden.device.type == "cpu":
            return torch.nn.LinearCrossEntropyOptions(
                batch_chunk_size=min(CPU_CHUNK_ROWS, max(1, hidden.shape[0]))
            )
        return torch.nn.LinearCrossEntropyOptions()

    def _fallback(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.display_name}: {why}; computing the full (N, V) logits instead (the "
                "same values, but O(N V) memory)",
                LossKitWarning,
                stacklevel=3,
            )

    def _check(self, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor) -> None:
        name = self.display_name
        check_placement(name, hidden, target)
        for role, t in (("hidden", hidden), ("weight", weight), ("bias", bias)):
            if t is not None and not t.is_floating_point():
                raise LossInputError(
                    f"{name}: {role} has dtype {str(t.dtype).removeprefix('torch.')}, expected "
                    f"a floating-point tensor; cast it with {role}.float()"
                )
        if weight.ndim != 2:
            raise LossInputError(
                f"{name}: weight has shape {_shape(weight)}, expected the projection (V, H) "
                "(e.g. model.lm_head.weight)"
            )
        if hidden.ndim < 1 or hidden.shape[-1] != weight.shape[1]:
            raise LossInputError(
                f"{name}: hidden has shape {_shape(hidden)} and weight {_shape(weight)}: expected "
                f"hidden (..., H) with H = weight.shape[1] = {weight.shape[1]}"
            )
        if hidden.dtype != weight.dtype:
            raise LossInputError(
                f"{name}: hidden is {str(hidden.dtype).removeprefix('torch.')} but weight is "
                f"{str(weight.dtype).removeprefix('torch.')}; give both one dtype"
            )
        if bias is not None and _shape(bias) != (weight.shape[0],):
            raise LossInputError(
                f"{name}: bias has shape {_shape(bias)}, expected ({weight.shape[0]},) (one per "
                "row of weight)"
            )
        if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
            raise LossInputError(
                f"{name}: target has dtype {str(target.dtype).removeprefix('torch.')}, expected "
                "integer class indices (int64); cast with target.long()"
            )
        if target.shape != hidden.shape[:-1]:
            raise LossInputError(
                f"{name}: target has shape {_shape(target)}, expected {_shape(hidden)[:-1]} "
                f"(hidden {_shape(hidden)} without its last dim H)"
            )
        state = self.__dict__["_check_state"]
        if torch.compiler.is_compiling() or not (
            state.mode == "always" or (state.mode == "first" and state.calls < FIRST_CALLS)
        ):
            return
        state.calls += 1
        _finite(name, "hidden", hidden, state.nonfinite)
        valid = target[target != self.ignore_index]
        if valid.numel():
            low, high = int(valid.min()), int(valid.max())
            if low < 0 or high >= weight.shape[0]:
                bad = high if high >= weight.shape[0] else low
                raise LossInputError(
                    f"{name}: class index {bad} out of range for {weight.shape[0]} classes "
                    f"(weight has {weight.shape[0]} rows; ignore_index={self.ignore_index} is "
                    "excluded)"
                )

    def extra_repr(self) -> str:
        parts = [f"ignore_index={self.ignore_index}", f"reduction={self.reduction!r}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.z_loss:
            parts.append(f"z_loss={self.z_loss}")
        if not self.chunked:
            parts.append("chunked=False")
        return ", ".join(parts)
