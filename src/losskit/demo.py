"""The smallest real use of the keyed criterion: one network, three heads, three losses.

A shared trunk reads 16 features and predicts a class (cross-entropy), a continuous value with
outliers in its targets (Huber) and a reconstruction of its input (MSE, warmed up linearly).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losskit.criterion import Criterion
from losskit.schedules import LinearWarmup
from losskit.term import Term

__all__ = ["ThreeHeads", "make_data", "train_demo"]


class ThreeHeads(nn.Module):
    """A shared MLP trunk with classification, regression and reconstruction heads."""

    def __init__(self, features: int = 16, classes: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(features, hidden), nn.GELU())
        self.cls = nn.Linear(hidden, classes)
        self.reg = nn.Linear(hidden, 1)
        self.recon = nn.Linear(hidden, features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "recon": self.recon(h)}


def make_data(
    n: int, generator: torch.Generator, features: int = 16, classes: int = 4
) -> dict[str, Tensor]:
    """A labelled set: classes from a random linear map, values with 5% gross outliers."""
    x = torch.randn(n, features, generator=generator)
    w_cls = torch.randn(features, classes, generator=torch.Generator().manual_seed(1))
    w_reg = torch.randn(features, generator=torch.Generator().manual_seed(2))
    y = x @ w_reg + 0.1 * torch.randn(n, generator=generator)
    outliers = torch.rand(n, generator=generator) < 0.05
    y = torch.where(outliers, y + 20.0, y)
    return {"x": x, "label": (x @ w_cls).argmax(-1), "y": y}


def train_demo(steps: int = 300, seed: int = 0, batch_size: int = 64) -> list[dict[str, float]]:
    """Train :class:`ThreeHeads` and return the logged values of every step as floats."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data = make_data(4096, generator)
    model = ThreeHeads()
    crit = Criterion(
        {
            "cls": Term("cross_entropy", input="logits", target="label"),
            "reg": Term("huber", input="value", target="y", weight=0.5),
            "recon": Term(
                "mse", input="recon", target="x", weight=LinearWarmup(0.0, 1.0, steps=steps // 3)
            ),
        }
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    logged: list[dict[str, Tensor]] = []
    for _ in range(steps):
        index = torch.randint(0, 4096, (batch_size,), generator=generator)
        batch = {k: v[index] for k, v in data.items()}
        res = crit(model(batch["x"]), batch)
        opt.zero_grad(set_to_none=True)
        res.backward()
        opt.step()
        crit.step()
        logged.append(res.log())
    crit.check_finite()
    return [{k: float(v) for k, v in row.items()} for row in logged]
