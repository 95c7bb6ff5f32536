"""losskit: train PyTorch models with several named losses.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> crit = lk.Criterion({
    ...     "cls": lk.Term("cross_entropy", input="logits", target="label"),
    ...     "reg": lk.Term("huber", input="value", target="y", weight=0.1),
    ... })
    >>> res = crit({"logits": torch.zeros(2, 3), "value": torch.zeros(2)},
    ...            {"label": torch.tensor([0, 2]), "y": torch.ones(2)})
    >>> sorted(res.log())
    ['loss', 'loss/cls', 'loss/reg', 'weight/cls', 'weight/reg']
"""

from losskit import balancers, losses, report, schedules, tracking
from losskit.benchmarking import bench
from losskit.compare import compare
from losskit.criterion import Criterion, TermLike
from losskit.diagnostics import diagnose, gradient_health
from losskit.engine import FitSummary, Trainer, seed_everything
from losskit.errors import (
    ConfigError,
    LossInputError,
    LossKitError,
    LossKitWarning,
    NonFiniteLossError,
)
from losskit.evaluation import evaluate
from losskit.losses._imbalance import class_weights, pos_weight
from losskit.result import LossResult
from losskit.term import Selector, Term, WeightLike
from losskit.tracking import Tracker, sinks

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Criterion",
    "FitSummary",
    "LossInputError",
    "LossKitError",
    "LossKitWarning",
    "LossResult",
    "NonFiniteLossError",
    "Selector",
    "Term",
    "TermLike",
    "Tracker",
    "Trainer",
    "WeightLike",
    "__version__",
    "balancers",
    "bench",
    "class_weights",
    "compare",
    "diagnose",
    "evaluate",
    "gradient_health",
    "losses",
    "pos_weight",
    "report",
    "schedules",
    "seed_everything",
    "sinks",
    "tracking",
]
