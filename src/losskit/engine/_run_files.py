"""The files a run folder holds besides its log and checkpoints: ``config.json``,
``summary.json`` and ``report.html``, written the same way by ``losskit run`` and by
``Trainer(run_dir=...)``.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json(folder / "config.json", {"b": (1, 2), "a": None})
    >>> print((folder / "config.json").read_text(), end="")
    {
      "a": null,
      "b": [
        1,
        2
      ]
    }
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losskit._io import replace_text

if TYPE_CHECKING:
    from losskit.engine._trainer import FitSummary

__all__ = ["as_data", "summary", "write_json", "write_report"]


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically (a temporary file, then renamed)."""
    replace_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def as_data(value: Any) -> Any:
    """``value`` as JSON data: numbers, strings, lists and tables as they are, the rest as
    their ``repr`` (a module, a callable)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    return repr(value)


def summary(fit: FitSummary, *, name: str, monitor: str, metrics: Sequence[str]) -> dict[str, Any]:
    """What ``summary.json`` holds: the run's length, best and final means, weights, metrics."""
    weights = {
        k.removeprefix("weight/"): w for k, w in fit.train.items() if k.startswith("weight/")
    }
    payload: dict[str, Any] = {
        "name": name,
        "epochs": fit.epochs,
        "steps": fit.steps,
        "seconds": round(fit.seconds, 3),
        "monitor": monitor,
        "best_value": fit.best_value,
        "best_epoch": fit.best_epoch,
        "stopped_early": fit.stopped_early,
        "final": {"train": fit.train, "val": fit.val},
        "weights": weights,
    }
    for metric in metrics:
        value = fit.val.get(f"metric/{metric}")
        if value is not None:
            payload[f"val_{metric}"] = value
    return payload


def write_report(run_dir: Path) -> Path:
    """Render ``run_dir/report.html`` from the run's log (:func:`losskit.report.render`)."""
    from losskit.report import render  # matplotlib: only when a report is written

    return render(run_dir)
