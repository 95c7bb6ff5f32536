"""Linter pruning in ``losskit tune``: steps saved and best objective kept, on the demo task.

Two searches of the demo's three term weights (``terms.{cls,recon,ink}.weight`` on log scales)
for the best validation accuracy, with the same sampler seed: one prunes trials on the run
linter's findings (and the median pruner on the objective), the other runs every trial to the
end. Reported:

- ``steps_ratio``: training steps the pruned search spent / those of the unpruned one (target
  at most 0.5);
- ``best_gap``: the pruned search's best accuracy minus the unpruned one's, next to
  ``best_se``, the standard error of the unpruned best configuration's accuracy over 3 seeds
  (target: the gap within one standard error);
- ``tuned_minus_default``: the pruned search's best weights against the demo's hand-set
  weights, mean validation accuracy over 5 seeds (reported whatever it is).

    python benchmarks/tune.py [--quick] [--trials 32] [--jobs 2]

``--quick`` (4 trials of one epoch of a narrow network, one seed each) only checks that the
pieces run; its figures mean little. The last line printed is a JSON object with the keys above.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from losskit.config import load_config
from losskit.experiments import load_study, tune
from losskit.run import run

SEARCH = [
    "terms.cls.weight=log(0.1,10)",
    "terms.recon.weight=log(0.001,10)",
    "terms.ink.weight=log(0.001,10)",
]
OBJECTIVE = "val/metric/accuracy"


def demo(quick: bool) -> dict[str, Any]:
    raw: dict[str, Any] = load_config(
        resources.files("losskit").joinpath("demo.toml")  # type: ignore[arg-type]
    ).model_dump(mode="json")
    if quick:
        raw["run"]["epochs"] = 1
        raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
        raw["scheduler"]["options"]["T_max"] = 1
        raw["trainer"]["diagnostics_every"] = None
    return raw


def search(raw: dict[str, Any], out: Path, trials: int, jobs: int, prune: bool) -> dict[str, Any]:
    started = time.perf_counter()
    result = tune(
        raw, SEARCH, trials=trials, objectives=[OBJECTIVE], out=out, jobs=jobs, prune=prune, seed=0
    )
    study = load_study(out)
    steps = sum(int(t.user_attrs.get("steps", 0)) for t in study.get_trials())
    best = result.best[0]["values"][0] if result.best else math.nan
    return {
        "steps": steps,
        "best": best,
        "best_toml": result.best_config,
        "counts": result.counts,
        "seconds": time.perf_counter() - started,
    }


def accuracy(config: dict[str, Any], seeds: range, out: Path) -> list[float]:
    found = []
    for seed in seeds:
        raw = json.loads(json.dumps(config))
        raw["run"]["seed"] = seed
        raw["run"]["out"] = None
        result = run(load_config(raw), out=out / f"seed{seed}", progress=False)
        found.append(float(result.summary["final"]["val"]["metric/accuracy"]))
    return found


def _number(value: float) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return None if math.isnan(value) else round(value, 4)


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    trials = 4 if args.quick else args.trials
    se_seeds, compare_seeds = (range(1), range(1)) if args.quick else (range(3), range(5))
    raw = demo(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pruned = search(raw, root / "pruned", trials, args.jobs, prune=True)
        full = search(raw, root / "full", trials, args.jobs, prune=False)
        best_full = load_config(full["best_toml"]).model_dump(mode="json")
        best_se = _se(accuracy(best_full, se_seeds, root / "se"))
        tuned_cfg = load_config(pruned["best_toml"] or full["best_toml"]).model_dump(mode="json")
        tuned = accuracy(tuned_cfg, compare_seeds, root / "tuned")
        default = accuracy(raw, compare_seeds, root / "default")
    steps_ratio = pruned["steps"] / full["steps"] if full["steps"] else math.nan
    best_gap = pruned["best"] - full["best"]
    gain = statistics.fmean(tuned) - statistics.fmean(default)
    print(f"{'search':<10}{'trials':>8}{'pruned':>8}{'steps':>9}{'best acc':>10}{'seconds':>9}")
    for name, found in (("pruned", pruned), ("unpruned", full)):
        counts = found["counts"]
        print(
            f"{name:<10}{counts['complete'] + counts['pruned']:>8}{counts['pruned']:>8}"
            f"{found['steps']:>9}{found['best']:>10.4f}{found['seconds']:>9.1f}"
        )
    print(f"steps ratio {steps_ratio:.3f}; best gap {best_gap:+.4f} (unpruned SE {best_se:.4f})")
    print(
        f"tuned {statistics.fmean(tuned):.4f} vs default {statistics.fmean(default):.4f} "
        f"over {len(tuned)} seed(s)"
    )
    print(
        json.dumps(
            {
                "steps_ratio": _number(steps_ratio),
                "best_gap": _number(best_gap),
                "best_se": _number(best_se),
                "tuned_minus_default": _number(gain),
                "trials": trials,
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
