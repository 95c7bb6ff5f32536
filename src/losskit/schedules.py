"""Weight schedules: a loss weight as a function of the optimizer step.

A schedule is anything with ``__call__(step: int) -> float``. The built-ins are frozen
dataclasses, pure functions of the step, so a criterion's schedule position is its step count
alone and a restored ``state_dict`` resumes every weight exactly.

Example::

    >>> from losskit import schedules
    >>> warm = schedules.LinearWarmup(0.0, 1.0, steps=100)
    >>> warm(0), warm(50), warm(100), warm(1000)
    (0.0, 0.5, 1.0, 1.0)
    >>> schedules.create("cosine", start=1.0, end=0.0, steps=10)(10)
    0.0

Config files name schedules (``weight = { schedule = "linear_warmup", ... }``) from
:data:`SCHEDULES`; :func:`register` adds one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from losskit._registry import Registry
from losskit.errors import ConfigError

__all__ = [
    "SCHEDULES",
    "Constant",
    "Cosine",
    "Cyclical",
    "LinearWarmup",
    "Schedule",
    "Step",
    "available",
    "create",
    "register",
]


@runtime_checkable
class Schedule(Protocol):
    """The schedule protocol: the weight to apply at optimizer step ``step`` (0-based)."""

    def __call__(self, step: int) -> float: ...


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class Constant:
    """The same weight at every step.

    Example::

        >>> Constant(0.5)(10_000)
        0.5
    """

    value: float

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class LinearWarmup:
    """Hold ``start`` for ``delay`` steps, then move linearly to ``end`` over ``steps`` steps.

    Example::

        >>> w = LinearWarmup(0.0, 1.0, steps=10, delay=5)
        >>> w(0), w(5), w(10), w(15), w(99)
        (0.0, 0.0, 0.5, 1.0, 1.0)
    """

    start: float
    end: float
    steps: int
    delay: int = 0

    def __post_init__(self) -> None:
        _require(self.steps > 0, f"LinearWarmup: steps must be > 0, got {self.steps}")
        _require(self.delay >= 0, f"LinearWarmup: delay must be >= 0, got {self.delay}")

    def __call__(self, step: int) -> float:
        t = min(max(step - self.delay, 0) / self.steps, 1.0)
        return float(self.start + (self.end - self.start) * t)


@dataclass(frozen=True)
class Cosine:
    """Half-cosine from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    Example::

        >>> c = Cosine(1.0, 0.0, steps=100)
        >>> c(0), c(50), c(100), c(500)
        (1.0, 0.5, 0.0, 0.0)
    """

    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        _require(self.steps > 0, f"Cosine: steps must be > 0, got {self.steps}")

    def __call__(self, step: int) -> float:
        t = min(max(step, 0) / self.steps, 1.0)
        value = self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))
        return float(round(value, 12))


@dataclass(frozen=True)
class Step:
    """Piecewise constant: ``values[i]`` from ``boundaries[i-1]`` up to ``boundaries[i]``.

    ``values`` has one more entry than ``boundaries``; boundaries are strictly increasing.

    Example::

        >>> s = Step(boundaries=(100, 500), values=(0.0, 1.0, 0.5))
        >>> s(0), s(99), s(100), s(499), s(500)
        (0.0, 0.0, 1.0, 1.0, 0.5)
    """

    boundaries: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        _require(
            len(self.values) == len(self.boundaries) + 1,
            f"Step: needs len(values) == len(boundaries) + 1, got {len(self.values)} values "
            f"for {len(self.boundaries)} boundaries",
        )
        _require(
            all(a < b for a, b in zip(self.boundaries, self.boundaries[1:])),
            f"Step: boundaries must be strictly increasing, got {list(self.boundaries)}",
        )

    def __call__(self, step: int) -> float:
        index = sum(1 for b in self.boundaries if step >= b)
        return float(self.values[index])


@dataclass(frozen=True)
class Cyclical:
    """Cyclical annealing (Fu et al., 2019): ramp ``low``→``high`` then hold, every ``period``.

    Within each cycle of ``period`` steps the weight rises linearly from ``low`` to ``high`` over
    the first ``ratio * period`` steps and stays at ``high`` for the rest, the schedule used to
    warm up the KL term of a VAE without posterior collapse. ``cycles`` limits the number of
    cycles, after which the weight stays at ``high``.

    Example::

        >>> c = Cyclical(0.0, 1.0, period=100, ratio=0.5)
        >>> c(0), c(25), c(50), c(99), c(100), c(125)
        (0.0, 0.5, 1.0, 1.0, 0.0, 0.5)
    """

    low: float
    high: float
    period: int
    ratio: float = 0.5
    cycles: int | None = None

    def __post_init__(self) -> None:
        _require(self.period > 0, f"Cyclical: period must be > 0, got {self.period}")
        _require(0.0 < self.ratio <= 1.0, f"Cyclical: ratio must be in (0, 1], got {self.ratio}")
        _require(
            self.cycles is None or self.cycles > 0,
            f"Cyclical: cycles must be > 0 or None, got {self.cycles}",
        )

    def __call__(self, step: int) -> float:
        step = max(step, 0)
        if self.cycles is not None and step >= self.cycles * self.period:
            return float(self.high)
        ramp = self.ratio * self.period
        t = min((step % self.period) / ramp, 1.0)
        return float(self.low + (self.high - self.low) * t)


SCHEDULES: Registry[Schedule] = Registry("schedule", listing="losskit.schedules.available()")
"""Every schedule by name (the ``schedule = ...`` of a config file's weight table)."""

_F = TypeVar("_F", bound=Callable[..., Schedule])


def register(
    name: str, *, aliases: Iterable[str] = (), description: str = ""
) -> Callable[[_F], _F]:
    """Register a schedule class or factory under ``name``.

    Example::

        >>> @register("halving")
        ... @dataclass(frozen=True)
        ... class Halving:
        ...     "Halve the weight every ``every`` steps."
        ...     every: int
        ...     def __call__(self, step: int) -> float:
        ...         return 0.5 ** (step // self.every)
        >>> create("halving", every=10)(25), available()["halving"]
        (0.25, 'Halve the weight every ``every`` steps.')
        >>> SCHEDULES.unregister("halving")
    """
    return SCHEDULES.register(name, aliases=aliases, description=description)


def available() -> dict[str, str]:
    """Every schedule name with a one-line description."""
    return SCHEDULES.available()


def create(name: str, /, **options: Any) -> Schedule:
    """The schedule registered as ``name``, built with ``options``."""
    return SCHEDULES.create(name, **options)


SCHEDULES.register("constant", Constant)
SCHEDULES.register("linear_warmup", LinearWarmup)
SCHEDULES.register("cosine", Cosine)
SCHEDULES.register("step", Step)
SCHEDULES.register("cyclical", Cyclical)
