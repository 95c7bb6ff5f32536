"""The one protocol every sink implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from losskit.tracking._record import Record

__all__ = ["DurableSink", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """Where a :class:`~losskit.tracking.Tracker` sends its records: ``write`` each, ``close`` once.

    A sink is called on rank 0 only. ``write`` should leave the record durable (or shown) before
    it returns, so that a crash loses at most the interval being accumulated. Any object with
    these two methods is a sink. When one raises, the tracker warns once and stops sending it
    records (training goes on), unless the sink has ``critical = True`` (the JSONL log).

    Example::

        >>> from losskit.tracking.sinks import Sink
        >>> class Collect:
        ...     def __init__(self): self.records = []
        ...     def write(self, record): self.records.append(record)
        ...     def close(self): pass
        >>> isinstance(Collect(), Sink)
        True
    """

    def write(self, record: Record) -> None:
        """Take one record."""

    def close(self) -> None:
        """Release files and displays; no write follows."""


@runtime_checkable
class DurableSink(Sink, Protocol):
    """A sink that writes files and can put them on disk now: :meth:`sync`.

    :meth:`losskit.tracking.Tracker.sync` calls it before a checkpoint is written, so that a
    crash never leaves a checkpoint ahead of the records its log kept. The JSONL and CSV sinks
    are durable.
    """

    def sync(self) -> None:
        """Put every record written so far on disk (``os.fsync``)."""
