"""losskit: train PyTorch models with several named losses.

The top level holds the core: :class:`Criterion`, :class:`Term`, :class:`LossResult`,
``schedules``, ``losses``, ``balancers``, the errors, :func:`class_weights`,
:func:`class_counts` and :func:`pos_weight`. Everything else lives in its subpackage
(``losskit.engine.Trainer``, ``losskit.tracking.Tracker``, ``losskit.report``,
``losskit.diagnostics``, ...). Names and
subpackages are imported on first use (PEP 562), so ``import losskit`` costs next to nothing and
the ``losskit`` command answers ``--help`` without importing torch.

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
    >>> lk.engine.Trainer.__name__, lk.tracking.Tracker.__name__
    ('Trainer', 'Tracker')
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from losskit.errors import (
    ConfigError,
    LossInputError,
    LossKitError,
    LossKitWarning,
    NonFiniteLossError,
    TermError,
)

if TYPE_CHECKING:
    from losskit import (
        balancers,
        benchmarking,
        data,
        diagnostics,
        engine,
        evaluation,
        experiments,
        integrations,
        lint,
        losses,
        presets,
        report,
        schedules,
        tracking,
    )
    from losskit.criterion import Criterion, TermLike
    from losskit.losses import class_counts, class_weights, pos_weight
    from losskit.result import LossResult
    from losskit.term import Selector, Term, WeightLike

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Criterion",
    "LossInputError",
    "LossKitError",
    "LossKitWarning",
    "LossResult",
    "NonFiniteLossError",
    "Selector",
    "Term",
    "TermError",
    "TermLike",
    "WeightLike",
    "__version__",
    "balancers",
    "benchmarking",
    "class_counts",
    "class_weights",
    "data",
    "diagnostics",
    "engine",
    "evaluation",
    "experiments",
    "integrations",
    "lint",
    "losses",
    "pos_weight",
    "presets",
    "report",
    "schedules",
    "tracking",
]

# The core: name -> the module that defines it (imported with torch on first use).
_CORE = {
    "Criterion": "losskit.criterion",
    "TermLike": "losskit.criterion",
    "LossResult": "losskit.result",
    "Selector": "losskit.term",
    "Term": "losskit.term",
    "WeightLike": "losskit.term",
    "class_counts": "losskit.losses",
    "class_weights": "losskit.losses",
    "pos_weight": "losskit.losses",
}

_SUBPACKAGES = frozenset(
    {
        "balancers",
        "benchmarking",
        "data",
        "diagnostics",
        "engine",
        "evaluation",
        "experiments",
        "integrations",
        "lint",
        "losses",
        "presets",
        "report",
        "schedules",
        "tracking",
    }
)

# Top-level names of 0.1 that moved to their packages: old name -> (module, name). They resolve,
# with a DeprecationWarning, until 0.3.
_MOVED = {
    "FitSummary": ("losskit.engine", "FitSummary"),
    "Trainer": ("losskit.engine", "Trainer"),
    "seed_everything": ("losskit.engine", "seed_everything"),
    "Tracker": ("losskit.tracking", "Tracker"),
    "sinks": ("losskit.tracking", "sinks"),
    "bench": ("losskit.benchmarking", "bench"),
    "diagnose": ("losskit.diagnostics", "diagnose"),
    "gradient_health": ("losskit.diagnostics", "gradient_health"),
    "evaluate": ("losskit.evaluation", "evaluate"),
    "compare": ("losskit.experiments", "compare"),
}


def __getattr__(name: str) -> Any:
    if name in _CORE:
        value = getattr(importlib.import_module(_CORE[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _MOVED:
        module, attribute = _MOVED[name]
        warnings.warn(
            f"losskit.{name} moved to {module}.{attribute}; the top-level name will be removed "
            "in losskit 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), attribute)  # not cached: warn each use
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
