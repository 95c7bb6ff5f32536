"""``tune``: a search over config paths as an Optuna study, pruned by the run linter."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losskit._io import check_file_name
from losskit.errors import ConfigError
from losskit.experiments._runner import write_config
from losskit.experiments._search import (
    Dimension,
    parse_objective,
    parse_search,
    search_table,
)
from losskit.experiments._storage import open_study, optuna_module, spec
from losskit.experiments._study_report import best_trials, render_study
from losskit.experiments._worker import TrialEvent, tune_config, work

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from losskit.config import RunConfig

__all__ = ["TuneResult", "read_config", "tune"]

PRUNERS = ("median", "asha", "none")


@dataclass(frozen=True)
class TuneResult:
    """A search: its folder, the best trials (one; several on a Pareto front), the best
    configuration as a runnable TOML, the study report, and the trials' counts by state."""

    out: Path
    best: tuple[dict[str, Any], ...]
    best_config: Path | None
    report: Path
    counts: dict[str, int]


def read_config(
    config: RunConfig | str | os.PathLike[str] | dict[str, Any],
) -> tuple[RunConfig, list[Dimension]]:
    """The run configuration and the dimensions of its ``[search]`` table (if any)."""
    from losskit.config import RunConfig, load_config

    if isinstance(config, RunConfig):
        return config, []
    if isinstance(config, dict):
        raw = dict(config)
    else:
        path = Path(config)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    table = raw.pop("search", None) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"[search] must be a table of PATH = spec, got {table!r}")
    return load_config(raw), search_table(table)


def _pruner(name: str) -> None:
    if name not in PRUNERS:
        raise ConfigError(f"pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


def tune(
    config: RunConfig | str | os.PathLike[str] | dict[str, Any],
    search: Sequence[str | Dimension] = (),
    *,
    trials: int = 20,
    objectives: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    prune: bool = True,
    pruner: str = "median",
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    on_done: Callable[[TrialEvent], None] | None = None,
) -> TuneResult:
    """Search config paths for the best objective; write the study report and the best TOML.

    Args:
        config: the base configuration; a TOML file may hold a ``[search]`` table.
        search: ``"terms.recon.weight=log(1e-3,10)"``, ``"balancer=[sum,upgrad]"``, ...
            (added to the file's ``[search]``).
        trials: how many trials the study finishes (pruned ones count); run the same call
            with more to search further.
        objectives: ``split/name[:min|max]``, one or several (a Pareto front); default the
            configuration's ``trainer.monitor``.
        out: the study's folder (default ``runs/<name>-tune``); trials in ``out/trials/``.
        jobs: trials at once on this machine; ``0``: only create the study (for workers).
        prune: stop trials on the run linter's findings (and, with one objective, on
            ``pruner``: ``"median"``, ``"asha"`` or ``"none"``). With several objectives
            only the linter prunes.
        seed: the sampler's seed.
        storage: an RDB URL shared by several hosts.
        study_name: the study's name in ``storage``.
        on_done: called after each trial this process ends (progress).

    Example::

        >>> import tempfile
        >>> from importlib import resources
        >>> from losskit.experiments import tune
        >>> from losskit.config import load_config
        >>> raw = load_config(resources.files("losskit").joinpath("demo.toml")).model_dump()
        >>> raw["run"]["epochs"] = 1
        >>> raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
        >>> result = tune(raw, ["terms.ink.weight=log(0.01,1)"], trials=2, out=tempfile.mkdtemp(),
        ...               objectives=["val/metric/accuracy"])
        >>> result.counts["complete"] + result.counts["pruned"], result.best_config.name
        (2, 'best.toml')
    """
    base, space = read_config(config)
    space += [s if isinstance(s, Dimension) else parse_search(s) for s in search]
    if not space:
        raise ConfigError("tune needs a search space: --search PATH=SPEC or a [search] table")
    if len({d.path for d in space}) != len(space):
        raise ConfigError(f"a path is searched twice: {[d.path for d in space]}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials must be a positive integer, got {trials!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"jobs must be a non-negative integer, got {jobs!r}")
    _pruner(pruner)
    monitor = str(base.trainer.arguments["monitor"])
    mode = base.trainer.arguments["mode"]
    goals = [parse_objective(o) for o in objectives] or [parse_objective(f"{monitor}:{mode}")]
    from losskit.experiments._grid import apply

    for dim in space:  # a path or value the configuration cannot take fails now
        apply(base, [(dim.path, dim.choices[0] if dim.kind == "choice" else dim.low)])
    root = (
        Path(out)
        if out is not None
        else Path("runs") / f"{check_file_name('run.name', base.run.name)}-tune"
    )
    directions = [g.direction for g in goals]
    study = open_study(
        root,
        storage=storage,
        name=study_name or "tune",
        create={
            "kind": "tune",
            "root": str(root.resolve()),
            "base": base.model_dump(mode="json"),
            "space": [asdict(d) for d in space],
            "objectives": [asdict(g) for g in goals],
            "prune": prune,
            "pruner": pruner if prune and len(goals) == 1 else "none",
            "sampler_seed": seed,
        },
        directions=directions,
    )
    study.set_user_attr("losskit_total", trials)
    if jobs > 0:
        work(root, storage=storage, study_name=study.study_name, jobs=jobs, on_event=on_done)
    return finish(study, root)


def finish(study: Any, root: Path) -> TuneResult:
    """Write the study report and the best configuration of what the study holds now."""
    optuna = optuna_module()
    best = best_trials(study)
    best_config = None
    if best:  # from the study, not the trial's folder (which may be on another host)
        config = tune_config(spec(study), optuna.trial.FixedTrial(best[0].params))
        config["run"]["out"] = None
        config["run"]["name"] = f"{config['run']['name']}-best"
        best_config = write_config(config, root, "best.toml")
    report = render_study(study, root)
    counts = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for t in study.get_trials(deepcopy=False):
        if t.state != optuna.trial.TrialState.FAIL or "error" in t.user_attrs:
            counts[t.state.name.lower()] += 1
    rows = tuple(
        {"key": t.user_attrs.get("key"), "values": t.values, "params": t.params} for t in best
    )
    return TuneResult(root, rows, best_config, report, counts)
