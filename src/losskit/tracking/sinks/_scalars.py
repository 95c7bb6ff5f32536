"""The scalars every metrics-service sink writes for a record: one tag set, one step rule.

TensorBoard, W&B and MLflow receive the same tags at the same steps, so a run looks the same in
each of them and in :func:`losskit.tracking.load`:

- a split whose steps advance (training): every step point as ``<split>/<key>`` at its step;
- another interval record (validation): its means as ``<split>/<key>`` at the record's step;
- an epoch record: its means as ``epoch/<split>/<key>`` at the record's step (the training
  step at the end of the epoch; services want steps that never go back).

Absent values (``None``) are left out.

Example::

    >>> from losskit.tracking import Record
    >>> rec = Record(kind="interval", split="train", step=2, epoch=0, time=0.0, elapsed=0.0,
    ...              count=2.0, updates=2, values={"loss": 0.5}, steps=(1, 2),
    ...              points={"loss": (0.6, 0.4)})
    >>> scalars(rec)
    [(1, {'train/loss': 0.6}), (2, {'train/loss': 0.4})]
"""

from __future__ import annotations

from losskit.tracking._record import Record

__all__ = ["scalars", "steps_advance"]


def steps_advance(record: Record) -> bool:
    """Whether an interval's points lie at increasing steps (a training split)."""
    return len(record.steps) > 1 and all(a < b for a, b in zip(record.steps, record.steps[1:]))


def scalars(record: Record) -> list[tuple[int, dict[str, float]]]:
    """The record's ``(step, {tag: value})`` pairs, steps in increasing order."""
    if record.kind == "epoch":
        prefix = f"epoch/{record.split}/"
        values = {prefix + k: v for k, v in record.values.items() if v is not None}
        return [(record.step, values)] if values else []
    if steps_advance(record):
        rows: list[tuple[int, dict[str, float]]] = []
        for i, step in enumerate(record.steps):
            row: dict[str, float] = {}
            for key, series in record.points.items():
                value = series[i]
                if value is not None:
                    row[f"{record.split}/{key}"] = value
            if row:
                rows.append((step, row))
        return rows
    values = {f"{record.split}/{k}": v for k, v in record.values.items() if v is not None}
    return [(record.step, values)] if values else []
