"""*multidigits*: two embedded digits overlaid on one canvas, an analog of Multi-MNIST.

Multi-MNIST (Sabour et al. 2017; the multi-task version of Sener & Koltun 2018) puts one digit
in the top-left and another in the bottom-right of a canvas so that they overlap, and asks for
both classes. Here the 8x8 UCI digits sit on a 12x12 canvas: the left digit at row 0, column 0,
the right one shifted by ``shift`` pixels down and right, merged by the pixel-wise maximum. The
digits are split into training, validation and test images *before* they are paired, so no test
(or validation) digit appears in a training pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from losskit.data._digits import load_digits
from losskit.data._keyed import KeyedTensorDataset
from losskit.errors import ConfigError

__all__ = ["CANVAS", "MultiDigits", "multidigits"]

CANVAS = 12
"""The side of the square canvas, in pixels."""


@dataclass(frozen=True)
class MultiDigits:
    """The three splits of *multidigits*; each item holds ``pixels`` (144,) in [0, 1], ``left``
    and ``right`` (the two classes) and ``sources`` (the two source images' indices).

    Attributes:
        train: training pairs, both digits drawn from the training images.
        val: validation pairs, drawn from the validation images.
        test: test pairs, drawn from the test images.
    """

    train: KeyedTensorDataset
    val: KeyedTensorDataset
    test: KeyedTensorDataset


def _pairs(
    images: Tensor, labels: Tensor, index: Tensor, count: int, shift: int, g: torch.Generator
) -> KeyedTensorDataset:
    left = index[torch.randint(len(index), (count,), generator=g)]
    right = index[torch.randint(len(index), (count,), generator=g)]
    canvas = images.new_zeros(count, CANVAS, CANVAS)
    canvas[:, :8, :8] = images[left]
    placed = images.new_zeros(count, CANVAS, CANVAS)
    placed[:, shift : shift + 8, shift : shift + 8] = images[right]
    pixels = torch.maximum(canvas, placed).reshape(count, -1) / 16.0
    return KeyedTensorDataset(
        pixels=pixels,
        left=labels[left],
        right=labels[right],
        sources=torch.stack([left, right], 1),
    )


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"multidigits: {name} must lie in [{low}, {high}], got {value!r}")


def multidigits(
    seed: int = 0,
    pairs: int = 6000,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    shift: int = 4,
) -> MultiDigits:
    """Build *multidigits* from the embedded digits, deterministically from ``seed``.

    The 1797 digit images are shuffled with ``seed`` and split into test, validation and
    training images; each split then gets pairs of its own images (``pairs`` in all, shared out
    by the same fractions), drawn uniformly with replacement.

    Args:
        seed: seeds the split of the images and the drawing of the pairs.
        pairs: the number of pairs over the three splits.
        val_fraction: the share of images (and pairs) for validation.
        test_fraction: the share of images (and pairs) for the test split.
        shift: how far the right digit is moved down and right (1 to 4 pixels; smaller
            overlaps more).

    Example::

        >>> data = multidigits(pairs=200)
        >>> len(data.train), len(data.val), len(data.test)
        (140, 30, 30)
        >>> item = data.train[0]
        >>> tuple(item["pixels"].shape), sorted(item)
        ((144,), ['left', 'pixels', 'right', 'sources'])
    """
    _check("val_fraction", val_fraction, 0.01, 0.5)
    _check("test_fraction", test_fraction, 0.01, 0.5)
    _check("shift", shift, 1, CANVAS - 8)
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 10:
        raise ConfigError(f"multidigits: pairs must be an integer of at least 10, got {pairs!r}")
    digits = load_digits()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(digits.labels), generator=g)
    n_test = round(len(order) * test_fraction)
    n_val = round(len(order) * val_fraction)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    p_test, p_val = round(pairs * test_fraction), round(pairs * val_fraction)
    images, labels = digits.images, digits.labels
    return MultiDigits(
        train=_pairs(images, labels, train, pairs - p_test - p_val, int(shift), g),
        val=_pairs(images, labels, val, p_val, int(shift), g),
        test=_pairs(images, labels, test, p_test, int(shift), g),
    )


def multidigits_data(
    seed: int = 0,
    pairs: int = 6000,
    holdout: Literal["val", "test"] = "val",
    shift: int = 4,
) -> tuple[KeyedTensorDataset, KeyedTensorDataset]:
    """``(train, held out)`` of :func:`multidigits` for config runs (``[data] source =
    "multidigits"``): the held-out set is the validation split, or the test split with
    ``holdout = "test"`` (for a final table, once nothing is chosen on it any more)."""
    if holdout not in ("val", "test"):
        raise ConfigError(f"multidigits: holdout must be 'val' or 'test', got {holdout!r}")
    data = multidigits(seed=seed, pairs=pairs, shift=shift)
    return data.train, data.val if holdout == "val" else data.test
