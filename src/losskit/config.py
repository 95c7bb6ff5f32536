"""Declarative runs: a TOML file that names the model, data, terms, optimizers and trainer.

The schema is a set of pydantic models; every error names the file, the field and what is
allowed. ``losskit run CONFIG.toml`` and ``losskit demo`` read files of this form.

Example::

    >>> cfg = RunConfig.model_validate({
    ...     "model": {"source": "digits_mlp", "input": "pixels"},
    ...     "data": {"source": "digits"},
    ...     "terms": {"cls": {"loss": "cross_entropy", "input": "logits", "target": "label"}},
    ...     "optimizer": {"name": "adam", "lr": 0.003},
    ... })
    >>> cfg.run.epochs, cfg.terms["cls"].weight
    (10, 1.0)
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from losskit import balancers, losses, schedules
from losskit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "SchedulerConfig",
    "TermConfig",
    "TrainerConfig",
    "import_object",
    "load_config",
    "make_weight",
]

SCHEDULES: dict[str, type] = {
    "constant": schedules.Constant,
    "linear_warmup": schedules.LinearWarmup,
    "cosine": schedules.Cosine,
    "step": schedules.Step,
    "cyclical": schedules.Cyclical,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(_Strict):
    """``[run]``: name, seed, epochs, output folder and intra-op threads (None: torch's)."""

    name: str = "run"
    seed: int = 0
    epochs: int = Field(10, ge=1)
    out: str | None = None
    threads: int | None = Field(None, ge=1)


class ModelConfig(_Strict):
    """``[model]``: a built-in name or ``package.module:factory``, its options, its input key."""

    source: str
    input: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Strict):
    """``[data]``: a built-in name or ``package.module:factory`` returning (train, val) datasets."""

    source: str
    batch_size: int = Field(64, ge=1)
    val_batch_size: int | None = Field(None, ge=1)
    shuffle: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class TermConfig(_Strict):
    """``[terms.KEY]``: the loss name, its selectors, weight (number or schedule) and options.

    ``monitor = true`` makes it a monitor-only term: logged and reported, never trained on.
    """

    loss: str
    input: str | int | None = None
    target: str | int | None = None
    mask: str | None = None
    sample_weight: str | None = None
    weight: float | dict[str, Any] = 1.0
    enabled: bool = True
    monitor: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        losses.resolve(name)  # raises ConfigError with close matches
        return name

    @field_validator("weight")
    @classmethod
    def _valid_weight(cls, weight: float | dict[str, Any]) -> float | dict[str, Any]:
        make_weight(weight)
        return weight


class OptimizerConfig(_Strict):
    """``[optimizer]`` or ``[optimizers.NAME]``: a ``torch.optim`` class by name and its options.

    With several optimizers, ``params`` names the model attribute they own (e.g.
    ``"generator"``) and ``keys`` the loss keys they step on.
    """

    name: str = "adam"
    lr: float = Field(1e-3, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    params: str | None = None
    keys: list[str] | None = None


class SchedulerConfig(_Strict):
    """``[scheduler]``: a ``torch.optim.lr_scheduler`` class by name, its options and interval."""

    name: str
    interval: Literal["step", "epoch"] = "epoch"
    options: dict[str, Any] = Field(default_factory=dict)


class TrainerConfig(_Strict):
    """``[trainer]``: accumulation, precision, clipping, monitoring, metrics and diagnostics."""

    accumulate: int = Field(1, ge=1)
    amp: Literal["bf16", "fp16"] | None = None
    clip_grad_norm: float | None = Field(None, gt=0)
    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    patience: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)
    metrics: list[str] = Field(default_factory=list)
    diagnostics_every: int | None = Field(None, ge=1)


class RunConfig(_Strict):
    """A whole run: ``[run]``, ``[model]``, ``[data]``, ``[terms.*]``, optimizers, trainer."""

    run: RunSection = RunSection()
    model: ModelConfig
    data: DataConfig
    terms: dict[str, TermConfig] = Field(min_length=1)
    balancer: str | dict[str, Any] = "sum"  # a name, or {name = "upgrad", shared = "trunk", ...}
    nonfinite: Literal["raise", "warn", "skip"] = "raise"
    optimizer: OptimizerConfig | None = None
    optimizers: dict[str, OptimizerConfig] | None = None
    scheduler: SchedulerConfig | None = None
    trainer: TrainerConfig = TrainerConfig()

    @field_validator("balancer")
    @classmethod
    def _known_balancer(cls, spec: str | dict[str, Any]) -> str | dict[str, Any]:
        balancers.check_name(spec)  # raises ConfigError with close matches
        return spec

    def model_post_init(self, context: Any, /) -> None:
        if (self.optimizer is None) == (self.optimizers is None):
            raise ValueError("give exactly one of [optimizer] or [optimizers.NAME]")
        for name, opt in (self.optimizers or {}).items():
            if opt.keys is None:
                raise ValueError(f"optimizers.{name}.keys is required with several optimizers")
            unknown = [k for k in opt.keys if k not in self.terms]
            if unknown:
                raise ValueError(
                    f"optimizers.{name}.keys names {unknown}, not terms; terms are "
                    f"{list(self.terms)}"
                )


def make_weight(spec: float | dict[str, Any]) -> float | schedules.Schedule:
    """A float, or a schedule from ``{schedule = "linear_warmup", start = 0, end = 1, ...}``."""
    if isinstance(spec, (int, float)):
        return float(spec)
    options = dict(spec)
    kind = options.pop("schedule", None)
    if kind not in SCHEDULES:
        raise ConfigError(
            f"a weight table needs schedule = one of {sorted(SCHEDULES)}, got {kind!r}"
        )
    try:
        schedule: schedules.Schedule = SCHEDULES[kind](**options)
    except TypeError as exc:
        fields = [f.name for f in dataclasses.fields(SCHEDULES[kind])]
        raise ConfigError(f"schedule {kind!r} takes {fields}, got {sorted(options)}") from exc
    return schedule


def import_object(path: str) -> Any:
    """Import ``package.module:attribute`` (the form used for user models and data)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"expected 'package.module:attribute', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} (from {path!r}): {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}") from None


def _describe_error(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{location}: {message}"


def load_config(source: str | Path | dict[str, Any]) -> RunConfig:
    """Read and validate a run configuration from a TOML file (or an already-parsed dict).

    Errors name the file and each offending field with what is allowed.
    """
    where = "config"
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        where = str(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        details = "\n  ".join(_describe_error(e) for e in exc.errors())
        raise ConfigError(f"{where}: invalid configuration:\n  {details}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
