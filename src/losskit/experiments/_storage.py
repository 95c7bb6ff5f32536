"""Where a study lives: a journal file in its folder, or an RDB shared by many hosts.

The default is Optuna's ``JournalStorage`` on ``<folder>/study.journal`` (nothing to start; the
workers of one machine share it). ``--storage URL`` names an RDB through SQLAlchemy
(``sqlite:///study.db``, ``postgresql+psycopg://user@host/db``): workers on every host that
reaches it join the study; they record heartbeats, and a trial whose worker stopped beating is
failed and queued again (Optuna's ``RetryHeartbeatStaleTrialCallback``).

Example::

    >>> import tempfile
    >>> study = open_study(tempfile.mkdtemp(), create={"kind": "compare"}, direction="minimize")
    >>> study.user_attrs["losskit"]["kind"]
    'compare'
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from losskit.errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "HEARTBEAT_S",
    "JOURNAL",
    "load_study",
    "open_study",
    "optuna_module",
    "spec",
    "total_of",
]

JOURNAL = "study.journal"
HEARTBEAT_S = 5
"""Seconds between a running trial's heartbeats in an RDB."""
STALE_AFTER = 12
"""Missed heartbeats after which a running trial is stale (a minute: a loaded host's beats
arrive late, and a stale trial is run again)."""
SQLITE_LOCK_S = 60.0
"""Seconds a SQLite study waits for the database lock."""
# the driver leaves transactions to SQLAlchemy's ``begin`` event (``_serialise_transactions``),
# and waits for the lock instead of failing after sqlite3's 5 s
_SQLITE_ENGINE = {"connect_args": {"isolation_level": None, "timeout": SQLITE_LOCK_S}}


def _serialise_transactions(engine: Any) -> None:
    """Run each of a SQLite study's transactions under the write lock (``BEGIN IMMEDIATE``).

    Optuna hands a queued trial to one worker by reading it as waiting and updating it to
    running in one transaction, with ``SELECT ... FOR UPDATE``, which SQLite ignores: the
    driver's deferred transactions let two workers both read it as waiting and both run it.
    Taking the lock when the transaction begins makes that read-then-update atomic (SQLAlchemy's
    recipe for SQLite's transactions); PostgreSQL and MySQL lock the row themselves.
    """
    from sqlalchemy import event

    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "begin", begin)


def optuna_module() -> Any:
    """Optuna, or an error naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "compare, tune and worker run on Optuna, which is not installed: "
            "pip install 'losskit[optuna]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # losskit reports each trial itself
    return optuna


def _storage(folder: str | os.PathLike[str] | None, url: str | None) -> Any:
    optuna = optuna_module()
    if url is not None:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sqlite = url.startswith("sqlite")
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=_SQLITE_ENGINE if sqlite else None,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=STALE_AFTER * HEARTBEAT_S,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback()
                    ),
                )
        except (ImportError, ModuleNotFoundError) as exc:
            raise ConfigError(
                f"--storage {url}: its database driver is missing ({exc}); for PostgreSQL "
                "pip install 'losskit[postgresql]'"
            ) from None
        except Exception as exc:  # SQLAlchemy's errors: a bad URL, a server not reached
            raise ConfigError(f"--storage {url}: cannot open the study database ({exc})") from None
        if sqlite:
            _serialise_transactions(storage.engine)
        return storage
    if folder is None:
        raise ConfigError("give the study folder or --storage URL")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    journal = optuna.storages.journal
    return journal.JournalStorage(journal.JournalFileBackend(str(root / JOURNAL)))


def open_study(
    folder: str | os.PathLike[str] | None,
    *,
    storage: str | None = None,
    name: str | None = None,
    create: dict[str, Any] | None = None,
    direction: str | None = None,
    directions: Sequence[str] | None = None,
) -> optuna.Study:
    """The study in ``folder`` (or in ``storage``): created with the losskit spec ``create``
    when given, else loaded (a storage holding one study needs no ``name``).

    A study created again with another spec is refused: it holds another experiment.
    """
    engine = optuna_module()
    backend = _storage(folder, storage)
    if create is None:
        names = [s.study_name for s in engine.get_all_study_summaries(backend)]
        if name is None and len(names) == 1:
            name = names[0]
        if name not in names:
            where = storage or Path(str(folder)) / JOURNAL
            raise ConfigError(
                f"{where} holds no study {name!r}; it holds {names or 'none'}: start one with "
                "losskit compare or losskit tune (--jobs 0 to only create it)"
            )
        found = spec(engine.load_study(study_name=name, storage=backend))
        sampler, pruner = _engine(found)
        loaded = engine.load_study(study_name=name, storage=backend, sampler=sampler, pruner=pruner)
        return cast("optuna.Study", loaded)
    sampler, pruner = _engine(create)
    study = engine.create_study(
        study_name=name or "losskit",
        storage=backend,
        load_if_exists=True,
        direction=direction,
        directions=directions,
        sampler=sampler,
        pruner=pruner,
    )
    held = study.user_attrs.get("losskit")
    if held is None:
        study.set_user_attr("losskit", create)
    elif _identity(held) != _identity(create):
        raise ConfigError(
            f"the study {study.study_name!r} in {storage or folder} holds another experiment "
            "(another configuration, search or objective); use another folder or --study name"
        )
    return cast("optuna.Study", study)


def _engine(found: dict[str, Any]) -> tuple[Any, Any]:
    """The sampler and pruner a study's spec names (every worker builds the same)."""
    optuna = optuna_module()
    sampler = optuna.samplers.TPESampler(seed=found.get("sampler_seed"))
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return sampler, pruners[found.get("pruner", "none")]()


def _identity(found: dict[str, Any]) -> Any:
    """What makes two specs the same experiment (not the folder, given relative or not)."""
    import json

    return json.loads(json.dumps({k: v for k, v in found.items() if k != "root"}, sort_keys=True))


def spec(study: optuna.Study) -> dict[str, Any]:
    """The losskit spec a study was created with (its kind, base configuration, ...)."""
    found = study.user_attrs.get("losskit")
    if not isinstance(found, dict):
        raise ConfigError(f"the study {study.study_name!r} was not created by losskit")
    return found


def total_of(study: optuna.Study) -> int:
    """How many trials the study is to finish (a grid's runs, a tune's ``--trials``)."""
    return int(study.user_attrs.get("losskit_total", 0))


def load_study(
    study_dir: str | os.PathLike[str] | None = None,
    *,
    storage: str | None = None,
    name: str | None = None,
) -> optuna.Study:
    """The Optuna study of a ``compare`` or ``tune`` (its folder, or ``storage`` and ``name``),
    to read its trials: each has ``user_attrs["key"]``, and a pruned one ``pruned_by``.

    Example::

        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = open_study(folder, name="tune", create={"kind": "tune"}, direction="maximize")
        >>> load_study(folder).study_name
        'tune'
    """
    return open_study(study_dir, storage=storage, name=name)
