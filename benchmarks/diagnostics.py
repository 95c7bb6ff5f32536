"""Training-time overhead of ``Trainer(diagnostics_every=50)`` on the demo model.

Two trainers are built from the packaged ``demo.toml`` (same seed, same model, criterion and
optimizer): one with ``diagnostics_every=50``, one without. Blocks of 50 optimizer steps, each
holding exactly one diagnostic step for the first trainer, alternate between the two in one
process; the median of the per-round time ratios is reported, so drifts in machine load cancel.
Batches are taken from memory, so the ratio is over the model's step alone (data loading would
only dilute it).

It also times the ways to get the per-key gradients on the demo model: one
``torch.autograd.grad`` per key (what losskit uses), one batched backward of all keys
(``is_grads_batched=True``, vmap), and torchjd's Gramian engine on the shared trunk (whose module
hooks also slow every ordinary step, measured as ``hooked_step_ratio``).

    python benchmarks/diagnostics.py [--quick]

The last line printed is a JSON object: {"ratio": time with diagnostics / time without, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import torch
from torchjd.autogram import Engine

import losskit as lk
from losskit.config import load_config
from losskit.engine import Trainer
from losskit.run import build

EVERY = 50


def _trainer(diagnostics_every: int | None) -> tuple[Trainer, list[Any]]:
    cfg = load_config(resources.files("losskit").joinpath("demo.toml"))
    cfg = cfg.model_copy(
        update={"trainer": cfg.trainer.model_copy(update={"diagnostics_every": diagnostics_every})}
    )
    trainer, train, _ = build(cfg, progress=False)
    trainer.tracker = lk.tracking.Tracker([], criterion=trainer.criterion)
    trainer.model.train()
    return trainer, list(train)


def _per_step(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def engines(repeats: int) -> dict[str, float]:
    """Milliseconds of a plain step (forward, backward), and of a forward pass plus the per-key
    gradients three ways (and through :func:`losskit.diagnostics.gradient_health`)."""
    trainer, batches = _trainer(None)
    model, crit = trainer.model, trainer.criterion
    batch = batches[0]
    params = [p for p in model.parameters() if p.requires_grad]

    def forward() -> lk.LossResult:
        return crit(model(batch["pixels"]), batch)

    def plain() -> None:
        res = forward()
        res.backward()
        model.zero_grad(set_to_none=True)

    def loop() -> None:
        res = forward()
        for key in res:
            torch.autograd.grad(res[key], params, retain_graph=True, allow_unused=True)

    def batched() -> None:
        res = forward()
        parts = torch.stack(list(res.parts.values()))
        eye = torch.eye(len(parts))
        torch.autograd.grad(
            parts, params, eye, retain_graph=True, allow_unused=True, is_grads_batched=True
        )

    def health() -> None:
        lk.diagnostics.gradient_health(model, forward())

    figures = {
        "step_ms": _per_step(plain, repeats),
        "grad_loop_ms": _per_step(loop, repeats),
        "grad_batched_ms": _per_step(batched, repeats),
        "gradient_health_ms": _per_step(health, repeats),
    }
    engine = Engine(model.trunk, batch_dim=None)

    def gramian() -> None:
        res = forward()
        engine.compute_gramian(torch.stack(list(res.parts.values())))

    figures["gramian_trunk_ms"] = _per_step(gramian, repeats)
    hooked = _per_step(plain, repeats)
    figures = {k: v * 1e3 for k, v in figures.items()}
    figures["hooked_step_ratio"] = hooked * 1e3 / figures["step_ms"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 1 min)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as demo.toml: a model this small is fastest on one thread
    rounds = 16 if args.quick else 80
    variants = {"diagnostics": _trainer(EVERY), "plain": _trainer(None)}
    position = dict.fromkeys(variants, 0)

    def block(name: str) -> float:
        trainer, batches = variants[name]
        start = time.perf_counter()
        for _ in range(EVERY):
            trainer.train_window([batches[position[name] % len(batches)]])
            position[name] += 1
        trainer.tracker.flush()  # type: ignore[union-attr]
        return (time.perf_counter() - start) / EVERY

    for name in variants:  # warm-up
        block(name)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(block(name))
    ratios = [d / p for d, p in zip(times["diagnostics"], times["plain"])]
    ratio = statistics.median(ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    plain_ms = statistics.median(times["plain"]) * 1e3
    diag_ms = statistics.median(times["diagnostics"]) * 1e3
    cost = engines(60 if args.quick else 300)
    print(f"{'variant':<34}{'median step (ms)':>18}")
    print(f"{'no diagnostics':<34}{plain_ms:>18.3f}")
    print(f"{f'diagnostics_every={EVERY}':<34}{diag_ms:>18.3f}")
    print(
        f"ratio (median of {rounds} paired rounds of {EVERY} steps): {ratio:.4f} "
        f"[quartiles {q1:.4f}-{q3:.4f}] (target <= 1.05)"
    )
    print("per-key gradients of the demo's 3 keys, forward pass included (ms):")
    for name in ("step_ms", "grad_loop_ms", "grad_batched_ms", "gramian_trunk_ms"):
        print(f"  {name:<32}{cost[name]:>8.3f}")
    print(f"  {'gradient_health_ms':<32}{cost['gradient_health_ms']:>8.3f}")
    print(f"  ordinary step with autogram hooks: {cost['hooked_step_ratio']:.3f}x")
    print(
        json.dumps(
            {
                "ratio": round(ratio, 4),
                "ratio_q1": round(q1, 4),
                "ratio_q3": round(q3, 4),
                "trainer_step_ms": round(plain_ms, 4),
                "trainer_diagnostics_step_ms": round(diag_ms, 4),
                "every": EVERY,
                "rounds": rounds,
                **{k: round(v, 4) for k, v in cost.items()},
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
