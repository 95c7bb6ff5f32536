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
    python benchmarks/balancing.py --scaling [--quick] [--plot FILE.png]

The last line printed is a JSON object with ``max_ratio_vs_torchjd`` and the ratios per method.

``--scaling`` instead measures how the cost grows with the number of keys: trunks of 2.2 M and
8.5 M parameters (three linear layers, batch 128, one thread), K = 2, 4, 8, 16 linear heads,
UPGrad and MGDA; variants: the plain summed step, torchjd's ``mtl_backward`` + ``jac_to_grad``
(autojac) and its ``autogram.Engine`` + weighted backward, losskit at parameter level
(``engine="auto"``) and at feature level (``level="features"``). Per case, the times come from
one process in which the variants alternate step by step (medians of per-round ratios, so load
drifts cancel), and each variant's peak resident memory from a process of its own. The JSON
holds ``features_time_vs_sum_k16`` and ``features_mem_vs_sum_k16`` (largest trunk, largest K,
worst method), ``params_time_vs_torchjd_best`` and ``params_mem_vs_autogram`` (worst case over
every trunk, K and method). ``--quick`` runs one 0.6 M trunk at K = 2 and 16 with UPGrad (under
a minute on a quiet machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

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


SCALING_VARIANTS = (
    "sum",
    "torchjd_autojac",
    "torchjd_autogram",
    "losskit_params",
    "losskit_features",
)
WEIGHTINGS: dict[str, Callable[[], aggregation.Weighting]] = {  # type: ignore[type-arg]
    "upgrad": aggregation.UPGradWeighting,
    "mgda": aggregation.MGDAWeighting,
}


def scaling_step(variant: str, method: str, width: int, keys: int) -> Callable[[], None]:
    """One training step (forward, backward, grads cleared) of ``variant`` on its own model."""
    from torchjd.autogram import Engine

    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
    )
    head_list = nn.ModuleList(nn.Linear(width, 1) for _ in range(keys))
    x, ys = torch.randn(128, 64), torch.randn(keys, 128)
    engine = Engine(trunk, batch_dim=None) if variant == "torchjd_autogram" else None
    aggregator, weighting = METHODS[method](keys), WEIGHTINGS[method]()
    crit = None
    if variant.startswith("losskit"):
        level = "features" if variant == "losskit_features" else "parameters"
        crit = lk.Criterion(
            {f"t{i}": lk.Term("mse", input=i, target=i) for i in range(keys)},
            balancer=lk.balancers.Gradient(method, shared=trunk, level=level),
        )

    def step() -> None:
        h = trunk(x)
        outs = [head(h).squeeze(-1) for head in head_list]
        losses = [F.mse_loss(o, y) for o, y in zip(outs, ys)]
        if variant == "sum":
            torch.stack(losses).sum().backward()
        elif variant == "torchjd_autojac":
            mtl_backward(losses, features=h)
            jac_to_grad(trunk.parameters(), aggregator)
        elif variant == "torchjd_autogram":
            assert engine is not None
            vector = torch.stack(losses)
            vector.backward(weighting(engine.compute_gramian(vector)))
        else:
            assert crit is not None
            crit(outs, list(ys)).backward()
        for p in [*trunk.parameters(), *head_list.parameters()]:
            p.grad = None

    return step


def _load_libraries(method: str) -> None:
    """Run the solver, a batched (vmap) backward and a losskit step at both levels once on tiny
    inputs, in every variant's process: the libraries' code and buffers (losskit's modules load
    when first used: 3-4 MiB) then count in every baseline, and the peaks compare what the steps
    hold."""
    METHODS[method](2)(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    x = torch.ones(3, requires_grad=True)
    torch.autograd.grad(x * 2.0, x, torch.eye(3), is_grads_batched=True)
    for level in ("parameters", "features"):
        trunk, heads = nn.Linear(2, 2), [nn.Linear(2, 1) for _ in range(2)]
        crit = lk.Criterion(
            {f"t{i}": lk.Term("mse", input=i, target=i) for i in range(2)},
            balancer=lk.balancers.Gradient(method, shared=trunk, level=level),
        )
        h = trunk(torch.ones(4, 2))
        crit([head(h).squeeze(-1) for head in heads], [torch.zeros(4)] * 2).backward()


def scaling_memory(variant: str, method: str, width: int, keys: int, steps: int) -> None:
    """One variant's peak RSS over ``steps`` steps, printed as JSON (run in a fresh process)."""
    torch.set_num_threads(1)
    _load_libraries(method)
    step = scaling_step(variant, method, width, keys)
    for _ in range(steps):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak}))


def scaling_times(method: str, width: int, keys: int, rounds: int) -> None:
    """Every variant's median step time, the variants alternating step by step in this process
    so that drifts in machine load cancel in the per-round ratios; printed as JSON."""
    torch.set_num_threads(1)
    steps = {v: scaling_step(v, method, width, keys) for v in SCALING_VARIANTS}
    for step in steps.values():  # warm-up
        step()
        step()
    times: dict[str, list[float]] = {v: [] for v in steps}
    for index in range(rounds):
        order = list(steps) if index % 2 == 0 else list(reversed(steps))
        for variant in order:
            start = time.perf_counter()
            steps[variant]()
            times[variant].append(time.perf_counter() - start)
    sums, params, features = times["sum"], times["losskit_params"], times["losskit_features"]
    # torchjd's fastest engine for this case: the one with the lower median step. (The faster of
    # the two in each round would compare against the minimum of two noisy times, which is below
    # either engine's typical step whenever they are close.)
    engines = ("torchjd_autojac", "torchjd_autogram")
    fastest = min(engines, key=lambda v: statistics.median(times[v]))
    best = times[fastest]
    shared = 64 * width + 2 * width * width + 3 * width
    print(
        json.dumps(
            {
                "ms": {v: statistics.median(t) * 1e3 for v, t in times.items()},
                "features_vs_sum": statistics.median(f / s for f, s in zip(features, sums)),
                "params_vs_torchjd_best": statistics.median(p / b for p, b in zip(params, best)),
                "torchjd_best": fastest,
                "shared": shared,
            }
        )
    )


# A fixed mmap threshold (glibc; ignored elsewhere) returns every large buffer to the system when
# freed, so a process's peak RSS is the peak of what it holds: with glibc's adaptive threshold the
# same variant's peak moved by 30 MiB from one run to the next.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _run_json(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **_MALLOC},
    ).stdout
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def scaling(
    widths: list[int], keys: list[int], methods: list[str], steps: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Every trunk width, key count and method: the variants' times (interleaved in one
    process) and each variant's peak memory (in a process of its own)."""
    table: dict[str, dict[str, Any]] = {}
    header = "".join(f"{v:>24}" for v in SCALING_VARIANTS)
    print(f"{'case':<20}{header}{'feat/sum':>9}{'par/best':>9}")
    for width in widths:
        for method in methods:
            for k in keys:
                timed = _run_json("--scaling-times", method, str(width), str(k), str(rounds))
                peaks = {
                    v: _run_json("--scaling-memory", v, method, str(width), str(k), str(steps))[
                        "peak_mib"
                    ]
                    for v in SCALING_VARIANTS
                }
                case = f"{timed['shared'] / 1e6:.1f}M/{method}/K={k}"
                cells = "".join(
                    f"{timed['ms'][v]:>12.1f} ms {peaks[v]:>5.0f} MiB" for v in SCALING_VARIANTS
                )
                ratios = f"{timed['features_vs_sum']:>9.2f}{timed['params_vs_torchjd_best']:>9.2f}"
                print(f"{case:<20}{cells}{ratios}")
                table[case] = {
                    **{v: {"ms": timed["ms"][v], "peak_mib": peaks[v]} for v in SCALING_VARIANTS},
                    "features_vs_sum": timed["features_vs_sum"],
                    "params_vs_torchjd_best": timed["params_vs_torchjd_best"],
                    "torchjd_best": timed["torchjd_best"],
                }
    return table


def _trunk(case: str) -> float:
    return float(case.split("M/")[0])


def _keys(case: str) -> int:
    return int(case.rsplit("K=", 1)[1])


def scaling_summary(table: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The issue's targets: at the largest K on the largest trunk for the feature level, over
    every case for the parameter level (the worst method)."""
    largest = max(map(_trunk, table))
    top_k = max(map(_keys, table))
    at_top = [r for c, r in table.items() if _trunk(c) == largest and _keys(c) == top_k]
    return {
        "features_time_vs_sum_k16": max(r["features_vs_sum"] for r in at_top),
        "features_mem_vs_sum_k16": max(
            r["losskit_features"]["peak_mib"] / r["sum"]["peak_mib"] for r in at_top
        ),
        "params_time_vs_torchjd_best": max(r["params_vs_torchjd_best"] for r in table.values()),
        "params_mem_vs_autogram": max(
            r["losskit_params"]["peak_mib"] / r["torchjd_autogram"]["peak_mib"]
            for r in table.values()
        ),
        "trunk_m_params": largest,
        "k": top_k,
    }


def scaling_plot(table: dict[str, dict[str, Any]], path: str) -> None:
    """Time and peak memory against K, one column per trunk and method, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({case.rsplit("/K=", 1)[0] for case in table})
    fig, axes = plt.subplots(2, len(groups), figsize=(4 * len(groups), 6), squeeze=False)
    for column, group in enumerate(groups):
        cases = sorted(
            (int(c.rsplit("K=", 1)[1]), r) for c, r in table.items() if c.startswith(group + "/")
        )
        ks = [k for k, _ in cases]
        for variant in SCALING_VARIANTS:
            axes[0][column].plot(ks, [r[variant]["ms"] for _, r in cases], "o-", label=variant)
            axes[1][column].plot(ks, [r[variant]["peak_mib"] for _, r in cases], "o-")
        axes[0][column].set_title(group)
        for row, label in enumerate(("step (ms)", "peak RSS (MiB)")):
            axes[row][column].set_xscale("log", base=2)
            axes[row][column].set_xlabel("keys K")
            axes[row][column].set_ylabel(label)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (< 1 min)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument(
        "--scaling", action="store_true", help="time and memory against the number of keys"
    )
    parser.add_argument("--plot", help="--scaling: where to draw time and memory against K")
    parser.add_argument("--scaling-memory", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--scaling-times", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_memory:
        variant, method, width, keys, steps = args.scaling_memory
        scaling_memory(variant, method, int(width), int(keys), int(steps))
        return
    if args.scaling_times:
        method, width, keys, rounds = args.scaling_times
        scaling_times(method, int(width), int(keys), int(rounds))
        return
    if args.scaling:
        if args.quick:  # one small trunk, the extreme key counts, one method: under a minute
            table = scaling([512], [2, 16], ["upgrad"], steps=3, rounds=5)
        else:
            table = scaling([1024, 2048], [2, 4, 8, 16], ["upgrad", "mgda"], steps=5, rounds=15)
        if args.plot:
            scaling_plot(table, args.plot)
        summary = {k: round(v, 3) for k, v in scaling_summary(table).items()}
        print(json.dumps({**summary, "cases": table}))
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
