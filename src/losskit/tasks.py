"""The shipped multi-task benchmarks' model and metric, beside the demo's (:mod:`losskit.demo`).

*multidigits* (:func:`losskit.data.multidigits`) asks for the classes of two overlapping digits;
:class:`MultiDigitsNet` is its standard model (a shared MLP trunk and one linear head per digit,
the shape of the Multi-MNIST models of Sener & Koltun 2018), and :func:`mean_accuracy` the
average task accuracy that Kurin et al. 2022 report.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losskit.data._multidigits import CANVAS

__all__ = ["MultiDigitsNet", "mean_accuracy"]


class MultiDigitsNet(nn.Module):
    """A shared trunk over the 12x12 canvas with one classifier head per digit.

    Example::

        >>> out = MultiDigitsNet()(torch.zeros(2, 144))
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'left': (2, 10), 'right': (2, 10)}
    """

    def __init__(self, hidden: int = 256, bottleneck: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(CANVAS * CANVAS, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, bottleneck),
            nn.ReLU(),
        )
        self.left = nn.Linear(bottleneck, 10)
        self.right = nn.Linear(bottleneck, 10)

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        h = self.trunk(pixels)
        return {"left": self.left(h), "right": self.right(h)}


def mean_accuracy(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """The average over tasks of the share of samples whose arg-max logit is the label, over
    every output key whose batch field of the same name holds integer class labels.

    Example::

        >>> out = {"left": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "right": torch.zeros(2, 2)}
        >>> mean_accuracy(out, {"left": torch.tensor([0, 1]), "right": torch.tensor([1, 1])})
        tensor(0.5000)
    """
    scores = [
        (logits.argmax(-1) == batch[key]).float().mean()
        for key, logits in outputs.items()
        if key in batch and logits.ndim == 2 and not batch[key].is_floating_point()
    ]
    if not scores:
        raise ValueError(
            "mean_accuracy: no output key has an integer label field of the same name in the "
            f"batch (outputs: {sorted(outputs)}, batch: {sorted(batch)})"
        )
    return torch.stack(scores).mean()
