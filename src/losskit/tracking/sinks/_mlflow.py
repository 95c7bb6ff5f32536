"""The MLflow sink (optional extra ``losskit[mlflow]``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from losskit.errors import MissingDependencyError
from losskit.tracking._record import Record
from losskit.tracking.sinks._scalars import scalars

__all__ = ["MLflow"]

_BATCH = 1000  # the most metrics MLflow takes in one log_batch call
_NOT_ALLOWED = re.compile(r"[^\w./\- ]")  # MLflow's metric names: these characters only


def metric_name(tag: str, *, file_store: bool = False) -> str:
    """``tag`` as an MLflow metric name: characters MLflow refuses become ``_``.

    A file store keeps each metric in a file at its name's path, so ``train/loss`` (a file)
    and ``train/loss/cls`` (under a folder of the same name) cannot both exist there: in a file
    store ``/`` becomes ``.``.

    Example::

        >>> metric_name("val/metric/f1<macro>"), metric_name("train/loss", file_store=True)
        ('val/metric/f1_macro_', 'train.loss')
    """
    name = _NOT_ALLOWED.sub("_", tag)
    return name.replace("/", ".") if file_store else name


class MLflow:
    """Log scalars to an MLflow run: a local store in ``run_dir`` or a tracking server.

    Tags and steps are those of every metrics-service sink (:mod:`~losskit.tracking.sinks`);
    a character MLflow refuses in a name becomes ``_``, and in a ``file:`` store ``/`` becomes
    ``.`` (:func:`metric_name`). The run is created on the first record and ended
    (``FINISHED``) on close. A server that does not answer makes the tracker warn once and
    drop the sink after MLflow's own retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``).

    Args:
        run_dir: the run's folder; the default store is ``sqlite:///<run_dir>/mlflow.db``
            (MLflow's recommended local store; MLflow 3 refuses the old ``mlruns/`` file
            store unless ``MLFLOW_ALLOW_FILE_STORE=true``, then ``file:`` URIs work too).
        tracking_uri: a server (``http://host:5000``) or store URI; default
            ``MLFLOW_TRACKING_URI`` when set, else the store in ``run_dir``.
        experiment: the experiment's name (created when missing).
        run_name: the MLflow run's name.
        tags: the MLflow run's tags.
        params: the MLflow run's parameters.

    Needs ``pip install 'losskit[mlflow]'``; without it the constructor raises
    :class:`~losskit.errors.MissingDependencyError`.

    Example::

        >>> import tempfile, torch
        >>> from losskit.tracking import Tracker, sinks
        >>> run = tempfile.mkdtemp()
        >>> sink = sinks.MLflow(run)
        >>> with Tracker([sink]) as tracker:
        ...     tracker.update({"loss": torch.tensor(0.5)})
        >>> [m.value for m in sink.client.get_metric_history(sink.run_id, "train/loss")]
        [0.5]
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        tracking_uri: str | None = None,
        experiment: str = "losskit",
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise MissingDependencyError(
                "the MLflow sink needs the mlflow-skinny package, which is not installed: "
                "pip install 'losskit[mlflow]'"
            ) from exc
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri is None:
            folder = Path(run_dir) if run_dir is not None else Path.cwd()
            uri = f"sqlite:///{folder.resolve() / 'mlflow.db'}"
            self._folder: Path | None = folder
        else:
            self._folder = None
        self.tracking_uri = uri
        self._file_store = uri.startswith("file:") or "://" not in uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.params = dict(params or {})
        self._client_type: Any = MlflowClient
        self._metric: Any = Metric
        self._param: Any = Param
        self.client: Any = None
        self.run_id: str | None = None
        self._ended = False

    def _start(self) -> str:
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
        client = self.client = self._client_type(tracking_uri=self.tracking_uri)
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = (
            found.experiment_id if found is not None else client.create_experiment(self.experiment)
        )
        run = client.create_run(experiment_id, run_name=self.run_name, tags=self.tags)
        self.run_id = run.info.run_id
        if self.params:
            params = [self._param(k, str(v)) for k, v in self.params.items()]
            client.log_batch(self.run_id, params=params)
        return str(self.run_id)

    def write(self, record: Record) -> None:
        """Log the record's values as metrics of the run, in batches."""
        run_id = self.run_id if self.run_id is not None else self._start()
        stamp = int(record.time * 1000)
        metrics = [
            self._metric(metric_name(tag, file_store=self._file_store), value, stamp, step)
            for step, values in scalars(record)
            for tag, value in values.items()
        ]
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def close(self) -> None:
        """Mark the run finished."""
        if self.run_id is not None and not self._ended:
            self._ended = True
            self.client.set_terminated(self.run_id)

    def __repr__(self) -> str:
        return f"MLflow({self.tracking_uri!r}, experiment={self.experiment!r})"
