"""Run every detector on a run's log: the total, every term, and the multi-loss patterns."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from losskit._findings import Finding
from losskit.lint import _detectors as detectors
from losskit.lint import _multiloss as multiloss
from losskit.lint._curves import interval_means, points
from losskit.lint._thresholds import Thresholds
from losskit.tracking import History, load

__all__ = ["lint", "lint_runs"]


def _loss_keys(history: History, split: str) -> list[str]:
    return [k for k in history.keys(split) if k == "loss" or k.startswith("loss/")]


def lint(
    run: History | str | os.PathLike[str],
    *,
    thresholds: Thresholds | None = None,
    train_split: str = "train",
) -> list[Finding]:
    """Every finding in one run (a run folder, its ``metrics.jsonl``, or a loaded History).

    Per key (``loss`` and every ``loss/<key>``, monitor-only terms included): non-finite onset,
    spikes, divergence, plateau, oscillation, and overfitting against each other split; over
    the terms: weighted shares that collapse or dominate, a term that diverges while the total
    falls (reported instead of its plain divergence), a weight schedule that ends while its
    term still rises. Findings come ordered by step.

    Example::

        >>> import tempfile, torch
        >>> from losskit.tracking import Tracker, sinks
        >>> from losskit.lint import lint
        >>> run = tempfile.mkdtemp()
        >>> with Tracker([sinks.JSONL(run)], every=10) as tracker:
        ...     for step in range(1, 101):
        ...         value = 1.0 / step if step != 50 else float("nan")
        ...         tracker.update({"loss": torch.tensor(value)})
        >>> [(f.kind, f.key, f.start, f.end) for f in lint(run)]
        [('nonfinite', 'loss', 50, 50)]
    """
    t = thresholds or Thresholds()
    history = run if isinstance(run, History) else load(run)
    found: list[Finding] = []
    keys = _loss_keys(history, train_split)
    means = {k: interval_means(history, k, train_split) for k in keys}
    for key in keys:
        curve = points(history, key, train_split)
        found += detectors.nonfinite(curve, t)
        found += detectors.spikes(curve, t)
        found += detectors.plateau(means[key], t)
        found += detectors.oscillation(curve, means[key], t)
        for diverged in detectors.divergence(means[key], t):
            restated = None
            if key != "loss" and "loss" in means:
                restated = multiloss.term_diverges(diverged, means["loss"])
            found.append(restated or diverged)
    for split in history.splits():
        if split == train_split:
            continue
        for key in _loss_keys(history, split):
            found += detectors.nonfinite(points(history, key, split), t)
            if key in means:
                found += detectors.overfitting(means[key], interval_means(history, key, split), t)
    weights = {
        k: interval_means(history, k, train_split)
        for k in history.keys(train_split)
        if k.startswith("weight/")
    }
    terms = {k: c for k, c in means.items() if k != "loss"}
    found += multiloss.shares(terms, weights, t)
    for name, weight in weights.items():
        loss_name = name.replace("weight/", "loss/", 1)
        if loss_name in terms:
            found += multiloss.schedule_ends(terms[loss_name], weight, t)
    return sorted(found, key=lambda f: (f.start, f.end, f.split, f.key, f.kind))


def lint_runs(
    runs: Iterable[str | os.PathLike[str]], *, thresholds: Thresholds | None = None
) -> list[Finding]:
    """The findings of several runs, each tagged with its folder (``Finding.run``)."""
    import dataclasses

    found: list[Finding] = []
    for run in runs:
        for finding in lint(run, thresholds=thresholds):
            found.append(dataclasses.replace(finding, run=str(Path(run))))
    return found
