"""Compound losses as keyed terms: each part logged and balanced on its own.

MONAI's ``DiceCELoss`` and ``DiceFocalLoss`` return one opaque sum; here the same compounds are
a mapping of :class:`~losskit.Term` to put in a :class:`~losskit.Criterion` (alone or beside
other terms), so ``res.log()`` shows ``loss/dice`` and ``loss/ce`` separately and a balancer can
weigh them. Each preset reads the same ``input`` and ``target`` in both terms.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> crit = lk.Criterion({**lk.presets.dice_ce(input="logits", target="mask"),
    ...                      "depth": lk.Term("l1", input="depth", target="depth")})
    >>> sorted(crit.terms)
    ['ce', 'depth', 'dice']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from losskit.errors import ConfigError
from losskit.term import Selector, Term, WeightLike

__all__ = ["dice_ce", "dice_focal"]

Mode: TypeAlias = Literal["multiclass", "multilabel", "binary"]
_MODES = ("multiclass", "multilabel", "binary")


def _options(
    name: str, mode: Mode, keys: tuple[str, str], extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    if mode not in _MODES:
        raise ConfigError(f"presets.{name}: mode must be one of {_MODES}, got {mode!r}")
    if len(keys) != 2 or keys[0] == keys[1]:
        raise ConfigError(f"presets.{name}: keys must be two different term keys, got {keys!r}")
    return dict(extra or {})


def dice_ce(
    *,
    input: Selector = "logits",
    target: Selector = "target",
    mode: Mode = "multiclass",
    dice_weight: WeightLike = 1.0,
    ce_weight: WeightLike = 1.0,
    ignore_index: int | None = None,
    keys: tuple[str, str] = ("dice", "ce"),
    dice: Mapping[str, Any] | None = None,
    ce: Mapping[str, Any] | None = None,
) -> dict[str, Term]:
    """Dice and cross-entropy terms on the same logits: ``{"dice": ..., "ce": ...}``.

    ``mode="multiclass"`` pairs :class:`~losskit.losses.DiceLoss` with ``cross_entropy``
    (class-index targets); ``"multilabel"`` and ``"binary"`` with ``bce_logits`` (a float
    target of the input's shape). MONAI's ``DiceCELoss(softmax=True, to_onehot_y=True,
    lambda_dice=a, lambda_ce=b)`` is the total of ``dice_ce(dice_weight=a, ce_weight=b)``.

    Args:
        input: the selector of the logits both terms read.
        target: the selector of the target both terms read.
        dice_weight: the Dice term's weight (a float or a schedule).
        ce_weight: the cross-entropy term's weight (a float or a schedule).
        ignore_index: a target value both terms leave out (multi-class).
        keys: the two terms' keys.
        dice: further arguments of the Dice loss (e.g. ``{"include_background": False}``).
        ce: further arguments of the cross-entropy (e.g. ``{"label_smoothing": 0.1}``).

    Example::

        >>> import torch
        >>> import losskit as lk
        >>> crit = lk.Criterion(lk.presets.dice_ce(dice_weight=0.5))
        >>> res = crit({"logits": torch.zeros(2, 3, 4, 4)},
        ...            {"target": torch.zeros(2, 4, 4, dtype=torch.long)})
        >>> sorted(res.log())
        ['loss', 'loss/ce', 'loss/dice', 'weight/ce', 'weight/dice']
    """
    dice_options = _options("dice_ce", mode, keys, dice)
    ce_options = _options("dice_ce", mode, keys, ce)
    if ignore_index is not None:
        if mode != "multiclass":
            raise ConfigError(
                "presets.dice_ce: ignore_index is for class-index targets (mode='multiclass'); "
                f"got mode={mode!r}"
            )
        dice_options.setdefault("ignore_index", ignore_index)
        ce_options.setdefault("ignore_index", ignore_index)
    ce_name = "cross_entropy" if mode == "multiclass" else "bce_logits"
    return {
        keys[0]: Term(
            "dice", input=input, target=target, weight=dice_weight, mode=mode, **dice_options
        ),
        keys[1]: Term(ce_name, input=input, target=target, weight=ce_weight, **ce_options),
    }


def dice_focal(
    *,
    input: Selector = "logits",
    target: Selector = "target",
    mode: Mode = "multiclass",
    gamma: float = 2.0,
    dice_weight: WeightLike = 1.0,
    focal_weight: WeightLike = 1.0,
    keys: tuple[str, str] = ("dice", "focal"),
    dice: Mapping[str, Any] | None = None,
    focal: Mapping[str, Any] | None = None,
) -> dict[str, Term]:
    """Dice and focal terms on the same logits: ``{"dice": ..., "focal": ...}``.

    ``mode="multiclass"`` pairs :class:`~losskit.losses.DiceLoss` with ``softmax_focal``;
    ``"multilabel"`` and ``"binary"`` with the sigmoid ``focal`` loss. MONAI's
    ``DiceFocalLoss(sigmoid=True, gamma=g, lambda_focal=b)`` is the total of
    ``dice_focal(mode="multilabel", gamma=g, focal_weight=b, focal={"alpha": None})``; its
    ``softmax=True`` applies the softmax to the Dice term only and keeps a sigmoid focal term.

    Args:
        gamma: the focusing parameter of the focal term.
        dice_weight: the Dice term's weight (a float or a schedule).
        focal_weight: the focal term's weight (a float or a schedule).
        keys: the two terms' keys.
        dice: further arguments of the Dice loss (e.g. ``{"include_background": False}``).
        focal: further arguments of the focal loss (e.g. ``{"alpha": None}``).
        input: as for :func:`dice_ce`.
        target: as for :func:`dice_ce`.
        mode: as for :func:`dice_ce`.

    Example::

        >>> import torch
        >>> import losskit as lk
        >>> terms = lk.presets.dice_focal(mode="binary", gamma=1.0)
        >>> sorted(terms), terms["focal"].loss.gamma
        (['dice', 'focal'], 1.0)
    """
    dice_options = _options("dice_focal", mode, keys, dice)
    focal_options = _options("dice_focal", mode, keys, focal)
    focal_name = "softmax_focal" if mode == "multiclass" else "focal"
    return {
        keys[0]: Term(
            "dice", input=input, target=target, weight=dice_weight, mode=mode, **dice_options
        ),
        keys[1]: Term(
            focal_name,
            input=input,
            target=target,
            weight=focal_weight,
            gamma=gamma,
            **focal_options,
        ),
    }
