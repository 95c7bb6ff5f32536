"""The console sink: a live progress display of every split's latest means (rich)."""

from __future__ import annotations

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


class Console:
    """Show a progress bar per split with its latest interval means; print each epoch's means.

    Quiet (writes nothing) when the output is not a terminal, so logs of batch jobs stay clean;
    pass ``quiet=False`` to force it, or your own ``rich.console.Console``.

    Args:
        total: the number of training steps, for the bar of ``train_split`` and the time
            remaining.
        keys: the keys to show (default: ``loss`` and every ``loss/<key>``).
        console: where to draw (default: a new ``rich.console.Console`` on stdout).
        quiet: ``None`` decides from whether the console is a terminal.
        train_split: the split whose bar counts towards ``total``.

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
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        keys: Sequence[str] | None = None,
        console: RichConsole | None = None,
        quiet: bool | None = None,
        train_split: str = "train",
    ) -> None:
        if console is None:
            from rich.console import Console as RichConsole  # rich: only when a console is made

            console = RichConsole()
        self.console = console
        self.quiet = (not self.console.is_terminal) if quiet is None else quiet
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

    def close(self) -> None:
        """Stop the live display, leaving its last state on screen."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks = {}

    def __repr__(self) -> str:
        return f"Console(total={self.total!r}, quiet={self.quiet!r})"
