"""One written unit of a run's log: the means of one split over one interval or one epoch.

A :class:`~losskit.tracking.Tracker` hands records to its sinks; :func:`~losskit.tracking.load`
reads them back. The JSON form is strict JSON: non-finite values are the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``, and a key absent at a step is ``null``. A key whose points
are all equal in a record (a constant weight) is written as that one value instead of a list.

Example::

    >>> from losskit.tracking import Record
    >>> rec = Record(kind="interval", split="train", step=2, epoch=0, time=0.0, elapsed=1.5,
    ...              count=64.0, updates=2, values={"loss": 0.5}, steps=(1, 2),
    ...              points={"loss": (0.6, 0.4)})
    >>> Record.from_json(rec.to_json()) == rec
    True
    >>> rec.to_json()[:48]
    '{"kind":"interval","split":"train","step":2,"epo'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = ["Kind", "Record"]

Kind: TypeAlias = Literal["interval", "epoch"]
"""``"interval"``: the updates since the previous flush; ``"epoch"``: one whole epoch."""

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)  # a bool or an int logged as a value is written as a number
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _number(value: float | None) -> str:
    return json.dumps(_encode(value), allow_nan=False)


def _points(values: tuple[float | None, ...]) -> str:
    """A key's points as JSON: one number when all are equal, else a list."""
    first = values[0]
    if first is not None and len(values) > 1 and values.count(first) == len(values):
        return _number(first)
    try:
        text = ("%.9g," * len(values)) % values
    except TypeError:  # an absent value (None)
        text = "n"
    if "n" in text:  # nan, inf or None: the careful path
        return "[" + ",".join(_number(v) for v in values) + "]"
    return "[" + text[:-1] + "]"


def _decode(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value in _NONFINITE:
            return _NONFINITE[value]
        raise ValueError(f"{what}: expected a number, null or 'NaN'/'Infinity', got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Record:
    """The means of every key of one split over one interval (a flush) or one epoch.

    Args:
        kind: ``"interval"`` or ``"epoch"``.
        step: the tracker's step when the record was made (training updates so far).
        time: wall-clock time (seconds since the epoch) when it was made.
        elapsed: seconds of tracking so far, carried over a resume by the tracker's state.
        count: the summed batch weight behind the means (updates when no batch size is given).
        updates: how many updates the record covers.
        values: the weighted mean of every key (``None``: the key was never logged in it).
        steps: the step of every update of an interval record (empty for an epoch record).
        points: per key, the value at each of ``steps`` (``None`` where the key was absent).
        world: how many processes the values were reduced over.
    """

    kind: Kind
    split: str
    step: int
    epoch: int
    time: float
    elapsed: float
    count: float
    updates: int
    values: Mapping[str, float | None]
    steps: tuple[int, ...] = ()
    points: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    world: int = 1

    def to_json(self) -> str:
        """One line of strict JSON (no newline).

        Points are written with 9 significant digits (exact for float32 values, and about twice
        as fast to format as Python's shortest round-trip repr); means keep every digit.
        """
        head: dict[str, Any] = {
            "kind": self.kind,
            "split": self.split,
            "step": self.step,
            "epoch": self.epoch,
            "time": self.time,
            "elapsed": self.elapsed,
            "count": self.count,
            "updates": self.updates,
            "world": self.world,
            "values": dict(self.values),
        }
        try:
            text = json.dumps(head, separators=(",", ":"), allow_nan=False)
        except ValueError:  # a non-finite value: spell it as a string (rare, so checked late)
            head["count"] = _encode(self.count)
            head["values"] = {k: _encode(v) for k, v in self.values.items()}
            text = json.dumps(head, separators=(",", ":"), allow_nan=False)
        if not self.steps:
            return text
        steps = ",".join(map(str, self.steps))
        points = ",".join(f"{json.dumps(k)}:{_points(v)}" for k, v in self.points.items())
        return f'{text[:-1]},"steps":[{steps}],"points":{{{points}}}}}'

    @classmethod
    def from_json(cls, line: str) -> Record:
        """Parse one line written by :meth:`to_json`; raises ``ValueError`` when it is not one."""
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        missing = {"kind", "split", "step", "epoch", "values"} - obj.keys()
        if missing:
            raise ValueError(f"missing field(s) {sorted(missing)}")
        kind = obj["kind"]
        if kind not in ("interval", "epoch"):
            raise ValueError(f"kind must be 'interval' or 'epoch', got {kind!r}")
        values = obj["values"]
        if not isinstance(values, dict):
            raise ValueError("'values' must be an object")
        steps = [int(s) for s in obj.get("steps", [])]
        points = obj.get("points", {})
        if not isinstance(points, dict):
            raise ValueError("'points' must be an object")
        points = {k: v if isinstance(v, list) else [v] * len(steps) for k, v in points.items()}
        if any(len(v) != len(steps) for v in points.values()):
            raise ValueError("'points' must map each key to one value per entry of 'steps'")
        return cls(
            kind=kind,
            split=str(obj["split"]),
            step=int(obj["step"]),
            epoch=int(obj["epoch"]),
            time=float(obj.get("time", 0.0)),
            elapsed=float(obj.get("elapsed", 0.0)),
            count=_decode(obj.get("count", 0.0), "count") or 0.0,
            updates=int(obj.get("updates", 0)),
            values={str(k): _decode(v, f"values[{k!r}]") for k, v in values.items()},
            steps=tuple(steps),
            points={
                str(k): tuple(_decode(v, f"points[{k!r}]") for v in vs) for k, vs in points.items()
            },
            world=int(obj.get("world", 1)),
        )
