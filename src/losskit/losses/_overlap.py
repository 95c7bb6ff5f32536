"""Shared machinery of the overlap losses: modes, per-class statistics, class-weighted reductions.

The Dice family (Dice, generalized Dice, Jaccard, Tversky, focal-Tversky) needs three numbers per
sample and class, over the spatial positions ``x`` that are not ignored:

- ``intersection`` ``I = sum_x p_x t_x``,
- ``mass`` ``P = sum_x p_x`` (the soft prediction's size),
- ``count`` ``T = sum_x t_x`` (the target's size).

:func:`overlap_stats` computes them with a hand-derived gradient (:class:`_MulticlassStats`,
:class:`_MultilabelStats`); autograd on the naive formula keeps the probabilities, the one-hot
target, their products and the masks. Class-index targets are never one-hot encoded (an ignore
label such as 255 is replaced before any gather: kornia/kornia#839), and their per-class sums
accumulate in float64 bins, so that ``I <= T`` holds to rounding on large volumes.

The softmax statistics run as a handful of whole-tensor ops and keep the softmax for the
backward pass, which turns that buffer, in place, into the gradient: one full-size buffer per
step, whose fresh pages cost more than its arithmetic. A block loop that kept nothing full-size
was measured 2-3x slower on a shared 2-core CPU (``benchmarks/losses.py``, 16M elements): every
op is a parallel region that waits for its slowest thread, and blocks multiply the regions.
The sigmoid statistics still run block by block (about a million elements each on the CPU),
recomputing the sigmoid in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

import torch
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses._options import check_choice
from losskit.losses.contracts import Check, Contract, ContractedLoss, InputKind

__all__ = [
    "Activation",
    "Average",
    "ClassSelection",
    "Mode",
    "OverlapLoss",
    "OverlapStats",
    "Reduction",
    "SegmentationLoss",
    "compute_dtype",
    "dense_stats",
    "overlap_stats",
]

Mode: TypeAlias = Literal["multiclass", "multilabel", "binary"]
Reduction: TypeAlias = Literal["mean", "sum", "none"]
ClassSelection: TypeAlias = Literal["all", "present"]
Average: TypeAlias = Literal["macro", "micro"]
Activation: TypeAlias = Literal["softmax", "sigmoid", "none"] | Callable[[Tensor], Tensor]
"""What turns the input into the prediction ``p``: a softmax over dim 1, a sigmoid per element,
nothing (``"none"``: the input already is ``p``), or any callable ``p = f(input)``."""

_REDUCTIONS = ("mean", "sum", "none")
_CLASS_SELECTIONS = ("all", "present")
_AVERAGES = ("macro", "micro")
_ACTIVATIONS = ("softmax", "sigmoid", "none")


def compute_dtype(t: Tensor) -> torch.dtype:
    """The dtype the losses compute in: float32 for half-precision inputs, else the input's."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


@dataclass(frozen=True)
class OverlapStats:
    """Per-class sums of one batch: each ``(N, C)``, or ``(C,)`` once pooled over the batch."""

    intersection: Tensor
    mass: Tensor
    count: Tensor

    def pooled(self) -> OverlapStats:
        """The statistics of the whole batch as one volume (summed over samples)."""
        return OverlapStats(self.intersection.sum(0), self.mass.sum(0), self.count.sum(0))


_CPU_CHUNK = 1 << 20
"""Elements per block on the CPU: blocks stay in cache and no full-size buffer is faulted in."""
_DEVICE_CHUNK = 1 << 28
"""Elements per block elsewhere (accelerators cache their memory; few large kernels win)."""


def _blocks(x: Tensor) -> list[tuple[slice, slice]]:
    """Sample and position slices that cut ``x`` ``(N, C, S)`` into blocks of whole columns.

    Each block holds every channel of its positions (a softmax over ``C`` needs them all) and
    about ``_CPU_CHUNK`` elements on the CPU: several samples, or part of one.
    """
    n, c, s = x.shape
    chunk = _CPU_CHUNK if x.device.type == "cpu" else _DEVICE_CHUNK
    if c * s <= chunk:
        step = max(1, chunk // max(1, c * s))
        return [(slice(i, min(i + step, n)), slice(0, s)) for i in range(0, n, step)]
    width = max(1, chunk // c)
    return [
        (slice(i, i + 1), slice(j, min(j + width, s))) for i in range(n) for j in range(0, s, width)
    ]


def _class_index(target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Class indices safe to gather with (ignored positions mapped to 0) and the valid mask."""
    if ignore_index is None:
        return target, None
    valid = target != ignore_index
    return target.masked_fill(~valid, 0), valid


def _activate(x: Tensor, mode: str, from_logits: bool, dtype: torch.dtype) -> Tensor:
    if not from_logits:
        return x.to(dtype)
    if mode == "multiclass":
        return torch.softmax(x, 1, dtype=dtype)
    return torch.sigmoid(x.to(dtype))


def _scale_by_class(p: Tensor, g: Tensor, inner: Tensor) -> Tensor:
    """``p * (g[:, :, None] - inner[:, None, :])`` for ``p`` ``(N, C, S)``, in ``p``'s buffer.

    A fresh full-size buffer costs more than the arithmetic (its pages are faulted in: at 16M
    elements a write into a fresh buffer took 3.6x as long as into a used one), so ``p`` is
    overwritten, ``k`` classes at a time through one ``(N, k, S)`` temporary of an eighth of a
    block, reused for every group (a block-sized temporary per call was itself faulted in: at 1M
    elements it made the whole backward 10-15% slower). Under ``create_graph`` autograd needs
    ``p`` as it was: a new tensor then.
    """
    if torch.is_grad_enabled():
        return p * (g.unsqueeze(-1) - inner.unsqueeze(1))
    n, c, s = p.shape
    chunk = _CPU_CHUNK // 8 if p.device.type == "cpu" else _DEVICE_CHUNK
    step = min(c, max(1, chunk // max(1, n * s)))
    factor = p.new_empty(n, step, s)  # one temporary for every group of classes
    for k in range(0, c, step):
        width = min(step, c - k)
        torch.sub(g[:, k : k + width].unsqueeze(-1), inner.unsqueeze(1), out=factor[:, :width])
        p[:, k : k + width].mul_(factor[:, :width])
    return p


class _MulticlassStats(torch.autograd.Function):
    """``(I, P, T)`` of softmax probabilities (or given ones) against class-index targets.

    Whole-tensor ops, few of them: each is one parallel region, and on a shared CPU every region
    waits for its slowest thread (a block loop of many small ops ran 2-3x slower under load).
    The forward pass writes one full-size buffer, the softmax ``p``, and keeps it for the
    backward pass, which overwrites it with ``dL/dz_c = m p_c (gP_c + [c = y] gI_c - sum_k p_k
    gP_k - p_y gI_y)`` (``m``: not ignored, ``y``: the target class) and returns it. A second
    backward (``retain_graph``) or one that builds a graph (``create_graph``) recomputes ``p``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        target: Tensor,
        ignore_index: int | None,
        from_logits: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        dtype = compute_dtype(input)
        index, valid = _class_index(target, ignore_index)
        p = _activate(input, "multiclass", from_logits, dtype)
        if valid is None:
            mass = p.sum(-1)
        else:
            # A batched matrix-vector product: no masked copy of p.
            mass = torch.bmm(p, valid.to(dtype).unsqueeze(-1)).squeeze(-1)
        p_target = p.gather(1, index.unsqueeze(1)).squeeze(1)
        bins = torch.zeros(mass.shape, dtype=torch.float64, device=input.device)
        weights = (
            torch.ones(index.shape, dtype=torch.float64, device=input.device)
            if valid is None
            else valid.to(torch.float64)
        )
        counted = p_target if valid is None else p_target * valid
        # Float64 bins: a CPU scatter_add is one running sum per class over the pixels.
        intersection = bins.scatter_add(1, index, counted.to(torch.float64)).to(dtype)
        count = bins.scatter_add(1, index, weights).to(dtype)
        ctx.from_logits = from_logits
        ctx.ignore_index = ignore_index
        ctx.probabilities = (p, p_target) if from_logits else None
        ctx.save_for_backward(input, target)
        ctx.mark_non_differentiable(count)
        return intersection, mass, count

    @staticmethod
    def backward(
        ctx: Any, g_intersection: Tensor, g_mass: Tensor, _g_count: Tensor
    ) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        input, target = ctx.saved_tensors
        index, valid = _class_index(target, ctx.ignore_index)
        idx = index.unsqueeze(1)  # (N, 1, S)
        g_target = g_intersection.gather(1, index).unsqueeze(1)  # gI of y, (N, 1, S)
        if not ctx.from_logits:
            grad = g_mass.unsqueeze(-1).expand(input.shape).to(input.dtype).clone()
            grad.scatter_add_(1, idx, g_target.to(input.dtype))
        else:
            saved, ctx.probabilities = ctx.probabilities, None
            if saved is None or torch.is_grad_enabled():
                p = torch.softmax(input, 1, dtype=g_mass.dtype)
                p_target = p.gather(1, idx).squeeze(1)
            else:
                p, p_target = saved
            g_target_p = g_target * p_target.unsqueeze(1)
            inner = torch.bmm(g_mass.unsqueeze(1), p).add_(g_target_p).squeeze(1)  # (N, S)
            del saved
            grad = _scale_by_class(p, g_mass, inner).scatter_add_(1, idx, g_target_p)
            grad = grad.to(input.dtype)
        if valid is not None:
            grad.mul_(valid.unsqueeze(1))
        return grad, None, None, None


class _MultilabelStats(torch.autograd.Function):
    """``(I, P, T)`` of sigmoid probabilities (or given ones) against a float target.

    Saves only the caller's logits and target and works block by block like
    :class:`_MulticlassStats`: ``dL/dz = m (gI t + gP) p (1 - p)``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        target: Tensor,
        ignore_index: float | None,
        from_logits: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, c = input.shape[:2]
        dtype = compute_dtype(input)
        intersection = torch.zeros((n, c), dtype=dtype, device=input.device)
        mass = torch.zeros_like(intersection)
        count = torch.zeros_like(intersection)
        for rows, cols in _blocks(input):
            p = _activate(input[rows, :, cols], "multilabel", from_logits, dtype)
            t = target[rows, :, cols].to(dtype)
            if ignore_index is not None:
                valid = target[rows, :, cols] != ignore_index
                t = t.masked_fill(~valid, 0.0)
                mass[rows] += (p * valid).sum(-1)
            else:
                mass[rows] += p.sum(-1)
            intersection[rows] += (p * t).sum(-1)
            count[rows] += t.sum(-1)
        ctx.from_logits = from_logits
        ctx.ignore_index = ignore_index
        ctx.save_for_backward(input, target)
        ctx.mark_non_differentiable(count)
        return intersection, mass, count

    @staticmethod
    def backward(
        ctx: Any, g_intersection: Tensor, g_mass: Tensor, _g_count: Tensor
    ) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        input, target = ctx.saved_tensors
        dtype = g_mass.dtype
        grad = torch.empty_like(input)
        for rows, cols in _blocks(input):
            t = target[rows, :, cols]
            block = torch.addcmul(
                g_mass[rows].unsqueeze(-1), t.to(dtype), g_intersection[rows].unsqueeze(-1)
            )
            if ctx.ignore_index is not None:
                block.masked_fill_(t == ctx.ignore_index, 0.0)
            if ctx.from_logits:
                p = torch.sigmoid(input[rows, :, cols].to(dtype))
                block.mul_(p).addcmul_(block, p, value=-1.0)  # g p (1 - p), in place
            grad[rows, :, cols] = block
        return grad, None, None, None


def overlap_stats(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    ignore_index: int | None = None,
) -> OverlapStats:
    """Per-sample, per-class ``(I, P, T)`` of ``input`` ``(N, C, *S)`` against ``target``.

    ``mode="multiclass"`` takes class indices ``(N, *S)`` and a softmax over ``C``; the other
    modes take a float target of the input's shape and a sigmoid per channel. Positions whose
    target equals ``ignore_index`` count in no sum. Shapes are those checked by the loss
    contracts; the sums are in float32 for half-precision inputs.

    Example::

        >>> logits = torch.tensor([[[4.0, -4.0], [-4.0, 4.0]]])  # (N=1, C=2, S=2)
        >>> stats = overlap_stats(logits, torch.tensor([[0, 1]]), mode="multiclass")
        >>> stats.count
        tensor([[1., 1.]])
        >>> stats.intersection.round(decimals=3)
        tensor([[1., 1.]])
    """
    n, c = input.shape[:2]
    flat = input.reshape(n, c, -1)
    if mode == "multiclass":
        i, p, t = _MulticlassStats.apply(  # type: ignore[no-untyped-call]
            flat, target.reshape(n, -1), ignore_index, from_logits
        )
    else:
        i, p, t = _MultilabelStats.apply(  # type: ignore[no-untyped-call]
            flat, target.reshape(n, c, -1), ignore_index, from_logits
        )
    return OverlapStats(i, p, t)


def safe_ratio(numerator: Tensor, denominator: Tensor, empty: Tensor) -> Tensor:
    """``numerator / denominator``, and 1 where ``empty``, with a finite gradient everywhere."""
    ones = torch.ones_like(denominator)
    return torch.where(empty, ones, numerator / torch.where(empty, ones, denominator))


def _class_weight(weight: Tensor | list[float] | tuple[float, ...] | None) -> Tensor | None:
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
    if w.ndim != 1 or w.numel() == 0:
        raise ConfigError(
            f"weight must be a 1-D sequence of per-class weights (C,), got shape {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ConfigError(f"weight must hold finite values >= 0, got {w.tolist()}")
    return w


class SegmentationLoss(ContractedLoss, nn.Module):
    """Base of the segmentation losses: mode, contract, ignore_index, class weights, reductions.

    Subclasses compute per-class losses ``(N, C)`` (``(C,)`` with ``batch``) and hand them to
    :meth:`reduce`; ``modes`` lists the modes a subclass supports.
    """

    loss_name = "segmentation"
    contract = Contract("logits", "class_indices", "class_dim")
    modes: ClassVar[tuple[Mode, ...]] = ("multiclass", "multilabel", "binary")
    class_weight: Tensor | None

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        from_logits: bool = True,
        ignore_index: int | None = None,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
        include_background: bool = True,
        batch: bool = False,
        classes: ClassSelection = "all",
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        self._init_check(check)
        if mode not in self.modes:
            raise ConfigError(
                f"{type(self).__name__}: mode must be one of {self.modes}, got {mode!r}"
            )
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if classes not in _CLASS_SELECTIONS:
            raise ConfigError(f"classes must be one of {_CLASS_SELECTIONS}, got {classes!r}")
        if mode == "binary" and not include_background:
            raise ConfigError(
                "include_background=False drops channel 0, the only channel in mode='binary'"
            )
        w = _class_weight(weight)
        if w is not None and not include_background and w.numel() > 1 and float(w[1:].sum()) == 0:
            raise ConfigError(
                "every class but the background has weight 0 and include_background=False: "
                "no class is left to score"
            )
        if w is not None and float(w.sum()) == 0:
            raise ConfigError("every class weight is 0: no class is left to score")
        self.mode: Mode = mode
        self.from_logits = from_logits
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.batch = batch
        self.classes: ClassSelection = classes
        self.reduction: Reduction = reduction
        self.register_buffer("class_weight", w, persistent=False)
        input_kind: InputKind = "logits" if from_logits else "probabilities"
        if mode == "multiclass":
            self.__dict__["contract"] = Contract(input_kind, "class_indices", "class_dim")
        else:
            self.__dict__["contract"] = Contract(input_kind, "binary", "same")

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, reduction={self.reduction!r}"

    def check_mode(self, input: Tensor, target: Tensor) -> None:
        """Shape checks that depend on the mode (metadata only), before the contract's."""
        name = self.display_name
        if input.ndim < 2:
            raise LossInputError(
                f"{name}: input has shape {tuple(input.shape)}, expected (N, C, *spatial) with a "
                "class dim at 1"
            )
        channels = input.shape[1]
        if self.mode == "multiclass":
            if channels == 1:
                raise LossInputError(
                    f"{name}: input has 1 channel along dim 1 and mode='multiclass': a softmax "
                    "over one class is 1 everywhere, so the loss would be constant with zero "
                    "gradient; for a binary task use mode='binary' (sigmoid, float target of the "
                    "input's shape) or give the background a channel (C=2)"
                )
            if target.is_floating_point() and target.shape == input.shape:
                raise LossInputError(
                    f"{name}: target is a float tensor of the input's shape {tuple(input.shape)} "
                    "and mode='multiclass' expects int64 class indices (N, *spatial); pass "
                    "target.argmax(1) for one-hot targets, or mode='multilabel' for independent "
                    "0/1 channels"
                )
        elif self.mode == "binary" and channels != 1:
            raise LossInputError(
                f"{name}: mode='binary' expects one logit channel (N, 1, *spatial), got "
                f"{channels} channels; use mode='multilabel' for independent channels or "
                "mode='multiclass' for a softmax over them"
            )
        w = self.class_weight
        if w is not None and w.numel() != channels:
            raise LossInputError(
                f"{name}: weight has {w.numel()} values and the input {channels} classes along "
                "dim 1; give one weight per class, the background included"
            )

    def checked(self, input: Tensor, target: Tensor) -> None:
        """Every input check: the mode's shapes, then the contract (values on first calls)."""
        self.check_mode(input, target)
        self.check_inputs(input, target, ignore_index=self.ignore_index)

    def reduce(self, losses: Tensor, present: Tensor) -> Tensor:
        """Apply ``reduction`` to per-class losses ``(N, C)`` or ``(C,)``."""
        if self.reduction == "none":
            return losses
        w = _reduction_weights(
            losses.shape[-1],
            self.class_weight,
            include_background=self.include_background,
            like=losses,
        )
        if self.classes == "present":
            w = w * present
        total = w.sum(-1)
        per_sample = (losses * w).sum(-1) / torch.where(total > 0, total, torch.ones_like(total))
        return per_sample.mean() if self.reduction == "mean" else per_sample.sum()


def _reduction_weights(
    num_classes: int, weight: Tensor | None, *, include_background: bool, like: Tensor
) -> Tensor:
    """The per-class weights ``(C,)`` a reduction uses: ``weight`` (or ones), background 0."""
    w = (
        torch.ones(num_classes, dtype=like.dtype, device=like.device)
        if weight is None
        else weight.to(like)
    )
    if not include_background and num_classes > 1:
        w = torch.cat([w.new_zeros(1), w[1:]])
    return w


class OverlapLoss(SegmentationLoss):
    """Base of the Dice family: per-class losses from the sums ``(I, P, T)``, with smoothing.

    Subclasses implement :meth:`class_losses`.
    """

    renamed_options: ClassVar[Mapping[str, str]] = {
        "sigmoid": "MONAI's sigmoid=True is mode='multilabel' (or 'binary' for one channel), "
        "whose activation is a sigmoid; activation='sigmoid' applies one in any mode",
        "softmax": "MONAI's softmax=True is mode='multiclass' (a softmax over dim 1, the "
        "default); activation='softmax' applies one in any mode",
        "other_act": "MONAI's other_act=f is activation=f (a callable, or 'softmax', "
        "'sigmoid', 'none')",
        "to_onehot_y": "MONAI's to_onehot_y=True is mode='multiclass' with class-index targets "
        "(N, *spatial), never one-hot encoded",
        "jaccard": "MONAI's jaccard=True is the 'jaccard' loss (JaccardLoss) with smooth_nr and "
        "smooth_dr halved",
        "eps": "kornia's eps is smooth_dr=eps with smooth_nr=0",
        "smooth": "smp's smooth=s is smooth_nr=s and smooth_dr=s",
        "class_weights": "smp's class_weights is weight (one per class, background included)",
        "log_loss": "smp's log_loss=True (-log of the score) has no option here; use the linear "
        "loss",
    }

    def __init__(
        self,
        mode: Mode = "multiclass",
        *,
        from_logits: bool = True,
        ignore_index: int | None = None,
        weight: Tensor | list[float] | tuple[float, ...] | None = None,
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
            reduction=reduction,
            check=check,
        )
        if smooth_nr < 0 or smooth_dr < 0:
            raise ConfigError(
                f"smooth_nr and smooth_dr must be >= 0, got {smooth_nr} and {smooth_dr}"
            )
        check_choice(type(self).__name__, "average", average, _AVERAGES)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.average: Average = average
        self.activation: Activation = _resolve_activation(
            type(self).__name__, mode, from_logits, activation
        )
        self.soft_label = bool(soft_label)
        self.squared_pred = bool(squared_pred)
        if callable(self.activation):
            input_kind: InputKind = "values"
        else:
            input_kind = "probabilities" if self.activation == "none" else "logits"
        target_kind = self.contract.target
        self.__dict__["contract"] = Contract(input_kind, target_kind, self.contract.shape)

    def extra_repr(self) -> str:
        extra = [super().extra_repr()]
        if self.average != "macro":
            extra.append(f"average={self.average!r}")
        if self.activation != _natural_activation(self.mode) and self.activation != "none":
            extra.append(f"activation={self.activation!r}")
        extra += [f"{k}=True" for k in ("soft_label", "squared_pred") if getattr(self, k)]
        return ", ".join(extra)

    def stats(self, input: Tensor, target: Tensor) -> OverlapStats:
        """Check the inputs and compute the per-class statistics (pooled when ``batch``)."""
        self.checked(input, target)
        activation = self.activation
        if self.soft_label or self.squared_pred:
            stats = dense_stats(
                _apply_activation(activation, input),
                target,
                mode=self.mode,
                ignore_index=self.ignore_index,
                soft_label=self.soft_label,
                squared=self.squared_pred,
            )
        elif activation in ("none", _natural_activation(self.mode)):
            stats = overlap_stats(
                input,
                target,
                mode=self.mode,
                from_logits=activation != "none",
                ignore_index=self.ignore_index,
            )
        else:
            stats = overlap_stats(
                _apply_activation(activation, input),
                target,
                mode=self.mode,
                from_logits=False,
                ignore_index=self.ignore_index,
            )
        return stats.pooled() if self.batch else stats

    def micro(self, stats: OverlapStats) -> OverlapStats:
        """The statistics summed over the classes ``(..., 1)``, weighted as the reduction is.

        kornia's ``average="micro"``: one overlap per sample (or batch) over every class, the
        class weights (and ``include_background``, ``classes``) weighting each class's sums.
        """
        w = _reduction_weights(
            stats.count.shape[-1],
            self.class_weight,
            include_background=self.include_background,
            like=stats.mass,
        )
        if self.classes == "present":
            w = w * (stats.count > 0)

        def pool(x: Tensor) -> Tensor:
            return (x * w).sum(-1, keepdim=True)

        return OverlapStats(pool(stats.intersection), pool(stats.mass), pool(stats.count))

    def class_losses(self, stats: OverlapStats) -> Tensor:
        """Per-class losses from the statistics, same shape as each statistic."""
        raise NotImplementedError

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of logits (or probabilities) ``input`` against ``target``."""
        stats = self.stats(input, target)
        if self.average == "micro":
            losses = self.class_losses(self.micro(stats)).squeeze(-1)
            if self.reduction == "none":
                return losses
            return losses.mean() if self.reduction == "mean" else losses.sum()
        return self.reduce(self.class_losses(stats), stats.count > 0)


def _natural_activation(mode: Mode) -> Activation:
    return "softmax" if mode == "multiclass" else "sigmoid"


def _resolve_activation(
    owner: str, mode: Mode, from_logits: bool, activation: Activation | None
) -> Activation:
    """The activation a loss applies: ``activation``, or the mode's (``"none"`` for
    probabilities)."""
    if activation is None:
        return _natural_activation(mode) if from_logits else "none"
    if not callable(activation) and activation not in _ACTIVATIONS:
        raise ConfigError(
            f"{owner}: activation must be one of {_ACTIVATIONS} or a callable, got {activation!r}"
        )
    if not from_logits and activation != "none":
        raise ConfigError(
            f"{owner}: from_logits=False says the input already is the prediction, and "
            f"activation={activation!r} would transform it; give one of the two"
        )
    return activation


def _apply_activation(activation: Activation, input: Tensor) -> Tensor:
    dtype = compute_dtype(input)
    if callable(activation):
        return activation(input.to(dtype))
    if activation == "softmax":
        return torch.softmax(input, 1, dtype=dtype)
    if activation == "sigmoid":
        return torch.sigmoid(input.to(dtype))
    return input.to(dtype)


def dense_stats(
    p: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    ignore_index: int | None,
    soft_label: bool,
    squared: bool,
) -> OverlapStats:
    """``(I, P, T)`` of a prediction ``p`` by plain autograd, for MONAI's two other formulas.

    ``squared``: ``P = sum p^2`` and ``T = sum t^2`` (MONAI's ``squared_pred``). ``soft_label``
    (without ``squared``): ``I = (P + T - sum |p - t|) / 2`` with ``P = sum |p|``, ``T = sum |t|``,
    which is ``sum p t`` for hard labels and makes a soft target its own perfect prediction.

    Example::

        >>> p = torch.tensor([[[0.3, 0.8]]])
        >>> s = dense_stats(p, p, mode="binary", ignore_index=None, soft_label=True, squared=False)
        >>> torch.equal(s.intersection, s.mass)
        True
    """
    n, c = p.shape[:2]
    p = p.reshape(n, c, -1)
    if mode == "multiclass":
        index, valid = _class_index(target.reshape(n, -1), ignore_index)
        t = torch.zeros_like(p).scatter_(1, index.unsqueeze(1), 1.0)
        mask = None if valid is None else valid.unsqueeze(1).to(p.dtype)
    else:
        raw = target.reshape(n, c, -1)
        mask = None if ignore_index is None else (raw != ignore_index).to(p.dtype)
        t = raw.to(p.dtype)
    if mask is not None:
        p, t = p * mask, t * mask
    if squared:
        return OverlapStats((p * t).sum(-1), p.square().sum(-1), t.square().sum(-1).detach())
    if soft_label:
        mass, count = p.abs().sum(-1), t.abs().sum(-1)
        return OverlapStats((mass + count - (p - t).abs().sum(-1)) / 2, mass, count.detach())
    return OverlapStats((p * t).sum(-1), p.sum(-1), t.sum(-1).detach())
