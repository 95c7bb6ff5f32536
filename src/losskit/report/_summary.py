"""The report's summary: final and best value of every key in every split.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, load, sinks
    >>> from losskit.report import summarize
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     for value in (3.0, 1.0, 2.0):
    ...         tracker.update({"loss": torch.tensor(value)})
    ...         _ = tracker.end_epoch()
    >>> row = summarize(load(run))[0]
    >>> row.split, row.key, row.final, row.best, row.best_step
    ('train', 'loss', 2.0, 1.0, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

from losskit.tracking import History

__all__ = ["SummaryRow", "lower_is_better", "summarize"]


def lower_is_better(key: str) -> bool | None:
    """Whether smaller values of ``key`` are better (``None``: no best, e.g. a weight)."""
    if key == "loss" or key.startswith("loss/"):
        return True
    return None


@dataclass(frozen=True)
class SummaryRow:
    """One key of one split: its final value, its best and where, from the coarsest means.

    ``source`` says which means: ``"epoch"`` when the split has epoch records, else
    ``"interval"`` (the flushes).
    """

    split: str
    key: str
    final: float | None
    best: float | None
    best_step: int | None
    last_step: int
    values: int
    source: str


def summarize(history: History) -> list[SummaryRow]:
    """A :class:`SummaryRow` per split and key, splits in order of appearance."""
    rows = []
    for split in history.splits():
        for key in history.keys(split):
            series = history.series(key, split, "epoch")
            if not series:
                series = history.series(key, split, "interval")
            if not series:
                continue
            best = None
            if lower_is_better(key):
                best = series.best("min")
            rows.append(
                SummaryRow(
                    split=split,
                    key=key,
                    final=series.last,
                    best=None if best is None else best[1],
                    best_step=None if best is None else best[0],
                    last_step=series.steps[-1],
                    values=len(series),
                    source=series.kind,
                )
            )
    return rows
