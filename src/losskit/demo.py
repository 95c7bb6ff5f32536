"""The demo's model, data and metric: one network with three heads on the embedded digits.

A shared MLP trunk reads the 8x8 image and feeds three heads whose losses live on different
scales: the digit class (cross-entropy, about 2.3 at the start), a reconstruction of the image
(MSE on [0, 1] pixels, about 0.1) and the image's standardised ink (Huber, about 1).
``losskit demo`` trains it from the packaged ``demo.toml``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from losskit.data import DigitsDataset, load_digits
from losskit.errors import ConfigError

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


def digits_data(
    val_fraction: float = 0.2,
    seed: int = 0,
    test_fraction: float = 0.0,
    holdout: Literal["val", "test"] = "val",
) -> tuple[DigitsDataset, DigitsDataset]:
    """Training and held-out sets of the embedded digits (ink standardised on training data).

    With ``test_fraction`` > 0 a test split is set aside first (seeded by ``seed``) and the
    rest split into training and validation sets; ``holdout = "test"`` returns the test split
    in place of the validation one, for a final table once nothing is chosen on it.

    Example::

        >>> train, test = digits_data(test_fraction=0.2, holdout="test")
        >>> len(train), len(test)
        (1078, 359)
    """
    if holdout not in ("val", "test") or (holdout == "test" and not 0.0 < test_fraction < 1.0):
        raise ConfigError(
            f"digits: holdout must be 'val', or 'test' with 0 < test_fraction < 1; got "
            f"holdout={holdout!r}, test_fraction={test_fraction!r}"
        )
    digits = load_digits()
    test = None
    if test_fraction > 0.0:
        digits, test = digits.split(test_fraction, seed)
        val_fraction = val_fraction / (1.0 - test_fraction)
    train, val = digits.split(val_fraction, seed)
    if holdout == "test" and test is not None:
        val = test
    train_set = DigitsDataset(train)
    ink = (train.images / 16.0).reshape(-1, 64).mean(1)
    return train_set, DigitsDataset(val, ink_stats=(float(ink.mean()), float(ink.std())))


def accuracy(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """The share of samples whose arg-max logit is the label."""
    return (outputs["logits"].argmax(-1) == batch["label"]).float().mean()
