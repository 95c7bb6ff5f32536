"""A small real training run that logs with the Tracker; tests run it as a script.

    python small_run.py RUN_DIR [--epochs N] [--steps N] [--every N] [--sleep S]
                        [--diagnostics]

It writes RUN_DIR/config.json, then trains a two-headed MLP with a three-term Criterion (one
weight warming up), logging the train split every step and a validation split at each epoch end
to JSONL and CSV sinks. ``--sleep`` slows each step so that a test can kill it mid-run;
``--diagnostics`` also logs per-key gradient norms and gradient cosines of the trunk.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import losskit as lk
from losskit.tracking import Tracker, sinks


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, 32), nn.Tanh())
        self.cls = nn.Linear(32, 3)
        self.reg = nn.Linear(32, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "h": h}


def make_batch(generator: torch.Generator, size: int) -> dict[str, Tensor]:
    x = torch.randn(size, 8, generator=generator)
    return {"x": x, "label": (x[:, 0] > 0).long() + (x[:, 1] > 1).long(), "y": x[:, 2] * 3.0}


def diagnostics(model: TwoHeads, res: lk.LossResult) -> dict[str, Tensor]:
    params = list(model.trunk.parameters())
    grads = {}
    for key in res:
        parts = torch.autograd.grad(res[key], params, retain_graph=True, allow_unused=True)
        grads[key] = torch.cat([g.flatten() for g in parts if g is not None])
    out = {f"grad_norm/{k}": g.norm() for k, g in grads.items()}
    for a, b in itertools.combinations(grads, 2):
        out[f"cos/{a}/{b}"] = nn.functional.cosine_similarity(grads[a], grads[b], dim=0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--diagnostics", action="store_true")
    args = parser.parse_args()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": "TwoHeads", "epochs": args.epochs, "steps": args.steps, "lr": 0.01}
    (args.run_dir / "config.json").write_text(json.dumps(config))

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = TwoHeads()
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("mse", input="value", target="y", weight=0.5),
            "l2": lk.Term(
                lambda out, batch: out["h"].pow(2).mean(),
                weight=lk.schedules.LinearWarmup(0.0, 0.1, steps=args.steps),
            ),
        }
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    val = [make_batch(generator, 64) for _ in range(3)]
    tracker = Tracker(
        [sinks.JSONL(args.run_dir), sinks.CSV(args.run_dir)], every=args.every, criterion=crit
    )
    with tracker:
        for _ in range(args.epochs):
            for _ in range(args.steps):
                batch = make_batch(generator, 32)
                res = crit(model(batch["x"]), batch)
                extra = diagnostics(model, res) if args.diagnostics else None
                opt.zero_grad(set_to_none=True)
                res.backward()
                opt.step()
                crit.step()
                tracker.update(res, batch_size=32, extra=extra)
                if args.sleep:
                    time.sleep(args.sleep)
            with torch.no_grad():
                for batch in val:
                    tracker.update(crit(model(batch["x"]), batch), split="val", batch_size=64)
            tracker.end_epoch()


if __name__ == "__main__":
    main()
