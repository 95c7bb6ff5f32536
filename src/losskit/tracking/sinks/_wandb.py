"""The Weights & Biases sink (optional extra ``losskit[wandb]``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from losskit.errors import MissingDependencyError
from losskit.tracking._record import Record
from losskit.tracking.sinks._scalars import scalars

__all__ = ["WandB"]

#: The W&B metric every losskit value is plotted against: the Tracker's step.
STEP_METRIC = "step"


class WandB:
    """Log scalars to a W&B run; its files (offline runs too) go under ``run_dir/wandb``.

    Tags and steps are those of every metrics-service sink (:mod:`~losskit.tracking.sinks`).
    Each row is logged with the Tracker's step as the ``step`` metric, declared as the x axis
    of every other metric (``define_metric``), so validation and epoch rows written after the
    training points of the same interval keep their step. The run starts on the first record.

    Args:
        run_dir: where W&B keeps the run's files (``run_dir/wandb``); default: W&B's own.
        project: the W&B run's project.
        entity: the W&B run's entity (user or team).
        name: the W&B run's name.
        group: the W&B run's group.
        tags: the W&B run's tags.
        mode: ``"online"``, ``"offline"`` (nothing leaves the machine; ``wandb sync`` later)
            or ``"disabled"``; ``None`` leaves it to ``WANDB_MODE`` and the login state.
        config: the run's configuration shown in W&B (e.g. the run's ``config.json``).
        settings: more ``wandb.Settings`` fields (``{"console": "off"}``).

    Needs ``pip install 'losskit[wandb]'``; without it the constructor raises
    :class:`~losskit.errors.MissingDependencyError`.

    Example::

        >>> import tempfile, torch
        >>> from losskit.tracking import Tracker, sinks
        >>> run = tempfile.mkdtemp()
        >>> with Tracker([sinks.WandB(run, mode="disabled")]) as tracker:
        ...     tracker.update({"loss": torch.tensor(0.5)})
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        project: str = "losskit",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        mode: Literal["online", "offline", "disabled"] | None = None,
        config: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise MissingDependencyError(
                "the W&B sink needs the wandb package, which is not installed: "
                "pip install 'losskit[wandb]'"
            ) from exc
        self._wandb: Any = wandb
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.project, self.entity, self.name, self.group = project, entity, name, group
        self.tags = list(tags)
        self.mode = mode
        self.config = dict(config or {})
        self.settings = dict(settings or {})
        self.run: Any = None

    def _start(self) -> Any:
        wandb = self._wandb
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=self.name,
            group=self.group,
            tags=self.tags or None,
            mode=self.mode,
            dir=str(self.run_dir) if self.run_dir is not None else None,
            config=self.config or None,
            settings=wandb.Settings(**self.settings) if self.settings else None,
            reinit="create_new",
        )
        self.run.define_metric(STEP_METRIC)
        self.run.define_metric("*", step_metric=STEP_METRIC)
        return self.run

    def write(self, record: Record) -> None:
        """Log the record's rows, each with its ``step``."""
        run = self.run if self.run is not None else self._start()
        for step, values in scalars(record):
            run.log({STEP_METRIC: step, **values})

    def close(self) -> None:
        """Finish the run (an offline run's files are complete then)."""
        if self.run is not None:
            run, self.run = self.run, None
            run.finish()

    def __repr__(self) -> str:
        return f"WandB(project={self.project!r}, mode={self.mode!r})"
