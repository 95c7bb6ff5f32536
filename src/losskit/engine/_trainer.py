"""A small trainer for keyed criteria: routing, accumulation, AMP, checkpoints, early stopping.

Every piece it uses (Criterion, Tracker, checkpoints) works in a hand-written loop too; the
Trainer is a convenience on top of them.

Example::

    >>> import torch, losskit as lk
    >>> model = torch.nn.Linear(3, 1)
    >>> crit = lk.Criterion({"mse": lk.Term("mse", input=0, target="y")})
    >>> data = [{"x": torch.randn(4, 3), "y": torch.randn(4)} for _ in range(5)]
    >>> trainer = lk.engine.Trainer(model, crit, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                      forward=lambda m, b: (m(b["x"]).squeeze(-1),), progress=False)
    >>> summary = trainer.fit(data, data, epochs=2)
    >>> summary.epochs, summary.steps, sorted(summary.val)
    (2, 10, ['loss', 'loss/mse', 'weight/mse'])
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias, Union, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from losskit._io import run_lock
from losskit._signature import did_you_mean
from losskit.balancers import StepLearningBalancer, capabilities
from losskit.criterion import Criterion
from losskit.diagnostics import gradient_health
from losskit.engine import _run_files, distributed
from losskit.engine._checkpoint import (
    capture_loader,
    capture_rng,
    checkpoint_error,
    load_checkpoint,
    restore_loader,
    restore_rng,
    save_checkpoint,
)
from losskit.errors import ConfigError, LossKitError, LossKitWarning
from losskit.evaluation import evaluate, to_device
from losskit.result import LossResult
from losskit.tracking import Sink, Tracker, sinks

__all__ = ["FitSummary", "Trainer", "seed_everything"]

ForwardFn: TypeAlias = Callable[[nn.Module, Any], Any]
MetricFn: TypeAlias = Callable[[Any, Any], Tensor]
Scheduler: TypeAlias = Union[
    torch.optim.lr_scheduler.LRScheduler, "torch.optim.lr_scheduler.ReduceLROnPlateau"
]
Amp = Literal["bf16", "fp16"]

_DEFAULT = "default"
_CHECKPOINT_VERSION = 1  # raise it when what state_dict holds changes incompatibly
_CHECKPOINT_KEYS = frozenset(
    {"version", "model", "optimizers", "schedulers", "scaler", "criterion", "tracker", "rng"}
    | {"epoch", "global_step", "best_value", "best_epoch", "bad_epochs"}
)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class FitSummary:
    """What :meth:`Trainer.fit` did: epochs, steps, the final means per split, the best epoch."""

    epochs: int
    steps: int
    train: dict[str, float]
    val: dict[str, float]
    best_value: float | None
    best_epoch: int | None
    stopped_early: bool
    seconds: float
    run_dir: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    """``run_dir/report.html`` when the trainer wrote it."""


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, Iterable):
        for value in values:
            if isinstance(value, Tensor) and value.ndim:
                return int(value.shape[0])
    raise ConfigError(
        "cannot tell the batch size: the batch holds no tensor with a batch dimension"
    )


class Trainer:
    """Fit a model with a :class:`~losskit.Criterion`, one optimizer or several routed by key.

    Args:
        model: the module to train.
        criterion: the keyed criterion.
        optimizers: one optimizer, or a mapping from name to optimizer. With several, ``routes``
            says which loss keys each steps on; they step in the mapping's order, each after its
            own forward pass (a GAN's discriminator, then its generator), and each only on the
            gradient of its own keys with respect to its own parameters.
        routes: optimizer name -> loss keys (required with several optimizers).
        forward: ``fn(model, batch) -> outputs`` (default ``model(batch)``), or a mapping from
            optimizer name to such a function for per-optimizer forward passes.
        schedulers: an LR scheduler or a mapping from optimizer name to one; stepped after each
            optimizer step (``scheduler_interval="step"``) or each epoch (``"epoch"``;
            ``ReduceLROnPlateau`` receives the monitored value).
        accumulate: micro-batches per optimizer step. Each micro-batch's loss is weighted by its
            share of the window's samples, so the gradient equals the one of the whole window as
            a single batch, a shorter last window included.
        amp: ``"bf16"`` (autocast; CPU and CUDA) or ``"fp16"`` (autocast with a GradScaler;
            unscaled before clipping).
        clip_grad_norm: clip each optimizer's gradients to this global norm.
        metrics: name -> ``fn(outputs, batch) -> Tensor`` evaluated on validation batches
            (logged as ``metric/<name>``), e.g. accuracy.
        monitor: the ``split/name`` value that picks the best checkpoint and early stopping.
        mode: ``"min"`` or ``"max"`` for ``monitor``.
        patience: stop after this many epochs without improvement (None: never stop early).
        run_dir: the run folder, as ``losskit run`` writes it: ``config.json`` when the fit
            starts, the JSONL log, checkpoints (``last.pt``, ``best.pt``), and at the end
            ``summary.json`` and ``report.html``.
        log_every: flush the tracker every this many optimizer steps.
        progress: show a progress bar in a terminal.
        sinks: more places every record goes, besides the console and the JSONL log of
            ``run_dir``: :class:`~losskit.tracking.sinks.TensorBoard`,
            :class:`~losskit.tracking.sinks.WandB`, :class:`~losskit.tracking.sinks.MLflow`,
            :class:`~losskit.tracking.sinks.CSV` or your own (``docs/tracking.md``). They are
            closed when ``fit`` ends. One that fails warns once and training goes on.
        name: the run's name in ``summary.json`` (default: the name of ``run_dir``).
        config: what ``config.json`` holds (``losskit run`` passes the validated file); by
            default a description of this trainer, its criterion and optimizers.
        report: write ``report.html`` at the end of ``fit`` (with ``run_dir``).
        device: where to train (default: the model's device).
        seed: seed every generator before training.
        diagnostics_every: every this many optimizer steps, log each key's gradient norm and
            the gradient cosines between keys on the shared parameters (``grad_norm/<key>``,
            ``cos/<a>/<b>``; see :func:`~losskit.diagnostics.gradient_health`), from the first
            micro-batch of the window; each key costs one extra backward pass that step.
        shared_forward: with several optimizers, one forward pass per micro-batch serves every
            route (one optimizer per task on shared outputs): each route's gradient (its keys
            w.r.t. its optimizer's parameters) is taken from that pass before any optimizer
            steps. False (the default) runs one forward per route, each after the previous
            optimizer stepped, as a GAN's generator needs the discriminator just updated.

    Besides the criterion's values, every training step logs the learning rate of every
    optimizer (``lr/<optimizer>``; ``lr/<optimizer>/<group>`` by param-group index when it has
    several; the single optimizer is named ``default``), the gradient norm before clipping when
    ``clip_grad_norm`` is set (``total_grad_norm/<optimizer>``), the step's wall time in
    seconds (``speed/step_s``) and samples per second (``speed/samples_per_s``, of this
    process). Validation logs ``loss``, ``loss/<key>`` and ``metric/<name>`` in the ``val``
    split.

    Under ``torchrun`` (or with a process group already initialised) ``fit`` wraps the model in
    DDP unless it is DDP or FSDP2 already, shards DataLoaders with a ``DistributedSampler``,
    reduces gradients once per optimizer step, logs global means and writes files on rank 0
    only (:mod:`losskit.engine.distributed`, ``docs/distributed.md``).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: Criterion,
        optimizers: Optimizer | Mapping[str, Optimizer],
        *,
        routes: Mapping[str, Sequence[str]] | None = None,
        forward: ForwardFn | Mapping[str, ForwardFn] | None = None,
        schedulers: Scheduler | Mapping[str, Scheduler] | None = None,
        scheduler_interval: Literal["step", "epoch"] = "epoch",
        accumulate: int = 1,
        amp: Amp | None = None,
        clip_grad_norm: float | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        patience: int | None = None,
        min_delta: float = 0.0,
        run_dir: str | Path | None = None,
        log_every: int = 10,
        progress: bool = True,
        device: str | torch.device | None = None,
        seed: int | None = None,
        diagnostics_every: int | None = None,
        shared_forward: bool = False,
        sinks: Sequence[Sink] = (),
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        report: bool = True,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizers: dict[str, Optimizer] = (
            {_DEFAULT: optimizers} if isinstance(optimizers, Optimizer) else dict(optimizers)
        )
        if not self.optimizers:
            raise ConfigError("Trainer needs at least one optimizer")
        self.routes = self._check_routes(routes)
        self.forward = self._check_forward(forward)
        if shared_forward and not (forward is None or callable(forward)):
            raise ConfigError(
                "shared_forward=True runs one forward for every route: pass one forward "
                "function, not a mapping by optimizer"
            )
        self.shared_forward = bool(shared_forward) and len(self.optimizers) > 1
        self.schedulers = self._check_schedulers(schedulers)
        if scheduler_interval not in ("step", "epoch"):
            raise ConfigError(
                f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}"
            )
        self.scheduler_interval = scheduler_interval
        if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
            raise ConfigError(f"accumulate must be a positive integer, got {accumulate!r}")
        self.accumulate = accumulate
        if amp not in (None, "bf16", "fp16"):
            raise ConfigError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
        self.amp = amp
        self.clip_grad_norm = clip_grad_norm
        self.metrics = dict(metrics or {})
        split, _, monitored = monitor.partition("/")
        if not monitored:
            raise ConfigError(f"monitor must look like 'val/loss' (split/name), got {monitor!r}")
        self.monitor = monitor
        self._monitor_split, self._monitor_name = split, monitored
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log_every = log_every
        self.progress = progress
        first = next(iter(model.parameters()), None)
        self.device = (
            torch.device(device)
            if device is not None
            else (first.device if first is not None else torch.device("cpu"))
        )
        self.seed = seed
        if diagnostics_every is not None and (
            isinstance(diagnostics_every, bool)
            or not isinstance(diagnostics_every, int)
            or diagnostics_every < 1
        ):
            raise ConfigError(
                f"diagnostics_every must be a positive integer or None, got {diagnostics_every!r}"
            )
        self.diagnostics_every = diagnostics_every
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise ConfigError(
                    f"sinks: {sink!r} is not a sink (it needs write(record) and close() methods; "
                    "see losskit.tracking.sinks)"
                )
        self.sinks = tuple(sinks)
        self.name = name
        self.config = dict(config) if config is not None else None
        self.report = report
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self._params = {
            name: [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
            for name, opt in self.optimizers.items()
        }
        self.epoch = 0
        self.global_step = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.tracker: Tracker | None = None
        self.stopped_early = False
        # What the last finished epoch logged (split -> key -> mean); a checkpoint keeps it.
        self.last_records: dict[str, dict[str, float]] = {}
        self._loaders: dict[str, Iterable[Any]] = {}  # fit's loaders by split, for their order
        self._step_log: dict[str, Tensor | float] = {}  # this step's optimizer values
        self.replicas: distributed.Replicas | None = None  # set by fit
        self._summary: dict[str, Any] | None = None

    # -- configuration checks ---------------------------------------------------------------
    def _check_routes(
        self, routes: Mapping[str, Sequence[str]] | None
    ) -> dict[str, tuple[str, ...]]:
        names = list(self.optimizers)
        if routes is None:
            if len(names) > 1:
                raise ConfigError(
                    f"several optimizers {names} need routes: optimizer name -> loss keys"
                )
            return {names[0]: self.criterion.keys}
        unknown = set(routes) - set(names)
        missing = set(names) - set(routes)
        if unknown or missing:
            raise ConfigError(
                f"routes must name every optimizer exactly: optimizers {names}, routes "
                f"{list(routes)}"
            )
        for name, keys in routes.items():
            bad = [k for k in keys if k not in self.criterion.keys]
            if bad:
                raise ConfigError(
                    f"route {name!r} names loss keys {bad} that the criterion lacks; it has "
                    f"{list(self.criterion.keys)}"
                )
        return {name: tuple(routes[name]) for name in names}

    def _check_forward(
        self, forward: ForwardFn | Mapping[str, ForwardFn] | None
    ) -> dict[str, ForwardFn]:
        def default(model: nn.Module, batch: Any) -> Any:
            try:
                return model(batch)
            except (TypeError, AttributeError) as exc:
                if not isinstance(batch, (Mapping, list, tuple)):
                    raise
                # The usual first mistake: a dict (or pair) batch handed whole to a model that
                # takes a tensor; torch's message says nothing of the Trainer's default.
                what = (
                    f"a mapping with keys {sorted(map(str, batch))}"
                    if isinstance(batch, Mapping)
                    else f"a {type(batch).__name__} of {len(batch)}"
                )
                example = "model(batch['x'])" if isinstance(batch, Mapping) else "model(batch[0])"
                raise ConfigError(
                    f"the Trainer calls model(batch) when no forward= is given, and the batch "
                    f"is {what}, which {type(model).__name__} does not take ({exc}); pass "
                    f"forward=lambda model, batch: {example} (see docs/trainer.md)"
                ) from exc

        if forward is None or callable(forward):
            return dict.fromkeys(self.optimizers, forward or default)
        missing = set(self.optimizers) - set(forward)
        if missing:
            raise ConfigError(f"forward mapping lacks optimizers {sorted(missing)}")
        return {name: forward[name] for name in self.optimizers}

    def _check_schedulers(
        self, schedulers: Scheduler | Mapping[str, Scheduler] | None
    ) -> dict[str, Scheduler]:
        if schedulers is None:
            return {}
        if isinstance(schedulers, Mapping):
            unknown = set(schedulers) - set(self.optimizers)
            if unknown:
                raise ConfigError(f"schedulers name unknown optimizers {sorted(unknown)}")
            return dict(schedulers)
        if len(self.optimizers) > 1:
            raise ConfigError("with several optimizers, pass schedulers as a mapping by name")
        return {next(iter(self.optimizers)): schedulers}

    # -- one optimizer step ----------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _route_loss(self, name: str, batch: Any) -> tuple[LossResult, Any]:
        with self._autocast():
            model = self.replicas.model if self.replicas is not None else self.model
            outputs = self.forward[name](model, batch)
            keys = self.routes[name] if len(self.routes) > 1 else None
            return self.criterion(outputs, batch, keys=keys), outputs

    def _backward(self, name: str, res: LossResult, scale: float) -> None:
        if len(self.optimizers) == 1:
            res.backward(scale=scale, grad_scaler=self.scaler)
            return
        loss = res.total * scale
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        # Only this optimizer's parameters receive this route's gradient: a parameter reached
        # by other keys alone is never stepped here, and nothing leaks into others' gradients.
        params = self._params[name]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g

    def _optimizer_step(self, name: str) -> None:
        optimizer = self.optimizers[name]
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.clip_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(self._params[name], self.clip_grad_norm)
            self._step_log[f"total_grad_norm/{name}"] = norm.detach()
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def train_window(self, window: Sequence[Any]) -> None:
        """One optimizer step (per optimizer) over a window of micro-batches."""
        assert self.tracker is not None
        started = time.perf_counter()
        sizes = [_batch_size(b) for b in window]
        total = sum(sizes)
        self._step_log = self._learning_rates()
        logs: list[dict[str, Tensor]] = [{} for _ in window]
        enabled = set(self.criterion.enabled)
        every = self.diagnostics_every
        health: dict[str, Tensor] | None = (
            {} if every is not None and self.global_step % every == 0 else None
        )
        if self.replicas is None:  # called outside fit
            self.replicas = distributed.Replicas(self.model, self.criterion, len(self.optimizers))
        replicas = self.replicas
        if self.shared_forward:
            self._shared_window(window, sizes, logs, health)
        for name in self.optimizers if not self.shared_forward else ():
            if not enabled.intersection(self.routes[name]):
                continue
            results = []
            for index, (batch, size) in enumerate(zip(window, sizes)):
                with replicas.micro_step(last=index == len(window) - 1):
                    res, _ = self._route_loss(name, batch)
                    if health is not None and index == 0:
                        health.update(gradient_health(self._params[name], res))
                    self._backward(name, res, size / total)
                results.append(res)
            # Gradients reduced across ranks (a gradient balancer's weights known) from here.
            replicas.synchronize(self._params[name])
            for log, res in zip(logs, results):
                self._merge(log, res)
            self._optimizer_step(name)
        if self.scaler is not None:
            self.scaler.update()
        self._learn_after_step(window[-1])
        self.global_step += 1
        self.criterion.step()
        if self.scheduler_interval == "step":
            for scheduler in self.schedulers.values():
                scheduler.step()  # type: ignore[call-arg]
        seconds = time.perf_counter() - started
        step_log = {**self._step_log, **(health or {}), "speed/step_s": seconds}
        step_log["speed/samples_per_s"] = total / seconds if seconds > 0 else math.inf
        for index, (log, size) in enumerate(zip(logs, sizes)):
            extra = step_log if index == 0 else None
            self.tracker.update(log, "train", batch_size=size, step=self.global_step, extra=extra)

    def _learn_after_step(self, batch: Any) -> None:
        """A balancer that learns from how the terms moved across the step (FAMO) gets them
        recomputed on the last micro-batch, by each route's forward, before the schedules move."""
        balancer = self.criterion.balancer
        if balancer is None or not capabilities(balancer).learns_after_step:
            return
        assert self.replicas is not None
        enabled = set(self.criterion.enabled)
        names = [n for n in self.optimizers if enabled.intersection(self.routes[n])]
        if self.shared_forward:
            names = names[:1]
        learner = cast(StepLearningBalancer, balancer)
        with torch.no_grad():
            for name in names:
                with self._autocast():
                    outputs = self.forward[name](self.replicas.model, batch)
                    keys = (
                        self.routes[name]
                        if len(self.routes) > 1 and not self.shared_forward
                        else None
                    )
                    learner.update(self.criterion(outputs, batch, keys=keys))

    def _shared_window(
        self,
        window: Sequence[Any],
        sizes: Sequence[int],
        logs: list[dict[str, Tensor]],
        health: dict[str, Tensor] | None,
    ) -> None:
        """One forward per micro-batch for every route; each optimizer then steps on its own
        keys' gradient w.r.t. its own parameters, all taken before any parameter changes."""
        assert self.replicas is not None
        enabled = set(self.criterion.enabled)
        names = [n for n in self.optimizers if enabled.intersection(self.routes[n])]
        total = sum(sizes)
        grads: dict[str, list[Tensor | None]] = {n: [None] * len(self._params[n]) for n in names}
        for index, (batch, size) in enumerate(zip(window, sizes)):
            with self.replicas.micro_step(last=index == len(window) - 1):
                with self._autocast():
                    model = self.replicas.model
                    outputs = self.forward[names[0]](model, batch) if names else None
                for position, name in enumerate(names):
                    with self._autocast():
                        res = self.criterion(outputs, batch, keys=self.routes[name])
                    if health is not None and index == 0:
                        health.update(gradient_health(self._params[name], res))
                    loss = res.total * (size / total)
                    if self.scaler is not None:
                        loss = self.scaler.scale(loss)
                    found = torch.autograd.grad(
                        loss,
                        self._params[name],
                        allow_unused=True,
                        retain_graph=position < len(names) - 1,
                    )
                    sums = grads[name]
                    for i, g in enumerate(found):
                        if g is not None:
                            previous = sums[i]
                            sums[i] = g if previous is None else previous + g
                    self._merge(logs[index], res)
        for name in names:
            params = self._params[name]
            for p in params:
                p.grad = None  # a parameter two optimizers share gets each one its own gradient
            for p, summed in zip(params, grads[name]):
                p.grad = summed
            self.replicas.synchronize(params)
            self._optimizer_step(name)

    def _learning_rates(self) -> dict[str, Tensor | float]:
        """The learning rate of every optimizer's param groups, as this step uses them."""
        rates: dict[str, Tensor | float] = {}
        for name, optimizer in self.optimizers.items():
            groups = optimizer.param_groups
            for index, group in enumerate(groups):
                key = f"lr/{name}" if len(groups) == 1 else f"lr/{name}/{index}"
                lr = group["lr"]
                # A tensor learning rate (capturable optimizers) changes in place: copy it.
                rates[key] = lr.detach().clone() if isinstance(lr, Tensor) else float(lr)
        return rates

    @staticmethod
    def _merge(into: dict[str, Tensor], res: LossResult) -> None:
        log = res.log()
        total = log.pop("loss")
        into["loss"] = into["loss"] + total if "loss" in into else total
        into.update(log)

    # -- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, loader: Iterable[Any], split: str = "val") -> None:
        """Evaluate every route's keys (and the metrics) on ``loader`` into the tracker.

        The dataset means come from :func:`losskit.evaluation.evaluate` (sample-weighted, read
        once).
        """
        assert self.tracker is not None
        enabled = set(self.criterion.enabled)
        routes = [name for name in self.optimizers if enabled.intersection(self.routes[name])]

        # One forward per distinct forward function (once per batch unless the routes have
        # their own), each route's keys evaluated on it as in training: no optimizer steps
        # here, so the order is moot.
        passes: dict[int, tuple[ForwardFn, list[str]]] = {}
        for name in routes:
            passes.setdefault(id(self.forward[name]), (self.forward[name], []))[1].append(name)

        def batch_log(_: Any, batch: Any) -> dict[str, Tensor]:
            log: dict[str, Tensor] = {}
            outputs = None
            model = self.replicas.model if self.replicas is not None else self.model
            for forward, names in passes.values():
                with self._autocast():
                    outputs = forward(model, batch)
                for name in names:
                    keys = self.routes[name] if len(self.routes) > 1 else None
                    with self._autocast():
                        res = self.criterion(outputs, batch, keys=keys)
                    self._merge(log, res)
            for metric, fn in self.metrics.items():
                log[f"metric/{metric}"] = fn(outputs, batch).detach().float()
            return log

        means = evaluate(
            self.model, lambda log, _: log, loader, forward=batch_log, device=self.device
        )
        if means:
            self.tracker.update(means, split, step=self.global_step)

    # -- the loop ---------------------------------------------------------------------------
    def _make_tracker(self, total_steps: int) -> Tracker:
        sink_list: list[Any] = []
        if self.progress:
            sink_list.append(sinks.Console(total=total_steps))
        log = self.run_dir / "metrics.jsonl" if self.run_dir is not None else None
        given = any(isinstance(s, sinks.JSONL) and s.path == log for s in self.sinks)
        if self.run_dir is not None and not given:
            sink_list.append(sinks.JSONL(self.run_dir))
        return Tracker([*sink_list, *self.sinks], criterion=self.criterion)

    def fit(
        self,
        train: Iterable[Any],
        val: Iterable[Any] | None = None,
        *,
        epochs: int,
        resume: str | Path | None = None,
    ) -> FitSummary:
        """Train for ``epochs`` epochs (in total, counting those of a resumed checkpoint).

        With ``run_dir`` set, the folder is locked for the fit (``run_dir/.lock``): a second
        writer is refused with :class:`~losskit.errors.RunInUseError` naming this process.
        Checkpoints are taken at epoch ends; they keep the order of shuffled loaders (their
        generators' states), so a run resumed after a crash in the middle of an epoch
        restarts that epoch with the same batches and ends as the run never interrupted.
        Resuming a run that had finished (all epochs, or stopped early) trains nothing.
        """
        with contextlib.ExitStack() as stack:
            if self.run_dir is not None and distributed.is_main():
                stack.enter_context(run_lock(self.run_dir))
            return self._fit(train, val, epochs=epochs, resume=resume)

    def _fit(
        self,
        train: Iterable[Any],
        val: Iterable[Any] | None,
        *,
        epochs: int,
        resume: str | Path | None,
    ) -> FitSummary:
        started = time.perf_counter()
        if self.seed is not None:
            seed_everything(self.seed)
        distributed.setup()  # first: it picks this rank's GPU (LOCAL_RANK)
        self.device = distributed.rank_device(self.device)
        self.model.to(self.device)
        self.replicas = distributed.Replicas(self.model, self.criterion, len(self.optimizers))
        per_epoch = math.ceil(len(train) / self.accumulate) if isinstance(train, Sized) else 0
        main = distributed.is_main()
        if self.run_dir is not None and main:
            _run_files.write_json(self.run_dir / "config.json", self._config())
        self.tracker = self._make_tracker(per_epoch * epochs or 0)
        history: list[dict[str, Any]] = []
        self._loaders = {"train": train} if val is None else {"train": train, "val": val}
        self.stopped_early = False
        self.last_records = {}
        try:
            if resume is not None:
                self.load_checkpoint(resume)
            while not self.stopped_early and self.epoch < epochs:
                self.model.train()
                iterator: Iterator[Any] = iter(self.replicas.loader(train, self.epoch))
                steps_in_epoch = 0
                while window := list(itertools.islice(iterator, self.accumulate)):
                    self.train_window([to_device(b, self.device) for b in window])
                    steps_in_epoch += 1
                    if steps_in_epoch % self.log_every == 0:
                        self.tracker.flush()
                if val is not None:
                    self.validate(self.replicas.loader(val, self.epoch))
                records = self.tracker.end_epoch()
                self.last_records = {
                    r.split: {k: v for k, v in r.values.items() if v is not None} for r in records
                }
                history.append({"epoch": self.epoch, **self.last_records})
                value = self.last_records.get(self._monitor_split, {}).get(self._monitor_name)
                if value is None:
                    self._check_monitor()
                self.stopped_early = self._after_epoch(value)
                self.epoch += 1
                if self.run_dir is not None:
                    self.save_checkpoint(self.run_dir / "last.pt")
        finally:
            self.tracker.close()
        fit = FitSummary(
            epochs=self.epoch,
            steps=self.global_step,
            train=self.last_records.get("train", {}),
            val=self.last_records.get("val", {}),
            best_value=self.best_value,
            best_epoch=self.best_epoch,
            stopped_early=self.stopped_early,
            seconds=time.perf_counter() - started,
            run_dir=self.run_dir,
            history=history,
        )
        if self.run_dir is not None and main:
            self._write_run_files(fit)
        return fit

    @property
    def summary(self) -> dict[str, Any] | None:
        """What the last ``fit`` wrote to ``summary.json`` (``None`` before a fit)."""
        return self._summary

    def _write_run_files(self, fit: FitSummary) -> None:
        assert self.run_dir is not None
        self._summary = _run_files.summary(
            fit,
            name=self.name or self.run_dir.resolve().name,
            monitor=self.monitor,
            metrics=list(self.metrics),
        )
        _run_files.write_json(self.run_dir / "summary.json", self._summary)
        if self.report:
            try:
                fit.report = _run_files.write_report(self.run_dir)
            except LossKitError as exc:  # e.g. a corrupt log line: the run's files stay
                warnings.warn(
                    f"report.html not written ({exc}); the run's other files are complete: "
                    f"`losskit report {self.run_dir} --skip-corrupt` renders what the log holds",
                    LossKitWarning,
                    stacklevel=3,
                )

    def _config(self) -> dict[str, Any]:
        """``config.json``: the one given, else this trainer's settings, criterion, optimizers."""
        if self.config is not None:
            return _run_files.as_data(self.config)  # type: ignore[no-any-return]
        settings = {
            "accumulate": self.accumulate,
            "amp": self.amp,
            "clip_grad_norm": self.clip_grad_norm,
            "monitor": self.monitor,
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "log_every": self.log_every,
            "seed": self.seed,
            "diagnostics_every": self.diagnostics_every,
            "scheduler_interval": self.scheduler_interval,
            "metrics": list(self.metrics),
            "sinks": [repr(s) for s in self.sinks],
        }
        optimizers = {
            name: {
                "name": type(opt).__name__,
                **{k: v for k, v in opt.defaults.items() if k != "params"},
                "keys": list(self.routes[name]),
            }
            for name, opt in self.optimizers.items()
        }
        return _run_files.as_data(  # type: ignore[no-any-return]
            {
                "model": type(self.model).__name__,
                "criterion": repr(self.criterion),
                "optimizers": optimizers,
                "schedulers": {n: type(s).__name__ for n, s in self.schedulers.items()},
                "trainer": settings,
            }
        )

    def _check_monitor(self) -> None:
        """Refuse a ``monitor`` that names nothing this run can log, once its split logged: a
        typo would otherwise leave the run without a best checkpoint, silently. (An optional
        term's key may be absent from one epoch; a name the run can never log is an error.)"""
        logged = self.last_records.get(self._monitor_split)
        if logged is None:
            return  # that split did not run (no validation loader): nothing to compare with
        keys = (*self.criterion.keys, *self.criterion.monitored_keys)
        possible = {"loss", *(f"loss/{k}" for k in keys), *(f"weight/{k}" for k in keys)}
        possible |= {f"metric/{m}" for m in self.metrics} | set(logged)
        if self._monitor_name in possible:
            return
        names = ", ".join(f"{self._monitor_split}/{n}" for n in sorted(logged))
        split = self._monitor_split
        hint = did_you_mean(self.monitor, sorted(f"{split}/{n}" for n in possible))
        raise ConfigError(
            f"monitor {self.monitor!r} names no value this run logs: the {split!r} split "
            f"logged {names}{hint}"
        )

    def _after_epoch(self, value: float | None) -> bool:
        """Step the schedulers, keep the best checkpoint; whether to stop early."""
        for scheduler in self.schedulers.values():
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if value is not None:
                    scheduler.step(value)
            elif self.scheduler_interval == "epoch":
                scheduler.step()
        if value is None:
            return self._patience_spent()
        sign = 1.0 if self.mode == "min" else -1.0
        improved = self.best_value is None or sign * (self.best_value - value) > self.min_delta
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        else:
            self.bad_epochs += 1
        stop = self._patience_spent()
        if improved and self.run_dir is not None:
            self.stopped_early = stop
            self.save_checkpoint(self.run_dir / "best.pt", epoch_done=True)
        return stop

    def _patience_spent(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self, *, epoch_done: bool = False) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (whole tensors under FSDP2: a
        collective, called on every rank)."""
        model_state, optim_states = distributed.full_state(
            self.model, list(self.optimizers.values()), self.criterion
        )
        return {
            "version": _CHECKPOINT_VERSION,
            "model": model_state,
            "optimizers": dict(zip(self.optimizers, optim_states)),
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "criterion": self.criterion.state_dict(),
            "tracker": self.tracker.state_dict() if self.tracker is not None else None,
            "rng": capture_rng(),
            "epoch": self.epoch + (1 if epoch_done else 0),
            "global_step": self.global_step,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            # Optional (absent from earlier checkpoints): the training order, the last epoch's
            # means and whether the run stopped early, so a finished run resumes to its summary.
            "data": {split: capture_loader(loader) for split, loader in self._shards().items()},
            "records": self.last_records,
            "stopped_early": self.stopped_early,
        }

    def _shards(self) -> dict[str, Iterable[Any]]:
        """The loaders whose order a checkpoint keeps (this rank's shards when distributed)."""
        replicas = self.replicas
        if replicas is None:
            return dict(self._loaders)
        return {
            split: replicas.loader(loader, self.epoch) for split, loader in self._loaders.items()
        }

    def save_checkpoint(self, path: str | Path, *, epoch_done: bool = False) -> None:
        """Write :meth:`state_dict` atomically to ``path`` (on rank 0 only when distributed)."""
        state = self.state_dict(epoch_done=epoch_done)
        if distributed.is_main():
            if self.tracker is not None:
                # The log on disk first: a crash never leaves a checkpoint ahead of its records.
                self.tracker.sync()
            save_checkpoint(state, path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (call before or inside fit).

        Raises :class:`~losskit.errors.CheckpointError` naming the file when it is missing,
        damaged, carries code, was written by another losskit version or does not fit this
        trainer.
        """
        state = load_checkpoint(path, map_location=self.device)
        missing = sorted(_CHECKPOINT_KEYS - set(state))
        if missing:
            raise checkpoint_error(
                path, f"not a losskit checkpoint (it lacks {', '.join(missing)})"
            )
        if state["version"] != _CHECKPOINT_VERSION:
            raise checkpoint_error(
                path,
                f"written by another version of losskit (checkpoint version {state['version']!r}, "
                f"this losskit reads version {_CHECKPOINT_VERSION})",
            )
        try:
            self._restore(state)
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as exc:
            detail = " ".join(str(exc).split())
            raise checkpoint_error(
                path, f"it does not fit this trainer ({type(exc).__name__}: {detail})"
            ) from None

    def _restore(self, state: dict[str, Any]) -> None:
        distributed.load_full_state(
            self.model,
            list(self.optimizers.values()),
            state["model"],
            [state["optimizers"][name] for name in self.optimizers],
            self.criterion,
        )
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.criterion.load_state_dict(state["criterion"])
        if self.tracker is not None and state["tracker"] is not None:
            self.tracker.load_state_dict(state["tracker"])
        restore_rng(state["rng"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_value = state["best_value"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        saved = state.get("data") or {}
        for split, loader in self._shards().items():
            if split in saved:
                restore_loader(loader, saved[split])
        self.last_records = {
            str(split): {str(k): float(v) for k, v in values.items()}
            for split, values in state.get("records", {}).items()
        }
        self.stopped_early = bool(state.get("stopped_early", self._patience_spent()))
