"""The CSV sink: one row per step point and per epoch, appended; columns grow with new keys."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from losskit._io import drop_partial_line
from losskit.tracking._record import Record

__all__ = ["CSV"]

_FIXED = ("kind", "split", "epoch", "step", "time", "elapsed")


def _cell(value: float | None) -> object:
    return "" if value is None else value


class CSV:
    """Append records to ``run_dir/metrics.csv``, one row per step point and per epoch mean.

    Columns are ``kind`` (``step``, ``interval`` when the tracker keeps no points, or
    ``epoch``), ``split``, ``epoch``, ``step``, ``time``, ``elapsed``, then one per key in the
    order keys appeared; a key absent from a row leaves its cell empty. When a new key appears
    the file is rewritten once with the wider header (to a temporary file, then renamed), so the
    file always has a single header; a resumed run continues the same file and columns.

    Example::

        >>> import tempfile, torch
        >>> from losskit.tracking import Tracker, sinks
        >>> run = tempfile.mkdtemp()
        >>> with Tracker([sinks.CSV(run)]) as tracker:
        ...     tracker.update({"loss": torch.tensor(0.5)})
        ...     tracker.update({"loss": torch.tensor(0.25), "lr": 0.1})
        >>> print(open(f"{run}/metrics.csv").read().splitlines()[0])
        kind,split,epoch,step,time,elapsed,loss,lr
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, filename: str = "metrics.csv") -> None:
        self.path = Path(run_dir) / filename
        self._file: TextIO | None = None
        self._keys: list[str] = []
        self._has_header = False

    def _open(self) -> TextIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_partial_line(self.path)
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            self._keys = [h for h in header if h not in _FIXED]
            self._has_header = True
            return self.path.open("a", newline="", encoding="utf-8")
        self._has_header = False
        return self.path.open("w", newline="", encoding="utf-8")

    def write(self, record: Record) -> None:
        """Append the rows of ``record`` and flush them to the operating system."""
        if self._file is None:
            self._file = self._open()
        new = [k for k in (*record.values, *record.points) if k not in self._keys]
        if new:
            self._keys += list(dict.fromkeys(new))
            if self._has_header:
                self._rewrite_header()
        rows: list[list[object]] = []
        if not self._has_header:
            rows.append([*_FIXED, *self._keys])
            self._has_header = True
        if record.steps:
            for i, step in enumerate(record.steps):
                cells = [
                    _cell(record.points[k][i]) if k in record.points else "" for k in self._keys
                ]
                rows.append(["step", record.split, record.epoch, step, record.time, record.elapsed])
                rows[-1] += cells
        else:
            rows.append(
                [record.kind, record.split, record.epoch, record.step, record.time, record.elapsed]
            )
            rows[-1] += [_cell(record.values.get(k)) for k in self._keys]
        assert self._file is not None
        self._write_rows(self._file, rows)

    def _rewrite_header(self) -> None:
        assert self._file is not None
        self._file.close()
        with self.path.open(newline="", encoding="utf-8") as f:
            old = list(csv.reader(f))
        header = [*_FIXED, *self._keys]
        width = len(header)
        rows = [header] + [r + [""] * (width - len(r)) for r in old[1:]]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            self._write_rows(f, rows)
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = self.path.open("a", newline="", encoding="utf-8")

    @staticmethod
    def _write_rows(file: TextIO, rows: Sequence[Sequence[object]]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        file.write(text.getvalue())
        file.flush()

    def sync(self) -> None:
        """Put every row written so far on disk (``os.fsync``)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Put the file on disk and close it (a later write reopens it in append mode)."""
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"CSV({str(self.path.parent)!r})"
