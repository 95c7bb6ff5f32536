"""``compare``: a grid of variants over seeds as an Optuna study, and one report that matches it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losskit._io import check_file_name
from losskit.errors import ConfigError, LossKitError
from losskit.experiments._grid import expand
from losskit.experiments._report import (
    Comparison,
    Interval,
    RankOn,
    render_comparison,
    summarize_grid,
)
from losskit.experiments._runner import Job, is_complete, plan, write_manifest
from losskit.experiments._storage import open_study, optuna_module
from losskit.experiments._worker import TrialEvent, work

if TYPE_CHECKING:
    from losskit.config import RunConfig

__all__ = ["CompareResult", "compare", "enqueue"]


@dataclass(frozen=True)
class CompareResult:
    """A grid: its folder, the runs it ran now and those it found finished, the report and its
    data (``comparison.missing``: runs not finished, e.g. left to workers with ``jobs=0``)."""

    out: Path
    ran: tuple[Path, ...]
    skipped: tuple[Path, ...]
    report: Path
    comparison: Comparison


def _seeds(base: RunConfig, seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {seeds}")
        return [base.run.seed + k for k in range(seeds)]
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds must be distinct and not empty, got {list(seeds)}")
    return seed_list


def enqueue(study: Any, jobs: Sequence[Job], root: Path) -> int:
    """Queue each run whose key is not queued, running or finished; return how many."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    live = (state.WAITING, state.RUNNING, state.COMPLETE, state.PRUNED)
    held = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False) if t.state in live}
    added = 0
    for job in jobs:
        if job.key in held:
            continue
        folder = job.folder.relative_to(root).as_posix()
        study.enqueue_trial({}, user_attrs={"key": job.key, "folder": folder, "config": job.config})
        added += 1
    return added


def compare(
    config: RunConfig | str | os.PathLike[str] | dict[str, Any],
    vary: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 3,
    out: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    rank_by: str | None = None,
    interval: Interval = "range",
    rank_on: RankOn = "best",
    storage: str | None = None,
    study_name: str | None = None,
    on_done: Callable[[TrialEvent], None] | None = None,
) -> CompareResult:
    """Run every variant of ``config`` at every seed and write the comparative report.

    Each (variant, seed) is a trial of an Optuna study kept in ``out`` (or in ``storage``);
    run the same call again to complete an interrupted grid: finished runs are never run again.

    Args:
        config: the base configuration (a TOML path, a dict or a RunConfig).
        vary: dotted path -> values (``{"balancer": ["sum", "magnitude"]}``); the grid is
            their product.
        seeds: how many seeds (``run.seed``, ``run.seed + 1``, ...) or the seeds themselves.
        out: the grid's folder (default ``runs/<name>-compare``).
        jobs: runs at once on this machine, each a ``losskit run`` process; ``0``: only
            create the study, for ``losskit worker`` processes to run.
        rank_by: the ``split/key`` to rank by (default the base ``trainer.monitor``).
        interval: ``"range"`` (min–max over seeds), ``"std"`` (mean ± std) or ``"ci95"`` (the
            95% confidence interval of the mean): variants whose intervals overlap are not
            called different.
        rank_on: rank on each run's ``"best"`` value over epochs or its ``"final"`` one.
        storage: an RDB URL shared by workers on several hosts (default: a journal in ``out``).
        study_name: the study's name in ``storage`` (default ``compare``).
        on_done: called after each trial this process ends (progress).
    """
    from losskit.config import RunConfig, load_config  # pydantic: only when a grid is run

    base = config if isinstance(config, RunConfig) else load_config(config)  # type: ignore[arg-type]
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"jobs must be a non-negative integer, got {jobs!r}")
    seed_list = _seeds(base, seeds)
    if out is not None:
        root = Path(out)
    else:
        root = Path("runs") / f"{check_file_name('run.name', base.run.name)}-compare"
    variants = expand(base, vary)
    write_manifest(root, base, {k: list(v) for k, v in vary.items()}, seed_list, variants)
    jobs_list = plan(variants, seed_list, root)
    before = {j.folder for j in jobs_list if is_complete(j.folder)}
    monitor, mode = base.trainer.arguments["monitor"], base.trainer.arguments["mode"]
    split, _, name = str(monitor).partition("/")
    direction = "maximize" if mode == "max" else "minimize"
    study = open_study(
        root,
        storage=storage,
        name=study_name or "compare",
        create={
            "kind": "compare",
            "root": str(root.resolve()),
            "objectives": [{"split": split, "name": name, "direction": direction}],
            "prune": False,
        },
        direction=direction,
    )
    study.set_user_attr("losskit_total", len(jobs_list))
    enqueue(study, jobs_list, root)
    if jobs > 0:
        work(root, storage=storage, study_name=study.study_name, jobs=jobs, on_event=on_done)
    _raise_failures(study)
    comparison = summarize_grid(root, rank_by=rank_by, interval=interval, rank_on=rank_on)
    report = render_comparison(comparison)
    ran = tuple(j.folder for j in jobs_list if j.folder not in before and is_complete(j.folder))
    return CompareResult(
        out=root,
        ran=ran,
        skipped=tuple(j.folder for j in jobs_list if j.folder in before),
        report=report,
        comparison=comparison,
    )


def _raise_failures(study: Any) -> None:
    """A run that failed (and was not run again since) stops the grid, naming its error."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    finished = {t.user_attrs.get("key") for t in trials if t.state == state.COMPLETE}
    failed = [
        t
        for t in trials
        if t.state == state.FAIL and "error" in t.user_attrs and t.user_attrs["key"] not in finished
    ]
    if failed:
        shown = "; ".join(f"{t.user_attrs['key']}: {t.user_attrs['error']}" for t in failed[:3])
        raise LossKitError(
            f"{len(failed)} run(s) of the grid failed ({shown}); their folders hold trial.log. "
            "Fix the cause and run the same command again: it runs only what is missing"
        )
