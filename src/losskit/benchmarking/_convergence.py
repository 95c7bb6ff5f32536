"""Convergence speed: train each task's small model with the loss, over several seeds, and
record when the validation metric first reaches the task's target.

Per seed: ``torch.manual_seed(seed)`` before the model is built, batches drawn with replacement
from a generator seeded with ``seed``, Adam at the task's learning rate, deterministic algorithms
on and, on the CPU, :data:`CPU_THREADS` intra-op threads (both restored afterwards), the
validation metric every ``eval_every`` steps. ``steps_to_target`` is the first evaluated step
at which the metric meets the target; ``seconds_to_target`` the training time (forward,
backward, optimiser; evaluations excluded) up to that step. Training runs
the whole budget either way, so ``best_metric`` is the best over the budget. A non-finite loss
stops the seed (``diverged``). Steps, metrics and curves are the same on every run with the same
seeds on the same device; seconds are measured.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from losskit import losses
from losskit.benchmarking._cases import ACTIVATIONS, Case
from losskit.benchmarking._tasks import TASKS, Adapter, Task, TaskData, adapter
from losskit.errors import ConfigError, LossKitError

__all__ = ["ConvergenceSettings", "Spread", "TaskRun", "converge", "task_runs"]


@dataclass(frozen=True)
class ConvergenceSettings:
    """How convergence is measured.

    Args:
        seeds: training seeds (at least 3 for a spread worth reading).
        quick: the tasks' shorter budgets (``quick_steps``).
        steps: a budget for every task instead of theirs (tests use tiny ones).
        tasks: task names to run (default: all of :data:`~losskit.benchmarking._tasks.TASKS`).
    """

    seeds: int = 3
    quick: bool = False
    steps: int | None = None
    tasks: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError(f"bench convergence: seeds must be >= 1, got {self.seeds}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"bench convergence: steps must be >= 1, got {self.steps}")
        unknown = sorted(set(self.tasks or ()) - set(TASKS))
        if unknown:
            raise ConfigError(
                f"bench convergence: unknown task(s) {unknown}; the tasks are {sorted(TASKS)}"
            )

    def budget(self, task: Task) -> int:
        if self.steps is not None:
            return self.steps
        return task.quick_steps if self.quick else task.steps

    def chosen(self) -> list[Task]:
        return [TASKS[name] for name in (self.tasks or TASKS)]


@dataclass(frozen=True)
class Spread:
    """A figure over seeds: mean, standard deviation, min, max of the seeds that have it, and
    every seed's value (``None`` where a seed never reached the target)."""

    per_seed: list[float | None]

    @property
    def values(self) -> list[float]:
        return [v for v in self.per_seed if v is not None]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.pstdev(self.values) if self.values else None

    @property
    def min(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def max(self) -> float | None:
        return max(self.values) if self.values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "reached": len(self.values),
            "per_seed": self.per_seed,
        }


@dataclass(frozen=True)
class TaskRun:
    """One case on one task: the figures over seeds, or why the task does not apply."""

    case: str
    task: str
    applicable: bool
    reason: str = ""
    seeds: list[int] = field(default_factory=list)
    steps_to_target: Spread | None = None
    seconds_to_target: Spread | None = None
    best_metric: Spread | None = None
    diverged: int = 0
    eval_steps: list[int] = field(default_factory=list)
    curves: list[list[float]] = field(default_factory=list)

    @property
    def reached(self) -> int:
        return 0 if self.steps_to_target is None else len(self.steps_to_target.values)

    def to_dict(self) -> dict[str, Any]:
        spread = {
            name: None if value is None else value.to_dict()
            for name, value in (
                ("steps_to_target", self.steps_to_target),
                ("seconds_to_target", self.seconds_to_target),
                ("best_metric", self.best_metric),
            )
        }
        return {
            "case": self.case,
            "task": self.task,
            "applicable": self.applicable,
            "reason": self.reason,
            "seeds": self.seeds,
            **spread,
            "diverged": self.diverged,
            "eval_steps": self.eval_steps,
            "curves": self.curves,
        }


CPU_THREADS = 1
"""Intra-op threads while training on the CPU: the models are tiny, and with more threads the
steps wait on each other (on a loaded machine, several times slower)."""


@contextlib.contextmanager
def _threads(device: torch.device) -> Iterator[None]:
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # warn_only: a CUDA op without a deterministic version warns instead of failing the bench.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _applies(case: Case, task: Task, loss: nn.Module) -> Adapter | str:
    family = losses.resolve(case.loss).family
    if family != task.family:
        return f"a {family} loss; {task.name} trains {task.family} losses"
    act = ACTIVATIONS[case.activation] if case.activation is not None else None
    return adapter(task, case.contract(loss), act)


def task_runs(
    case: Case, settings: ConvergenceSettings, device: torch.device, data: dict[str, TaskData]
) -> list[TaskRun]:
    """``case`` on each task of its family; one not-applicable record when no task has it."""
    loss = case.build().to(device)
    family = losses.resolve(case.loss).family
    tasks = settings.chosen()
    mine = [task for task in tasks if task.family == family]
    if not mine:
        served = sorted({task.family for task in tasks})
        reason = f"a {family} loss; convergence tasks train {', '.join(served)} losses"
        return [TaskRun(case.name, "-", False, reason)]
    out = []
    for task in mine:
        fit = _applies(case, task, loss)
        if isinstance(fit, str):
            out.append(TaskRun(case.name, task.name, False, fit))
            continue
        if task.name not in data:
            data[task.name] = task.data().to(device)
        out.append(converge(case, loss, fit, task, data[task.name], settings))
    return out


def converge(
    case: Case,
    loss: nn.Module,
    fit: Adapter,
    task: Task,
    data: TaskData,
    settings: ConvergenceSettings,
) -> TaskRun:
    """Train ``task``'s model with ``loss`` once per seed (see the module notes)."""
    steps = settings.budget(task)
    try:
        probe = task.build(task.outputs).to(data.x_train.device)(data.x_train[:2])
        loss(fit.output(probe), fit.target(data.y_train[:2]))
    except (LossKitError, TypeError, RuntimeError, ValueError) as exc:
        reason = f"cannot run on {task.name}'s outputs: {str(exc).splitlines()[0]}"
        return TaskRun(case.name, task.name, False, reason)
    with _threads(data.x_train.device):
        runs = [_one_seed(loss, fit, task, data, seed, steps) for seed in range(settings.seeds)]
    eval_steps = [s for s in range(1, steps + 1) if s % task.eval_every == 0 or s == steps]
    return TaskRun(
        case.name,
        task.name,
        True,
        seeds=list(range(settings.seeds)),
        steps_to_target=Spread([r.step for r in runs]),
        seconds_to_target=Spread([r.seconds for r in runs]),
        best_metric=Spread([max(r.curve) if r.curve else None for r in runs]),
        diverged=sum(r.diverged for r in runs),
        eval_steps=eval_steps,
        curves=[r.curve for r in runs],
    )


@dataclass(frozen=True)
class _Seed:
    step: float | None
    seconds: float | None
    curve: list[float]
    diverged: bool


def _one_seed(
    loss: nn.Module, fit: Adapter, task: Task, data: TaskData, seed: int, steps: int
) -> _Seed:
    device = data.x_train.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    with _deterministic():
        torch.manual_seed(seed)
        model = task.build(task.outputs).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=task.lr)
        g = torch.Generator().manual_seed(seed)
        n = data.x_train.shape[0]
        bad = torch.zeros((), dtype=torch.bool, device=device)
        curve: list[float] = []
        reached: tuple[float, float] | None = None
        elapsed = 0.0
        for step in range(1, steps + 1):
            sync(device)
            start = time.perf_counter()
            index = torch.randint(n, (task.batch,), generator=g).to(device)
            value = loss(fit.output(model(data.x_train[index])), fit.target(data.y_train[index]))
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            bad |= ~torch.isfinite(value.detach())
            sync(device)
            elapsed += time.perf_counter() - start
            if step % task.eval_every and step != steps:
                continue
            if bool(bad):
                return _Seed(None, None, curve, True)
            curve.append(_evaluate(model, task, data))
            if reached is None and curve[-1] >= task.target:
                reached = (float(step), elapsed)
    step_at, seconds_at = reached or (None, None)
    return _Seed(step_at, seconds_at, curve, False)


def _evaluate(model: nn.Module, task: Task, data: TaskData) -> float:
    model.eval()
    with torch.no_grad():
        raw: Tensor = model(data.x_val)
    model.train()
    return task.score(raw, data.y_val)
