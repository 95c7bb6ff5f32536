"""The console sink: a live progress display of every split's latest means (rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from losskit.tracking._record import Record

if TYPE_CHECKING:
    from rich.console import Console as RichConsole
    from rich.progress import Progress, TaskID

__all__ = ["Console"]


def _format(values: dict[str, float | None] | object, keys: Sequence[str] | None) -> str:
    assert isinstance(values, dict)
    shown = [k for k in values if (k == "loss" or k.startswith("loss/"))] if keys is None else keys
    parts = []
    for key in shown:
        value = values.get(key)
        label = key.removeprefix("loss/")
        parts.append(f"{label} {'-' if value is None else f'{value:.4g}'}")
    return "  ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Console:
    """Show a progress bar per split with its latest interval means; print each epoch's means.

    When the output is not a terminal (piped, a batch job's log) it prints plain lines instead
    of a bar: the training split's progress with the time remaining at most every ``every``
    seconds, and each epoch's means. ``quiet=True`` writes nothing; ``quiet=False`` draws the
    bar even when the output is not a terminal.

    Args:
        total: the number of training steps, for the bar of ``train_split`` and the time
            remaining.
        keys: the keys to show (default: ``loss`` and every ``loss/<key>``).
        console: where to draw (default: a new ``rich.console.Console`` on stdout).
        quiet: ``None``: a bar in a terminal, plain lines elsewhere.
        train_split: the split whose bar counts towards ``total``.
        every: seconds between two plain progress lines (the first one is printed at once).

    Example::

        >>> import io, rich.console, torch
        >>> from losskit.tracking import Tracker, sinks
        >>> out = io.StringIO()
        >>> screen = rich.console.Console(file=out, force_terminal=True, width=100)
        >>> with Tracker([sinks.Console(console=screen)]) as tracker:
        ...     tracker.update({"loss": torch.tensor(0.5), "loss/cls": torch.tensor(0.25)})
        ...     _ = tracker.end_epoch()
        >>> "epoch 0 train  loss 0.5  cls 0.25" in out.getvalue()
        True

    Piped, the same sink prints plain lines::

        >>> out = io.StringIO()
        >>> piped = rich.console.Console(file=out, width=100)
        >>> with Tracker([sinks.Console(console=piped, total=4)], every=2) as tracker:
        ...     for _ in range(4):
        ...         tracker.update({"loss": torch.tensor(0.5)})
        >>> out.getvalue().splitlines()[0].split(", ")[0]
        'train step 2/4 (50%)'
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        keys: Sequence[str] | None = None,
        console: RichConsole | None = None,
        quiet: bool | None = None,
        train_split: str = "train",
        every: float = 30.0,
    ) -> None:
        if console is None:
            from rich.console import Console as RichConsole  # rich: only when a console is made

            console = RichConsole()
        self.console = console
        self.quiet = bool(quiet)
        self.plain = quiet is None and not self.console.is_terminal
        self.every = every
        self._started = time.monotonic()
        self._printed: float | None = None  # when the last plain progress line was printed
        self.total = total
        self.keys = keys
        self.train_split = train_split
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def _display(self) -> Progress:
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description:>6}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[values]}", markup=False),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self._progress

    def write(self, record: Record) -> None:
        """Update the split's bar with an interval record; print an epoch record's means."""
        if self.quiet:
            return
        if self.plain:
            self._line(record)
            return
        progress = self._display()
        text = _format(dict(record.values), self.keys)
        if record.kind == "epoch":
            progress.console.print(
                f"epoch {record.epoch} {record.split}  {text}", markup=False, highlight=False
            )
            return
        task = self._tasks.get(record.split)
        if task is None:
            total = self.total if record.split == self.train_split else None
            task = progress.add_task(record.split, total=total, values="")
            self._tasks[record.split] = task
        progress.update(task, completed=record.step, values=text)

    def _line(self, record: Record) -> None:
        """One plain line: an epoch's means, or (throttled) the training split's progress."""
        text = _format(dict(record.values), self.keys)
        if record.kind == "epoch":
            line = f"epoch {record.epoch} {record.split}  {text}"
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        now = time.monotonic()
        if record.split != self.train_split or (
            self._printed is not None and now - self._printed < self.every
        ):
            return
        self._printed = now
        elapsed = now - self._started
        where = f"{record.split} step {record.step}"
        if self.total:
            done = min(record.step / self.total, 1.0)
            left = elapsed * (1 - done) / done if done > 0 else 0.0
            where += f"/{self.total} ({done:.0%}), ETA {_clock(left)}"
        line = f"{where}, {_clock(elapsed)} elapsed  {text}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stop the live display, leaving its last state on screen."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks = {}

    def __repr__(self) -> str:
        return f"Console(total={self.total!r}, quiet={self.quiet!r})"
