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

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from losskit import balancers
from losskit._io import replace_text
from losskit.config import OptimizerConfig, RunConfig, import_object, load_config, make_weight
from losskit.criterion import Criterion
from losskit.demo import DigitsNet, accuracy, digits_data
from losskit.engine import FitSummary, Trainer, distributed, seed_everything
from losskit.errors import ConfigError
from losskit.term import Term

__all__ = ["BUILTIN_DATA", "BUILTIN_METRICS", "BUILTIN_MODELS", "RunResult", "build", "run"]

BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {"digits_mlp": DigitsNet}
BUILTIN_DATA: dict[str, Callable[..., tuple[Dataset[Any], Dataset[Any]]]] = {"digits": digits_data}
BUILTIN_METRICS: dict[str, Callable[[Any, Any], torch.Tensor]] = {"accuracy": accuracy}


@dataclass
class RunResult:
    """A finished run: its folder, the trainer's summary and what ``summary.json`` holds."""

    run_dir: Path
    fit: FitSummary
    summary: dict[str, Any]


def _resolve(source: str, builtins: Mapping[str, Any], what: str) -> Any:
    if ":" in source:
        return import_object(source)
    if source not in builtins:
        raise ConfigError(
            f"{what}.source {source!r} is neither a built-in ({sorted(builtins)}) nor "
            "'package.module:factory'"
        )
    return builtins[source]


def _submodule(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ConfigError(
            f"the model has no submodule {path!r}; its children are {names}"
        ) from None


def build(
    cfg: RunConfig, *, progress: bool = True, run_dir: Path | None = None
) -> tuple[Trainer, DataLoader[Any], DataLoader[Any]]:
    """The trainer and the training and validation loaders a configuration describes."""
    seed_everything(cfg.run.seed)
    model = _resolve(cfg.model.source, BUILTIN_MODELS, "model")(**cfg.model.options)
    train_set, val_set = _resolve(cfg.data.source, BUILTIN_DATA, "data")(**cfg.data.options)
    generator = torch.Generator().manual_seed(cfg.run.seed)
    train = DataLoader(
        train_set, batch_size=cfg.data.batch_size, shuffle=cfg.data.shuffle, generator=generator
    )
    val = DataLoader(val_set, batch_size=cfg.data.val_batch_size or cfg.data.batch_size)
    criterion = Criterion(
        {
            key: Term(
                term.loss,
                input=term.input,
                target=term.target,
                mask=term.mask,
                sample_weight=term.sample_weight,
                weight=make_weight(term.weight),
                enabled=term.enabled,
                monitor=term.monitor,
                **term.options,
            )
            for key, term in cfg.terms.items()
        },
        balancer=balancers.from_config(cfg.balancer, model),
        nonfinite=cfg.nonfinite,
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
        optimizers[name] = _optimizer(spec.name)(params, lr=spec.lr, **spec.options)  # type: ignore[call-arg]
    routes = (
        {n: s.keys for n, s in specs.items() if s is not None and s.keys}
        if cfg.optimizers
        else None
    )
    schedulers = None
    if cfg.scheduler is not None:
        cls = _scheduler(cfg.scheduler.name)
        schedulers = {n: cls(o, **cfg.scheduler.options) for n, o in optimizers.items()}
    input_key = cfg.model.input
    metrics = {}
    for name in cfg.trainer.metrics:
        metrics[name] = _resolve(name, BUILTIN_METRICS, "trainer.metrics")
    trainer = Trainer(
        model,
        criterion,
        optimizers if cfg.optimizers else optimizers["default"],
        routes=routes,
        forward=(lambda m, b: m(b[input_key])) if input_key is not None else None,
        schedulers=schedulers,
        scheduler_interval=cfg.scheduler.interval if cfg.scheduler else "epoch",
        accumulate=cfg.trainer.accumulate,
        amp=cfg.trainer.amp,
        clip_grad_norm=cfg.trainer.clip_grad_norm,
        metrics=metrics,
        monitor=cfg.trainer.monitor,
        mode=cfg.trainer.mode,
        patience=cfg.trainer.patience,
        log_every=cfg.trainer.log_every,
        run_dir=run_dir,
        progress=progress,
        seed=cfg.run.seed,
        diagnostics_every=cfg.trainer.diagnostics_every,
    )
    return trainer, train, val


def _optimizer(name: str) -> type[torch.optim.Optimizer]:
    table = {n.lower(): getattr(torch.optim, n) for n in dir(torch.optim)}
    cls = table.get(name.lower())
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        known = sorted(
            n
            for n, c in table.items()
            if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and n != "optimizer"
        )
        raise ConfigError(
            f"optimizer name {name!r} is not a torch.optim optimizer; use one of {known}"
        )
    return cls


def _scheduler(name: str) -> Callable[..., Any]:
    schedulers = torch.optim.lr_scheduler
    table = {n.lower(): getattr(schedulers, n) for n in dir(schedulers)}
    cls = table.get(name.lower())
    if not isinstance(cls, type):
        raise ConfigError(f"scheduler name {name!r} is not in torch.optim.lr_scheduler")
    return cls


def _write_json(path: Path, payload: Any) -> None:
    replace_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def run(
    config: RunConfig | str | Path,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
) -> RunResult:
    """Train what ``config`` describes; write the run folder and return its summary.

    ``resume=True`` continues from ``last.pt`` in the run folder when it exists.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    run_dir = Path(out or cfg.run.out or f"runs/{cfg.run.name}")
    # Under torchrun: join the process group (left as found at the end); rank 0 writes files.
    created = distributed.setup()
    try:
        main = distributed.is_main()
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
        threads = torch.get_num_threads()
        if cfg.run.threads is not None:
            torch.set_num_threads(cfg.run.threads)
        try:
            trainer, train, val = build(cfg, progress=progress, run_dir=run_dir)
            checkpoint = run_dir / "last.pt"
            if (
                not resume and main
            ):  # a fresh run in an old folder starts its log and checkpoints anew
                for stale in ("metrics.jsonl", "last.pt", "best.pt", "summary.json", "report.html"):
                    (run_dir / stale).unlink(missing_ok=True)
            fit = trainer.fit(
                train,
                val,
                epochs=cfg.run.epochs,
                resume=checkpoint if resume and checkpoint.exists() else None,
            )
        finally:
            torch.set_num_threads(threads)
        weights = {
            k.removeprefix("weight/"): w for k, w in fit.train.items() if k.startswith("weight/")
        }
        summary: dict[str, Any] = {
            "name": cfg.run.name,
            "epochs": fit.epochs,
            "steps": fit.steps,
            "seconds": round(fit.seconds, 3),
            "monitor": cfg.trainer.monitor,
            "best_value": fit.best_value,
            "best_epoch": fit.best_epoch,
            "stopped_early": fit.stopped_early,
            "final": {"train": fit.train, "val": fit.val},
            "weights": weights,
        }
        for name in cfg.trainer.metrics:
            value = fit.val.get(f"metric/{name}")
            if value is not None:
                summary[f"val_{name}"] = value
        if main:
            _write_json(run_dir / "summary.json", summary)
        return RunResult(run_dir=run_dir, fit=fit, summary=summary)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
