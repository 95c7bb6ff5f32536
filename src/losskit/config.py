"""Declarative runs: a TOML file that names the model, data, terms, optimizers and trainer.

A config is the constructors' arguments. ``[terms.KEY]`` tables are :class:`~losskit.Term`'s
arguments (and the loss's), the file's top-level keys besides its sections are
:class:`~losskit.Criterion`'s (``balancer``, ``nonfinite``, ``check``, ``check_steps``),
``[trainer]`` is :class:`~losskit.Trainer`'s, ``[optimizer]`` / ``[scheduler]`` are the
arguments of the ``torch.optim`` class they name, and each ``[logging.NAME]`` table holds the
arguments of a sink (:data:`losskit.components.SINKS`: ``console``, ``jsonl``, ``csv``,
``tensorboard``, ``wandb``, ``mlflow``), or ``true`` / ``false`` to turn it on or off. Each
table is checked against its constructor's signature when the file is read, before anything
is built: an unknown field gets a did-you-mean naming the section and the allowed fields, and a
value of the wrong kind is refused by the parameter's type hint. pydantic checks the file's
shape; values are the constructors' to check when the run is built
(:func:`losskit.run.build`, before any step).

Arguments a file cannot hold (modules, optimizers, callables) are supplied by the runner:
:data:`SUPPLIED` says which, and from what part of the file.

Example::

    >>> cfg = RunConfig.model_validate({
    ...     "model": {"source": "digits_mlp", "input": "pixels"},
    ...     "data": {"source": "digits"},
    ...     "terms": {"cls": {"loss": "cross_entropy", "input": "logits", "target": "label"}},
    ...     "optimizer": {"name": "adam", "lr": 0.003},
    ...     "check": "always",
    ...     "trainer": {"min_delta": 0.01},
    ... })
    >>> cfg.run.epochs, cfg.terms["cls"].weight, cfg.arguments["check"], cfg.trainer.min_delta
    (10, 1.0, 'always', 0.01)

Arguments a table leaves out hold their constructor's default (``cfg.trainer.patience`` is
``None``), so a dumped config shows every setting the run used.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from losskit import balancers, components, losses, schedules
from losskit._io import file_name_problem
from losskit._registry import Registry
from losskit._signature import accepted, check_keywords, did_you_mean
from losskit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SUPPLIED",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "SchedulerConfig",
    "TermConfig",
    "TrainerConfig",
    "constructor",
    "import_object",
    "load_config",
    "make_weight",
]

#: The constructor arguments a file cannot hold, by section: the runner supplies them, from the
#: part of the file (or the command line) named here.
SUPPLIED: dict[str, dict[str, str]] = {
    "terms": {},
    "criterion": {"terms": "the [terms.KEY] tables"},
    "optimizer": {
        "params": "the model's parameters (a submodule's with params = ...) and the criterion's"
    },
    "scheduler": {"optimizer": "each optimizer of the run"},
    "logging": {  # by sink: each name is a parameter of one or more sinks
        "run_dir": "the out of [run] or --out",
        "total": "the number of training steps of the run",
        "console": "the terminal losskit runs in",
    },
    "trainer": {
        "model": "[model]",
        "criterion": "[terms.KEY] and the top-level criterion arguments",
        "optimizers": "[optimizer] or [optimizers.NAME]",
        "routes": "the keys of [optimizers.NAME]",
        "forward": "the input of [model]",
        "schedulers": "[scheduler]",
        "scheduler_interval": "the interval of [scheduler]",
        "run_dir": "the out of [run] or --out",
        "progress": "the command line",
        "seed": "the seed of [run]",
        "sinks": "[logging]",
        "name": "the name of [run]",
        "config": "the whole file",
    },
}

#: Fields the runner turns into objects before the constructor sees them (no type-hint check).
_CONVERTED: dict[str, frozenset[str]] = {
    "terms": frozenset({"weight"}),  # a number, or a schedule table (make_weight)
    "criterion": frozenset({"balancer"}),  # a name or table; shared names submodules
    "trainer": frozenset({"metrics"}),  # names of components.METRICS or import paths
}


_CONSTRUCTORS: Registry[Any] = Registry("config section")
_CONSTRUCTORS.register("terms", "losskit.term:Term", description="each [terms.KEY] table")
_CONSTRUCTORS.register(
    "criterion", "losskit.criterion:Criterion", description="the file's top-level keys"
)
_CONSTRUCTORS.register("trainer", "losskit.engine:Trainer", description="[trainer]")
_NAMED = {
    "optimizer": components.OPTIMIZERS,
    "scheduler": components.LR_SCHEDULERS,
    "logging": components.SINKS,
}


def constructor(section: str, name: str | None = None) -> Callable[..., Any]:
    """The callable a section's table is passed to (``name``: the optimizer's, scheduler's or
    sink's).

    Example::

        >>> constructor("trainer").__name__, constructor("optimizer", "sgd").__name__
        ('Trainer', 'SGD')
    """
    if section in _NAMED:
        return _NAMED[section].get(name or "")
    return _CONSTRUCTORS.get(section)


class _FieldError(ConfigError):
    """A problem with one field of a table; :func:`load_config` shows it at ``table.field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@functools.cache
def _adapter(func: Callable[..., Any], name: str) -> TypeAdapter[Any] | None:
    target = func.__init__ if isinstance(func, type) else func  # type: ignore[misc]
    try:
        hint = typing.get_type_hints(target).get(name)
        if hint is None:
            return None
        return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except (NameError, TypeError, AttributeError, PydanticUserError):
        return None  # a hint pydantic cannot read: the constructor checks the value


def _check_kinds(func: Callable[..., Any], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        adapter = _adapter(func, key)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise _FieldError(key, f"{exc.errors()[0]['msg']} (got {value!r})") from None


def _check_table(
    section: str,
    func: Callable[..., Any],
    table: Mapping[str, Any],
    *,
    extra: tuple[str, ...] = (),
) -> None:
    """Check ``table``'s keys against ``func``'s signature and its values against its hints."""
    check_keywords(func, table, where="", noun="field", supplied=SUPPLIED[section], extra=extra)
    converted = _CONVERTED.get(section, frozenset())
    _check_kinds(func, {k: v for k, v in table.items() if k not in converted})


def _is_data(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_is_data(v) for v in value)


def _defaults(section: str, func: Callable[..., Any]) -> dict[str, Any]:
    """The defaults of ``func``'s arguments a file can hold (so a dumped config shows them)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: list(p.default) if isinstance(p.default, tuple) else p.default
        for p in parameters
        if p.default is not p.empty and p.name not in SUPPLIED[section] and _is_data(p.default)
    }


def _fill(table: BaseModel, defaults: Mapping[str, Any]) -> None:
    extra = table.__pydantic_extra__
    assert extra is not None  # extra="allow"
    for key, value in defaults.items():
        extra.setdefault(key, value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Arguments(BaseModel):
    """A table whose fields besides the declared ones are a constructor's arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def arguments(self) -> dict[str, Any]:
        """The constructor's arguments the table gives (its fields besides the declared ones)."""
        return dict(self.model_extra or {})


class RunSection(_Strict):
    """``[run]``: name, seed, epochs, output folder and intra-op threads (None: torch's)."""

    name: str = "run"
    seed: int = 0
    epochs: int = Field(10, ge=1)
    out: str | None = None
    threads: int | None = Field(None, ge=1)

    @field_validator("name")
    @classmethod
    def _file_name(cls, name: str) -> str:
        # The name becomes a folder (runs/NAME, runs/NAME-compare): it must stay inside.
        problem = file_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name


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


class TermConfig(_Arguments):
    """``[terms.KEY]``: ``loss`` (a catalogue name) and :class:`~losskit.Term`'s other arguments.

    Every other field is an argument of ``Term`` (``input``, ``target``, ``weight`` as a number
    or a schedule table, ``mask``, ``monitor``, ...) or of the loss (``delta = 0.5``);
    ``options`` holds the loss's arguments as a table too.
    """

    loss: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        losses.resolve(name)  # raises ConfigError with close matches
        return name

    @model_validator(mode="after")
    def _fields(self) -> TermConfig:
        term = constructor("terms")
        term_fields = tuple(n for n in accepted(term)[0] if n != "loss")
        loss_fields = {k: v for k, v in self.arguments.items() if k not in term_fields}
        twice = sorted(set(loss_fields) & set(self.options))
        if twice:
            raise ConfigError(f"{twice} given both in the table and in its options")
        check_keywords(
            losses.LOSSES.get(self.loss),
            {**loss_fields, **self.options},
            where="",
            noun="field",
            extra=(*term_fields, "options"),
        )
        _check_table("terms", term, {k: v for k, v in self.arguments.items() if k in term_fields})
        if "weight" in self.arguments:
            try:
                make_weight(self.arguments["weight"])
            except ConfigError as exc:
                raise _FieldError("weight", str(exc)) from None
        defaults = _defaults("terms", term).items()
        _fill(self, {k: v for k, v in defaults if k not in ("loss", "options")})
        return self

    @property
    def loss_arguments(self) -> dict[str, Any]:
        """The loss's arguments: ``options`` and the fields that are not ``Term``'s."""
        term_fields = accepted(constructor("terms"))[0]
        extra = {k: v for k, v in self.arguments.items() if k not in term_fields}
        return {**self.options, **extra}


class OptimizerConfig(_Arguments):
    """``[optimizer]`` or ``[optimizers.NAME]``: a ``torch.optim`` class by name, its arguments.

    Every field besides ``name``, ``params``, ``keys`` and ``options`` (the arguments as a
    table, as older files give them) is an argument of the optimizer (``lr``,
    ``weight_decay``, ...). With several optimizers, ``params`` names the model attribute they
    own (e.g. ``"generator"``) and ``keys`` the loss keys they step on.
    """

    name: str = "adam"
    params: str | None = None
    keys: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields(self) -> OptimizerConfig:
        _check_table("optimizer", constructor("optimizer", self.name), self.constructor_arguments)
        return self

    @property
    def constructor_arguments(self) -> dict[str, Any]:
        """``options`` and the other fields: what the optimizer's constructor gets."""
        return _merged(self.options, self.arguments)


class SchedulerConfig(_Arguments):
    """``[scheduler]``: a ``torch.optim.lr_scheduler`` class by name, its arguments, interval.

    Every field besides ``name``, ``interval`` and ``options`` (the arguments as a table) is an
    argument of the scheduler (``T_max = 20``).
    """

    name: str
    interval: Literal["step", "epoch"] = "epoch"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields(self) -> SchedulerConfig:
        _check_table("scheduler", constructor("scheduler", self.name), self.constructor_arguments)
        return self

    @property
    def constructor_arguments(self) -> dict[str, Any]:
        """``options`` and the other fields: what the scheduler's constructor gets."""
        return _merged(self.options, self.arguments)


def _merged(options: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    twice = sorted(set(options) & set(fields))
    if twice:
        raise ConfigError(f"{twice} given both in the table and in its options")
    return {**options, **fields}


class TrainerConfig(_Arguments):
    """``[trainer]``: :class:`~losskit.Trainer`'s arguments (``accumulate``, ``amp``,
    ``patience``, ``min_delta``, ``metrics`` as names, ...) but those in :data:`SUPPLIED`.
    """

    @model_validator(mode="after")
    def _fields(self) -> TrainerConfig:
        trainer = constructor("trainer")
        _check_table("trainer", trainer, self.arguments)
        metrics = self.arguments.get("metrics") or []
        if not (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics)):
            raise _FieldError("metrics", f"expected a list of metric names, got {metrics!r}")
        _fill(self, _defaults("trainer", trainer))
        return self


#: The sections of a run file; every other top-level key is an argument of the Criterion.
_SECTIONS = (
    "run",
    "model",
    "data",
    "terms",
    "optimizer",
    "optimizers",
    "scheduler",
    "trainer",
    "logging",
)

#: Sinks a run writes when ``[logging]`` does not name them: the console (unless the command
#: line says quiet) and the JSONL log, which is always written.
DEFAULT_SINKS: dict[str, bool | dict[str, Any]] = {"console": True, "jsonl": True}


def _check_logging(logging: dict[str, bool | dict[str, Any]]) -> dict[str, bool | dict[str, Any]]:
    for name, options in logging.items():
        try:
            sink = components.SINKS.get(name)  # an unknown name: did-you-mean and the list
        except ConfigError as exc:
            raise _FieldError(name, str(exc)) from None
        if name == "jsonl" and options is False:
            raise _FieldError(name, "the JSONL log is the run's source of truth: it is always on")
        if isinstance(options, dict):
            try:
                check_keywords(sink, options, where="", noun="field", supplied=SUPPLIED["logging"])
            except ConfigError as exc:
                raise _FieldError(name, str(exc)) from None
            try:
                _check_kinds(sink, options)
            except _FieldError as exc:
                raise _FieldError(f"{name}.{exc.field}", str(exc)) from None
    return logging


class RunConfig(_Arguments):
    """A whole run: ``[run]``, ``[model]``, ``[data]``, ``[terms.*]``, optimizers, trainer.

    The file's other top-level keys are :class:`~losskit.Criterion`'s arguments
    (``balancer``, ``nonfinite``, ``check``, ``check_steps``); :attr:`arguments` holds them.
    """

    run: RunSection = RunSection()
    model: ModelConfig
    data: DataConfig
    terms: dict[str, TermConfig] = Field(min_length=1)
    optimizer: OptimizerConfig | None = None
    optimizers: dict[str, OptimizerConfig] | None = None
    scheduler: SchedulerConfig | None = None
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    logging: dict[str, bool | dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_SINKS))
    """``[logging]``: sink name -> ``true``, ``false`` or a table of the sink's arguments."""

    @field_validator("logging")
    @classmethod
    def _sinks(cls, logging: dict[str, bool | dict[str, Any]]) -> dict[str, bool | dict[str, Any]]:
        return _check_logging({**DEFAULT_SINKS, **logging})

    @model_validator(mode="after")
    def _criterion_fields(self) -> RunConfig:
        arguments = self.arguments
        criterion = constructor("criterion")
        _check_table("criterion", criterion, arguments, extra=_SECTIONS)
        if "balancer" in arguments:
            try:
                balancers.check_name(arguments["balancer"])  # raises with close matches
            except ConfigError as exc:
                raise _FieldError("balancer", str(exc)) from None
        _fill(self, _defaults("criterion", criterion))
        return self

    @property
    def code(self) -> dict[str, str]:
        """The code this configuration runs besides losskit's: each ``package.module:factory``
        reference by the field that names it (``model.source``, ``data.source``,
        ``trainer.metrics``). A configuration, like a Python script, must come from someone
        you trust: these modules are imported and run.

        Example::

            >>> cfg = load_config({
            ...     "model": {"source": "my_models:Net"}, "data": {"source": "digits"},
            ...     "terms": {"cls": {"loss": "cross_entropy", "input": "logits",
            ...                       "target": "label"}},
            ...     "optimizer": {"name": "adam", "lr": 1e-3},
            ... })
            >>> cfg.code
            {'model.source': 'my_models:Net'}
        """
        found = {"model.source": self.model.source, "data.source": self.data.source}
        for name in self.trainer.arguments.get("metrics") or []:
            found[f"trainer.metrics[{name!r}]"] = name
        return {field: ref for field, ref in found.items() if ":" in ref}

    def model_post_init(self, context: Any, /) -> None:
        if (self.optimizer is None) == (self.optimizers is None):
            # A misspelt section first ([optimiser]): its did-you-mean says more than this.
            _check_table("criterion", constructor("criterion"), self.arguments, extra=_SECTIONS)
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
    if not isinstance(spec, Mapping):
        raise ConfigError(f"weight must be a number or a schedule table, got {spec!r}")
    options = dict(spec)
    kind = options.pop("schedule", None)
    if not isinstance(kind, str) or kind not in schedules.SCHEDULES:
        raise ConfigError(
            f"a weight table needs schedule = one of {schedules.SCHEDULES.names()}, got {kind!r}"
        )
    return schedules.create(kind, **options)


def import_object(path: str) -> Any:
    """Import ``package.module:attribute`` (the form used for user models and data).

    A module in the working directory imports without ``PYTHONPATH=.``, as under
    ``python -m``: the working directory is put first on ``sys.path`` for the import.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"expected 'package.module:attribute', got {path!r}")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} (from {path!r}): {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}") from None


def _describe_error(error: Any) -> str:
    parts = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        parts.append(cause.field)
        message = str(cause)
    location = ".".join(parts) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _fields_at(tuple(error["loc"][:-1]))
        hint = did_you_mean(parts[-1], allowed)
        message = f"unknown field{hint}{' ' if hint else '; '}allowed: {', '.join(allowed)}"
    return f"{location}: {message}"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section of the run file at ``loc`` (``("run",)``, ...)."""
    model: Any = RunConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


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
