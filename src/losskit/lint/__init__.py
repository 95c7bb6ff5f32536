"""The run linter: patterns in a run's log that call for action, per key and across keys.

``lint(run_dir)`` reads ``metrics.jsonl`` (through :func:`losskit.tracking.load`) and returns
:class:`Finding` records, each naming the key, the kind of pattern, the step range and advice.
``losskit lint RUN_DIR...`` prints them (or ``--json``) and exits non-zero when there are any;
every HTML report has a Findings section.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, sinks
    >>> import losskit.lint
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)], every=10) as tracker:
    ...     for step in range(1, 201):
    ...         tracker.update({"loss": torch.tensor(0.1 + 2.0 * 0.98 ** step)})
    >>> losskit.lint.lint(run)
    []
"""

from losskit._findings import KINDS, Finding, Severity, finding
from losskit.lint._linter import lint, lint_runs
from losskit.lint._thresholds import Thresholds

__all__ = ["KINDS", "Finding", "Severity", "Thresholds", "finding", "lint", "lint_runs"]
