"""A Criterion in a hand-written Hugging Face Accelerate loop.

:class:`AcceleratedCriterion` wraps the criterion for the loop: it evaluates it and hands every
key to a :class:`~losskit.tracking.Tracker` (its ``flush`` all-reduces: logs are global means),
does the backward pass (``accelerator.backward``, or a gradient-level balancer's own with DDP's
all-reduce off), and at each real optimizer step (``accelerator.sync_gradients``) averages what
DDP does not reduce (the criterion's learnable parameters; the per-key gradients of a gradient
balancer, aggregated once), steps the optimizer and then the criterion's schedules and balancer::

    accelerator = Accelerator(gradient_accumulation_steps=2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    tracker = lk.tracking.Tracker(...)
    crit = AcceleratedCriterion(accelerator, model, lk.Criterion({...}), tracker=tracker)
    for batch in loader:
        with crit.accumulate():
            res = crit(model(batch["x"]), batch)
            crit.backward(res)
            crit.step(optimizer)
    crit.tracker.end_epoch()

Example::

    >>> import torch, losskit as lk
    >>> from accelerate import Accelerator
    >>> from losskit.integrations.accelerate import AcceleratedCriterion
    >>> accelerator = Accelerator(cpu=True)
    >>> model = torch.nn.Linear(3, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> model, optimizer = accelerator.prepare(model, optimizer)
    >>> crit = AcceleratedCriterion(accelerator, model, lk.Criterion({"mse": lk.Term("mse")}))
    >>> for _ in range(3):
    ...     with crit.accumulate():
    ...         res = crit(model(torch.ones(4, 3)).squeeze(-1), torch.zeros(4))
    ...         crit.backward(res)
    ...         stepped = crit.step(optimizer)
    >>> sorted(crit.tracker.end_epoch()[0].values)
    ['loss', 'loss/mse', 'weight/mse']
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from losskit.balancers import capabilities
from losskit.criterion import Criterion
from losskit.engine import distributed
from losskit.errors import ConfigError, MissingDependencyError
from losskit.result import LossResult
from losskit.tracking import Sink, Tracker

try:
    from accelerate import Accelerator
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError(
        "losskit.integrations.accelerate needs Hugging Face Accelerate: "
        "pip install 'losskit[accelerate]'"
    ) from exc

__all__ = ["AcceleratedCriterion"]


class AcceleratedCriterion:
    """The losskit side of an Accelerate loop: evaluate and log, backward, step.

    Args:
        accelerator: the loop's ``Accelerator``.
        model: the model as ``accelerator.prepare`` returned it (DDP-wrapped on several
            processes).
        criterion: the keyed criterion (moved to the accelerator's device).
        tracker: where logs go (default: a Tracker without sinks; read it with ``end_epoch`` or
            ``flush``). Its values are global means across processes.
        sinks: the default tracker's sinks (:mod:`losskit.tracking.sinks`: JSONL, TensorBoard,
            W&B, MLflow, ...), written by the main process only; with ``tracker``, give them
            to it instead. ``accelerator.log`` does not see losskit's keys: these sinks do.
        every: the default tracker's flush interval, in updates.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: nn.Module,
        criterion: Criterion,
        *,
        tracker: Tracker | None = None,
        sinks: Sequence[Sink] = (),
        every: int | None = None,
    ) -> None:
        owns_backward = capabilities(criterion.balancer).owns_backward
        if owns_backward and accelerator.mixed_precision == "fp16":
            raise ConfigError(
                f"the gradient balancer {type(criterion.balancer).__name__} does its own "
                "backward pass, "
                "which Accelerate's fp16 loss scaler does not see (its unscale would shrink the "
                "update): use Accelerator(mixed_precision='bf16') or 'no' (float32)"
            )
        self.accelerator = accelerator
        self.model = model
        self.criterion = criterion.to(accelerator.device)
        if tracker is not None and (sinks or every is not None):
            raise ConfigError(
                "give sinks and every to your tracker, Tracker(sinks, every=...), or leave "
                "tracker out and AcceleratedCriterion makes one with them"
            )
        self.tracker = (
            tracker if tracker is not None else Tracker(sinks, every=every, criterion=criterion)
        )
        # Accelerate prepared the model (DDP, FSDP, DeepSpeed): never wrapped a second time.
        self.replicas = distributed.Replicas(model, criterion, wrap=False)
        self._window: list[tuple[LossResult, int | None]] = []

    def __call__(
        self,
        outputs: Any,
        batch: Any,
        *,
        split: str = "train",
        batch_size: int | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> LossResult:
        """The criterion on this batch; every key goes to the tracker under ``split``."""
        res: LossResult = self.criterion(outputs, batch, keys=keys)
        if split != "train" or not torch.is_grad_enabled():
            self.tracker.update(res, split, batch_size=batch_size)
        else:
            # Logged at the step: a gradient balancer's weights are known after aggregation.
            self._window.append((res, batch_size))
        return res

    def accumulate(self) -> contextlib.AbstractContextManager[Any]:
        """``accelerator.accumulate(model)``, with DDP's all-reduce kept off under a
        gradient-level balancer (it reduces the per-key gradients itself)."""
        return self._accumulate()

    @contextlib.contextmanager
    def _accumulate(self) -> Iterator[None]:
        # micro_step(last=True): DDP's own sync unless the reduction is explicit (no_sync).
        with self.accelerator.accumulate(self.model), self.replicas.micro_step(last=True):
            yield

    def backward(self, res: LossResult) -> None:
        """``accelerator.backward(res.total)``, or the gradient balancer's backward pass with the
        same ``1 / gradient_accumulation_steps`` scale."""
        if self.replicas.explicit or capabilities(self.criterion.balancer).owns_backward:
            res.backward(scale=1.0 / self.accelerator.gradient_accumulation_steps)
        else:
            self.accelerator.backward(res.total)

    def step(self, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> bool:
        """At a real optimizer step (``accelerator.sync_gradients``): reduce what DDP does not,
        step and zero the optimizer (and ``scheduler``), step the criterion and log the window;
        returns whether it stepped."""
        if not self.accelerator.sync_gradients:
            return False
        params = [p for group in optimizer.param_groups for p in group["params"]]
        distributed.synchronize_gradients(self.criterion, params if self.replicas.explicit else ())
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad()
        self.criterion.step()
        window, self._window = self._window, []
        for res, size in window:
            self.tracker.update(res, "train", batch_size=size)
        return True
