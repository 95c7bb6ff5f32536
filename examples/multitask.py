"""Multi-task classification + regression in a hand-written loop: Criterion and Tracker only.

Nothing here needs the Trainer: the keyed criterion weighs and sums the heads' losses, the
Tracker logs every key without a host sync per step, and a JSONL log plus an HTML report come
out at the end.

    python examples/multitask.py --steps 400 --out runs/multitask
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

import losskit as lk

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--steps", "150"]


class Net(nn.Module):
    def __init__(self, features: int = 12, classes: int = 4) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(features, 64), nn.ReLU())
        self.cls = nn.Linear(64, classes)
        self.reg = nn.Linear(64, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1)}


def make_batch(n: int, g: torch.Generator) -> dict[str, Tensor]:
    x = torch.randn(n, 12, generator=g)
    label = (x[:, :4] * torch.tensor([1.0, -1.0, 0.5, 2.0])).argmax(-1)
    value = x[:, 4:8].sum(-1) + 0.1 * torch.randn(n, generator=g)
    return {"x": x, "label": label, "value": value}


def main(steps: int = 400, out: Path | None = None, seed: int = 0) -> dict[str, float]:
    """Train and return the last logged interval's means."""
    lk.engine.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    model = Net()
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("huber", input="value", target="value", weight=0.5),
        }
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sinks = [lk.tracking.sinks.JSONL(out)] if out is not None else []
    with lk.tracking.Tracker(sinks, every=50, criterion=crit) as tracker:
        for _ in range(steps):
            batch = make_batch(64, g)
            res = crit(model(batch["x"]), batch)
            opt.zero_grad(set_to_none=True)
            res.backward()
            opt.step()
            crit.step()
            tracker.update(res, batch_size=64)
        tracker.flush()
        last = tracker.latest("train")
    if out is not None:
        lk.report.render(out)
    return {k: v for k, v in last.items() if v is not None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("runs/multitask"))
    args = parser.parse_args()
    print(main(args.steps, args.out))
