"""Experiments on Optuna: ``compare`` a grid of variants over seeds, ``tune`` a search over
config paths pruned by the run linter, and ``work`` to join a study from any host.

A study lives in its folder (Optuna's journal file, nothing to start) or in an RDB named by a
URL (PostgreSQL for many hosts). Each trial is one ``losskit run`` in its own folder; killing a
worker loses only the trials in flight, which are run again, and running the same command again
continues the study without running a finished trial twice.

``compare(config, vary={"terms.reg.loss": ["mse", "l1", "huber"]}, seeds=3)`` runs every
variant at every seed (the same data split, initialisation and batch order per seed) and writes
``compare.html``: curves overlaid across variants with their spread over seeds, final and best
values, time per step, a ranking that does not separate variants whose intervals overlap, and
the linter's findings.

Example::

    >>> import tempfile
    >>> from importlib import resources
    >>> import losskit as lk
    >>> from losskit.config import load_config
    >>> demo = load_config(resources.files("losskit").joinpath("demo.toml"))
    >>> raw = demo.model_dump(mode="json")
    >>> raw["run"]["epochs"] = 1
    >>> raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
    >>> result = lk.experiments.compare(raw, vary={"terms.recon.loss": ["mse", "l1"]}, seeds=1,
    ...                                 out=tempfile.mkdtemp())
    >>> [run.parent.name for run in result.ran]
    ['terms.recon.loss=mse', 'terms.recon.loss=l1']
    >>> [r.tier for r in result.comparison.ranking]  # one seed: no spread, nothing overlaps
    [1, 2]
"""

from losskit.experiments._compare import CompareResult, compare
from losskit.experiments._grid import Variant, parse_vary, short_labels
from losskit.experiments._progress import StudyProgress
from losskit.experiments._report import (
    Comparison,
    Rank,
    Row,
    Spread,
    render_comparison,
    summarize_grid,
)
from losskit.experiments._search import Dimension, Objective, parse_objective, parse_search
from losskit.experiments._storage import load_study
from losskit.experiments._tune import TuneResult, tune
from losskit.experiments._worker import TrialEvent, work

__all__ = [
    "CompareResult",
    "Comparison",
    "Dimension",
    "Objective",
    "Rank",
    "Row",
    "Spread",
    "StudyProgress",
    "TrialEvent",
    "TuneResult",
    "Variant",
    "compare",
    "load_study",
    "parse_objective",
    "parse_search",
    "parse_vary",
    "render_comparison",
    "short_labels",
    "summarize_grid",
    "tune",
    "work",
]
