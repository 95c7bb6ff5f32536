"""Pruning a trial while it trains: on the run linter's findings, and on its objective.

After each log interval (whenever the run's ``metrics.jsonl`` grows) the log is linted; a
finding of a pruning kind (a non-finite term, divergence, a term whose share collapses or
dominates, a plateau from the start) stops the trial, and the finding is its recorded reason.
On a single-objective study each new value of the objective is reported to the trial and
Optuna's pruner (median or ASHA) may stop it too. A multi-objective study prunes on the linter
alone (Optuna's pruners rank one objective).

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, sinks
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)], every=10) as tracker:
    ...     for step in range(1, 101):
    ...         value = 1.0 / step if step != 50 else float("nan")
    ...         tracker.update({"loss": torch.tensor(value)})
    >>> watch = RunWatch(run)
    >>> watch()[:37]
    'nonfinite on train/loss (steps 50-50)'
    >>> watch() is None  # the log has not grown since
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from losskit.errors import LossKitError
from losskit.experiments._search import Objective
from losskit.lint import Finding, Thresholds, lint
from losskit.tracking import load

__all__ = ["PRUNE_KINDS", "RunWatch", "reason_of"]

PRUNE_KINDS = (
    "nonfinite",
    "divergence",
    "term_diverges_while_total_falls",
    "share_collapse",
    "share_dominance",
    "plateau",
)
"""The linter findings that prune a trial."""


def reason_of(found: Finding) -> str:
    """A one-line reason: ``kind on split/key (steps a-b): what was seen``."""
    where = f"{found.split}/{found.key} (steps {found.start}-{found.end})"
    return f"{found.kind} on {where}: {found.message}"


def _warming_up(history: Any, found: Finding) -> bool:
    """A share finding while some term's weight still rises (a warm-up): too early to judge."""
    if not found.kind.startswith("share_"):
        return False
    for name in history.keys(found.split):
        if not name.startswith("weight/"):
            continue
        series = history.series(name, found.split, "interval")
        during = [v for s, v in zip(series.steps, series.values) if s >= found.start]
        if len(during) > 1 and during[-1] > 1.01 * during[0]:
            return True
    return False


class RunWatch:
    """Called while a run trains: the reason to stop it, or ``None``.

    Args:
        run: the run folder.
        trial: the Optuna trial to report the objective to (``None``: linter only).
        objective: the single objective reported to the trial's pruner.
        kinds: the finding kinds that prune.
    """

    def __init__(
        self,
        run: str | os.PathLike[str],
        trial: Any = None,
        objective: Objective | None = None,
        kinds: Sequence[str] = PRUNE_KINDS,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.path = Path(run) / "metrics.jsonl"
        self.trial = trial
        self.objective = objective
        self.kinds = frozenset(kinds)
        self.thresholds = thresholds
        self.finding: Finding | None = None
        self.reported: dict[int, float] = {}
        self._size = -1

    def __call__(self) -> str | None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return None
        if size == self._size:
            return None
        self._size = size
        try:
            history = load(self.path, skip_corrupt=True)
        except LossKitError:
            return None  # being written: read it at the next interval
        found = [
            f
            for f in lint(history, thresholds=self.thresholds)
            if f.kind in self.kinds and not _warming_up(history, f)
        ]
        # the worst first; of those, a term's own finding before the total's
        found.sort(key=lambda f: (f.severity != "error", f.key == "loss", f.start))
        if found:
            self.finding = found[0]
            return reason_of(found[0])
        return self._objective(history)

    def _objective(self, history: Any) -> str | None:
        if self.trial is None or self.objective is None:
            return None
        o = self.objective
        if o.name not in history.keys(o.split):
            return None
        series = history.series(o.name, o.split, kind="epoch")
        for epoch, value in zip(series.epochs, series.values):
            if epoch not in self.reported and value == value:  # NaN is the linter's
                self.trial.report(value, step=epoch)
                self.reported[epoch] = value
                if self.trial.should_prune():
                    return (
                        f"objective pruner: {o.key} = {value:.4g} at epoch {epoch} is worse "
                        "than the pruner's cut-off for that epoch"
                    )
        return None
