"""Compare losses, balancers or any setting by experiment: a grid of runs and one report.

``compare(config, vary={"terms.reg.loss": ["mse", "l1", "huber"]}, seeds=3)`` runs every
variant at every seed (the same data split, initialisation and batch order per seed), one run
folder each, skipping runs already finished, and writes ``compare.html``: curves overlaid
across variants with their spread over seeds, final and best values, time per step, a ranking
that does not separate variants whose intervals overlap, and the linter's findings.

Example::

    >>> import tempfile
    >>> from importlib import resources
    >>> import losskit as lk
    >>> from losskit.config import load_config
    >>> demo = load_config(resources.files("losskit").joinpath("demo.toml"))
    >>> raw = demo.model_dump(mode="json")
    >>> raw["run"]["epochs"] = 1
    >>> raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
    >>> result = lk.compare.compare(raw, vary={"terms.recon.loss": ["mse", "l1"]}, seeds=1,
    ...                     out=tempfile.mkdtemp())
    >>> [run.parent.name for run in result.ran]
    ['terms.recon.loss=mse', 'terms.recon.loss=l1']
    >>> [r.tier for r in result.comparison.ranking]  # one seed: no spread, nothing overlaps
    [1, 2]
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losskit._io import check_file_name
from losskit.compare._grid import Variant, expand, parse_vary
from losskit.compare._report import (
    Comparison,
    Interval,
    Rank,
    RankOn,
    Row,
    Spread,
    render_comparison,
    summarize_grid,
)
from losskit.compare._runner import Job, plan, run_jobs, write_manifest
from losskit.errors import ConfigError

if TYPE_CHECKING:
    from losskit.config import RunConfig

__all__ = [
    "CompareResult",
    "Comparison",
    "Rank",
    "Row",
    "Spread",
    "Variant",
    "compare",
    "parse_vary",
    "render_comparison",
    "summarize_grid",
]


@dataclass(frozen=True)
class CompareResult:
    """A finished grid: its folder, the runs it ran now and skipped, the report and its data."""

    out: Path
    ran: tuple[Path, ...]
    skipped: tuple[Path, ...]
    report: Path
    comparison: Comparison


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
    on_done: Callable[[Job], None] | None = None,
) -> CompareResult:
    """Run every variant of ``config`` at every seed and write the comparative report.

    Args:
        config: the base configuration (a TOML path, a dict or a RunConfig).
        vary: dotted path -> values (``{"balancer": ["sum", "magnitude"]}``); the grid is
            their product.
        seeds: how many seeds (``run.seed``, ``run.seed + 1``, ...) or the seeds themselves.
        out: the grid's folder (default ``runs/<name>-compare``); run again into the same
            folder to complete an interrupted grid.
        jobs: runs in parallel, in spawned processes (1: in this process).
        rank_by: the ``split/key`` to rank by (default the base ``trainer.monitor``).
        interval: ``"range"`` (min–max over seeds), ``"std"`` (mean ± std) or ``"ci95"`` (the
            95% confidence interval of the mean): variants whose intervals overlap are not
            called different.
        rank_on: rank on each run's ``"best"`` value over epochs or its ``"final"`` one.
        on_done: called after each run finishes (progress).
    """
    from losskit.config import RunConfig, load_config  # pydantic: only when a grid is run

    base = config if isinstance(config, RunConfig) else load_config(config)  # type: ignore[arg-type]
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {seeds}")
        seed_list = [base.run.seed + k for k in range(seeds)]
    else:
        seed_list = [int(s) for s in seeds]
        if not seed_list or len(set(seed_list)) != len(seed_list):
            raise ConfigError(f"seeds must be distinct and not empty, got {list(seeds)}")
    if out is not None:
        root = Path(out)
    else:
        root = Path("runs") / f"{check_file_name('run.name', base.run.name)}-compare"
    variants = expand(base, vary)
    write_manifest(root, base, {k: list(v) for k, v in vary.items()}, seed_list, variants)
    jobs_list = plan(variants, seed_list, root)
    ran = run_jobs(jobs_list, workers=jobs, on_done=on_done)
    comparison = summarize_grid(root, rank_by=rank_by, interval=interval, rank_on=rank_on)
    report = render_comparison(comparison)
    ran_folders = tuple(j.folder for j in ran)
    return CompareResult(
        out=root,
        ran=ran_folders,
        skipped=tuple(j.folder for j in jobs_list if j.folder not in ran_folders),
        report=report,
        comparison=comparison,
    )


class _CallableModule(types.ModuleType):
    """This package, callable for one release as the function ``losskit.compare`` used to be."""

    def __call__(self, *args: Any, **kwargs: Any) -> CompareResult:
        warnings.warn(
            "calling losskit.compare(...) is deprecated: call losskit.compare.compare(...); "
            "the package will stop being callable in losskit 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
