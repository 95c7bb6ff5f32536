"""The UCI optical handwritten digits (1797 images of 8x8 pixels), shipped in the package.

Source: E. Alpaydin and C. Kaynak, UCI Machine Learning Repository (CC BY 4.0); see
``losskit/data/README.md`` for the full credit.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from torch import Tensor

__all__ = ["Digits", "load_digits"]


@dataclass(frozen=True)
class Digits:
    """The digits as tensors: ``images`` (N, 8, 8) float32 in [0, 16], ``labels`` (N,) int64."""

    images: Tensor
    labels: Tensor

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[Digits, Digits]:
        """A seeded random split into training and validation sets.

        Example::

            >>> train, val = load_digits().split(0.2)
            >>> len(train.labels), len(val.labels)
            (1438, 359)
        """
        n = self.labels.shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        n_val = round(n * val_fraction)
        val, train = order[:n_val], order[n_val:]
        return (
            Digits(self.images[train], self.labels[train]),
            Digits(self.images[val], self.labels[val]),
        )


def load_digits() -> Digits:
    """Read the embedded digits file (about 10 ms; no network).

    Example::

        >>> d = load_digits()
        >>> int(d.labels.bincount()[0]), float(d.images.max())
        (178, 16.0)
    """
    blob = resources.files("losskit.data").joinpath("digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(blob).decode().splitlines(), delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :64].copy()).reshape(-1, 8, 8)
    labels = torch.from_numpy(table[:, 64].astype(np.int64))
    return Digits(images=images, labels=labels)


class DigitsDataset(torch.utils.data.Dataset[dict[str, Tensor]]):
    """The digits as a dataset of dicts, the targets of the demo's three heads.

    Each item holds ``pixels`` (64,) in [0, 1], ``label`` (the digit) and ``ink`` (the image's
    mean intensity, standardised over the whole set: a continuous target for a regression head).

    Example::

        >>> item = DigitsDataset(load_digits())[0]
        >>> sorted(item), tuple(item["pixels"].shape), int(item["label"])
        (['ink', 'label', 'pixels'], (64,), 0)
    """

    def __init__(self, digits: Digits, ink_stats: tuple[float, float] | None = None) -> None:
        self.pixels = (digits.images / 16.0).reshape(-1, 64)
        self.labels = digits.labels
        ink = self.pixels.mean(1)
        mean, std = ink_stats if ink_stats is not None else (float(ink.mean()), float(ink.std()))
        self.ink = (ink - mean) / std

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"pixels": self.pixels[index], "label": self.labels[index], "ink": self.ink[index]}
