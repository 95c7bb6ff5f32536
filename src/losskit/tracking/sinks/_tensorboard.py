"""The TensorBoard sink (optional extra ``losskit[tensorboard]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from losskit.errors import MissingDependencyError
from losskit.tracking._record import Record
from losskit.tracking.sinks._scalars import scalars

__all__ = ["TensorBoard"]


class TensorBoard:
    """Write scalars to a TensorBoard event file under ``run_dir/tensorboard``.

    Tags and steps are those of every metrics-service sink (:mod:`~losskit.tracking.sinks`):
    ``<split>/<key>`` at each training step point and at the step of a validation, and epoch
    means as ``epoch/<split>/<key>`` at the step where the epoch ended.

    Needs the ``tensorboard`` package: ``pip install 'losskit[tensorboard]'``; without it the
    constructor raises :class:`~losskit.errors.MissingDependencyError`.

    Example::

        >>> import tempfile, torch
        >>> from losskit.tracking import Tracker, sinks
        >>> run = tempfile.mkdtemp()
        >>> board = sinks.TensorBoard(run)
        >>> with Tracker([board]) as tracker:
        ...     tracker.update({"loss": torch.tensor(0.5)})
        >>> [p.name[:10] for p in board.path.iterdir()]
        ['events.out']
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, subdir: str = "tensorboard") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise MissingDependencyError(
                "the TensorBoard sink needs the tensorboard package, which is not installed: "
                "pip install 'losskit[tensorboard]' (or use sinks.JSONL / sinks.CSV)"
            ) from exc
        self.path = Path(run_dir) / subdir
        self._writer_type: Any = SummaryWriter
        self._writer: Any = None

    def write(self, record: Record) -> None:
        """Add the record's scalars and flush the event file."""
        if self._writer is None:
            self._writer = self._writer_type(log_dir=str(self.path))
        writer = self._writer
        for step, values in scalars(record):
            for tag, value in values.items():
                writer.add_scalar(tag, value, step, record.time)
        writer.flush()

    def close(self) -> None:
        """Close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __repr__(self) -> str:
        return f"TensorBoard({str(self.path.parent)!r})"
