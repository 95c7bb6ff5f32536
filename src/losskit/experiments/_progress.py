"""The command line's progress of a study: a bar with an ETA in a terminal, plain lines when piped.

Example::

    >>> import io
    >>> from rich.console import Console
    >>> from losskit.experiments import TrialEvent
    >>> console = Console(file=io.StringIO(), width=80)
    >>> with StudyProgress(console, clock=iter([0.0, 10.0]).__next__) as progress:
    ...     progress(TrialEvent("trial0000", "complete", "", 1, 4))
    >>> console.file.getvalue()
    '[1/4] trial0000 complete (10 s; ETA 30 s)\\n'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from losskit.experiments._worker import TrialEvent

if TYPE_CHECKING:  # rich: imported by the command line, not with this package
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["StudyProgress"]


def _seconds(value: float) -> str:
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


class StudyProgress:
    """Called with each :class:`TrialEvent`; shows done/total and the time left."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.start = clock()
        self.first: int | None = None
        self.bar: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> StudyProgress:
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task("trials", total=None)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event: TrialEvent) -> None:
        if self.first is None:
            self.first = event.done - 1
        what = event.state + (f": {event.reason}" if event.reason else "")
        if self.bar is not None:
            self.bar.update(self.task, completed=event.done, total=event.total)
            self.bar.console.print(f"{event.key} {what}", highlight=False, soft_wrap=True)
            return
        elapsed = self.clock() - self.start
        here = event.done - self.first
        left = max(0, event.total - event.done)
        eta = f"; ETA {_seconds(elapsed / here * left)}" if here > 0 and left else ""
        self.console.print(
            f"[{event.done}/{event.total}] {event.key} {what} ({_seconds(elapsed)}{eta})",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
