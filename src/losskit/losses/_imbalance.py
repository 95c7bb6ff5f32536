"""Class-imbalance helpers: class counts, per-class weights and BCE positive weights.

Both return float32 tensors meant for the catalogue's one meaning of these words: ``weight`` is
a per-class weight of shape ``(C,)`` (``cross_entropy``, focal, Dice, ...) and ``pos_weight`` the
weight of positive examples per class (``bce_with_logits``).

Example::

    >>> import torch
    >>> from losskit import class_counts, class_weights, pos_weight
    >>> class_weights([90, 9, 1])
    tensor([0.0297, 0.2970, 2.6733])
    >>> class_weights(class_counts(torch.tensor([0, 0, 0, 1, 2])))
    tensor([0.4286, 1.2857, 1.2857])
    >>> pos_weight(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    tensor([3., 1.])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from losskit.errors import ConfigError, LossKitWarning

__all__ = ["class_counts", "class_weights", "pos_weight"]

WeightMethod = Literal["inverse", "sqrt_inverse", "effective_number"]


def class_counts(targets: Tensor, num_classes: int | None = None) -> Tensor:
    """How many targets of each class: an int64 tensor of shape ``(C,)``.

    Args:
        targets: class indices (an integer tensor of any shape).
        num_classes: ``C`` (default: the largest index + 1).

    Example::

        >>> class_counts(torch.tensor([[0, 0, 1], [0, 2, 2]]), num_classes=4)
        tensor([3, 1, 2, 0])
    """
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ConfigError(
            f"class_counts: targets must be integer class indices, got dtype "
            f"{str(targets.dtype).removeprefix('torch.')}; cast with targets.long()"
        )
    flat = targets.detach().flatten().cpu().long()
    if flat.numel() and int(flat.min()) < 0:
        raise ConfigError("class_counts: targets must be class indices >= 0")
    counts = torch.bincount(flat, minlength=num_classes or 0)
    if num_classes is not None and counts.numel() > num_classes:
        raise ConfigError(
            f"class_counts: targets hold class {counts.numel() - 1}, but num_classes is "
            f"{num_classes}"
        )
    return counts


def class_weights(
    counts: Tensor | Sequence[int | float],
    method: WeightMethod = "inverse",
    *,
    beta: float = 0.999,
) -> Tensor:
    """Per-class weights that counter class imbalance, scaled to sum to the number of classes.

    Args:
        counts: how many examples each class has, shape ``(C,)`` (a sequence or a tensor of
            any numeric dtype); count targets with :func:`class_counts` first.
        method: ``"inverse"`` (``w_c ∝ 1 / n_c``), ``"sqrt_inverse"`` (``w_c ∝ 1 / sqrt(n_c)``)
            or ``"effective_number"`` (Cui et al., 2019: ``w_c ∝ (1 - beta) / (1 - beta^n_c)``).
        beta: the effective-number hyper-parameter, in [0, 1).

    A class with no examples gets weight 0 (it cannot occur in the loss, and an infinite weight
    would poison any normalisation); the others share the sum ``C``.

    Example::

        >>> class_weights([10, 10])
        tensor([1., 1.])
        >>> class_weights(torch.tensor([3, 1]), "sqrt_inverse")
        tensor([0.7321, 1.2679])
    """
    counts = _counts(counts)
    if method not in ("inverse", "sqrt_inverse", "effective_number"):
        raise ConfigError(
            f"class_weights: method must be 'inverse', 'sqrt_inverse' or 'effective_number', "
            f"got {method!r}"
        )
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"class_weights: beta must be in [0, 1), got {beta}")
    present = counts > 0
    safe = torch.where(present, counts, torch.ones_like(counts))
    if method == "inverse":
        raw = 1.0 / safe
    elif method == "sqrt_inverse":
        raw = safe.rsqrt()
    else:
        raw = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), safe))
    raw = torch.where(present, raw, torch.zeros_like(raw))
    return (raw * counts.numel() / raw.sum()).float()


def pos_weight(targets: Tensor) -> Tensor:
    """``negatives / positives`` per class of binary or multi-label targets, for BCE losses.

    Args:
        targets: 0/1 targets of shape ``(N,)`` (one class) or ``(N, C)``.

    A class with no positive example gets 1.0 and a warning naming it.

    Example::

        >>> pos_weight(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        tensor(3.)
    """
    if targets.ndim not in (1, 2):
        raise ConfigError(f"pos_weight: targets must be (N,) or (N, C), got {tuple(targets.shape)}")
    t = targets.double()
    if bool(((t != 0) & (t != 1)).any()):
        raise ConfigError("pos_weight: targets must be 0 or 1")
    positives = t.sum(0)
    negatives = t.shape[0] - positives
    empty = positives == 0
    if bool(empty.any()):
        which = torch.nonzero(empty).flatten().tolist() if t.ndim == 2 else [0]
        warnings.warn(
            f"pos_weight: class(es) {which} have no positive example; their weight is set to 1",
            LossKitWarning,
            stacklevel=2,
        )
    return torch.where(
        empty, torch.ones_like(positives), negatives / positives.clamp_min(1)
    ).float()


def _counts(counts: Tensor | Sequence[int | float]) -> Tensor:
    if isinstance(counts, Tensor):
        if counts.ndim != 1:
            raise ConfigError(
                f"class_weights: counts must be a (C,) vector, got shape {tuple(counts.shape)}; "
                "for class-index targets use class_weights(class_counts(targets))"
            )
        values = counts.detach().double().cpu()
    else:
        values = torch.tensor(list(counts), dtype=torch.float64)
    if values.ndim != 1 or values.numel() == 0:
        raise ConfigError(f"class_weights: counts must be a non-empty (C,) vector, got {counts}")
    if bool((values < 0).any()):
        raise ConfigError("class_weights: counts must be >= 0")
    if not bool((values > 0).any()):
        raise ConfigError("class_weights: every class count is 0")
    return values
