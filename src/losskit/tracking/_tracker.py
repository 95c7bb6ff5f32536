"""The Tracker: per-split means of logged values, accumulated on the device, written by sinks.

Example::

    >>> import torch
    >>> from losskit.tracking import Tracker
    >>> tracker = Tracker()
    >>> tracker.update({"loss": torch.tensor(1.0)}, batch_size=1)
    >>> tracker.update({"loss": torch.tensor(4.0)}, batch_size=3)
    >>> tracker.flush()[0].values
    {'loss': 3.25}
    >>> tracker.update({"loss": torch.tensor(2.0)}, split="val")
    >>> [(r.split, r.values["loss"]) for r in tracker.end_epoch()]
    [('train', 3.25), ('val', 2.0)]
"""

from __future__ import annotations

import contextlib
import operator
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor

from losskit import _dist
from losskit.errors import ConfigError, LossKitWarning
from losskit.result import LossResult
from losskit.tracking._buffer import Layout, SplitBuffer, Value, Weight, accumulator_dtype
from losskit.tracking._record import Record
from losskit.tracking.sinks._protocol import DurableSink, Sink

__all__ = ["Tracker"]


_Totals = tuple[dict[str, float], dict[str, float], dict[str, tuple[float | None, ...]]]
"""Per split: the weighted sum and the summed weight of every key, and its per-update points."""


def _layout(names: tuple[str, ...], counted: tuple[str, ...]) -> Layout:
    """The layout of ``names`` whose ``loss/<key>`` values are weighed by the counts of the
    ``counted`` keys (a :class:`~losskit.LossResult`'s), in that order."""
    position = {name: j for j, name in enumerate(names)}
    return Layout(names, tuple(position[f"loss/{key}"] for key in counted))


def _detached(values: Iterable[Value]) -> list[Value]:
    """The values, each tensor with a graph detached: it would keep that graph alive until the
    flush."""
    return [v.detach() if isinstance(v, Tensor) and v.requires_grad else v for v in values]


class _ChecksFinite(Protocol):
    def check_finite(self) -> None: ...


class Tracker:
    """Weighted means of logged values per split, per interval and per epoch.

    On an accelerator, ``update`` only keeps references to the detached tensors it is given (no
    kernel, no host sync) and ``flush`` stacks them on the device and copies them to the host
    once. On the CPU, where reading a value waits for nothing and costs less than detaching it,
    ``update`` reads the values at once.
    Under ``torch.distributed`` it first checks that the ranks logged the same keys and then
    sums weighted values and weights over the ranks, so every rank gets the global means. It
    hands one :class:`~losskit.tracking.Record` per split to every sink (on rank 0 only).

    A sink that raises (a full disk, a tracking server down) is warned about once, by name, and
    gets no more records; tracking and training go on. A sink that declares ``critical = True``
    (the JSONL log, the run's source of truth) raises instead.

    Args:
        sinks: where records go (:mod:`losskit.tracking.sinks`, or any object with ``write``
            and ``close``).
        every: flush automatically after this many updates (all splits counted). Under
            ``torch.distributed`` every rank must make the same number of updates, as with any
            collective.
        criterion: a :class:`~losskit.Criterion` (or anything with ``check_finite()``) whose
            deferred non-finite check runs at each flush, after the records are written. When
            it has ``optional_keys`` (a Criterion's optional terms), their ``loss/<key>`` and
            ``weight/<key>`` are declared as ``keys`` are: ranks that saw different optional
            terms in an interval reduce them instead of raising.
        keys: keys a split may lack on some rank in an interval (a term skipped there); they
            are always part of the reduction and count with weight 0 where absent. A key logged
            on no rank in an interval is left out of its record.
        points: keep the value of every update (per-step points, written with each interval
            record). Without points, ranks may make different numbers of updates per split.
        train_split: the split whose updates advance :attr:`step`.
        group: the process group to reduce over (default: the whole world).

    Example::

        >>> import torch
        >>> import losskit as lk
        >>> from losskit.tracking import Tracker
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", weight=0.5)})
        >>> tracker = Tracker(every=2)
        >>> for target in (1.0, 3.0):
        ...     tracker.update(crit(torch.zeros(4), torch.full((4,), target)), batch_size=4)
        >>> tracker.latest()
        {'loss': 6.0, 'loss/a': 5.0, 'loss/b': 2.0, 'weight/a': 1.0, 'weight/b': 0.5}
    """

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        *,
        every: int | None = None,
        criterion: _ChecksFinite | None = None,
        keys: Sequence[str] = (),
        points: bool = True,
        train_split: str = "train",
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ConfigError(f"every must be a positive number of updates or None, got {every!r}")
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise ConfigError(
                    f"{sink!r} is not a sink: a sink needs write(record) and close() methods"
                )
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self.every = every
        self.criterion = criterion
        self.points = points
        self.train_split = train_split
        self.group = group
        optional: Sequence[str] = getattr(criterion, "optional_keys", ())
        declared = [*keys, *(f"{kind}/{k}" for k in optional for kind in ("loss", "weight"))]
        self._declared = tuple(dict.fromkeys(declared))
        self._buffers: dict[str, SplitBuffer] = {}
        # Layouts by (logged names, counted keys) and by (result keys, counted keys).
        self._layouts: dict[tuple[tuple[str, ...], tuple[str, ...]], Layout] = {}
        self._result_layouts: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[Layout, bool]]
        self._result_layouts = {}
        self._step = 0
        self._epoch = 0
        self._since_flush = 0
        self._started = time.monotonic()
        self._elapsed_before = 0.0
        self._epoch_sums: dict[str, dict[str, list[float]]] = {}
        self._epoch_updates: dict[str, int] = {}
        self._latest: dict[str, dict[str, float | None]] = {}
        self._failed: set[int] = set()  # ids of the sinks that raised: they get nothing more
        self._closed = False

    # -- position --------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Updates of :attr:`train_split` so far (or the last ``step=`` given)."""
        return self._step

    @property
    def epoch(self) -> int:
        """Epochs ended so far (the epoch being accumulated)."""
        return self._epoch

    @property
    def elapsed(self) -> float:
        """Seconds of tracking, including those before a :meth:`load_state_dict`."""
        return self._elapsed_before + time.monotonic() - self._started

    # -- accumulation ----------------------------------------------------------------------
    def update(
        self,
        values: LossResult | Mapping[str, Tensor | float],
        split: str = "train",
        batch_size: Tensor | float | None = None,
        *,
        step: int | None = None,
        extra: Mapping[str, Tensor | float] | None = None,
    ) -> None:
        """Add one batch's values to ``split``; no host synchronisation.

        On an accelerator the values are read at the next flush, so a tensor must not be
        modified in place after it is logged (log ``t.clone()`` of a running buffer);
        ``res.log()`` values never are. CPU values are read at once (that waits for nothing).

        Args:
            values: a :class:`~losskit.LossResult` (logged as ``res.log()``) or a mapping from
                name to a scalar tensor or number. A result's ``loss/<key>`` is weighed by
                ``res.counts[key]`` where the result has it (the samples that carried the
                key's label), so that a key's mean is over its own samples.
            batch_size: this batch's weight in the means (a number or a 0-dim tensor, e.g. the
                count of valid tokens) for every value without a count of its own; every update
                weighs 1 when omitted.
            step: the step to record instead of the tracker's own count.
            extra: more named scalars for this update (a learning rate, a metric).
        """
        if self._closed:
            raise ConfigError("this Tracker is closed; create a new one to log more")
        buffer = self._buffers.get(split)
        if buffer is None:
            buffer = self._buffers[split] = SplitBuffer(self._declared)
        row: list[Value]
        counts = values.counts if isinstance(values, LossResult) else {}
        if isinstance(values, LossResult) and not extra and not values.monitored:
            signature = (values.keys(), tuple(counts) if counts else ())
            known = self._result_layouts.get(signature)
            if known is not None and known[1] and buffer.reads(known[0]):
                # CPU values are read now: cheaper than detaching them, and nothing to wait for.
                layout = known[0]
                row = [values.total.item()]
                row += [part.item() for part in values.parts.values()]
                row += [weight.item() for weight in values.weights.values()]
                if counts:
                    row += [count.item() for count in counts.values()]
            else:
                logged = values.log()
                if known is None:
                    # The log's names depend on the result's keys alone: one layout per keys.
                    names = tuple(logged)
                    keys = values.keys()
                    direct = names == (
                        "loss",
                        *(f"loss/{k}" for k in keys),
                        *(f"weight/{k}" for k in keys),
                    )
                    known = (_layout(names, signature[1]), direct)
                    self._result_layouts[signature] = known
                layout = known[0]
                row = list(logged.values())
                if counts:
                    row += _detached(counts.values())
        else:
            mapping = values.log() if isinstance(values, LossResult) else values
            if extra:
                mapping = {**mapping, **extra}
            names = tuple(mapping)
            found = self._layouts.get((names, tuple(counts)))
            if found is None:
                found = self._layouts[names, tuple(counts)] = _layout(names, tuple(counts))
            layout = found
            if buffer.reads(layout):
                row = [
                    v.item() if isinstance(v, Tensor) else v
                    for v in (*mapping.values(), *counts.values())
                ]
            else:
                row = _detached((*mapping.values(), *counts.values()))
        if batch_size is None:
            weight: Weight = 1
        elif isinstance(batch_size, Tensor):
            weight = batch_size.item() if buffer.reads(layout) else batch_size.detach()
        elif isinstance(batch_size, bool) or not batch_size >= 0:
            raise ConfigError(f"batch_size must be a non-negative number, got {batch_size!r}")
        else:
            weight = batch_size
        if split == self.train_split:
            self._step = self._step + 1 if step is None else step
        buffer.add(layout, row, weight, self._step if step is None else step)
        self._since_flush += 1
        if self.every is not None and self._since_flush >= self.every:
            self.flush()

    def flush(self) -> list[Record]:
        """Reduce, write and return one interval record per split updated since the last flush.

        Then runs ``criterion.check_finite()`` when a criterion was given. Under
        ``torch.distributed`` every rank must call it (it is a collective, even when a rank has
        nothing buffered).
        """
        return self._flush(check=True)

    def _flush(self, check: bool) -> list[Record]:
        self._since_flush = 0
        splits = sorted(s for s, b in self._buffers.items() if b.updates)
        distributed = _dist.initialized()
        records: list[Record] = []
        if distributed:
            device = self._device(splits)
            signature: _dist.Signature = [
                (
                    s,
                    sorted(self._buffers[s].names),
                    self._buffers[s].updates if self.points else None,
                )
                for s in splits
            ]
            _dist.check_agreement(signature, self.group, device)
        if splits:
            records = self._reduce(splits, distributed)
            for split in splits:
                self._buffers[split].reset()
            self._write(records)
        if check and self.criterion is not None:
            self.criterion.check_finite()
        return records

    def _device(self, splits: Sequence[str]) -> torch.device:
        for split in splits:
            device = self._buffers[split].device
            if device is not None:
                return device
        return torch.device("cpu")

    def _reduce(self, splits: Sequence[str], distributed: bool) -> list[Record]:
        """Every split's per-key sums, weights and points, on the host after one transfer."""
        gather = self._gather_distributed if distributed else self._gather_local
        totals = gather(splits)
        now, elapsed = time.time(), self.elapsed
        world = _dist.world_size(self.group) if distributed else 1
        records: list[Record] = []
        for split, (sums, counts, points) in zip(splits, totals):
            kept = [k for k in sums if counts[k] > 0]  # a key counted 0 times has no mean
            means = {k: sums[k] / counts[k] for k in kept}
            epoch = self._epoch_sums.setdefault(split, {})
            for k in kept:
                acc = epoch.setdefault(k, [0.0, 0.0])
                acc[0] += sums[k]
                acc[1] += counts[k]
            updates = self._buffers[split].updates
            self._epoch_updates[split] = self._epoch_updates.get(split, 0) + updates
            self._latest[split] = dict(means)
            records.append(
                Record(
                    kind="interval",
                    split=split,
                    step=self._step,
                    epoch=self._epoch,
                    time=now,
                    elapsed=elapsed,
                    count=self._batch_count(split, {k: counts[k] for k in kept}),
                    updates=updates,
                    values=means,
                    steps=tuple(self._buffers[split].steps) if self.points else (),
                    points={k: points[k] for k in kept if k in points},
                    world=world,
                )
            )
        return records

    def _gather_local(self, splits: Sequence[str]) -> list[_Totals]:
        """One process: bring the values to the host as they are and sum them there."""
        device = self._device(splits)
        dtype = accumulator_dtype(device)  # one dtype: fp16 values must not narrow the weights
        pieces = [t.to(device, dtype) for split in splits for t in self._buffers[split].tensors()]
        host: list[float] = torch.cat(pieces).tolist() if pieces else []  # the one host sync
        at = 0
        totals: list[_Totals] = []
        for split in splits:
            buffer = self._buffers[split]
            at = buffer.take(host, at)
            columns, weights, counted = buffer.columns()
            total_weight = sum(weights)
            sums: dict[str, float] = {}
            counts: dict[str, float] = {}
            points: dict[str, tuple[float | None, ...]] = {}
            for key in sorted(columns):  # the split's key order
                column, name = columns[key], buffer.names[key]
                if key in counted:  # weighed by its counts; a value counted 0 times is absent
                    pairs = [(v, c) for v, c in zip(column, counted[key]) if v is not None and c]
                    sums[name] = sum(v * c for v, c in pairs)
                    counts[name] = sum(c for _, c in pairs)
                    column = [v if c > 0 else None for v, c in zip(column, counted[key])]
                elif None in column:
                    pairs = [(v, w) for v, w in zip(column, weights) if v is not None]
                    sums[name] = sum(v * w for v, w in pairs)
                    counts[name] = sum(w for _, w in pairs)
                else:
                    full: list[float] = column  # type: ignore[assignment]
                    sums[name] = sum(map(operator.mul, full, weights))
                    counts[name] = total_weight
                if self.points:
                    points[name] = tuple(column)
            totals.append((sums, counts, points))
        return totals

    def _gather_distributed(self, splits: Sequence[str]) -> list[_Totals]:
        """Several processes: sum weighted values and weights over ranks, then divide."""
        device = self._device(splits)
        dtype = accumulator_dtype(device)
        payload: list[Tensor] = []
        layout: list[tuple[list[str], int]] = []
        for split in splits:
            buffer = self._buffers[split]
            values, weights = buffer.dense(dtype)
            names = list(buffer.names)
            order = sorted(range(len(names)), key=names.__getitem__)  # the agreed key order
            names = [names[i] for i in order]
            values, weights = values[:, order].to(device), weights[:, order].to(device)
            weighted = values * weights
            if not self.points:
                weighted, weights = weighted.sum(0, keepdim=True), weights.sum(0, keepdim=True)
            payload += [weighted.T.reshape(-1), weights.T.reshape(-1)]
            layout.append((names, buffer.updates if self.points else 1))
        reduced = _dist.all_reduce_sum(torch.cat(payload), self.group)
        host: list[float] = reduced.tolist()  # the flush's one host sync
        at = 0
        totals: list[_Totals] = []
        for names, rows in layout:
            size = rows * len(names)
            weighted_host, weights_host = host[at : at + size], host[at + size : at + 2 * size]
            at += 2 * size
            sums: dict[str, float] = {}
            counts: dict[str, float] = {}
            points: dict[str, tuple[float | None, ...]] = {}
            for k, name in enumerate(names):
                column = weighted_host[k * rows : (k + 1) * rows]
                column_weights = weights_host[k * rows : (k + 1) * rows]
                sums[name], counts[name] = sum(column), sum(column_weights)
                if self.points:
                    points[name] = tuple(
                        s / w if w > 0 else None for s, w in zip(column, column_weights)
                    )
            totals.append((sums, counts, points))
        return totals

    def end_epoch(self) -> list[Record]:
        """Flush, then write and return one epoch record per split updated in this epoch.

        The epoch means weigh every update by its batch size across all flushes of the epoch
        (and all ranks). Under ``torch.distributed`` every rank must call it.
        """
        self.flush()
        records = [
            self._epoch_record(split, sums)
            for split, sums in sorted(self._epoch_sums.items())
            if self._epoch_updates.get(split)
        ]
        self._write(records)
        self._epoch_sums, self._epoch_updates = {}, {}
        self._epoch += 1
        return records

    def _epoch_record(self, split: str, sums: Mapping[str, list[float]]) -> Record:
        return Record(
            kind="epoch",
            split=split,
            step=self._step,
            epoch=self._epoch,
            time=time.time(),
            elapsed=self.elapsed,
            count=self._batch_count(split, {k: c for k, (_, c) in sums.items()}),
            updates=self._epoch_updates[split],
            values={key: s / c for key, (s, c) in sums.items() if c > 0},
            world=_dist.world_size(self.group),
        )

    def _batch_count(self, split: str, weights: Mapping[str, float]) -> float:
        """The summed batch weight behind a record: the largest summed weight of a key that
        no count weighs (a key's count may be of other units, such as tokens)."""
        buffer = self._buffers.get(split)
        counted = {buffer.names[i] for i in buffer.counted} if buffer is not None else set()
        batch = [w for k, w in weights.items() if k not in counted]
        return max(batch or weights.values(), default=0.0)

    def latest(self, split: str = "train") -> dict[str, float | None]:
        """The means of ``split`` in its most recent interval record (empty before any)."""
        return dict(self._latest.get(split, {}))

    def _write(self, records: Sequence[Record]) -> None:
        if _dist.rank() != 0:
            return
        for record in records:
            for sink in self.sinks:
                self._guarded(sink, "write", lambda: sink.write(record))  # noqa: B023

    def _guarded(self, sink: Sink, action: str, call: Callable[[], None]) -> None:
        """``call()``; when a sink that is not critical raises, warn once and drop the sink."""
        if id(sink) in self._failed:
            return
        if getattr(sink, "critical", False):
            call()
            return
        try:
            call()
        except Exception as exc:  # any failure of a mirror must not stop training
            self._failed.add(id(sink))
            warnings.warn(
                f"the sink {sink!r} failed to {action} ({type(exc).__name__}: {exc}); it gets no "
                "more records in this run, training goes on and the JSONL log keeps every value",
                LossKitWarning,
                stacklevel=2,
            )

    def sync(self) -> None:
        """Put what the sinks wrote on disk (each :class:`~losskit.tracking.sinks.DurableSink`'s
        ``sync``); values not yet flushed stay buffered. Call it before writing a checkpoint."""
        for sink in self.sinks:
            if isinstance(sink, DurableSink):
                self._guarded(sink, "sync", sink.sync)

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            if id(sink) in self._failed:
                with contextlib.suppress(Exception):  # it warned already; release what it can
                    sink.close()
            else:
                self._guarded(sink, "close", sink.close)

    # -- lifecycle -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position and epoch sums to resume from (values since the last flush are not kept).

        Flush before saving to keep every logged value; sinks appending to the same run
        directory then continue the same files.
        """
        return {
            "step": self._step,
            "epoch": self._epoch,
            "elapsed": self.elapsed,
            "epoch_sums": {
                s: {k: list(v) for k, v in d.items()} for s, d in self._epoch_sums.items()
            },
            "epoch_updates": dict(self._epoch_updates),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`: step, epoch, elapsed time and the epoch's sums."""
        try:
            self._step = int(state["step"])
            self._epoch = int(state["epoch"])
            self._elapsed_before = float(state["elapsed"])
            self._epoch_sums = {
                str(s): {str(k): [float(v[0]), float(v[1])] for k, v in d.items()}
                for s, d in state.get("epoch_sums", {}).items()
            }
            self._epoch_updates = {
                str(s): int(n) for s, n in state.get("epoch_updates", {}).items()
            }
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(
                f"not a Tracker state_dict ({exc!r}); pass Tracker.state_dict()"
            ) from exc
        self._started = time.monotonic()

    def close(self) -> None:
        """Flush what is buffered and close every sink (a collective under distribution)."""
        if self._closed:
            return
        try:
            if any(b.updates for b in self._buffers.values()) or _dist.initialized():
                self.flush()
        finally:
            self._closed = True
            self._close_sinks()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # Keep what was logged up to the failure; under distribution the other ranks may not
        # reach a flush, so no collective is attempted there.
        try:
            if not _dist.initialized():
                self._flush(check=False)
        finally:
            self._closed = True
            self._close_sinks()

    def __repr__(self) -> str:
        return (
            f"Tracker(sinks={list(self.sinks)!r}, every={self.every!r}, step={self._step}, "
            f"epoch={self._epoch})"
        )
