"""A planted fault for the pruning tests: the demo network whose ink head drifts away."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from losskit.demo import DigitsNet


class DriftingInk(nn.Module):
    """The demo's network, its ink prediction pushed 1.0 further off at every training call:
    the ink term diverges whatever the optimizer does."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.net = DigitsNet(**options)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        out = dict(self.net(pixels))
        if self.training:
            self.calls += 1
        out["ink"] = out["ink"] + self.calls
        return out
