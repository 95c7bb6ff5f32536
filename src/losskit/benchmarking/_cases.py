"""What ``bench`` runs: a catalogue loss (optionally behind an activation) and inputs for it.

A case is named like a catalogue loss (``"focal"``, ``"bce_logits"``) or as
``"<activation>+<loss>"`` (``"sigmoid+bce"``, ``"softmax+nll"``), which applies the activation to
raw logits before the loss: the way a model that ends in a sigmoid feeds ``BCELoss``. Inputs
follow the loss's contract: logits or values from a normal distribution, probabilities in
(0, 1), targets of the kind and shape the contract names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit import losses
from losskit.errors import ConfigError, LossKitError
from losskit.losses.contracts import Contract

__all__ = ["ACTIVATIONS", "Case", "Inputs"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, 1),
    "log_softmax": lambda x: torch.log_softmax(x, 1),
}
"""Activations a case may put before its loss, applied along the class dim 1."""

_DEFAULT_CONTRACT = Contract("values", "continuous", "same")


@dataclass(frozen=True)
class Inputs:
    """One case's tensors: ``input`` is the leaf the gradient is taken of."""

    input: Tensor
    target: Tensor | None


@dataclass(frozen=True)
class Case:
    """A loss to benchmark: a catalogue name, an optional activation before it, its kwargs."""

    name: str
    loss: str
    activation: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, kwargs: Mapping[str, Any] | None = None) -> Case:
        """``"focal"`` or ``"sigmoid+bce"``; unknown names fail with the registry's suggestions.

        Example::

            >>> Case.parse("sigmoid+bce").activation
            'sigmoid'
        """
        activation, _, loss = spec.rpartition("+")
        if activation and activation not in ACTIVATIONS:
            raise ConfigError(
                f"bench case {spec!r}: unknown activation {activation!r}; use one of "
                f"{sorted(ACTIVATIONS)} as '<activation>+<loss>'"
            )
        losses.resolve(loss)  # a clear error for unknown names
        return cls(spec, loss, activation or None, dict(kwargs or {}))

    def build(self) -> nn.Module:
        """The loss module (value checks off: they would sync the host inside timings)."""
        factory = losses.resolve(self.loss).factory
        kwargs = dict(self.kwargs)
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}  # type: ignore[assignment]
        if "check" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs.setdefault("check", "off")
        try:
            return losses.get(self.loss, **kwargs)
        except ConfigError:
            kwargs.pop("check", None)
            return losses.get(self.loss, **kwargs)

    def contract(self, loss: nn.Module) -> Contract:
        found = getattr(loss, "contract", None)
        return found if isinstance(found, Contract) else _DEFAULT_CONTRACT

    @property
    def raw_logits(self) -> bool:
        """Whether the input is raw scores, so that extreme logits (1e4) make sense for it."""
        if self.activation is not None:
            return True
        contract = self.contract(self.build())
        return contract.input in ("logits", "values")

    def make(
        self,
        loss: nn.Module,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator,
        scale: float = 1.0,
    ) -> Inputs:
        """Random inputs of ``shape`` (the input's; dim 1 holds the classes) and a target."""
        contract = self.contract(loss)
        kind = "logits" if self.activation is not None else contract.input
        x = torch.randn(shape, generator=generator, dtype=torch.float64)
        if kind == "probabilities":
            x = torch.rand(shape, generator=generator, dtype=torch.float64) * 0.98 + 0.01
        elif kind == "log_probabilities":
            x = torch.log_softmax(x, 1) if x.ndim > 1 else -torch.rand_like(x) - 0.01
        elif kind == "non_negative":
            x = x.abs()
        else:
            x = x * scale
        target = _target(contract, x, generator)
        cast = x.to(device=device, dtype=dtype)
        y = None if target is None else target.to(device)
        if y is not None and y.is_floating_point():
            y = y.to(dtype)
        return Inputs(cast, y)

    def step(self, loss: nn.Module, inputs: Inputs) -> Callable[[Tensor], Tensor]:
        """``fn(input) -> loss value``: the activation (if any) then the loss."""
        act = ACTIVATIONS[self.activation] if self.activation is not None else None
        target = inputs.target

        def value(x: Tensor) -> Tensor:
            z = act(x) if act is not None else x
            out = loss(z) if target is None else loss(z, target)
            if not isinstance(out, Tensor) or out.ndim != 0:  # e.g. reduction="none" kwargs
                raise ConfigError(f"bench case {self.name!r}: the loss did not return a scalar")
            return out

        return value

    def check_runs(self, shape: tuple[int, ...]) -> None:
        """Fail early, naming the case, when the loss cannot run on generated inputs."""
        loss = self.build()
        g = torch.Generator().manual_seed(0)
        inputs = self.make(loss, shape, torch.float32, torch.device("cpu"), g)
        try:
            self.step(loss, inputs)(inputs.input)
        except (LossKitError, TypeError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"bench case {self.name!r}: cannot run {type(loss).__name__} on generated inputs "
                f"of shape {shape} ({exc}); losses of several inputs (triplet, CTC, "
                "linear_cross_entropy: see benchmarks/linear_ce.py) need their own script"
            ) from exc


def _target(contract: Contract, x: Tensor, g: torch.Generator) -> Tensor | None:
    kind = contract.target
    shape = tuple(x.shape)
    classes = shape[1] if len(shape) > 1 else shape[0]
    reduced = shape[:1] + shape[2:] if len(shape) > 1 else ()
    if kind in ("class_indices", "class_indices_or_probabilities"):
        return torch.randint(0, classes, reduced, generator=g)
    if kind in ("binary", "hard_binary"):
        return torch.randint(0, 2, shape, generator=g).double()
    if kind == "sign":
        return torch.randint(0, 2, shape, generator=g).double() * 2 - 1
    if kind == "probabilities":
        return torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
    if kind == "log_probabilities":
        return torch.log_softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
    if kind == "one_hot":
        hot = F.one_hot(torch.randint(0, classes, reduced, generator=g), classes)
        return hot.movedim(-1, 1).double()
    if kind == "non_negative":
        return torch.rand(shape, generator=g, dtype=torch.float64) * 3
    if kind == "any":
        return None
    return torch.randn(shape, generator=g, dtype=torch.float64)  # continuous, logits


def setup_step(
    spec: str, kwargs: Mapping[str, Any], shape: tuple[int, ...], dtype: str, device: str
) -> Callable[[], None]:
    """Build the case's inputs and return its forward+backward step (what timings measure).

    Module-level so that a spawned child can rebuild a case from plain arguments.
    """
    case = Case.parse(spec, kwargs)
    where = torch.device(device)
    loss = case.build().to(where)
    inputs = case.make(loss, shape, getattr(torch, dtype), where, torch.Generator().manual_seed(0))
    leaf = inputs.input.detach().requires_grad_(True)
    value = case.step(loss, inputs)

    def step() -> None:
        value(leaf).backward()  # type: ignore[no-untyped-call]
        # Dropped after the step, not before: a gradient held from the previous step would count
        # in the memory measured before the step and hide this step's gradient from the peak.
        leaf.grad = None

    return step
