"""losskit's linter against losslint (PyPI, single-loss logs) on the same planted logs.

Each planted log has two terms (``a``, ``b``), their weights and the total, logged every 10
steps with per-step points, and a val split every 25 steps. losslint is run per key (the key's
points as its ``loss`` series, the val points as ``eval_loss``). A pattern counts as found when
a finding names the planted key (losskit) or when losslint's check for that pattern fires on
that key's log, and its step range (when it gives one) is within 10 steps of the planted onset.

    PYTHONPATH=/path/to/losslint python benchmarks/lint_vs_losslint.py [--quick]

losslint is optional: without it only losskit's column is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from losskit.lint import lint
from losskit.lint._synthetic import decay_a, decay_b, two_term_log
from losskit.tracking import History, load

STEPS, EVERY, VAL_EVERY = 300, 10, 25


_a, _b = decay_a, decay_b


def _b_schedule(s: int) -> float:
    return 0.2 if s < 100 else (0.2 + 0.004 * (s - 100) if s <= 200 else 0.6 - 0.004 * (s - 200))


SWING = (0.0, 1.0, 0.0, -1.0)
# name -> (overrides of a, b, wb, val_a; planted key; losskit kind; losslint check; onset)
PLANTED: dict[str, tuple[dict[str, Callable[[int], float]], str, str, str | None, int]] = {
    "nonfinite": (
        {"b": lambda s: math.nan if s >= 137 else _b(s)},
        "loss/b",
        "nonfinite",
        "nan_inf",
        137,
    ),
    "spike": (
        {"a": lambda s: 10 * _a(s) if s == 163 else _a(s)},
        "loss/a",
        "spike",
        "loss_spike",
        163,
    ),
    "divergence": (
        {"a": lambda s: _a(min(s, 180)) * math.exp(max(0, s - 180) / 40)},
        "loss/a",
        "divergence",
        "divergence",
        180,
    ),
    "plateau": (
        {"a": lambda s: 2.3 if s <= 150 else 2.0 * math.exp(-(s - 150) / 60) + 0.3},
        "loss/a",
        "plateau",
        "stagnation",
        1,
    ),
    "overfitting": (
        {"val_a": lambda s: 1.1 * _a(min(s, 200)) * (1 + 0.004 * max(0, s - 200))},
        "loss/a",
        "overfitting",
        "overfit_onset",
        200,
    ),
    "oscillation": (
        {"a": lambda s: _a(s) * (1 + (0.3 * SWING[s % 4] if s >= 120 else 0.0))},
        "loss/a",
        "oscillation",
        None,
        120,
    ),
    "share collapse": (
        {"b": lambda s: _b(s) if s < 120 else 1e-5, "wb": lambda s: 1.0},
        "loss/b",
        "share_collapse",
        None,
        120,
    ),
    "term diverges, total falls": (
        {
            "a": lambda s: 4.0 * math.exp(-s / 60) + 0.05,
            "b": lambda s: 0.2 * (1 + 2 * max(0, s - 150) / 150),
            "wb": lambda s: 0.1,
        },
        "loss/b",
        "term_diverges_while_total_falls",
        "divergence",
        150,
    ),
    "schedule ends, term rising": (
        {"b": _b_schedule, "wb": lambda s: min(1.0, s / 150)},
        "loss/b",
        "schedule_ends_while_rising",
        None,
        151,
    ),
}


def write(run: Path, seed: int = 0, **over: Callable[[int], float]) -> History:
    return load(two_term_log(run, seed=seed, **over))


def losslint_findings(history: History, key: str) -> list[Any]:
    """losslint's findings on one key: its train points as `loss`, val points as `eval_loss`."""
    from losslint.checks import run_all_checks
    from losslint.parsing import RunLog

    train = history.series(key, "train", "step")
    val = history.series(key, "val", "step") or history.series(key, "val", "interval")
    steps = sorted(set(train.steps) | set(val.steps))
    t, v = dict(zip(train.steps, train.values)), dict(zip(val.steps, val.values))
    run = RunLog(
        steps,
        {"loss": [t.get(s) for s in steps], "eval_loss": [v.get(s) for s in steps]},
        Path(key),
    )
    return run_all_checks(run)


def _losslint_steps(finding: Any) -> list[int]:
    details = finding.details
    if "steps" in details:
        return list(details["steps"])
    if "since_step" in details:
        return [details["since_step"]]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="(the same: it takes seconds)")
    parser.parse_args()
    try:
        import losslint

        version: str | None = getattr(losslint, "__version__", "?")
    except ImportError:
        version = None
    rows = []
    figures: dict[str, Any] = {"losslint": version}
    with tempfile.TemporaryDirectory() as tmp:
        clean = write(Path(tmp) / "clean")
        ours_clean = len(lint(clean))
        theirs_clean = (
            sum(len(losslint_findings(clean, k)) for k in ("loss", "loss/a", "loss/b"))
            if version
            else None
        )
        for name, (over, key, kind, check, onset) in PLANTED.items():
            history = write(Path(tmp) / name.replace(" ", "_").replace(",", ""), **over)
            ours = [f for f in lint(history) if f.key == key and f.kind == kind]
            ours_ok = bool(ours) and abs(ours[0].start - onset) <= EVERY
            ours_text = f"{ours[0].start}-{ours[0].end}" if ours else "missed"
            theirs_text = "n/a"
            if version:
                hits = [f for f in losslint_findings(history, key) if f.check == check]
                if check is None:
                    theirs_text = "no such check"
                elif not hits:
                    theirs_text = "missed"
                else:
                    steps = _losslint_steps(hits[0])
                    theirs_text = f"found, steps {steps[:3]}" if steps else "found, no steps"
            rows.append(
                (name, key, ours_text + ("" if ours_ok or not ours else " (off)"), theirs_text)
            )
            figures[name] = {"losskit": ours_text, "losslint": theirs_text}
    print(f"{'planted pattern':<28}{'key':<9}{'losskit lint':<18}losslint {version or '(absent)'}")
    for name, key, ours_text, theirs_text in rows:
        print(f"{name:<28}{key:<9}{ours_text:<18}{theirs_text}")
    print(f"{'clean log (findings)':<37}{ours_clean:<18}{theirs_clean}")
    figures["clean_findings"] = {"losskit": ours_clean, "losslint": theirs_clean}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
