"""Which balancer should I use? Every balancer losskit offers on the two shipped multi-task
benchmarks, through ``losskit compare`` itself.

The tasks (configs in ``benchmarks/balancers/``): *multidigits* (two overlapping digits, two
classification tasks on one scale, a Multi-MNIST analog) and the demo's three tasks on different
scales (class, reconstruction, ink) with every term at weight 1. Every method gets the same
budget (the config's epochs and optimizer); the metric is the held-out *test* split's at the
last epoch (nothing is chosen on it). Per method and task: the mean test metric over seeds with
its 95% confidence interval (Student's t), the tier that ``compare`` computes from those
intervals (tier 1: not separable from the best), the time per training step relative to
``sum`` (every method's step built in one process, the methods taking turns in short blocks,
so that a shared machine's load falls on all alike; the runs' own clocks are kept as
``step_vs_sum_runs``) and the peak memory of one training step relative to ``sum`` (a child
process's peak RSS, as ``losskit bench`` measures it on the CPU), and the linter's findings (a
method that diverged, collapsed a key or went non-finite).

    python benchmarks/balancer_table.py [--quick] [--seeds N] [--jobs N] [--out DIR]
    python benchmarks/balancer_table.py --retime FIGURES.json   # only the step-time column
    python benchmarks/balancer_table.py --methods upgrad,upgrad@features,mgda,mgda@features

``METHOD@LEVEL`` in ``--methods`` runs a gradient method at ``level="parameters"`` (the default)
or ``level="features"`` (the shared representation's Gramian); the row is named as written.

``--quick``: 3 seeds and six methods (under 10 minutes on 2 cores). The last line printed is a
JSON object: {"methods": how many balancers ran, "sum_within_ci_of_best": whether ``sum`` is in
the first tier on every task, "tasks": {task: {method: figures}}}.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import losskit as lk
from losskit import balancers, components
from losskit.benchmarking import peak_rss_delta
from losskit.config import load_config

HERE = Path(__file__).parent / "balancers"
TASKS = {
    "multidigits": (HERE / "multidigits.toml", "val/metric/mean_accuracy"),
    "demo_tasks": (HERE / "demo_tasks.toml", "val/metric/accuracy"),
}
QUICK = ("sum", "mean", "uncertainty", "dwa", "mgda", "upgrad")
STCH_MU = 1.0  # the smooth Tchebycheff temperature: no default in the method; 1 is its paper's


def _steps_per_epoch(config: Path) -> int:
    cfg = load_config(config)
    train, _ = components.DATA.create(cfg.data.source, **cfg.data.options)
    return math.ceil(len(train) / cfg.data.batch_size)  # type: ignore[arg-type]


def parse_method(text: str) -> tuple[str, str | None]:
    """``"upgrad@features"`` -> ``("upgrad", "features")``; ``"sum"`` -> ``("sum", None)``."""
    name, sep, level = text.strip().partition("@")
    entry = balancers.BALANCERS.resolve(name)
    if sep and (entry.family != "gradient" or level not in ("parameters", "features")):
        raise SystemExit(
            f"--methods {text!r}: METHOD@LEVEL takes a gradient-level method and level "
            f"'parameters' or 'features'; got family {entry.family!r}, level {level!r}"
        )
    return entry.name, (level if sep else None)


def spec(name: str, steps_per_epoch: int, level: str | None = None) -> str | dict[str, Any]:
    """The config value that runs balancer ``name`` with its documented defaults; the
    gradient-level methods (and GradNorm) share the model's ``trunk`` (at ``level`` when given);
    DWA updates per epoch."""
    factory = balancers.BALANCERS.resolve(name).factory
    parameters = inspect.signature(factory).parameters
    table: dict[str, Any] = {"name": name}
    if "shared" in parameters:
        table["shared"] = "trunk"
    if level is not None:
        table["level"] = level
    if name == "dwa":
        table["every"] = steps_per_epoch
    if name == "stch":
        table["mu"] = STCH_MU
    return name if len(table) == 1 else table


def _step_setup(config: str, balancer: str) -> Any:
    """One training step of ``config``'s model with ``balancer`` (for the memory child)."""
    from losskit.run import build

    cfg = load_config(Path(config))
    raw = cfg.model_dump(mode="json")
    raw["balancer"] = json.loads(balancer)
    trainer, loader, _ = build(load_config(raw), progress=False)
    model, crit = trainer.model, trainer.criterion
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = next(iter(loader))
    # a balancer that learns across the step (FAMO) gets the Trainer's recompute, as in the runs
    learns = balancers.capabilities(crit.balancer).learns_after_step

    def step() -> None:
        res = crit(model(batch[cfg.model.input]), batch)
        opt.zero_grad(set_to_none=True)
        res.backward()
        opt.step()
        if learns:
            with torch.no_grad():
                crit.balancer.update(crit(model(batch[cfg.model.input]), batch))
        crit.step()

    return step


def step_times(config: Path, specs: list[str | dict[str, Any]], rounds: int = 12) -> list[float]:
    """Each spec's training-step time relative to ``sum``'s, measured in this one process: the
    methods take turns in short blocks (the order reversed every round), so a shared machine's
    load falls on all of them alike; the median block per method."""
    torch.set_num_threads(load_config(config).run.threads or torch.get_num_threads())  # as the runs
    others = [s for s in specs if s != "sum"]
    steps = [_step_setup(str(config), json.dumps(s)) for s in ["sum", *others]]
    for step in steps:  # warm-up: lazy initialisation, solvers' first calls
        for _ in range(3):
            step()
    blocks: list[list[float]] = [[] for _ in steps]
    for index in range(rounds):
        order = range(len(steps)) if index % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            started = time.perf_counter()
            for _ in range(4):
                steps[i]()
            blocks[i].append(time.perf_counter() - started)
    medians = [statistics.median(b) for b in blocks]
    ratios = iter(m / medians[0] for m in medians[1:])
    return [1.0 if s == "sum" else next(ratios) for s in specs]


def markdown(table: dict[str, dict[str, dict[str, Any]]], seeds: int) -> str:
    """The tables as Markdown, best mean first, for docs/balancing.md."""
    lines = []
    for task, rows in table.items():
        metric = TASKS[task][1].rsplit("/", 1)[-1]
        lines += [
            f"**{task}** (test {metric} at the last epoch, {seeds} seeds)",
            "",
            "| method | mean | 95% CI | tier | step vs sum | memory vs sum | findings |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, row in sorted(rows.items(), key=lambda kv: -kv[1]["mean"]):
            lo, hi = row["ci95"]
            mem = f"{row['memory_vs_sum']:.2f}" if "memory_vs_sum" in row else "-"
            lines.append(
                f"| `{method}` | {row['mean']:.4f} | [{lo:.4f}, {hi:.4f}] | {row['tier']} "
                f"| {row['step_vs_sum']:.2f} | {mem} | {', '.join(row['findings']) or '-'} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, six methods (< 10 min)")
    parser.add_argument("--seeds", type=int, help="seeds per method (default 10, --quick 3)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--out", type=Path, default=Path("runs/balancer-table"))
    parser.add_argument("--no-memory", action="store_true", help="skip the memory column")
    parser.add_argument("--methods", help="comma-separated balancers (default: all, or --quick's)")
    parser.add_argument("--epochs", type=int, help="override the configs' budget (smoke runs)")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--retime", type=Path, help="re-measure the step column of a JSON")
    args = parser.parse_args()
    if args.retime:
        figures = json.loads(args.retime.read_text())
        for task, rows in figures["tasks"].items():
            names = list(rows)
            ratios = step_times(TASKS[task][0], [rows[n]["spec"] for n in names])
            for name, ratio in zip(names, ratios):
                rows[name]["step_vs_sum"] = ratio
        args.retime.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
        print(
            json.dumps(
                {
                    t: {n: r["step_vs_sum"] for n, r in rows.items()}
                    for t, rows in figures["tasks"].items()
                }
            )
        )
        return
    seeds = args.seeds or (3 if args.quick else 10)
    names = [s.name for s in balancers.BALANCERS.entries()]
    chosen = [(n, None) for n in names if n in QUICK] if args.quick else [(n, None) for n in names]
    if args.methods:
        chosen = [parse_method(m) for m in args.methods.split(",")]
    methods = [name if level is None else f"{name}@{level}" for name, level in chosen]
    started = time.perf_counter()
    table: dict[str, dict[str, dict[str, Any]]] = {}
    first_tier_sum: list[bool] = []
    for task, (config, metric) in TASKS.items():
        per_epoch = _steps_per_epoch(config)
        specs = [spec(name, per_epoch, level) for name, level in chosen]
        base = load_config(config).model_dump(mode="json")
        if args.epochs:
            base["run"]["epochs"] = args.epochs
        result = lk.experiments.compare(
            base,
            vary={"balancer": specs},
            seeds=seeds,
            out=args.out / task,
            jobs=args.jobs,
            rank_by=metric,
            rank_on="final",
            interval="ci95",
        )
        c = result.comparison
        by_label = dict(zip(methods, c.variants))
        base_ms = c.step_ms[by_label["sum"]].mean if "sum" in by_label else math.nan
        tiers = {r.variant: r.tier for r in c.ranking}
        rows: dict[str, dict[str, Any]] = {}
        for method, s in zip(methods, specs):
            variant = by_label[method]
            final = c.row(variant, metric).final
            low, high = final.interval("ci95")
            ran = [f for f in c.findings if f.run and Path(f.run).parent.name == variant]
            kinds = sorted({f.kind for f in ran})
            rows[method] = {
                "mean": final.mean,
                "ci95": [low, high],
                "n": final.n,
                "tier": tiers.get(variant),
                "step_vs_sum_runs": c.step_ms[variant].mean / base_ms,
                "findings": kinds,
                "spec": s,
            }
        for method, ratio in zip(methods, step_times(config, specs)):
            rows[method]["step_vs_sum"] = ratio
        if not args.no_memory:
            sum_mem = peak_rss_delta(_step_setup, str(config), json.dumps("sum")).peak_bytes
            for method, s in zip(methods, specs):
                mem = sum_mem
                if method != "sum":
                    mem = peak_rss_delta(_step_setup, str(config), json.dumps(s)).peak_bytes
                rows[method]["memory_vs_sum"] = mem / max(sum_mem, 1)
        table[task] = rows
        first_tier_sum.append(rows.get("sum", {}).get("tier") == 1)
        print(f"\n{task} ({metric}, test split, last epoch; {seeds} seeds)")
        print(
            f"{'method':<16}{'mean':>8}  {'95% CI':<17}{'tier':>5}{'step':>7}{'mem':>7}  findings"
        )
        for method, row in sorted(rows.items(), key=lambda kv: -kv[1]["mean"]):
            lo, hi = row["ci95"]
            mem = f"{row['memory_vs_sum']:.2f}" if "memory_vs_sum" in row else "-"
            print(
                f"{method:<16}{row['mean']:>8.4f}  [{lo:.4f}, {hi:.4f}] {row['tier']!s:>5}"
                f"{row['step_vs_sum']:>7.2f}{mem:>7}  {', '.join(row['findings']) or '-'}"
            )
    wall = time.perf_counter() - started
    print(f"\nwall time: {wall:.0f} s")
    if args.markdown:
        args.markdown.write_text(markdown(table, seeds))
    print(
        json.dumps(
            {
                "methods": len(methods),
                "seeds": seeds,
                "command": " ".join(["python", "benchmarks/balancer_table.py", *sys.argv[1:]]),
                "sum_within_ci_of_best": all(first_tier_sum),
                "wall_s": round(wall, 1),
                "tasks": table,
            }
        )
    )


if __name__ == "__main__":
    main()
