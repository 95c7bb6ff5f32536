"""The demo's model, data and metric: one network with three heads on the embedded digits.

A shared MLP trunk reads the 8x8 image and feeds three heads whose losses live on different
scales: the digit class (cross-entropy, about 2.3 at the start), a reconstruction of the image
(MSE on [0, 1] pixels, about 0.1) and the image's standardised ink (Huber, about 1).
``losskit demo`` trains it from the packaged ``demo.toml``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losskit.data import DigitsDataset, load_digits

__all__ = ["DigitsNet", "accuracy", "digits_data"]


class DigitsNet(nn.Module):
    """A shared trunk with classification, reconstruction and ink-regression heads.

    Example::

        >>> out = DigitsNet()(torch.zeros(2, 64))
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'logits': (2, 10), 'recon': (2, 64), 'ink': (2,)}
    """

    def __init__(self, hidden: int = 128, bottleneck: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(64, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, bottleneck),
            nn.GELU(),
        )
        self.classify = nn.Linear(bottleneck, 10)
        self.reconstruct = nn.Sequential(
            nn.Linear(bottleneck, hidden), nn.GELU(), nn.Linear(hidden, 64)
        )
        self.ink = nn.Linear(bottleneck, 1)

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        h = self.trunk(pixels)
        return {
            "logits": self.classify(h),
            "recon": torch.sigmoid(self.reconstruct(h)),
            "ink": self.ink(h).squeeze(-1),
        }


def digits_data(val_fraction: float = 0.2, seed: int = 0) -> tuple[DigitsDataset, DigitsDataset]:
    """Training and validation sets of the embedded digits (ink standardised on training data)."""
    train, val = load_digits().split(val_fraction, seed)
    train_set = DigitsDataset(train)
    ink = (train.images / 16.0).reshape(-1, 64).mean(1)
    return train_set, DigitsDataset(val, ink_stats=(float(ink.mean()), float(ink.std())))


def accuracy(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """The share of samples whose arg-max logit is the label."""
    return (outputs["logits"].argmax(-1) == batch["label"]).float().mean()
