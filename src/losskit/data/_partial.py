"""The digits as partially labelled datasets: some samples carry a class, some an image and its
ink, a few carry both (the setting of optional terms and multi-dataset training)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from losskit.data._digits import DigitsDataset, load_digits
from losskit.data._keyed import KeyedTensorDataset
from losskit.errors import ConfigError

__all__ = ["PartialDigits", "partially_labelled_digits"]


@dataclass(frozen=True)
class PartialDigits:
    """Training sets that annotate different targets, and a fully labelled validation set.

    Every item holds ``pixels`` (64,) in [0, 1], the model's input, and only the targets its
    dataset annotates: ``label`` (the digit), ``image`` (the reconstruction target, the pixels
    again) and ``ink`` (the standardised mean intensity, as in
    :class:`~losskit.data.DigitsDataset`).

    Attributes:
        classes: samples annotated with their class only (``pixels``, ``label``).
        images: samples annotated with their image and ink only (``pixels``, ``image``, ``ink``).
        both: samples annotated with everything (``pixels``, ``label``, ``image``, ``ink``).
        val: the validation split, annotated with everything.
    """

    classes: KeyedTensorDataset
    images: KeyedTensorDataset
    both: KeyedTensorDataset
    val: KeyedTensorDataset

    @property
    def train(self) -> tuple[KeyedTensorDataset, KeyedTensorDataset, KeyedTensorDataset]:
        """The three training sets: ``(classes, images, both)``."""
        return self.classes, self.images, self.both

    def __iter__(self) -> Iterator[KeyedTensorDataset]:
        """``classes, images, both, val``, so that the result unpacks."""
        return iter((self.classes, self.images, self.both, self.val))


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def _annotated(
    digits: DigitsDataset, index: torch.Tensor, keys: tuple[str, ...]
) -> KeyedTensorDataset:
    pixels = digits.pixels[index]
    every = {"label": digits.labels[index], "image": pixels.clone(), "ink": digits.ink[index]}
    return KeyedTensorDataset(pixels=pixels, **{k: every[k] for k in keys})


def partially_labelled_digits(
    seed: int = 0,
    both_fraction: float = 0.2,
    class_fraction: float = 0.5,
    val_fraction: float = 0.2,
) -> PartialDigits:
    """The embedded digits split into datasets that each annotate only some targets.

    The validation split is the one of :meth:`~losskit.data.Digits.split` (the demo's). The
    training samples are shuffled with ``seed`` and dealt out: ``both_fraction`` of them carry
    every annotation, and of the rest ``class_fraction`` carry only their class, the others only
    their image and ink. Each sample lands in exactly one training set. The ink is standardised
    with the statistics of the whole training split.

    Args:
        seed: seeds the validation split and the dealing of the training samples.
        both_fraction: the share of the training samples annotated with everything.
        class_fraction: of the samples with one annotation, the share whose annotation is the
            class (the rest have the image and the ink).
        val_fraction: the share of all digits held out for validation.

    Example::

        >>> parts = partially_labelled_digits(seed=0, both_fraction=0.2)
        >>> [(len(ds), ds.keys) for ds in parts]  # doctest: +NORMALIZE_WHITESPACE
        [(575, ('pixels', 'label')), (575, ('pixels', 'image', 'ink')),
         (288, ('pixels', 'label', 'image', 'ink')), (359, ('pixels', 'label', 'image', 'ink'))]
        >>> sorted(parts.classes[0])
        ['label', 'pixels']
    """
    both_fraction = _fraction("both_fraction", both_fraction)
    class_fraction = _fraction("class_fraction", class_fraction)
    train, val = load_digits().split(_fraction("val_fraction", val_fraction), seed)
    train_set = DigitsDataset(train)
    ink = train_set.pixels.mean(1)
    val_set = DigitsDataset(val, ink_stats=(float(ink.mean()), float(ink.std())))
    n = len(train_set)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    n_both = round(n * both_fraction)
    n_classes = round((n - n_both) * class_fraction)
    everything = ("label", "image", "ink")
    return PartialDigits(
        classes=_annotated(train_set, order[n_both : n_both + n_classes], ("label",)),
        images=_annotated(train_set, order[n_both + n_classes :], ("image", "ink")),
        both=_annotated(train_set, order[:n_both], everything),
        val=_annotated(val_set, torch.arange(len(val_set)), everything),
    )
