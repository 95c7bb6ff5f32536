"""Numerical behaviour of a case: extreme inputs and error against a float64 reference.

Extreme inputs (float32): logits of magnitude 1e4 with random signs, every prediction confidently
right, every prediction confidently wrong, and a mask that selects nothing. Each must give a
finite value and a finite gradient; confidently wrong predictions must also give a non-zero
gradient (a loss that stops teaching where the model is most wrong has saturated: sigmoid
followed by ``BCELoss`` is the known case). Precision: the value and gradient computed in
float32, bfloat16 and float16 against the same (rounded) inputs computed in float64.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from losskit.benchmarking._cases import ACTIVATIONS, Case, Inputs
from losskit.errors import LossKitError

__all__ = ["EXTREME", "PRECISIONS", "Precision", "Scenario", "precision_errors", "scenarios"]

EXTREME = 1e4
"""The logit magnitude of the extreme scenarios."""

PRECISIONS = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Scenario:
    """One extreme-input check: ``ok`` unless the value or gradient failed."""

    name: str
    value_finite: bool | None
    grad_finite: bool | None
    grad_nonzero: bool | None
    note: str = ""

    @property
    def flags(self) -> list[str]:
        """What failed, in words (empty when the scenario passed or did not apply)."""
        out = []
        if self.value_finite is False:
            out.append(f"non-finite value ({self.name})")
        if self.grad_finite is False:
            out.append(f"non-finite gradient ({self.name})")
        if self.grad_nonzero is False:
            out.append(f"zero gradient at confidently wrong predictions (|logit| {EXTREME:g})")
        return out


@dataclass(frozen=True)
class Precision:
    """Relative errors of one dtype against float64 (``inf`` when non-finite)."""

    dtype: str
    value_error: float | None
    grad_error: float | None
    error: str = ""


def _one_hot_like(x: Tensor, index: Tensor) -> Tensor:
    return torch.zeros_like(x).scatter_(1, index.unsqueeze(1), 1.0)


def _extreme(case: Case, loss: nn.Module, inputs: Inputs, mode: str) -> Tensor | None:
    """Raw inputs of magnitude EXTREME: random signs, all right, or all wrong."""
    x, y = inputs.input.double(), inputs.target
    m = EXTREME
    if mode == "random":
        return torch.where(torch.randn_like(x) > 0, m, -m)
    if y is None:
        return None
    kind = case.contract(loss).target
    sign = 1.0 if mode == "correct" else -1.0
    if kind in ("class_indices", "class_indices_or_probabilities") and not y.is_floating_point():
        classes = x.shape[1]
        index = y if mode == "correct" else (y + 1) % classes
        return (2 * _one_hot_like(x, index.long()) - 1) * m
    if kind in ("binary", "hard_binary"):
        return sign * (2 * y.double() - 1) * m
    if kind == "sign":
        return sign * y.double() * m
    if kind in ("probabilities", "one_hot"):
        index = y.argmax(1) if mode == "correct" else y.argmin(1)
        return (2 * _one_hot_like(x, index) - 1) * m
    if kind == "logits":
        return y.double() if mode == "correct" else -torch.sign(y.double()) * m
    if kind in ("continuous", "non_negative"):
        return y.double() if mode == "correct" else y.double() + m
    return None


def _value_and_grad(
    case: Case, loss: nn.Module, inputs: Inputs, x: Tensor
) -> tuple[Tensor, Tensor]:
    leaf = x.detach().clone().requires_grad_(True)
    value = case.step(loss, Inputs(leaf, inputs.target))(leaf)
    (grad,) = torch.autograd.grad(value, leaf, allow_unused=True)
    return value.detach(), grad if grad is not None else torch.zeros_like(leaf)


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def scenarios(case: Case, shape: tuple[int, ...], device: torch.device) -> list[Scenario]:
    """The extreme-input checks of ``case`` in float32 on ``device``."""
    loss = case.build().to(device)
    g = torch.Generator().manual_seed(0)
    inputs = case.make(loss, shape, torch.float32, device, g)
    out: list[Scenario] = []
    for mode, name in (("random", "random"), ("correct", "all_correct"), ("wrong", "all_wrong")):
        if not case.raw_logits:
            out.append(
                Scenario(
                    name,
                    None,
                    None,
                    None,
                    "input is probabilities: bench '<activation>+<loss>' to feed it logits",
                )
            )
            continue
        x = _extreme(case, loss, inputs, mode)
        if x is None:
            out.append(Scenario(name, None, None, None, "no target to be right or wrong about"))
            continue
        try:
            value, grad = _value_and_grad(case, loss, inputs, x.float().to(device))
        except (LossKitError, RuntimeError) as exc:
            out.append(Scenario(name, False, None, None, f"raised: {exc}"))
            continue
        nonzero = bool(grad.abs().sum() > 0) if mode == "wrong" else None
        out.append(Scenario(name, _finite(value), _finite(grad), nonzero))
    out.append(_empty_mask(case, loss, inputs))
    return out


def _empty_mask(case: Case, loss: nn.Module, inputs: Inputs) -> Scenario:
    """The case as a masked :class:`~losskit.Term` whose mask selects nothing."""
    from losskit.term import Term  # losskit.term imports the catalogue: late, as the CLI

    name = "empty_mask"
    if not hasattr(loss, "reduction"):
        return Scenario(name, None, None, None, "the loss has no reduction='none'")
    leaf = inputs.input.detach().clone().requires_grad_(True)
    act = ACTIVATIONS[case.activation] if case.activation is not None else None
    target = "y" if inputs.target is not None else None
    batch = {"mask": torch.zeros(leaf.shape[0], dtype=torch.bool, device=leaf.device)}
    if inputs.target is not None:
        batch["y"] = inputs.target
    try:
        term = Term(copy.copy(loss), input="x", target=target, mask="mask")
        value = term.compute(name, {"x": act(leaf) if act is not None else leaf}, batch)
        (grad,) = torch.autograd.grad(value, leaf, allow_unused=True)
    except (LossKitError, RuntimeError, ValueError) as exc:
        return Scenario(name, False, None, None, f"raised: {exc}")
    grad = grad if grad is not None else torch.zeros_like(leaf)
    return Scenario(name, _finite(value), _finite(grad), None)


def precision_errors(case: Case, shape: tuple[int, ...], device: torch.device) -> list[Precision]:
    """Relative errors of the value and the gradient in each of :data:`PRECISIONS`."""
    loss64 = case.build().to(device=device, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    base = case.make(loss64, shape, torch.float64, device, g, scale=3.0)
    out: list[Precision] = []
    for dtype in PRECISIONS:
        label = str(dtype).removeprefix("torch.")
        rounded = Inputs(
            base.input.to(dtype),
            base.target.to(dtype)
            if base.target is not None and base.target.is_floating_point()
            else base.target,
        )
        reference = Inputs(
            rounded.input.double(),
            rounded.target.double()
            if rounded.target is not None and rounded.target.is_floating_point()
            else rounded.target,
        )
        try:
            loss = case.build().to(device)
            value, grad = _value_and_grad(case, loss, rounded, rounded.input)
            value64, grad64 = _value_and_grad(case, loss64, reference, reference.input)
        except (LossKitError, RuntimeError) as exc:
            out.append(Precision(label, None, None, str(exc).splitlines()[0][:120]))
            continue
        out.append(Precision(label, _relative(value, value64), _relative(grad, grad64)))
    return out


def _relative(got: Tensor, want: Tensor) -> float:
    got = got.double()
    if not _finite(got):
        return math.inf
    scale = float(want.norm())
    return float((got - want).norm()) / scale if scale > 0 else float((got - want).norm())
