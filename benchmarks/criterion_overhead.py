"""Overhead of the keyed Criterion against the same training step written by hand.

Both variants train the same three-headed MLP (cross-entropy, Huber, MSE) with Adam and log
every term every step: the Criterion through ``res.log()``, the hand-written step through a dict
of detached tensors (what a careful user writes; ``.item()`` would cost far more). Blocks of steps
alternate between the variants in one process; the median of the per-round time ratios is
reported, so drifts in machine load cancel.

Each variant runs as several instances (``--instances``, each its own model and optimizer,
created interleaved) whose times are summed per round: where a model's tensors land in memory
shifts one instance's step time by 1-3% on this CPU, the same for hand-written code and for the
Criterion, so a single pair of instances measures that luck as much as the overhead. A second
hand-written group gives the noise floor (its ratio to the first should be 1).

    python benchmarks/criterion_overhead.py [--quick]

The last line printed is a JSON object: {"ratio": Criterion time / hand-written time, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import losskit as lk


class ThreeHeads(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.cls = nn.Linear(hidden, classes)
        self.reg = nn.Linear(hidden, 1)
        self.recon = nn.Linear(hidden, features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = torch.relu(self.trunk(x))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "recon": self.recon(h)}


def make_steps(
    batch: dict[str, Tensor], features: int, hidden: int, classes: int
) -> dict[str, Callable[[], dict[str, Tensor]]]:
    """One hand-written step and one Criterion step, on two copies of the same model."""
    torch.manual_seed(0)
    model_a = ThreeHeads(features, hidden, classes)
    model_b = ThreeHeads(features, hidden, classes)
    model_b.load_state_dict(model_a.state_dict())
    opt_a = torch.optim.Adam(model_a.parameters(), lr=1e-3)
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("huber", input="value", target="y", weight=0.5),
            "recon": lk.Term("mse", input="recon", target="x", weight=0.1),
        }
    )

    def by_hand() -> dict[str, Tensor]:
        out = model_a(batch["x"])
        cls = F.cross_entropy(out["logits"], batch["label"])
        reg = F.huber_loss(out["value"], batch["y"])
        recon = F.mse_loss(out["recon"], batch["x"])
        total = cls + 0.5 * reg + 0.1 * recon
        opt_a.zero_grad(set_to_none=True)
        total.backward()
        opt_a.step()
        return {
            "loss": total.detach(),
            "loss/cls": cls.detach(),
            "loss/reg": reg.detach(),
            "loss/recon": recon.detach(),
        }

    def with_criterion() -> dict[str, Tensor]:
        res = crit(model_b(batch["x"]), batch)
        opt_b.zero_grad(set_to_none=True)
        res.backward()
        opt_b.step()
        crit.step()
        return res.log()

    return {"hand": by_hand, "criterion": with_criterion}


def _group(steps: list[Callable[[], dict[str, Tensor]]]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for step in steps:
            for _ in range(n):
                step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (< 1 min)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--instances", type=int, default=4, help="instances per variant")
    args = parser.parse_args()
    rounds, steps = (24, 10) if args.quick else (80, 15)
    features, classes = 32, 10
    g = torch.Generator().manual_seed(0)
    batch = {
        "x": torch.randn(args.batch, features, generator=g),
        "label": torch.randint(0, classes, (args.batch,), generator=g),
        "y": torch.randn(args.batch, generator=g),
    }
    instances = [make_steps(batch, features, args.hidden, classes) for _ in range(args.instances)]
    floor = [make_steps(batch, features, args.hidden, classes) for _ in range(args.instances)]
    groups = {
        "hand": _group([i["hand"] for i in instances]),
        "criterion": _group([i["criterion"] for i in instances]),
        "hand (copy)": _group([i["hand"] for i in floor]),
    }
    for group in groups.values():  # warm-up
        group(5 * steps)
    times: dict[str, list[float]] = {name: [] for name in groups}
    for index in range(rounds):
        # Adjacent blocks in alternating order: each round's ratio sees the same machine load.
        order = list(groups) if index % 2 == 0 else list(reversed(groups))
        for name in order:
            start = time.perf_counter()
            groups[name](steps)
            times[name].append((time.perf_counter() - start) / (steps * args.instances))
    ratios = [c / h for c, h in zip(times["criterion"], times["hand"])]
    ratio = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    noise = statistics.median(c / h for c, h in zip(times["hand (copy)"], times["hand"]))
    hand = statistics.median(times["hand"])
    ours = statistics.median(times["criterion"])
    print(f"{'variant':<14}{'median step (us)':>18}")
    for name in groups:
        print(f"{name:<14}{statistics.median(times[name]) * 1e6:>18.1f}")
    print(
        f"ratio criterion/hand (median of {rounds} paired rounds, {args.instances} instances "
        f"each): {ratio:.3f} [quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}] "
        f"(target <= 1.03); noise floor hand copy/hand {noise:.3f}"
    )
    print(
        json.dumps(
            {
                "ratio": round(ratio, 4),
                "ratio_q1": round(quartiles[0], 4),
                "ratio_q3": round(quartiles[2], 4),
                "noise_floor": round(noise, 4),
                "hand_step_us": round(hand * 1e6, 1),
                "criterion_step_us": round(ours * 1e6, 1),
                "batch": args.batch,
                "hidden": args.hidden,
                "instances": args.instances,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
