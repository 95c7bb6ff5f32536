"""Gradient-level balancing through losskit against torchjd called directly, and a plain sum.

Every method trains the same four-headed MLP (a shared trunk, four regression heads whose targets
pull the trunk in different directions) with SGD. Three variants of one training step alternate
in blocks in this process:

- ``losskit``: ``Criterion(..., balancer=Gradient(method, shared=trunk))``, ``res.backward()``;
- ``torchjd``: the same losses by hand, ``mtl_backward(losses, features=h)`` then
  ``jac_to_grad(trunk.parameters(), aggregator)`` (torchjd's documented MTL recipe);
- ``sum``: the summed losses' ordinary backward (what balancing costs on top).

The figure per method is the median over rounds of the per-round time ratio, so drifts in
machine load cancel.

    python benchmarks/balancing.py [--quick]
    python benchmarks/balancing.py --engines     # the engine comparison of docs/balancing.md

The last line printed is a JSON object with ``max_ratio_vs_torchjd`` and the ratios per method.

``--engines`` instead compares, for UPGrad on a wider trunk with 5 heads, the ways of computing
the aggregated update: torchjd's ``mtl_backward`` + ``jac_to_grad`` (which concatenates the
Jacobian), the same with the Gramian summed per parameter (what losskit does), and torchjd's
``autogram.Engine`` (which never stores the Jacobian), each in its own process so that its peak
resident memory can be read.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchjd import aggregation
from torchjd.autojac import jac_to_grad, mtl_backward

import losskit as lk

METHODS: dict[str, Callable[[int], aggregation.Aggregator]] = {
    "upgrad": lambda m: aggregation.UPGrad(),
    "mgda": lambda m: aggregation.MGDA(),
    "pcgrad": lambda m: aggregation.PCGrad(),
    "cagrad": lambda m: aggregation.CAGrad(c=0.4),
    "imtl_g": lambda m: aggregation.IMTLG(),
    "aligned_mtl": lambda m: aggregation.AlignedMTL(),
    "dualproj": lambda m: aggregation.DualProj(),
    "nash_mtl": lambda m: aggregation.NashMTL(n_tasks=m),
}
HEADS = 4


class Net(nn.Module):
    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(HEADS))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {f"y{i}": head(h).squeeze(-1) for i, head in enumerate(self.heads)}


def make_steps(
    method: str, batch: dict[str, Tensor], features: int, hidden: int
) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    base = Net(features, hidden)
    nets = {name: copy.deepcopy(base) for name in ("losskit", "torchjd", "sum")}
    opts = {name: torch.optim.SGD(net.parameters(), lr=1e-3) for name, net in nets.items()}
    crit = lk.Criterion(
        {f"t{i}": lk.Term("mse", input=f"y{i}", target=f"t{i}") for i in range(HEADS)},
        balancer=lk.balancers.Gradient(method, shared=nets["losskit"].trunk),
    )
    aggregator = METHODS[method](HEADS)
    targets = [batch[f"t{i}"] for i in range(HEADS)]

    def with_losskit() -> None:
        net, opt = nets["losskit"], opts["losskit"]
        res = crit(net(batch["x"]), batch)
        opt.zero_grad(set_to_none=True)
        res.backward()
        opt.step()
        crit.step()

    def with_torchjd() -> None:
        net, opt = nets["torchjd"], opts["torchjd"]
        h = net.trunk(batch["x"])
        losses = [F.mse_loss(head(h).squeeze(-1), t) for head, t in zip(net.heads, targets)]
        opt.zero_grad(set_to_none=True)
        mtl_backward(losses, features=h)
        jac_to_grad(net.trunk.parameters(), aggregator)
        opt.step()

    def with_sum() -> None:
        net, opt = nets["sum"], opts["sum"]
        out = net(batch["x"])
        total = torch.stack([F.mse_loss(out[f"y{i}"], t) for i, t in enumerate(targets)]).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return {"losskit": with_losskit, "torchjd": with_torchjd, "sum": with_sum}


def measure(method: str, steps: dict[str, Callable[[], None]], rounds: int, block: int) -> dict:
    for step in steps.values():  # warm-up
        for _ in range(2 * block):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds):
        order = list(steps) if index % 2 == 0 else list(reversed(steps))
        for name in order:
            start = time.perf_counter()
            for _ in range(block):
                steps[name]()
            times[name].append((time.perf_counter() - start) / block)
    vs_torchjd = [a / b for a, b in zip(times["losskit"], times["torchjd"])]
    vs_sum = [a / b for a, b in zip(times["losskit"], times["sum"])]
    return {
        "losskit_ms": statistics.median(times["losskit"]) * 1e3,
        "torchjd_ms": statistics.median(times["torchjd"]) * 1e3,
        "sum_ms": statistics.median(times["sum"]) * 1e3,
        "vs_torchjd": statistics.median(vs_torchjd),
        "vs_sum": statistics.median(vs_sum),
    }


def engine_worker(mode: str, width: int, heads: int) -> None:
    """One engine's median step time and peak RSS, printed as JSON (run in a fresh process)."""
    from torchjd.autogram import Engine

    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
    )
    head_list = nn.ModuleList(nn.Linear(width, 1) for _ in range(heads))
    x, ys = torch.randn(128, 64), torch.randn(heads, 128)
    engine = Engine(trunk, batch_dim=None) if mode == "autogram" else None
    aggregator, weighting = aggregation.UPGrad(), aggregation.UPGradWeighting()
    crit = None
    if mode == "losskit":
        crit = lk.Criterion(
            {f"t{i}": lk.Term("mse", input=i, target=i) for i in range(heads)},
            balancer=lk.balancers.Gradient("upgrad", shared=trunk),
        )

    def step() -> None:
        h = trunk(x)
        outs = [head(h).squeeze(-1) for head in head_list]
        losses = [F.mse_loss(o, y) for o, y in zip(outs, ys)]
        if mode == "sum":
            torch.stack(losses).sum().backward()
        elif mode == "torchjd":
            mtl_backward(losses, features=h)
            jac_to_grad(trunk.parameters(), aggregator)
        elif mode == "losskit":
            assert crit is not None
            crit(outs, list(ys)).backward()
        else:
            assert engine is not None
            vector = torch.stack(losses)
            vector.backward(weighting(engine.compute_gramian(vector)))
        for p in [*trunk.parameters(), *head_list.parameters()]:
            p.grad = None

    for _ in range(3):
        step()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    shared = sum(p.numel() for p in trunk.parameters())
    print(json.dumps({"ms": statistics.median(times) * 1e3, "peak_mib": peak, "shared": shared}))


def engines(widths: list[int], heads: int = 5) -> dict[str, dict[str, float]]:
    modes = ("sum", "torchjd", "losskit", "autogram")
    print(f"{'shared params':>14}" + "".join(f"{m:>22}" for m in modes))
    table = {}
    for width in widths:
        row = {}
        for mode in modes:
            out = subprocess.run(
                [sys.executable, __file__, "--engine-worker", mode, str(width), str(heads)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row[mode] = json.loads(out.strip().splitlines()[-1])
        shared = row["sum"]["shared"] / 1e6
        cells = "".join(f"{r['ms']:>10.0f} ms {r['peak_mib']:>5.0f} MiB" for r in row.values())
        print(f"{shared:>12.1f} M{cells}")
        table[f"{shared:.1f}M"] = {m: round(r["ms"], 1) for m, r in row.items()} | {
            f"{m}_peak_mib": round(r["peak_mib"]) for m, r in row.items()
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (< 1 min)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--engines", action="store_true", help="compare the Jacobian engines")
    parser.add_argument("--engine-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_worker:
        mode, width, heads = args.engine_worker
        engine_worker(mode, int(width), int(heads))
        return
    if args.engines:
        print(json.dumps({"engines": engines([1024, 2048])}))
        return
    warnings.filterwarnings("ignore", message=".*not DPP.*")  # cvxpy, inside Nash-MTL
    features = 32
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, features, generator=g)
    batch = {"x": x}
    for i in range(HEADS):
        direction = torch.randn(features, generator=g)
        batch[f"t{i}"] = (x @ direction).tanh() * (i + 1)
    results = {}
    header = f"{'method':<13}{'losskit ms':>11}{'torchjd ms':>11}{'sum ms':>9}"
    print(f"{header}{'/torchjd':>10}{'/sum':>7}")
    for method in args.methods:
        slow = method in ("cagrad", "nash_mtl")  # a convex solver per step
        rounds, block = (40, 2) if args.quick else (80, 5)
        if slow:
            rounds, block = (16, 1) if args.quick else (40, 2)
        r = measure(method, make_steps(method, batch, features, args.hidden), rounds, block)
        results[method] = r
        print(
            f"{method:<13}{r['losskit_ms']:>11.2f}{r['torchjd_ms']:>11.2f}{r['sum_ms']:>9.2f}"
            f"{r['vs_torchjd']:>10.3f}{r['vs_sum']:>7.1f}"
        )
    worst = max(results, key=lambda k: results[k]["vs_torchjd"])
    print(
        f"max ratio losskit/torchjd: {results[worst]['vs_torchjd']:.3f} ({worst}; target <= 1.05)"
    )
    print(
        json.dumps(
            {
                "max_ratio_vs_torchjd": round(results[worst]["vs_torchjd"], 4),
                "ratio_vs_torchjd": {k: round(v["vs_torchjd"], 4) for k, v in results.items()},
                "ratio_vs_sum": {k: round(v["vs_sum"], 2) for k, v in results.items()},
                "batch": args.batch,
                "hidden": args.hidden,
                "heads": HEADS,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
