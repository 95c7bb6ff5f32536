"""A Criterion in a PyTorch Lightning ``LightningModule``: one mixin, every key logged the same way.

:class:`LossKitMixin` gives a ``LightningModule``

* :meth:`~LossKitMixin.losses`: evaluates the criterion and logs ``<split>/loss``,
  ``<split>/loss/<key>`` and ``<split>/weight/<key>``, **all with the same** ``on_step`` /
  ``on_epoch`` settings and ``sync_dist=True`` (components logged with other settings than the
  total deadlock DDP at the first epoch end, terratorch#982), weighted by the batch size, so
  the epoch means are global means across processes;
* schedules and balancers stepped once per optimizer step (``Criterion.step()`` when
  ``trainer.global_step`` advances, also under ``accumulate_grad_batches``);
* the learnable parameters of the criterion averaged across processes, and gradient-level
  balancers (``upgrad``, ``mgda``, ...): the mixin does their backward pass, keeps DDP's own
  all-reduce off, and before each optimizer step averages every key's gradient of the shared
  parameters over the processes and aggregates once
  (:func:`losskit.engine.distributed.synchronize_gradients`).

Put the mixin first in the bases and assign ``self.criterion``::

    class Model(LossKitMixin, lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = ...
            self.criterion = lk.Criterion({...})

        def training_step(self, batch, batch_idx):
            return self.losses(self.net(batch["x"]), batch, "train").total

        def validation_step(self, batch, batch_idx):
            self.losses(self.net(batch["x"]), batch, "val")

A mixin rather than a callback because the backward pass of a gradient-level balancer must
replace the module's ``backward`` hook. It overrides ``backward``, ``on_train_start``,
``on_train_batch_start``, ``on_train_batch_end`` and ``on_before_optimizer_step`` (call
``super()`` in your own versions of these).

Example::

    >>> import torch, lightning, losskit as lk
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from losskit.integrations.lightning import LossKitMixin
    >>> class Model(LossKitMixin, lightning.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = torch.nn.Linear(3, 1)
    ...         self.criterion = lk.Criterion({"mse": lk.Term("mse", target=1)})
    ...     def training_step(self, batch, batch_idx):
    ...         return self.losses(self.net(batch[0]).squeeze(-1), batch).total
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> data = DataLoader(TensorDataset(torch.randn(12, 3), torch.randn(12)), batch_size=4)
    >>> trainer = lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
    ...                             enable_progress_bar=False, enable_model_summary=False)
    >>> trainer.fit(Model(), data)
    >>> sorted(k for k in trainer.callback_metrics if not k.endswith(("_step", "_epoch")))
    ['train/loss', 'train/loss/mse', 'train/weight/mse']
    >>> sorted(trainer.progress_bar_metrics)   # the total and each key, step and epoch
    ['train/loss/mse_epoch', 'train/loss/mse_step', 'train/loss_epoch', 'train/loss_step']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from losskit.criterion import Criterion
from losskit.engine import distributed
from losskit.errors import ConfigError, MissingDependencyError
from losskit.result import LossResult

try:
    import lightning  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError(
        "losskit.integrations.lightning needs PyTorch Lightning: pip install 'losskit[lightning]'"
    ) from exc

__all__ = ["LossKitMixin"]


def _batch_size(batch: Any) -> int | None:
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, Tensor):
        return int(values.shape[0]) if values.ndim else None
    if isinstance(values, (list, tuple)) or isinstance(batch, Mapping):
        for value in values:
            if isinstance(value, Tensor) and value.ndim:
                return int(value.shape[0])
    return None


class LossKitMixin:
    """Log, step and reduce a :class:`~losskit.Criterion` the same way on every process.

    Class attributes (override in the subclass):

    * ``losskit_on_step`` (default ``None``: every step in training, not in validation, as
      Lightning's own ``self.log``; under DDP each step-level value is an all-reduce per key
      per step) and ``losskit_on_epoch`` (default ``True``): the settings **every** logged key
      of a split gets. With both, Lightning logs ``<name>_step`` and ``<name>_epoch``.
    * ``losskit_prog_bar`` (default ``True``): show the total and each key
      (``<split>/loss``, ``<split>/loss/<key>``) on the progress bar.

    To turn them off, set them in the subclass::

        class Model(LossKitMixin, lightning.LightningModule):
            losskit_on_step = False    # epoch means only (no step-level host syncs)
            losskit_prog_bar = False   # nothing on the progress bar
    """

    criterion: Criterion
    losskit_on_step: bool | None = None
    losskit_on_epoch: bool = True
    losskit_prog_bar: bool = True
    _losskit_last: LossResult | None = None
    _losskit_seen_step: int

    # -- what the user calls ----------------------------------------------------------------
    def losses(
        self,
        outputs: Any,
        batch: Any,
        split: str = "train",
        *,
        batch_size: int | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> LossResult:
        """The criterion on this batch, every key logged under ``<split>/``."""
        criterion = self._losskit_criterion()
        res: LossResult = criterion(outputs, batch, keys=keys)
        size = batch_size if batch_size is not None else _batch_size(batch)
        values = res.log(f"{split}/")
        if split == "train" and torch.is_grad_enabled():
            self._losskit_last = res
            if self._losskit_gradient_level():
                # The weights are known once the step's gradients are aggregated: logged then.
                self.__dict__.setdefault("_losskit_window", []).append((res, size or 1))
                values = {k: v for k, v in values.items() if "/weight/" not in k}
        self._losskit_log(values, size, split)
        return res

    def _losskit_log(self, values: Mapping[str, Tensor], size: int | None, split: str) -> None:
        # One setting for every key of a split: keys logged otherwise deadlock DDP
        # (terratorch#982). The progress bar shows the total and each key, not the weights.
        on_step = self.losskit_on_step if self.losskit_on_step is not None else split == "train"
        # Lists, in the result's order: every rank must log (and so all-reduce) the keys in the
        # same order; a set's order changes with each process's string hashing.
        shown = [k for k in values if k.startswith(f"{split}/loss")]
        rest = [k for k in values if not k.startswith(f"{split}/loss")]
        for part, bar in ((shown, self.losskit_prog_bar), (rest, False)):
            if part:
                self.log_dict(  # type: ignore[attr-defined]
                    {k: values[k] for k in part},
                    on_step=on_step,
                    on_epoch=self.losskit_on_epoch,
                    sync_dist=True,
                    batch_size=size,
                    prog_bar=bar,
                )

    # -- Lightning hooks -----------------------------------------------------------------------
    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """The gradient-level balancer's backward pass for the result of this step, or the
        ordinary one (through DDP's all-reduce)."""
        if not self._losskit_gradient_level():
            super().backward(loss, *args, **kwargs)  # type: ignore[misc]
            return
        res, self._losskit_last = self._losskit_last, None
        if res is None:
            raise ConfigError(
                "a gradient-level balancer needs its LossResult: compute the training loss with "
                "self.losses(outputs, batch, 'train') and return its .total from training_step"
            )
        # Lightning divides the returned loss by accumulate_grad_batches: the same scale here.
        res.backward(scale=1.0 / self.trainer.accumulate_grad_batches)  # type: ignore[attr-defined]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average what DDP does not (the criterion's parameters; a gradient-level balancer's
        per-key gradients, then aggregated once) across processes."""
        gradient = self._losskit_gradient_level()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        distributed.synchronize_gradients(self._losskit_criterion(), params if gradient else ())
        window: list[tuple[LossResult, int]] = self.__dict__.pop("_losskit_window", [])
        if window:
            # The window's weights, each micro-batch's by its share of the samples.
            total = sum(size for _, size in window)
            weights: dict[str, Tensor] = {}
            for res, size in window:
                for key, weight in res.weights.items():
                    name = f"train/weight/{key}"
                    share = weight * (size / total)
                    weights[name] = weights[name] + share if name in weights else share
            self._losskit_log(weights, total, "train")
        parent = getattr(super(), "on_before_optimizer_step", None)
        if parent is not None:
            parent(optimizer)

    def on_train_start(self) -> None:
        """Start counting optimizer steps where the trainer is (a resumed run included); refuse
        a gradient-level balancer under fp16 mixed precision."""
        precision = str(getattr(self.trainer, "precision", ""))  # type: ignore[attr-defined]
        if self._losskit_gradient_level() and precision in ("16", "16-mixed"):
            raise ConfigError(
                f"a gradient-level balancer does its own backward pass, which Lightning's fp16 "
                f"loss scaler (precision={precision!r}) does not see (its unscale would shrink "
                "the update): use precision='bf16-mixed' or '32-true'"
            )
        self._losskit_seen_step = int(self.trainer.global_step)  # type: ignore[attr-defined]
        parent = getattr(super(), "on_train_start", None)
        if parent is not None:
            parent()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        """With a gradient-level balancer, keep DDP's all-reduce off (before the forward pass,
        where DDP decides): the balancer reduces the per-key gradients itself."""
        if self._losskit_gradient_level():
            self._losskit_ddp_sync(False)
        parent = getattr(super(), "on_train_batch_start", None)
        return parent(batch, batch_idx) if parent is not None else None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Step the criterion's schedules and balancer once per optimizer step."""
        step = int(self.trainer.global_step)  # type: ignore[attr-defined]
        if step != getattr(self, "_losskit_seen_step", 0):
            self._losskit_seen_step = step
            self._losskit_criterion().step()
        parent = getattr(super(), "on_train_batch_end", None)
        if parent is not None:
            parent(outputs, batch, batch_idx)

    # -- internals ------------------------------------------------------------------------------
    def _losskit_criterion(self) -> Criterion:
        criterion = getattr(self, "criterion", None)
        if not isinstance(criterion, Criterion):
            raise ConfigError(
                f"{type(self).__name__} uses LossKitMixin but has no losskit Criterion in "
                f"self.criterion (found {type(criterion).__name__}); assign one in __init__"
            )
        return criterion

    def _losskit_gradient_level(self) -> bool:
        from losskit.balancers import capabilities

        return capabilities(self._losskit_criterion().balancer).owns_backward

    def _losskit_ddp_sync(self, enabled: bool) -> None:
        # DDP's all-reduce would average the unaggregated gradients; the balancer reduces.
        wrapped = getattr(getattr(self, "trainer", None), "strategy", None)
        model = getattr(wrapped, "model", None)
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model.require_backward_grad_sync = enabled
