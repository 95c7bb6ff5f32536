"""The cost of monitor-only terms in a training step (forward, backward, optimizer step).

Three criteria on the same small MLP and batch: one trained MSE term (the baseline), the same
plus two monitor-only terms (L1, Huber), and the same plus those two as trained terms of weight
0 (what people write without monitors: they build a graph and join the backward). Prints the
step time of each as a ratio to the baseline, and the autograd nodes of each total.

    python benchmarks/monitor_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

import losskit as lk


def _nodes(tensor: torch.Tensor) -> int:
    seen: set[int] = set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            stack.extend(n for n, _ in node.next_functions)
    return len(seen)


def _criterion(extra: str) -> lk.Criterion:
    terms: dict[str, lk.Term] = {"fit": lk.Term("mse", input="pred", target="y")}
    if extra == "monitor":
        terms["mae"] = lk.Term("l1", input="pred", target="y", monitor=True)
        terms["huber"] = lk.Term("huber", input="pred", target="y", monitor=True)
    elif extra == "weight0":
        terms["mae"] = lk.Term("l1", input="pred", target="y", weight=0.0)
        terms["huber"] = lk.Term("huber", input="pred", target="y", weight=0.0)
    return lk.Criterion(terms)


def _time(extra: str, steps: int, repeats: int) -> tuple[float, int]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    crit = _criterion(extra)
    x, y = torch.randn(256, 32), torch.randn(256)
    nodes = _nodes(crit({"pred": model(x).squeeze(-1)}, {"y": y}).total)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            res = crit({"pred": model(x).squeeze(-1)}, {"y": y})
            res.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            res.log()
        best = min(best, (time.perf_counter() - start) / steps)
    return best, nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 1 minute)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, repeats = (200, 3) if args.quick else (1000, 5)
    figures: dict[str, float] = {}
    base, base_nodes = _time("none", steps, repeats)
    print(f"{'criterion':<34}{'us/step':>10}{'ratio':>8}{'graph nodes':>13}")
    for extra, label in (
        ("none", "mse only (baseline)"),
        ("monitor", "mse + 2 monitor-only terms"),
        ("weight0", "mse + 2 trained terms of weight 0"),
    ):
        seconds, nodes = (base, base_nodes) if extra == "none" else _time(extra, steps, repeats)
        print(f"{label:<34}{seconds * 1e6:>10.1f}{seconds / base:>8.2f}{nodes:>13}")
        figures[f"{extra}_us_per_step"] = round(seconds * 1e6, 1)
        figures[f"{extra}_ratio"] = round(seconds / base, 3)
        figures[f"{extra}_graph_nodes"] = nodes
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
