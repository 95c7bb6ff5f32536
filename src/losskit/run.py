"""Build a run from a :class:`~losskit.config.RunConfig` and execute it with the Trainer.

A run folder holds ``config.json`` (the validated configuration), ``log.jsonl`` (written by the
tracker), ``last.pt`` and ``best.pt`` (checkpoints), ``summary.json`` and ``report.html``.

Example::

    >>> import tempfile
    >>> from importlib import resources
    >>> cfg = load_config(resources.files("losskit").joinpath("demo.toml"))
    >>> cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"epochs": 1})})
    >>> result = run(cfg, out=tempfile.mkdtemp(), progress=False)
    >>> sorted(result.summary["final"])
    ['train', 'val']
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from losskit import balancers, components
from losskit._io import check_file_name, run_lock
from losskit._registry import Registry
from losskit._signature import check_keywords
from losskit.config import (
    OptimizerConfig,
    RunConfig,
    TermConfig,
    constructor,
    import_object,
    load_config,
    make_weight,
)
from losskit.engine import FitSummary, Trainer, _run_files, distributed, seed_everything
from losskit.engine._checkpoint import load_checkpoint
from losskit.errors import ConfigError

__all__ = ["RunResult", "build", "instantiate", "run"]


@dataclass
class RunResult:
    """A finished run: its folder, the trainer's summary and what ``summary.json`` holds.

    ``complete`` is true when a resumed run had finished already: nothing was trained or
    written, and ``summary`` is the one in the folder.
    """

    run_dir: Path
    fit: FitSummary
    summary: dict[str, Any]
    complete: bool = False


def _resolve(source: str, registry: Registry[Any], what: str) -> Callable[..., Any]:
    if ":" in source:
        found: Callable[..., Any] = import_object(source)
        return found
    try:
        return registry.get(source)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}, or give 'package.module:factory'") from None


def _submodule(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ConfigError(
            f"the model has no submodule {path!r}; its children are {names}"
        ) from None


def instantiate(where: str, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)``; an error it raises becomes a ``ConfigError`` naming ``where``.

    Example::

        >>> instantiate("[optimizer]", torch.optim.SGD, [torch.zeros(1)], lr=-1.0)
        Traceback (most recent call last):
        ...
        losskit.errors.ConfigError: [optimizer]: SGD: Invalid learning rate: -1.0
    """
    try:
        return func(*args, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {getattr(func, '__name__', func)}: {exc}") from exc


def _built(where: str, source: str, registry: Registry[Any], options: dict[str, Any]) -> Any:
    factory = _resolve(source, registry, f"{where}.source")
    try:
        check_keywords(factory, options, where=f"{where}.options", noun="field")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (of {source!r})") from None
    built = instantiate(where, factory, **options)
    problem = _EXPECTED[where](built)
    if problem is not None:
        raise ConfigError(
            f"{where}.source {source!r} returned {problem}; see docs/guide.md (Run files)"
        )
    return built


def _not_a_module(built: Any) -> str | None:
    if isinstance(built, nn.Module):
        return None
    return f"a {type(built).__name__}, expected a torch.nn.Module"


def _not_two_datasets(built: Any) -> str | None:
    """Data factories return ``(train, validation)``, each a map-style dataset."""
    if not (isinstance(built, (tuple, list)) and len(built) == 2):
        return f"a {type(built).__name__}, expected a (train, validation) pair of datasets"
    for role, dataset in zip(("train", "validation"), built):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            return (
                f"a {role} set of type {type(dataset).__name__}, expected a dataset "
                "(__getitem__ and __len__, e.g. torch.utils.data.TensorDataset)"
            )
    return None


_EXPECTED: dict[str, Callable[[Any], str | None]] = {
    "model": _not_a_module,
    "data": _not_two_datasets,
}


def _term(key: str, term: TermConfig) -> Any:
    arguments = dict(term.arguments)
    if term.options:  # the table's options = {...} is Term's options=, as in Python
        arguments["options"] = dict(term.options)
    if "weight" in arguments:
        arguments["weight"] = make_weight(arguments["weight"])
    if isinstance(arguments.get("input"), list):  # TOML has arrays, Term takes a tuple
        arguments["input"] = tuple(arguments["input"])
    return instantiate(f"terms.{key}", constructor("terms"), term.loss, **arguments)


def build(
    cfg: RunConfig, *, progress: bool = True, run_dir: Path | None = None
) -> tuple[Trainer, DataLoader[Any], DataLoader[Any]]:
    """The trainer and the training and validation loaders a configuration describes.

    Each table goes to its constructor as keyword arguments (see :mod:`losskit.config`); the
    arguments in :data:`losskit.config.SUPPLIED` are filled in here.
    """
    seed_everything(cfg.run.seed)
    model = _built("model", cfg.model.source, components.MODELS, cfg.model.options)
    train_set, val_set = _built("data", cfg.data.source, components.DATA, cfg.data.options)
    generator = torch.Generator().manual_seed(cfg.run.seed)
    train = DataLoader(
        train_set, batch_size=cfg.data.batch_size, shuffle=cfg.data.shuffle, generator=generator
    )
    val = DataLoader(val_set, batch_size=cfg.data.val_batch_size or cfg.data.batch_size)
    arguments = cfg.arguments
    if "balancer" in arguments:
        arguments["balancer"] = balancers.from_config(arguments["balancer"], model)
    criterion = instantiate(
        "criterion",
        constructor("criterion"),
        {key: _term(key, term) for key, term in cfg.terms.items()},
        **arguments,
    )
    specs: dict[str, OptimizerConfig] = dict(cfg.optimizers or {})
    if cfg.optimizer is not None:
        specs["default"] = cfg.optimizer
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for name, spec in specs.items():
        params = list((_submodule(model, spec.params) if spec.params else model).parameters())
        if not spec.params:
            # Learned loss weights (uncertainty, IMTL-L) train with the model.
            params += list(criterion.parameters())
        where = "optimizer" if cfg.optimizer is not None else f"optimizers.{name}"
        cls = constructor("optimizer", spec.name)
        optimizers[name] = instantiate(where, cls, params, **spec.constructor_arguments)
    routes = {n: s.keys for n, s in specs.items() if s.keys} if cfg.optimizers else None
    schedulers = None
    if cfg.scheduler is not None:
        cls = constructor("scheduler", cfg.scheduler.name)
        options = cfg.scheduler.constructor_arguments
        schedulers = {n: instantiate("scheduler", cls, o, **options) for n, o in optimizers.items()}
    input_key = cfg.model.input
    trainer_arguments = cfg.trainer.arguments
    steps = math.ceil(len(train) / int(trainer_arguments.get("accumulate") or 1)) * cfg.run.epochs
    sinks = _sinks(cfg, run_dir, progress=progress, total=steps)
    if trainer_arguments.get("metrics") is not None:
        trainer_arguments["metrics"] = {
            name: _resolve(name, components.METRICS, "trainer.metrics")
            for name in trainer_arguments["metrics"]
        }
    trainer: Trainer = instantiate(
        "trainer",
        constructor("trainer"),
        model,
        criterion,
        optimizers if cfg.optimizers else optimizers["default"],
        routes=routes,
        forward=(lambda m, b: m(b[input_key])) if input_key is not None else None,
        schedulers=schedulers,
        scheduler_interval=cfg.scheduler.interval if cfg.scheduler else "epoch",
        run_dir=run_dir,
        progress=progress and cfg.logging.get("console") is True,
        seed=cfg.run.seed,
        sinks=sinks,
        name=cfg.run.name,
        config=cfg.model_dump(mode="json"),
        **trainer_arguments,
    )
    return trainer, train, val


def _sinks(cfg: RunConfig, run_dir: Path | None, *, progress: bool, total: int) -> list[Any]:
    """The sinks of ``[logging]`` besides those the trainer makes (the JSONL log, and the
    console when it is just ``true``): each table goes to its sink's constructor."""
    made: list[Any] = []
    for name, options in cfg.logging.items():
        if options is False or (options is True and name in ("console", "jsonl")):
            continue
        arguments = dict(options) if isinstance(options, dict) else {}
        factory = components.SINKS.get(name)
        if name == "console":
            if not progress:
                continue
            arguments["total"] = total
        elif "run_dir" in inspect.signature(factory).parameters:
            if run_dir is None:
                raise ConfigError(f"logging.{name}: this sink writes into the run folder; give one")
            arguments["run_dir"] = run_dir
        if name == "wandb" and "config" not in arguments:
            arguments["config"] = cfg.model_dump(mode="json")
        if name == "jsonl":  # the trainer's log, with these options
            arguments["run_dir"] = run_dir
        made.append(instantiate(f"logging.{name}", factory, **arguments))
    return made


# What a run writes into its folder; a fresh run in an old run folder removes these, no others.
_WRITTEN = ("metrics.jsonl", "last.pt", "best.pt", "summary.json", "report.html")
_RUN_CONFIG_KEYS = frozenset({"run", "model", "data", "terms"})


def _is_run_config(path: Path) -> bool:
    """Whether ``path`` is the ``config.json`` a run writes (so that the folder is a run's)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(payload, dict) and payload.keys() >= _RUN_CONFIG_KEYS


def _check_run_folder(run_dir: Path) -> None:
    """Refuse a folder that holds files named like a run's but is not a run folder: writing
    the run there would overwrite or remove files losskit did not write."""
    if not run_dir.is_dir() or _is_run_config(run_dir / "config.json"):
        return
    clashing = [name for name in ("config.json", *_WRITTEN) if (run_dir / name).exists()]
    if clashing:
        raise ConfigError(
            f"{run_dir} is not a losskit run folder (no config.json written by a run) but holds "
            f"{', '.join(clashing)}, which a run would overwrite or remove; give another folder "
            "(--out or [run] out), or move those files away"
        )


def _finished(run_dir: Path, epochs: int) -> RunResult | None:
    """The run in ``run_dir`` when it had finished (``summary.json`` written after a
    ``last.pt`` that trained all ``epochs`` or stopped early), else ``None``."""
    summary_path, checkpoint = run_dir / "summary.json", run_dir / "last.pt"
    if not (summary_path.is_file() and checkpoint.is_file()):
        return None
    state = load_checkpoint(checkpoint)
    if not (state.get("stopped_early") or int(state.get("epoch", 0)) >= epochs):
        return None  # more epochs asked for than the run trained: go on
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    final = summary.get("final", {})
    fit = FitSummary(
        epochs=summary["epochs"],
        steps=summary["steps"],
        train=final.get("train", {}),
        val=final.get("val", {}),
        best_value=summary.get("best_value"),
        best_epoch=summary.get("best_epoch"),
        stopped_early=bool(summary.get("stopped_early")),
        seconds=0.0,
        run_dir=run_dir,
    )
    return RunResult(run_dir=run_dir, fit=fit, summary=summary, complete=True)


def run(
    config: RunConfig | str | Path,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    report: bool = True,
) -> RunResult:
    """Train what ``config`` describes; write the run folder and return its summary.

    ``resume=True`` continues from ``last.pt`` in the run folder when it exists; a run that
    had finished is left as it is (``RunResult.complete``). The folder is locked while the run
    writes it: a second run on it is refused with :class:`~losskit.errors.RunInUseError`.
    ``report=False`` leaves out ``report.html`` (a comparison writes one report for all).
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    where = out or cfg.run.out
    run_dir = Path(where) if where else Path("runs") / check_file_name("run.name", cfg.run.name)
    _check_run_folder(run_dir)
    # Under torchrun: join the process group (left as found at the end); rank 0 writes files.
    created = distributed.setup()
    try:
        with contextlib.ExitStack() as stack:
            if distributed.is_main():
                stack.enter_context(run_lock(run_dir))
            if resume and (done := _finished(run_dir, cfg.run.epochs)) is not None:
                return done
            return _run_locked(cfg, run_dir, resume=resume, progress=progress, report=report)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def _run_locked(
    cfg: RunConfig, run_dir: Path, *, resume: bool, progress: bool, report: bool
) -> RunResult:
    threads = torch.get_num_threads()
    if cfg.run.threads is not None:
        torch.set_num_threads(cfg.run.threads)
    try:
        trainer, train, val = build(cfg, progress=progress, run_dir=run_dir)
        # The report is rendered below, where a failure (a corrupt log line) is the run's error
        # (the trainer alone would warn and go on).
        report = report and trainer.report
        trainer.report = False
        checkpoint = run_dir / "last.pt"
        # A fresh run in an old folder starts its log and checkpoints anew.
        if not resume and distributed.is_main():
            for stale in _WRITTEN:
                (run_dir / stale).unlink(missing_ok=True)
        fit = trainer.fit(
            train,
            val,
            epochs=cfg.run.epochs,
            resume=checkpoint if resume and checkpoint.exists() else None,
        )
    finally:
        torch.set_num_threads(threads)
    # The trainer wrote config.json, summary.json and report.html (on rank 0); every rank
    # returns the same summary.
    summary = trainer.summary or _run_files.summary(
        fit, name=cfg.run.name, monitor=trainer.monitor, metrics=list(trainer.metrics)
    )
    if report and distributed.is_main():
        fit.report = _run_files.write_report(run_dir)
    return RunResult(run_dir=run_dir, fit=fit, summary=summary)
