"""A 2-process DDP training step (gloo, CPU) with losskit against the same step written by hand.

Three variants train the same three-headed MLP (cross-entropy, Huber, MSE) with Adam under
``DistributedDataParallel`` on two spawned processes:

* ``hand``: the weighted sum written out, ``loss.backward()``, the step; per-key values kept as
  detached tensors and all-reduced every ``every`` steps (what a careful user writes to log
  global means);
* ``losskit``: ``Criterion`` + ``Tracker`` (``tracker.update(res)`` every step, ``flush`` with its
  all-reduce every ``every`` steps), ``res.backward()``, ``crit.step()``;
* ``magnitude``, ``uncertainty`` (full run only): loss-level balancers, whose state follows the
  global loss values (one small all-reduce per training call) or whose learnable parameters'
  gradients are averaged (one small all-reduce per step);
* ``upgrad``: the Criterion with ``Gradient("upgrad", shared=trunk)`` under DDP: DDP's all-reduce
  off (``no_sync``), per-key gradients of the trunk averaged over the ranks and aggregated once
  (``synchronize_gradients``), the rest averaged in one coalesced all-reduce.

Blocks of steps alternate between the variants in both processes; the median of the per-round
time ratios (measured on rank 0) is reported, so drifts in machine load cancel.

    python benchmarks/distributed.py [--quick]

The last line printed is a JSON object: {"ratio": losskit / hand, "upgrad_ratio": upgrad / hand,
...}.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import losskit as lk
from losskit.engine import distributed

WORLD = 2


class ThreeHeads(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.cls = nn.Linear(hidden, classes)
        self.reg = nn.Linear(hidden, 1)
        self.recon = nn.Linear(hidden, features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "recon": self.recon(h)}


def _terms() -> dict[str, lk.Term]:
    return {
        "cls": lk.Term("cross_entropy", input="logits", target="label"),
        "reg": lk.Term("huber", input="value", target="y", weight=0.5),
        "recon": lk.Term("mse", input="recon", target="x", weight=0.1),
    }


def make_steps(args: argparse.Namespace, batch: dict[str, Tensor]) -> dict[str, Callable[[], Any]]:
    steps: dict[str, Callable[[], Any]] = {}
    every = args.every

    torch.manual_seed(0)
    hand_model = DistributedDataParallel(ThreeHeads(args.features, args.hidden, args.classes))
    hand_opt = torch.optim.Adam(hand_model.parameters(), lr=1e-3)
    hand_logs: list[Tensor] = []

    def hand() -> None:
        out = hand_model(batch["x"])
        cls = F.cross_entropy(out["logits"], batch["label"])
        reg = F.huber_loss(out["value"], batch["y"])
        recon = F.mse_loss(out["recon"], batch["x"])
        loss = cls + 0.5 * reg + 0.1 * recon
        loss.backward()
        hand_opt.step()
        hand_opt.zero_grad(set_to_none=True)
        hand_logs.append(torch.stack([loss, cls, reg, recon]).detach())
        if len(hand_logs) == every:
            total = torch.stack(hand_logs).sum(0)
            dist.all_reduce(total)
            hand_logs.clear()

    steps["hand"] = hand

    def losskit_step(balancer: str) -> Callable[[], None]:
        torch.manual_seed(0)
        net = ThreeHeads(args.features, args.hidden, args.classes)
        spec: Any = (
            lk.balancers.Gradient("upgrad", shared=net.trunk) if balancer == "upgrad" else balancer
        )
        crit = lk.Criterion(_terms(), balancer=spec)
        model = DistributedDataParallel(net)
        opt = torch.optim.Adam([*model.parameters(), *crit.parameters()], lr=1e-3)
        tracker = lk.tracking.Tracker(criterion=crit)
        replicas = distributed.Replicas(model, crit)
        params = list(model.parameters())
        count = [0]

        def step() -> None:
            with replicas.micro_step(last=True):
                res = crit(model(batch["x"]), batch)
                res.backward()
            replicas.synchronize(params)
            opt.step()
            opt.zero_grad(set_to_none=True)
            crit.step()
            tracker.update(res, batch_size=len(batch["x"]))
            count[0] += 1
            if count[0] % every == 0:
                tracker.flush()

        return step

    steps["losskit"] = losskit_step("sum")
    if not args.quick:  # the loss-level families' cost: one small all-reduce per step each
        steps["magnitude"] = losskit_step("magnitude")
        steps["uncertainty"] = losskit_step("uncertainty")
    steps["upgrad"] = losskit_step("upgrad")
    return steps


def _time(step: Callable[[], Any], n: int) -> float:
    dist.barrier()
    start = time.perf_counter()
    for _ in range(n):
        step()
    dist.barrier()
    return time.perf_counter() - start


def worker(rank: int, args: argparse.Namespace, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    distributed.setup("gloo")
    g = torch.Generator().manual_seed(rank)
    batch = {
        "x": torch.randn(args.batch, args.features, generator=g),
        "label": torch.randint(args.classes, (args.batch,), generator=g),
        "y": torch.randn(args.batch, generator=g),
    }
    steps = make_steps(args, batch)
    for step in steps.values():  # warm-up: allocator, DDP buckets, solver imports
        _time(step, args.every)
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(args.rounds):
        # Alternate the order, so that no variant always runs right after another.
        for name in order if r % 2 == 0 else order[::-1]:
            rounds[name].append(_time(steps[name], args.steps))
    if rank == 0:
        Path(out).write_text(json.dumps(rounds))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--batch", type=int, default=256, help="samples per process")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--every", type=int, default=10, help="steps between log reductions")
    args = parser.parse_args()
    args.rounds, args.steps = (12, 30) if args.quick else (24, 40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rounds.json"
        mp.spawn(worker, args=(args, port, str(out)), nprocs=WORLD)
        rounds: dict[str, list[float]] = json.loads(out.read_text())
    per_step = {n: statistics.median(t) / args.steps * 1e3 for n, t in rounds.items()}
    ratio = statistics.median(a / b for a, b in zip(rounds["losskit"], rounds["hand"]))
    upgrad = statistics.median(a / b for a, b in zip(rounds["upgrad"], rounds["hand"]))
    print(
        f"{WORLD} processes (gloo, CPU, 1 thread each), batch {args.batch} per process, "
        f"MLP {args.features}-{args.hidden}-{args.hidden}, 3 heads; {args.rounds} rounds of "
        f"{args.steps} steps"
    )
    print(f"{'variant':<12}{'ms/step':>10}{'ratio':>10}")
    for name in rounds:
        r = statistics.median(a / b for a, b in zip(rounds[name], rounds["hand"]))
        print(f"{name:<12}{per_step[name]:>10.3f}{r:>10.3f}")
    print(
        json.dumps(
            {
                "ratio": round(ratio, 4),
                "upgrad_ratio": round(upgrad, 4),
                "ms_per_step": {n: round(v, 4) for n, v in per_step.items()},
                "world": WORLD,
                "batch_per_process": args.batch,
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
