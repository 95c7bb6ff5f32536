"""Reports of a run: figures of its log and one self-contained HTML page.

``render(run_dir)`` reads ``run_dir/metrics.jsonl`` (written by
:class:`losskit.tracking.sinks.JSONL`) and writes ``run_dir/report.html``. matplotlib is
imported when a figure is drawn, not with this package.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, sinks
    >>> from losskit import report
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     tracker.update({"loss": torch.tensor(0.5)})
    >>> report.render(run).name
    'report.html'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from losskit.report.page import render
from losskit.report.smoothing import ema
from losskit.report.summary import SummaryRow, summarize

if TYPE_CHECKING:
    from losskit.report.plots import Plot, figures

__all__ = ["Plot", "SummaryRow", "ema", "figures", "render", "summarize"]


def __getattr__(name: str) -> Any:
    # The figures import matplotlib (most of a second): only when they are asked for.
    if name in ("Plot", "figures"):
        from losskit.report import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
