"""A worker: takes a study's trials one at a time and runs each as ``losskit run``.

Every trial carries a stable key (``user_attrs["key"]``: ``<variant>/seed<k>`` in a grid,
``trial<NNNN>`` in a tune) and its run folder follows from the key. A worker pops the queued
trials (a grid's are all queued when the study is made), asks the sampler for new ones while a
tune has fewer than its trials, and stops when nothing is queued or running. A trial whose
worker died is failed and queued again under the same key: in an RDB when its heartbeats stop
(Optuna's stale-trial check), on this host as soon as its worker's process is gone. A key that
finished already is never run again, and a run folder that finished before its worker could
record it is taken as it is.

Example::

    >>> import tempfile
    >>> from losskit.experiments._storage import open_study
    >>> folder = tempfile.mkdtemp()
    >>> study = open_study(folder, create={"kind": "compare", "root": folder},
    ...                    direction="minimize")
    >>> work(folder)  # nothing queued: nothing to do
    0
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from losskit.errors import ConfigError
from losskit.experiments._grid import apply
from losskit.experiments._pruning import RunWatch
from losskit.experiments._runner import is_complete, run_job
from losskit.experiments._search import Dimension, Objective, suggest
from losskit.experiments._storage import open_study, optuna_module, spec, total_of

__all__ = ["TrialEvent", "trial_folder", "tune_config", "work"]

IDLE_S = 0.5
UNCLAIMED_S = 120.0
"""A running trial its worker never claimed (it died right after taking it) is stale after this."""


@dataclass(frozen=True)
class TrialEvent:
    """A trial that ended in this worker: its key, state (``complete``, ``pruned``,
    ``failed``), reason, and the study's count of finished keys out of its total."""

    key: str
    state: str
    reason: str
    done: int
    total: int


class _TrialFailedError(Exception):
    """A trial's run failed: recorded as FAIL with the error, the worker goes on."""


class _UnusedTrialError(Exception):
    """A trial the sampler made when the queue had just emptied, or a finished key's twin."""


def _worker_id(number: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{number}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _older_than(start: datetime.datetime | None, seconds: float) -> bool:
    if start is None:
        return False
    return (datetime.datetime.now() - start).total_seconds() > seconds


def _recover(study: Any) -> None:
    """Fail and queue again the running trials of this host whose worker process is gone."""
    optuna = optuna_module()
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = str(t.user_attrs.get("worker", ""))
        name, _, rest = owner.partition(":")
        pid, _, number = rest.partition(":")
        unclaimed = not owner and _older_than(t.datetime_start, UNCLAIMED_S)
        mine = name == host and number == str(t.number) and pid.isdigit()
        if not unclaimed and not (mine and not _alive(int(pid))):
            continue
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, RuntimeError):
            continue  # another worker got there first
        attrs = {k: v for k, v in t.user_attrs.items() if k != "worker"}
        study.enqueue_trial(t.params, user_attrs={**attrs, "retry_of": t.number})


def _keys(trials: Any, states: Any) -> set[str]:
    return {t.user_attrs["key"] for t in trials if t.state in states and "key" in t.user_attrs}


def _progress(study: Any, total: int) -> tuple[int, int]:
    optuna = optuna_module()
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False)
    finished = _keys(trials, done) | {
        t.user_attrs["key"]
        for t in trials
        if t.state == optuna.trial.TrialState.FAIL and "error" in t.user_attrs
    }
    return len(finished), total


def _needs(study: Any, total: int) -> str:
    """``"ask"`` (a trial is queued or a tune wants more), ``"wait"`` (others run) or ``"done"``."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    if any(t.state == state.WAITING for t in trials):
        return "ask"
    if spec(study)["kind"] == "tune" and _counted(trials) < total:
        return "ask"
    return "wait" if any(t.state == state.RUNNING for t in trials) else "done"


def _counted(trials: Any, exclude: int | None = None) -> int:
    """A tune's trials so far: its keys, and the running trials not yet keyed."""
    running = optuna_module().trial.TrialState.RUNNING
    keys = {
        t.user_attrs.get("key", f"#{t.number}")
        for t in trials
        if t.number != exclude and ("key" in t.user_attrs or t.state == running)
    }
    return len(keys)


def trial_folder(root: Path, trial: Any) -> Path:
    """A trial's run folder: ``root/<key>`` for a grid, ``root/trials/<key>`` for a tune."""
    folder = trial.user_attrs.get("folder")
    return root / str(folder) if folder else root / "trials" / str(trial.user_attrs["key"])


def _values(summary: dict[str, Any], objectives: list[Objective], key: str) -> list[float]:
    values = []
    for o in objectives:
        final = summary["final"].get(o.split, {})
        if o.name not in final:
            raise _TrialFailedError(
                f"{key}: the objective {o.key} is not in the run's final values; "
                f"{o.split} holds {sorted(final)}"
            )
        values.append(float(final[o.name]))
    return values


class _Objective:
    """The function each trial of the study runs (inside ``study.optimize``)."""

    def __init__(self, study: Any, root: Path, threads: int | None) -> None:
        self.study = study
        self.spec = spec(study)
        self.root = root
        self.threads = threads
        self.total = total_of(study)
        self.last: TrialEvent | None = None

    def ended(self) -> TrialEvent | None:
        """The trial this objective ran last (``None``: it ran none)."""
        return self.last

    def _config(self, trial: Any) -> dict[str, Any]:
        if self.spec["kind"] == "compare":
            return dict(trial.user_attrs["config"])
        return tune_config(self.spec, trial)

    def _claim(self, trial: Any) -> str:
        optuna = optuna_module()
        if "key" not in trial.user_attrs:
            trials = self.study.get_trials(deepcopy=False)
            if self.spec["kind"] == "compare" or _counted(trials, trial.number) >= self.total:
                raise _UnusedTrialError("no trial left")
            trial.set_user_attr("key", f"trial{trial.number:04d}")
        key = str(trial.user_attrs["key"])
        state = optuna.trial.TrialState
        others = [t for t in self.study.get_trials(deepcopy=False) if t.number != trial.number]
        if key in _keys(others, (state.COMPLETE, state.PRUNED)):
            raise _UnusedTrialError(f"{key} finished already")
        trial.set_user_attr("worker", _worker_id(trial.number))
        return key

    def __call__(self, trial: Any) -> Any:
        optuna = optuna_module()
        key = self._claim(trial)
        config = self._config(trial)
        folder = trial_folder(self.root, trial)
        objectives = [Objective(**o) for o in self.spec["objectives"]]
        done = is_complete(folder) and _same_config(folder, config)
        if not done:
            single = objectives[0] if len(objectives) == 1 and self.spec["kind"] == "tune" else None
            watch = RunWatch(folder, trial, single) if self.spec.get("prune") else None
            outcome = run_job(config, folder, check=watch, threads=self.threads)
            if outcome.state == "pruned":
                finding = watch.finding if watch is not None else None
                trial.set_user_attr("pruned_by", outcome.reason)
                if finding is not None:
                    trial.set_user_attr("finding", finding.to_dict())
                trial.set_user_attr("steps", _steps(folder))
                self.last = TrialEvent(key, "pruned", outcome.reason, 0, 0)
                raise optuna.TrialPruned(outcome.reason)
            if outcome.state == "failed":
                trial.set_user_attr("error", outcome.reason)
                self.last = TrialEvent(key, "failed", outcome.reason, 0, 0)
                raise _TrialFailedError(outcome.reason)
        summary = json.loads((folder / "summary.json").read_text())
        try:
            values = _values(summary, objectives, key)
        except _TrialFailedError as exc:
            trial.set_user_attr("error", str(exc))
            self.last = TrialEvent(key, "failed", str(exc), 0, 0)
            raise
        trial.set_user_attr("steps", int(summary["steps"]))
        trial.set_user_attr("seconds", float(summary["seconds"]))
        self.last = TrialEvent(key, "complete", "", 0, 0)
        return values[0] if len(values) == 1 else values


def tune_config(found: dict[str, Any], trial: Any) -> dict[str, Any]:
    """The run configuration a tune trial (or ``optuna.trial.FixedTrial(params)``) picks."""
    from losskit.config import load_config

    space = [Dimension(**{**d, "choices": tuple(d["choices"])}) for d in found["space"]]
    overrides = suggest(trial, space)
    config: dict[str, Any] = apply(load_config(found["base"]), overrides).model_dump(mode="json")
    return config


def _steps(folder: Path) -> int:
    from losskit.tracking import load

    try:
        return int(load(folder, skip_corrupt=True).last_step)
    except Exception:
        return 0


def _same_config(folder: Path, config: dict[str, Any]) -> bool:
    try:
        held = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    from losskit.config import load_config

    try:
        return bool(held == load_config(config).model_dump(mode="json"))
    except ConfigError:
        return False


def _loop(
    study: Any,
    root: Path,
    threads: int | None,
    on_event: Callable[[TrialEvent], None] | None,
    count: list[int],
    lock: threading.Lock,
) -> None:
    objective = _Objective(study, root, threads)
    total = objective.total
    while True:
        _recover(study)
        needs = _needs(study, total)
        if needs == "done":
            return
        if needs == "wait":
            time.sleep(IDLE_S)
            continue
        objective.last = None
        study.optimize(objective, n_trials=1, catch=(_TrialFailedError, _UnusedTrialError))
        ended = objective.ended()
        if ended is not None:
            with lock:
                count[0] += 1
            if on_event is not None:
                done, _ = _progress(study, total)
                e = ended
                on_event(TrialEvent(e.key, e.state, e.reason, done, total))


def work(
    study_dir: str | os.PathLike[str] | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    jobs: int = 1,
    out: str | os.PathLike[str] | None = None,
    on_event: Callable[[TrialEvent], None] | None = None,
) -> int:
    """Join a study and run its trials until none is queued or running; return how many ran here.

    Args:
        study_dir: the study's folder (its journal), or ``None`` with ``storage``.
        storage: an RDB URL (``postgresql+psycopg://...``) shared by many hosts.
        study_name: the study in ``storage`` (needed when it holds several).
        jobs: trials run at once by this worker (each a ``losskit run`` process).
        out: where run folders go (default: the folder the study was created in).
        on_event: called after each trial this worker ends (progress).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    study = open_study(study_dir, storage=storage, name=study_name)
    root = Path(out) if out is not None else Path(spec(study)["root"])
    threads = max(1, (os.cpu_count() or 1) // jobs)
    count = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            _loop(study, root, threads, on_event, count, lock)
        except BaseException as exc:
            errors.append(exc)

    if jobs == 1:
        _loop(study, root, threads, on_event, count, lock)
        return count[0]
    workers = [
        threading.Thread(target=loop, name=f"losskit-worker-{i}", daemon=True) for i in range(jobs)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return count[0]
