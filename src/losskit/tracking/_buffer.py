"""The values of one split since the last flush.

On an accelerator an update only appends references to the (detached, 0-dim) tensors it
received: no kernel, no host sync. Every ``_COMPACT_EVERY`` updates, and at a flush, the rows are
stacked into one ``(updates, keys)`` matrix per chunk on the device, copied to the host once at
the flush; a column holding the same tensor in every row (a weight that did not change: the
criterion hands out the same view) is kept once. On the CPU the rows hold numbers, read when the
update was made (reading a CPU tensor waits for nothing); chunks are their columns. Either way
the Python objects held stay bounded however long an interval is.

A value normally weighs what its row weighs (the update's batch size). A layout may name values
that carry their own weight instead, a count (how many samples a key's value averages, which a
:class:`~losskit.LossResult` reports per key): the row then ends with those counts, kept in a
chunk's ``counts`` columns and reduced with the values as their weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from losskit.errors import ConfigError

_COMPACT_EVERY = 256

Value = Tensor | float | int
Weight = Tensor | float | int


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it: sums over long intervals keep their digits."""
    return torch.float32 if device.type == "mps" else torch.float64


def reads_on_host(device: torch.device) -> bool:
    """Whether values on ``device`` are read one by one at compaction (the CPU: reading is a
    memory load) rather than stacked and copied once at the flush (an accelerator)."""
    return device.type == "cpu"


class Layout:
    """The names of a row's values; rows are matched to layouts by identity (cheap per update).

    ``counted`` holds the positions (in ``names``) of the values weighed by a count of their
    own: a row holds the value of every name, then one count per entry of ``counted``.
    """

    __slots__ = ("counted", "names")

    def __init__(self, names: tuple[str, ...], counted: tuple[int, ...] = ()) -> None:
        self.names = names
        self.counted = counted


@dataclass
class Chunk:
    """Consecutive rows of one layout.

    ``varying`` holds the key index of each column of ``values``; ``constant`` the key index of
    each entry of ``constants``, equal in every row. ``weights`` holds each row's weight;
    ``counted`` the key index of each column of ``counts``, the weights of that key's values in
    place of the row's. On an accelerator, ``values`` (and ``counts``) are stacked
    ``(rows, columns)`` tensors until the flush's one transfer; on the CPU, where reading a
    0-dim tensor costs less than stacking it and synchronises nothing, they are host columns
    (one list per key) from the start.
    """

    rows: int
    varying: list[int]
    values: Tensor | list[list[float]]
    constant: list[int]
    constants: Tensor | list[float]
    weights: Tensor | list[float]
    counted: list[int]
    counts: Tensor | list[list[float]]

    def tensors(self) -> list[Tensor]:
        """What still lives on the device, flattened key-major, in the order :meth:`take` reads."""
        out = []
        if isinstance(self.values, Tensor):
            out.append(self.values.T.reshape(-1))
        if isinstance(self.constants, Tensor):
            out.append(self.constants.reshape(-1))
        if isinstance(self.weights, Tensor):
            out.append(self.weights.reshape(-1))
        if isinstance(self.counts, Tensor):
            out.append(self.counts.T.reshape(-1))
        return out

    def take(self, host: list[float], at: int) -> int:
        """Replace the device tensors by their values from ``host[at:]``; return the new ``at``."""
        n = self.rows
        if isinstance(self.values, Tensor):
            self.values = [host[at + i * n : at + (i + 1) * n] for i in range(len(self.varying))]
            at += n * len(self.varying)
        if isinstance(self.constants, Tensor):
            self.constants = host[at : at + len(self.constant)]
            at += len(self.constant)
        if isinstance(self.weights, Tensor):
            self.weights = host[at : at + n]
            at += n
        if isinstance(self.counts, Tensor):
            self.counts = [host[at + i * n : at + (i + 1) * n] for i in range(len(self.counted))]
            at += n * len(self.counted)
        return at


class SplitBuffer:
    """Rows of values of one split, their batch weights and steps, since the last flush."""

    __slots__ = (
        "_columns",
        "_layouts",
        "_rows",
        "_weights",
        "chunks",
        "counted",
        "device",
        "index",
        "names",
        "on_host",
        "steps",
    )

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self.counted: set[int] = set()  # keys that some layout weighs by counts
        self.device: torch.device | None = None
        self.on_host = True  # until a tensor shows where the split lives
        self.steps: list[int] = []
        self.chunks: list[Chunk] = []
        self._columns: dict[Layout, list[int]] = {}
        self._rows: list[Sequence[Value]] = []
        self._layouts: list[Layout] = []
        self._weights: list[Weight] = []

    @property
    def updates(self) -> int:
        """Updates buffered since the last reset."""
        return len(self.steps)

    def reads(self, layout: Layout) -> bool:
        """Whether rows of this (already seen) layout are read on the host when added: the
        split lives on the CPU. A new layout is first added as tensors, to be checked."""
        return self.on_host and layout in self._columns

    def add(self, layout: Layout, values: Sequence[Value], weight: Weight, step: int) -> None:
        """Buffer one update: ``values[i]`` is the value of ``layout.names[i]``, followed by the
        counts of ``layout.counted``."""
        if layout not in self._columns:
            self._learn(layout, values)
            if self.on_host:
                values = [v.item() if isinstance(v, Tensor) else v for v in values]
                weight = weight.item() if isinstance(weight, Tensor) else weight
        self._rows.append(values)
        self._layouts.append(layout)
        self._weights.append(weight)
        self.steps.append(step)
        if len(self._rows) >= _COMPACT_EVERY:
            self.compact()

    def _learn(self, layout: Layout, values: Sequence[Value]) -> None:
        """Register a new layout: new keys get the next columns (the order stays fixed)."""
        for name, value in zip(layout.names, values):
            if not isinstance(name, str):
                raise ConfigError(f"logged names must be strings, got {name!r}")
            self._check(f"logged value {name!r}", value)
        counts = values[len(layout.names) :]
        for position, count in zip(layout.counted, counts, strict=True):
            self._check(f"the count of {layout.names[position]!r}", count)
        for name in layout.names:
            if name not in self.index:
                self.index[name] = len(self.names)
                self.names.append(name)
        self._columns[layout] = [self.index[name] for name in layout.names]
        self.counted.update(self.index[layout.names[j]] for j in layout.counted)

    def _check(self, what: str, value: Value) -> None:
        """Refuse what is not a real scalar; the first tensor shows where the split lives."""
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ConfigError(
                    f"{what} must be a scalar, got a tensor of shape "
                    f"{tuple(value.shape)}; log a reduction such as .mean()"
                )
            if value.is_complex():
                raise ConfigError(f"{what} is complex; log a real scalar")
            if self.device is None:
                self.device = value.device
                self.on_host = reads_on_host(value.device)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{what} must be a scalar tensor or a number, got {type(value).__name__}"
            )

    def compact(self) -> None:
        """Turn the buffered rows into chunks: stacked on an accelerator (no host sync), read
        into host columns on the CPU."""
        if not self._rows:
            return
        device = self.device if self.device is not None else torch.device("cpu")
        on_host = self.on_host
        start = 0
        while start < len(self._rows):
            layout = self._layouts[start]
            stop = start + 1
            while stop < len(self._rows) and self._layouts[stop] is layout:
                stop += 1
            rows = self._rows[start:stop]
            first = rows[0]
            width = len(layout.names)  # then the counts
            weights = self._weights[start:stop]
            values: Tensor | list[list[float]]
            constants: Tensor | list[float]
            weights_out: Tensor | list[float]
            counts: Tensor | list[list[float]]
            if on_host:  # the rows hold numbers already
                same, varying = [], list(range(width))
                host = [list(column) for column in zip(*rows)]
                values, counts = host[:width], host[width:]
                constants = []
                weights_out = [float(w) for w in weights]
            else:
                same = [j for j, v in enumerate(first[:width]) if all(r[j] is v for r in rows)]
                varying = [j for j in range(width) if j not in same]
                flat = [row[j] for row in rows for j in varying]
                values = _stack(flat, device).view(stop - start, len(varying))
                constants = _stack([first[j] for j in same], device)
                if any(isinstance(w, Tensor) for w in weights):
                    weights_out = _stack(weights, device)
                else:
                    weights_out = [float(w) for w in weights]
                counts = []
                if layout.counted:
                    flat = [c for row in rows for c in row[width:]]
                    counts = _stack(flat, device).view(stop - start, len(layout.counted))
            columns = self._columns[layout]
            self.chunks.append(
                Chunk(
                    rows=stop - start,
                    varying=[columns[j] for j in varying],
                    values=values,
                    constant=[columns[j] for j in same],
                    constants=constants,
                    weights=weights_out,
                    counted=[columns[j] for j in layout.counted],
                    counts=counts,
                )
            )
            start = stop
        self._rows, self._layouts, self._weights = [], [], []

    def tensors(self) -> list[Tensor]:
        """Compact, then list what must come to the host (see :meth:`take`)."""
        self.compact()
        return [t for chunk in self.chunks for t in chunk.tensors()]

    def take(self, host: list[float], at: int) -> int:
        """Read this buffer's device values from ``host[at:]`` (after :meth:`tensors`)."""
        for chunk in self.chunks:
            at = chunk.take(host, at)
        return at

    def columns(
        self,
    ) -> tuple[dict[int, list[float | None]], list[float], dict[int, list[float]]]:
        """Host columns by key index (``None`` where a row lacks the key), the row weights, and
        the weight column of every key some row counts (its count there, the row's weight
        elsewhere); call after :meth:`take`."""
        n = self.updates
        columns: dict[int, list[float | None]] = {}
        weights: list[float] = []
        row = 0
        for chunk in self.chunks:
            assert not isinstance(chunk.values, Tensor)
            assert not isinstance(chunk.constants, Tensor)
            assert not isinstance(chunk.weights, Tensor)
            stop = row + chunk.rows
            for key, values in zip(chunk.varying, chunk.values):
                column = columns.get(key)
                if column is None:
                    if row == 0 and stop == n:
                        columns[key] = list(values)
                        continue
                    column = columns[key] = [None] * n
                column[row:stop] = values
            for key, value in zip(chunk.constant, chunk.constants):
                column = columns.get(key)
                if column is None:
                    column = columns[key] = [None] * n
                column[row:stop] = [value] * chunk.rows
            weights += chunk.weights
            row = stop
        return columns, weights, self._count_columns()

    def _count_columns(self) -> dict[int, list[float]]:
        counted: dict[int, list[float]] = {}
        for key in sorted({key for chunk in self.chunks for key in chunk.counted}):
            column: list[float] = []
            for chunk in self.chunks:
                assert not isinstance(chunk.counts, Tensor)
                assert not isinstance(chunk.weights, Tensor)
                if key in chunk.counted:
                    column += chunk.counts[chunk.counted.index(key)]
                else:
                    column += chunk.weights
            counted[key] = column
        return counted

    def dense(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(values, weights)``, each ``(updates, keys)`` in the order of :attr:`names`, on the
        device; an absent key has value 0 and weight 0 in its row, a counted key its count."""
        self.compact()
        device = self.device if self.device is not None else torch.device("cpu")
        width = len(self.names)
        values, weights = [], []
        for chunk in self.chunks:
            block = torch.zeros(chunk.rows, width, dtype=dtype, device=device)
            present = torch.zeros(chunk.rows, width, dtype=dtype, device=device)
            if chunk.varying:
                data = chunk.values
                part = data if isinstance(data, Tensor) else torch.tensor(data, dtype=dtype).T
                block[:, chunk.varying] = part.to(device, dtype)
                present[:, chunk.varying] = 1
            if chunk.constant:
                part = torch.as_tensor(chunk.constants, dtype=dtype)
                block[:, chunk.constant] = part.to(device)
                present[:, chunk.constant] = 1
            w = torch.as_tensor(chunk.weights, dtype=dtype).to(device).reshape(-1, 1)
            weighed = present * w
            if chunk.counted:
                data = chunk.counts
                part = data if isinstance(data, Tensor) else torch.tensor(data, dtype=dtype).T
                counts = part.to(device, dtype)
                weighed[:, chunk.counted] = counts
                # A value counted 0 times stands for no sample: whatever it is, it adds nothing.
                block[:, chunk.counted] = block[:, chunk.counted].where(counts > 0, 0.0)
            values.append(block)
            weights.append(weighed)
        return torch.cat(values), torch.cat(weights)

    def reset(self) -> None:
        """Forget the buffered values; the key order is kept."""
        self.steps = []
        self.chunks = []
        self._rows, self._layouts, self._weights = [], [], []


def _stack(flat: Sequence[Value], device: torch.device) -> Tensor:
    if not flat:
        return torch.zeros(0, device=device)
    try:
        return torch.stack(flat)  # type: ignore[arg-type]
    except (TypeError, RuntimeError):
        pass  # numbers, mixed devices or (1,)-shaped values: take the general path
    dtype = accumulator_dtype(device)
    return torch.stack([torch.as_tensor(v, device=device).to(dtype).reshape(()) for v in flat])
