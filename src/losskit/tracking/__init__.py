"""Tracking: per-split means of logged values, written by sinks and read back with :func:`load`.

Example::

    >>> import tempfile, torch
    >>> from losskit import tracking
    >>> run = tempfile.mkdtemp()
    >>> with tracking.Tracker([tracking.sinks.JSONL(run)], every=10) as tracker:
    ...     tracker.update({"loss": torch.tensor(2.0)}, batch_size=8)
    >>> tracking.load(run).series("loss").values
    (2.0,)
"""

from losskit.tracking import sinks
from losskit.tracking._history import History, Series, load
from losskit.tracking._record import Record
from losskit.tracking._tracker import Tracker
from losskit.tracking.sinks import Sink

__all__ = ["History", "Record", "Series", "Sink", "Tracker", "load", "sinks"]
