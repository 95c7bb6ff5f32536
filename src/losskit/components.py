"""The named parts of a config run: models, data sets, metrics, optimizers, LR schedulers, sinks.

Each table is a :class:`losskit._registry.Registry`, the type losses, balancers and schedules
use, so a config file's ``source = "digits_mlp"`` or ``name = "adamw"`` resolves the same way
and an unknown name gets the same did-you-mean. ``register`` adds your own; a config file can
also give ``"package.module:factory"`` for a model, data set or metric.

Example::

    >>> from losskit import components
    >>> components.OPTIMIZERS.get("AdamW")
    <class 'torch.optim.adamw.AdamW'>
    >>> components.LR_SCHEDULERS.get("cosine_annealing_lr").__name__
    'CosineAnnealingLR'
    >>> "digits_mlp" in components.MODELS.available()
    True
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from losskit._registry import Registry

__all__ = ["DATA", "LR_SCHEDULERS", "METRICS", "MODELS", "OPTIMIZERS", "SINKS"]

MODELS: Registry[nn.Module] = Registry("model")
"""Built-in models of config runs (``[model] source``)."""

DATA: Registry[tuple[Dataset[Any], Dataset[Any]]] = Registry("data set")
"""Built-in data of config runs (``[data] source``): factories of ``(train, val)`` datasets."""

METRICS: Registry[Tensor] = Registry("metric")
"""Built-in metrics of config runs (``[trainer] metrics``): ``fn(outputs, batch) -> Tensor``."""

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
"""Every ``torch.optim`` optimizer, by its lower-case class name (``[optimizer] name``)."""

LR_SCHEDULERS: Registry[Any] = Registry("LR scheduler")
"""Every ``torch.optim.lr_scheduler`` class, by its lower-case class name and snake_case alias."""

MODELS.register(
    "digits_mlp",
    "losskit.demo:DigitsNet",
    description="the demo's shared trunk with class, reconstruction and ink heads",
)
DATA.register(
    "digits",
    "losskit.demo:digits_data",
    description="the embedded UCI digits: (train, val) with pixels, label and ink",
)
MODELS.register(
    "multidigits_mlp",
    "losskit.tasks:MultiDigitsNet",
    description="a shared trunk with one classifier per digit, for multidigits",
)
DATA.register(
    "multidigits",
    "losskit.data._multidigits:multidigits_data",
    description="two overlapping digits per canvas (a Multi-MNIST analog): left and right class",
)
METRICS.register(
    "mean_accuracy",
    "losskit.tasks:mean_accuracy",
    description="the average task accuracy over every output with a same-named label field",
)
SINKS: Registry[Any] = Registry("sink")
"""The sinks of config runs (``[logging]``): each table holds the sink's arguments."""

for _name, _target, _what in (
    ("console", "Console", "the progress bars and epoch lines in a terminal"),
    ("jsonl", "JSONL", "run_dir/metrics.jsonl, the run's source of truth (always written)"),
    ("csv", "CSV", "run_dir/metrics.csv"),
    ("tensorboard", "TensorBoard", "run_dir/tensorboard (extra: tensorboard)"),
    ("wandb", "WandB", "a W&B run, files under run_dir/wandb (extra: wandb)"),
    ("mlflow", "MLflow", "an MLflow run, in run_dir/mlflow.db or a server (extra: mlflow)"),
):
    SINKS.register(_name, f"losskit.tracking.sinks:{_target}", description=_what)

METRICS.register(
    "accuracy",
    "losskit.demo:accuracy",
    description="the share of samples whose arg-max logit is the label",
)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _register_torch() -> None:
    for name in dir(torch.optim):
        cls = getattr(torch.optim, name)
        optimizer = isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
        if optimizer and cls is not torch.optim.Optimizer:
            OPTIMIZERS.register(name.lower(), cls)
    schedulers = torch.optim.lr_scheduler
    bases = (schedulers.LRScheduler, schedulers.ReduceLROnPlateau)
    for name in dir(schedulers):
        cls = getattr(schedulers, name)
        scheduler = isinstance(cls, type) and issubclass(cls, bases)
        if scheduler and not name.startswith("_") and cls is not schedulers.LRScheduler:
            snake = _snake(name)
            aliases = (snake,) if snake != name.lower() else ()
            LR_SCHEDULERS.register(name.lower(), cls, aliases=aliases)


_register_torch()
