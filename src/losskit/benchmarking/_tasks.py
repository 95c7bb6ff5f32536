"""The standard tasks convergence is measured on: data shipped with losskit or generated from a
seed, a small model per task, a validation metric and the value it must reach.

- ``digits``: the 8x8 digits (10 classes), an MLP; validation accuracy.
- ``digits_attributes``: three binary attributes of each digit (``>= 5``, even, has a closed
  loop: 0, 6, 8, 9), a multi-label task for losses with binary targets; mean per-label accuracy.
- ``regression`` and ``regression_outliers``: a smooth function of 8 seeded inputs; the second
  adds large errors to 10% of the training targets (validation stays clean); validation R².
- ``segmentation``: seeded 16x16 images holding a disk (class 1) and a square (class 2) in
  noise, a two-layer conv net; mean IoU over the three classes.

A task serves the losses of one registry family; within it, the loss's contract decides how the
task's labels are handed over (class indices, one-hot, one-vs-rest binary, signs) and how the
model's raw outputs are (raw, through a sigmoid or softmax, or their logarithm). A loss whose
contract no conversion fits is not applicable to the task, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.data import load_digits
from losskit.losses.contracts import Contract

__all__ = ["TASKS", "Adapter", "Task", "TaskData", "adapter"]

Labels = Literal["classes", "binary", "continuous"]


@dataclass(frozen=True)
class TaskData:
    """Training and validation tensors; ``y`` in the task's canonical form (see ``labels``)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor

    def to(self, device: torch.device) -> TaskData:
        return TaskData(
            *(t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val))
        )


@dataclass(frozen=True)
class Task:
    """One standard task: its data, model, training settings and the metric's target.

    ``labels`` is the canonical target: ``"classes"`` (integer indices, ``outputs`` classes along
    dim 1), ``"binary"`` (floats 0/1 of the output's shape) or ``"continuous"``.
    """

    name: str
    family: str
    labels: Labels
    outputs: int
    metric: str
    target: float
    model: str
    data: Callable[[], TaskData]
    build: Callable[[int], nn.Module]
    steps: int = 400
    quick_steps: int = 200
    eval_every: int = 10
    batch: int = 64
    lr: float = 3e-3

    def score(self, raw: Tensor, y: Tensor) -> float:
        """The validation metric of the model's raw outputs (higher is better)."""
        if self.labels == "classes" and raw.ndim > 2:
            return _mean_iou(raw.argmax(1), y, self.outputs)
        if self.labels == "classes":
            return float((raw.argmax(1) == y).double().mean())
        if self.labels == "binary":
            return float(((raw > 0) == (y > 0.5)).double().mean())
        return float(1 - (raw - y).square().sum() / (y - y.mean()).square().sum())


@dataclass(frozen=True)
class Adapter:
    """How a loss takes a task: the model's raw output and the task's labels, converted."""

    output: Callable[[Tensor], Tensor]
    target: Callable[[Tensor], Tensor]


def _identity(t: Tensor) -> Tensor:
    return t


def _one_hot(y: Tensor, classes: int) -> Tensor:
    return F.one_hot(y, classes).movedim(-1, 1).float()


_CONVERSIONS: dict[str, dict[str, Callable[[Tensor, int], Tensor]]] = {
    "classes": {
        "class_indices": lambda y, c: y,
        "class_indices_or_probabilities": lambda y, c: y,
        "one_hot": _one_hot,
        "probabilities": _one_hot,
        "binary": _one_hot,  # one-vs-rest
        "hard_binary": _one_hot,
        "sign": lambda y, c: 2 * _one_hot(y, c) - 1,
    },
    "binary": {
        "binary": lambda y, c: y,
        "hard_binary": lambda y, c: y,
        "sign": lambda y, c: 2 * y - 1,
    },
    "continuous": {"continuous": lambda y, c: y},
}
"""Per canonical label kind, the loss target kinds it converts to and how."""


def _outputs(contract: Contract) -> Callable[[Tensor], Tensor] | None:
    binary = contract.target in ("binary", "hard_binary", "sign")
    table: dict[str, Callable[[Tensor], Tensor]] = {
        "logits": _identity,
        "values": _identity,
        "probabilities": torch.sigmoid if binary else lambda z: torch.softmax(z, 1),
        "log_probabilities": F.logsigmoid if binary else lambda z: torch.log_softmax(z, 1),
    }
    return table.get(contract.input)


def adapter(
    task: Task, contract: Contract, activation: Callable[[Tensor], Tensor] | None
) -> Adapter | str:
    """The conversions for a loss of ``contract`` (behind ``activation``), or why none fits.

    Example::

        >>> from losskit.losses.contracts import Contract
        >>> print(adapter(TASKS["regression"], Contract("logits", "binary", "same"), None))
        its target is binary; regression has continuous labels, which convert to continuous targets
    """
    convert = _CONVERSIONS[task.labels].get(contract.target)
    if convert is None:
        takes = ", ".join(_CONVERSIONS[task.labels])
        return (
            f"its target is {contract.target}; {task.name} has {task.labels} labels, "
            f"which convert to {takes} targets"
        )
    classes = task.outputs

    def target(y: Tensor) -> Tensor:
        return convert(y, classes)

    if activation is not None:
        return Adapter(activation, target)
    output = _outputs(contract)
    if output is None:
        kind = contract.input.replace("_", " ")
        return f"its input is {kind}, which no output of {task.name}'s model is"
    return Adapter(output, target)


def _mean_iou(pred: Tensor, y: Tensor, classes: int) -> float:
    ious = []
    for c in range(classes):
        p, t = pred == c, y == c
        union = (p | t).sum()
        if union > 0:
            ious.append(float((p & t).sum()) / float(union))
    return sum(ious) / len(ious)


# -- data -----------------------------------------------------------------------------------

_DATA_SEED = 0
"""The seed of generated data and of the digits split: fixed, so every training seed sees the
same task (training seeds vary the initialisation and the batches)."""


def _digit_pixels() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    train, val = load_digits().split(0.2, seed=_DATA_SEED)
    return (
        (train.images / 16.0).reshape(-1, 64),
        train.labels,
        (val.images / 16.0).reshape(-1, 64),
        val.labels,
    )


def _digits() -> TaskData:
    return TaskData(*_digit_pixels())


def _attributes(labels: Tensor) -> Tensor:
    loop = (labels == 0) | (labels == 6) | (labels == 8) | (labels == 9)
    return torch.stack([labels >= 5, labels % 2 == 0, loop], 1).float()


def _digit_attributes() -> TaskData:
    x_train, y_train, x_val, y_val = _digit_pixels()
    return TaskData(x_train, _attributes(y_train), x_val, _attributes(y_val))


OUTLIER_FRACTION = 0.1
OUTLIER_SCALE = 10.0


def _regression(outliers: bool) -> TaskData:
    g = torch.Generator().manual_seed(_DATA_SEED)
    x = torch.randn(1536, 8, generator=g)
    a, b = torch.randn(8, generator=g) / math.sqrt(8), torch.randn(8, generator=g) / math.sqrt(8)
    y = torch.sin(2 * x @ a) + 0.5 * (x @ b) + 0.1 * torch.randn(1536, generator=g)
    y = ((y - y.mean()) / y.std()).unsqueeze(1)
    x_train, y_train, x_val, y_val = x[:1024], y[:1024].clone(), x[1024:], y[1024:]
    if outliers:
        hit = torch.rand(1024, generator=g) < OUTLIER_FRACTION
        signs = torch.randint(0, 2, (1024,), generator=g).float() * 2 - 1
        y_train[hit, 0] += OUTLIER_SCALE * signs[hit]
    return TaskData(x_train, y_train, x_val, y_val)


def _shapes(n: int, g: torch.Generator, size: int = 16) -> tuple[Tensor, Tensor]:
    rows = torch.arange(size).view(1, size, 1).float()
    cols = torch.arange(size).view(1, 1, size).float()
    centre = torch.randint(3, size - 3, (n, 2, 2), generator=g).float()
    radius = torch.randint(2, 4, (n, 2), generator=g).float()
    dy, dx = rows - centre[:, 0, 0].view(-1, 1, 1), cols - centre[:, 0, 1].view(-1, 1, 1)
    disk = dy.square() + dx.square() <= radius[:, 0].view(-1, 1, 1).square()
    sy, sx = rows - centre[:, 1, 0].view(-1, 1, 1), cols - centre[:, 1, 1].view(-1, 1, 1)
    half = radius[:, 1].view(-1, 1, 1)
    square = (sy.abs() <= half) & (sx.abs() <= half)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[square] = 2
    labels[disk] = 1  # the disk lies over the square where they meet
    image = disk.float() + 0.5 * (square & ~disk).float()
    image = image + 0.5 * torch.randn(n, size, size, generator=g)
    return image.unsqueeze(1), labels


def _segmentation() -> TaskData:
    g = torch.Generator().manual_seed(_DATA_SEED)
    x_train, y_train = _shapes(256, g)
    x_val, y_val = _shapes(128, g)
    return TaskData(x_train, y_train, x_val, y_val)


# -- models ---------------------------------------------------------------------------------


def _mlp(inputs: int, hidden: int) -> Callable[[int], nn.Module]:
    def build(outputs: int) -> nn.Module:
        return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    return build


def _conv(outputs: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, outputs, 1),
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="digits",
            family="classification",
            labels="classes",
            outputs=10,
            metric="accuracy",
            target=0.9,
            model="MLP 64-64-10 (ReLU)",
            data=_digits,
            build=_mlp(64, 64),
        ),
        Task(
            name="digits_attributes",
            family="classification",
            labels="binary",
            outputs=3,
            metric="mean label accuracy",
            target=0.9,
            model="MLP 64-64-3 (ReLU)",
            data=_digit_attributes,
            build=_mlp(64, 64),
        ),
        Task(
            name="regression",
            family="regression",
            labels="continuous",
            outputs=1,
            metric="R2",
            target=0.8,
            model="MLP 8-64-1 (ReLU)",
            data=lambda: _regression(outliers=False),
            build=_mlp(8, 64),
            lr=1e-2,
        ),
        Task(
            name="regression_outliers",
            family="regression",
            labels="continuous",
            outputs=1,
            metric="R2",
            target=0.8,
            model="MLP 8-64-1 (ReLU)",
            data=lambda: _regression(outliers=True),
            build=_mlp(8, 64),
            lr=1e-2,
        ),
        Task(
            name="segmentation",
            family="segmentation",
            labels="classes",
            outputs=3,
            metric="mean IoU",
            target=0.6,
            model="conv 3x3 8, conv 3x3 8, conv 1x1 3 (ReLU)",
            data=_segmentation,
            build=_conv,
            steps=300,
            quick_steps=150,
            batch=16,
            lr=1e-2,
        ),
    )
}
"""The standard tasks by name (see the module notes)."""
