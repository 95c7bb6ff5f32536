"""Reading a run's metrics log back: :func:`load` gives a :class:`History`.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, load, sinks
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)], every=2) as tracker:
    ...     for value in (4.0, 2.0, 1.0):
    ...         tracker.update({"loss": torch.tensor(value)})
    ...     tracker.update({"loss": torch.tensor(3.0)}, split="val")
    ...     _ = tracker.end_epoch()
    >>> history = load(run)
    >>> history.splits(), history.keys()
    (('train', 'val'), ('loss',))
    >>> history.series("loss").steps, history.series("loss").values
    ((1, 2, 3), (4.0, 2.0, 1.0))
    >>> history.series("loss", kind="epoch").values
    (2.3333333333333335,)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from losskit.errors import LogFormatError, LogNotFoundError
from losskit.tracking._record import Record

__all__ = ["History", "Series", "load"]

SeriesKind = Literal["step", "interval", "epoch"]


@dataclass(frozen=True)
class Series:
    """The values of one key of one split, in order (absent values left out).

    ``steps`` are training steps; ``epochs`` the epoch each value belongs to.
    """

    key: str
    split: str
    kind: SeriesKind
    steps: tuple[int, ...]
    values: tuple[float, ...]
    epochs: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def last(self) -> float | None:
        """The latest value (``None`` when empty)."""
        return self.values[-1] if self.values else None

    def best(self, mode: Literal["min", "max"] = "min") -> tuple[int, float] | None:
        """``(step, value)`` of the smallest (or largest) finite value, ``None`` when none is."""
        finite = [(v, s) for s, v in zip(self.steps, self.values) if math.isfinite(v)]
        if not finite:
            return None
        value, step = min(finite) if mode == "min" else max(finite)
        return step, value


@dataclass(frozen=True)
class History:
    """A run's records, read from its metrics log.

    Attributes:
        path: the file read.
        records: its records in order; where a resumed run logged steps (or epochs) again,
            the later values replace the earlier ones.
        truncated: whether an unfinished last line (a killed writer) was left out.
        skipped: line numbers of corrupt lines left out with ``skip_corrupt=True``.
    """

    path: Path
    records: tuple[Record, ...]
    truncated: bool = False
    skipped: tuple[int, ...] = ()

    def splits(self) -> tuple[str, ...]:
        """The splits in order of first appearance."""
        return tuple(dict.fromkeys(r.split for r in self.records))

    def keys(self, split: str | None = None) -> tuple[str, ...]:
        """The keys logged (in ``split``, or in any), in order of first appearance."""
        names: dict[str, None] = {}
        for record in self.records:
            if split is None or record.split == split:
                names.update(dict.fromkeys(record.values))
                names.update(dict.fromkeys(record.points))
        return tuple(names)

    def series(self, key: str, split: str = "train", kind: SeriesKind = "step") -> Series:
        """One key of one split: per update (``"step"``), per flush or per epoch.

        ``"step"`` falls back to nothing for records written without points; use
        ``"interval"`` for the flush means.
        """
        if kind not in ("step", "interval", "epoch"):
            raise ValueError(f"kind must be 'step', 'interval' or 'epoch', got {kind!r}")
        steps: list[int] = []
        values: list[float] = []
        epochs: list[int] = []
        for record in self.records:
            if record.split != split or (record.kind == "epoch") != (kind == "epoch"):
                continue
            if kind == "step":
                for step, value in zip(record.steps, record.points.get(key, ())):
                    if value is not None:
                        steps.append(step)
                        values.append(value)
                        epochs.append(record.epoch)
            elif record.values.get(key) is not None:
                steps.append(record.step)
                values.append(record.values[key])  # type: ignore[arg-type]
                epochs.append(record.epoch)
        return Series(key, split, kind, tuple(steps), tuple(values), tuple(epochs))

    def rows(self, kind: SeriesKind = "step") -> list[dict[str, object]]:
        """A flat table (one dict per point, flush or epoch) for ``pandas.DataFrame(rows)``."""
        table: list[dict[str, object]] = []
        for record in self.records:
            if (record.kind == "epoch") != (kind == "epoch"):
                continue
            head = {"split": record.split, "epoch": record.epoch, "time": record.time}
            if kind == "step":
                for i, step in enumerate(record.steps):
                    row: dict[str, object] = {**head, "step": step}
                    row.update({k: vs[i] for k, vs in record.points.items() if vs[i] is not None})
                    table.append(row)
            else:
                row = {**head, "step": record.step, "count": record.count}
                row.update({k: v for k, v in record.values.items() if v is not None})
                table.append(row)
        return table

    @property
    def last_step(self) -> int:
        """The highest step recorded (0 when empty)."""
        return max((r.step for r in self.records), default=0)

    @property
    def elapsed(self) -> float:
        """Seconds of tracking at the last record (0 when empty)."""
        return max((r.elapsed for r in self.records), default=0.0)


def load(
    run: str | os.PathLike[str], *, skip_corrupt: bool = False, filename: str = "metrics.jsonl"
) -> History:
    """Read the metrics log of ``run`` (a run directory, or the ``.jsonl`` file itself).

    An unfinished last line (the writer was killed mid-write) is left out and noted in
    ``History.truncated``. A line that is not a record anywhere else raises
    :class:`~losskit.errors.LogFormatError` naming the file and line, unless ``skip_corrupt``
    (then its number is in ``History.skipped``).

    Example::

        >>> import tempfile, pathlib
        >>> from losskit.tracking import load
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> line = ('{"kind":"epoch","split":"train","step":5,"epoch":0,"time":0,'
        ...         '"elapsed":1,"count":5,"updates":5,"values":{"loss":0.5}}')
        >>> _ = (run / "metrics.jsonl").write_text(line + "\\n" + line[:30])
        >>> history = load(run)
        >>> len(history.records), history.truncated
        (1, True)
    """
    path = Path(run)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise LogNotFoundError(
            f"no metrics log at {path}: a Tracker with losskit.tracking.sinks.JSONL(run_dir) "
            "writes one"
        )
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[Record] = []
    skipped: list[int] = []
    truncated = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(Record.from_json(raw.decode("utf-8")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if number == len(lines):  # no newline after it: the writer stopped mid-line
                truncated = True
            elif skip_corrupt:
                skipped.append(number)
            else:
                raise LogFormatError(
                    f"{path}:{number}: not a metrics record ({exc}); the log is corrupt there. "
                    "Pass skip_corrupt=True (losskit report --skip-corrupt) to leave such lines "
                    "out"
                ) from exc
    return History(path, _resolve_resumes(records), truncated, tuple(skipped))


def _resolve_resumes(records: Iterable[Record]) -> tuple[Record, ...]:
    """Drop what a resumed run logged again: a record starting at or before its stream's latest step
    (or epoch) replaces the earlier values from that point on."""
    kept: list[Record | None] = []
    latest: dict[tuple[str, str], int] = {}
    for record in records:
        stream = (record.split, record.kind)
        start = record.epoch if record.kind == "epoch" else (record.steps or (record.step,))[0]
        if stream in latest and start <= latest[stream]:
            for i, old in enumerate(kept):
                if old is not None and (old.split, old.kind) == stream:
                    kept[i] = _cut(old, start)
        kept.append(record)
        latest[stream] = record.epoch if record.kind == "epoch" else record.step
    return tuple(r for r in kept if r is not None)


def _cut(record: Record, start: int) -> Record | None:
    """``record`` without its values at or after ``start`` (``None`` when nothing is left)."""
    if record.kind == "epoch":
        return None if record.epoch >= start else record
    if not record.steps:
        return None if record.step >= start else record
    keep = [i for i, step in enumerate(record.steps) if step < start]
    if len(keep) == len(record.steps):
        return record
    if not keep:
        return None
    return dataclasses.replace(
        record,
        values={},  # its means covered the replaced points
        steps=tuple(record.steps[i] for i in keep),
        points={k: tuple(vs[i] for i in keep) for k, vs in record.points.items()},
    )
