"""The JSON Lines sink: one strict-JSON object per record, appended and flushed at once."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from losskit._io import drop_partial_line
from losskit.tracking._record import Record

__all__ = ["JSONL"]


class JSONL:
    """Append every record to ``run_dir/metrics.jsonl`` as one line, durable on return.

    The file opens in append mode on the first record, so a resumed run continues it (an
    unfinished last line from a killed run is cut first, with a warning). Each line is written
    whole and flushed to the operating system at once, so a killed process loses at most the
    interval being accumulated; the file is also synced to disk (``os.fsync``) when
    ``fsync_every`` seconds have passed since the last sync, and on close, which bounds what a
    machine crash can lose without paying a disk round trip (about 0.3 ms here) every flush.
    Read it back with :func:`losskit.tracking.load`.

    Args:
        run_dir: the run's directory (created when missing).
        filename: the file's name in it.
        fsync_every: seconds between disk syncs; 0 syncs after every record, ``None`` never.

    Example::

        >>> import tempfile, torch
        >>> from losskit.tracking import Tracker, load, sinks
        >>> run = tempfile.mkdtemp()
        >>> with Tracker([sinks.JSONL(run)]) as tracker:
        ...     tracker.update({"loss": torch.tensor(0.5)})
        >>> load(run).series("loss").values
        (0.5,)
    """

    #: The run's source of truth: a failure to write it stops the run (other sinks only warn).
    critical = True

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        filename: str = "metrics.jsonl",
        fsync_every: float | None = 10.0,
    ) -> None:
        self.path = Path(run_dir) / filename
        self.fsync_every = fsync_every
        self._file: BinaryIO | None = None
        self._synced = time.monotonic()

    def write(self, record: Record) -> None:
        """Append ``record`` as one line and flush it to the operating system."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            drop_partial_line(self.path)
            self._file = self.path.open("ab")
        self._file.write(record.to_json().encode() + b"\n")
        self._file.flush()
        if self.fsync_every is not None and time.monotonic() - self._synced >= self.fsync_every:
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()

    def sync(self) -> None:
        """Put every record written so far on disk (``os.fsync``), whatever ``fsync_every``."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        """Close the file (a later write reopens it in append mode)."""
        if self._file is not None:
            if self.fsync_every is not None:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"JSONL({str(self.path.parent)!r})"
