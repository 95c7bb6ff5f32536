"""Where a :class:`~losskit.tracking.Tracker` writes: one protocol, :class:`Sink`, and built-ins.

A sink has ``write(record)`` and ``close()``; anything with those plugs in. A sink that writes
files may also have ``sync()`` (:class:`DurableSink`): the tracker calls it before a checkpoint.
:class:`TensorBoard`, :class:`WandB` and :class:`MLflow` receive the same tags at the same
steps (``<split>/<key>``, ``epoch/<split>/<key>``; see ``docs/tracking.md``).

Example::

    >>> import tempfile
    >>> from losskit.tracking import sinks
    >>> run = tempfile.mkdtemp()
    >>> [type(s).__name__ for s in (sinks.Console(), sinks.JSONL(run), sinks.CSV(run))]
    ['Console', 'JSONL', 'CSV']
"""

from losskit.tracking.sinks._console import Console
from losskit.tracking.sinks._csv import CSV
from losskit.tracking.sinks._jsonl import JSONL
from losskit.tracking.sinks._mlflow import MLflow
from losskit.tracking.sinks._protocol import DurableSink, Sink
from losskit.tracking.sinks._tensorboard import TensorBoard
from losskit.tracking.sinks._wandb import WandB

__all__ = ["CSV", "JSONL", "Console", "DurableSink", "MLflow", "Sink", "TensorBoard", "WandB"]
