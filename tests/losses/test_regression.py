"""The regression losses: hand-derived gradients (gradcheck, input and target), the fused and eager
paths, mathematical properties and every contract error."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import losskit.losses._regression  # noqa: F401  (registers the losses)
from losskit import losses
from losskit.errors import ConfigError, LossInputError
from losskit.losses._regression import CharbonnierLoss, LogCoshLoss, PoissonLoss, QuantileLoss

REDUCTIONS = ("mean", "sum", "none")


def _pair(
    shape: tuple[int, ...] = (4, 5), dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(shape, generator=g) * 3).to(dtype), torch.randn(shape, generator=g).to(
        dtype
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "make",
    [
        lambda r: LogCoshLoss(reduction=r, impl="eager"),
        lambda r: CharbonnierLoss(eps=1e-3, reduction=r, impl="eager"),
        lambda r: CharbonnierLoss(eps=0.5, reduction=r, impl="eager"),
        lambda r: QuantileLoss(0.3, reduction=r),
    ],
    ids=["log_cosh", "charbonnier_1e-3", "charbonnier_0.5", "quantile"],
)
def test_gradcheck_input_and_target(reduction: str, make: Callable[[str], Any]) -> None:
    x, t = _pair()
    assert torch.autograd.gradcheck(make(reduction), (x.requires_grad_(), t.requires_grad_()))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("log_input", "full"), [(True, False), (True, True), (False, True)])
def test_poisson_gradcheck(reduction: str, log_input: bool, full: bool) -> None:
    g = torch.Generator().manual_seed(0)
    rate = torch.rand(4, 5, generator=g, dtype=torch.float64) * 4 + 0.2
    counts = torch.poisson(rate, generator=g) + 0.5  # off the Stirling switch at 1
    x = rate.log() if log_input else rate
    loss = PoissonLoss(log_input, full, reduction=reduction)  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(), counts.requires_grad_()))


@pytest.mark.parametrize("make", [LogCoshLoss, CharbonnierLoss], ids=["log_cosh", "charbonnier"])
def test_double_backward(make: Callable[..., Any]) -> None:
    x, t = _pair((3, 4))
    assert torch.autograd.gradgradcheck(make(impl="eager"), (x.requires_grad_(), t))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("cls", [LogCoshLoss, CharbonnierLoss], ids=["log_cosh", "charbonnier"])
def test_compiled_equals_eager(reduction: str, cls: Callable[..., Any]) -> None:
    x, t = _pair((64, 1024), dtype=torch.float32)
    results = []
    for impl in ("eager", "compiled"):
        xi, ti = x.clone().requires_grad_(), t.clone().requires_grad_()
        value = cls(reduction=reduction, impl=impl)(xi, ti)
        cotangent = torch.rand(value.shape, generator=torch.Generator().manual_seed(1))
        results.append((value, *torch.autograd.grad(value, (xi, ti), cotangent)))
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


# --- properties -----------------------------------------------------------------------------------

_values = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30)


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    x = draw(_values)
    t = draw(st.lists(st.floats(-1e3, 1e3), min_size=len(x), max_size=len(x)))
    return torch.tensor(x, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(pair=_pairs(), q=st.floats(0.01, 0.99), eps=st.floats(1e-4, 10))
def test_zero_at_a_perfect_prediction_and_non_negative(
    pair: tuple[Tensor, Tensor], q: float, eps: float
) -> None:
    x, t = pair
    for loss in (LogCoshLoss(reduction="none", impl="eager"), QuantileLoss(q, reduction="none")):
        assert bool((loss(x, t) >= 0).all())
        assert bool((loss(t, t) == 0).all())
    # Charbonnier's minimum, at a perfect prediction, is eps.
    charbonnier = CharbonnierLoss(eps, reduction="none", impl="eager")
    assert bool((charbonnier(x, t) >= eps * (1 - 1e-12)).all())
    torch.testing.assert_close(charbonnier(t, t), torch.full_like(t, eps))


@settings(max_examples=60, deadline=None)
@given(pair=_pairs())
def test_pinball_at_the_median_is_half_the_absolute_error(pair: tuple[Tensor, Tensor]) -> None:
    x, t = pair
    torch.testing.assert_close(QuantileLoss(0.5, reduction="none")(x, t), 0.5 * (x - t).abs())
    several = QuantileLoss([0.5, 0.5], reduction="none")(torch.stack([x, x], -1), t)
    torch.testing.assert_close(several, 0.5 * (x - t).abs().unsqueeze(-1).expand(-1, 2))


@settings(max_examples=60, deadline=None)
@given(pair=_pairs())
def test_log_cosh_lies_between_the_absolute_error_and_it_minus_log_2(
    pair: tuple[Tensor, Tensor],
) -> None:
    x, t = pair
    value = LogCoshLoss(reduction="none", impl="eager")(x, t)
    d = (x - t).abs()
    assert bool((value <= d + 1e-12).all())
    assert bool((value >= d - math.log(2) - 1e-12).all())
    torch.testing.assert_close(value, LogCoshLoss(reduction="none", impl="eager")(t, x))


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 50), min_size=1, max_size=20),
    offset=st.floats(-3, 3).filter(lambda v: abs(v) > 1e-3),
)
def test_poisson_is_smallest_at_the_true_rate(counts: list[int], offset: float) -> None:
    t = torch.tensor(counts, dtype=torch.float64) + 0.5
    loss = PoissonLoss(reduction="none")
    assert bool((loss(t.log(), t) < loss(t.log() + offset, t)).all())
    rates = PoissonLoss(log_input=False, reduction="none")
    assert bool((rates(t, t) < rates(t * math.exp(offset), t)).all())


# --- field notes, contracts, registry -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "make",
    [LogCoshLoss, CharbonnierLoss, lambda: QuantileLoss(0.9), PoissonLoss],
    ids=["log_cosh", "charbonnier", "quantile", "poisson"],
)
def test_half_precision_is_computed_in_float32(dtype: torch.dtype, make: Callable[[], Any]) -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(64, generator=g) * 20).to(dtype)
    t = (torch.rand(64, generator=g) * 30).round().to(dtype)
    if isinstance(make(), PoissonLoss):
        x = x / 10
    loss = make()
    xi = x.clone().requires_grad_()
    value = loss(xi, t)
    (grad,) = torch.autograd.grad(value, xi)
    assert value.dtype == torch.float32
    assert grad.dtype == dtype
    assert bool(torch.isfinite(value))
    assert bool(torch.isfinite(grad).all())
    x32 = x.float().requires_grad_()
    expected = loss(x32, t.float())
    (expected_grad,) = torch.autograd.grad(expected, x32)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad.to(dtype))
    loss.reduction = "none"
    assert loss(x, t).dtype == dtype


@pytest.mark.parametrize(
    ("loss", "input", "target", "message"),
    [
        (
            LogCoshLoss(),
            torch.zeros(8, 1),
            torch.zeros(8),
            "LogCoshLoss ('log_cosh'): target has shape (8,) and input (8, 1): the loss would "
            "broadcast them to (8, 8); give both the same shape (e.g. target.unsqueeze(1))",
        ),
        (
            CharbonnierLoss(),
            torch.zeros(4),
            torch.zeros(4, dtype=torch.long),
            "CharbonnierLoss ('charbonnier'): target has dtype int64, expected a floating-point "
            "tensor of continuous values; cast with target.to(input.dtype)",
        ),
        (
            CharbonnierLoss(),
            torch.zeros(4, dtype=torch.long),
            torch.zeros(4),
            "CharbonnierLoss ('charbonnier'): input has dtype int64, expected a floating-point "
            "tensor of values; cast it with input.float()",
        ),
        (
            LogCoshLoss(),
            torch.tensor([0.0, math.nan]),
            torch.zeros(2),
            "LogCoshLoss ('log_cosh'): input has 1 NaN and 0 infinite values (of 2, shape (2,)); "
            "the loss would be non-finite",
        ),
        (
            PoissonLoss(),
            torch.zeros(3),
            torch.tensor([1.0, -2.0, 0.0]),
            "PoissonLoss ('poisson'): target has values down to -2, expected non-negative values "
            "(counts)",
        ),
        (
            PoissonLoss(log_input=False),
            torch.tensor([1.0, -0.5]),
            torch.ones(2),
            "PoissonLoss ('poisson'): input has values down to -0.5, expected non-negative "
            "values (rates); for log-rates pass log_input=True",
        ),
        (
            QuantileLoss([0.1, 0.9]),
            torch.zeros(8, 3),
            torch.zeros(8),
            "QuantileLoss ('quantile'): input has shape (8, 3) and target (8,): expected input "
            "(8, 2), the target's shape plus a trailing dim of the 2 quantiles (0.1, 0.9)",
        ),
        (
            QuantileLoss(0.5),
            torch.zeros(8, 1),
            torch.zeros(8),
            "QuantileLoss ('quantile'): target has shape (8,) and input (8, 1): with one quantile "
            "give both the same shape (for several, pass quantiles as a sequence and give the "
            "input a trailing quantile dim)",
        ),
    ],
)
def test_contract_errors(loss: Any, input: Tensor, target: Tensor, message: str) -> None:
    with pytest.raises(LossInputError) as info:
        loss(input, target)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: QuantileLoss(1.0), "QuantileLoss: quantiles must lie in (0, 1)"),
        (lambda: QuantileLoss([]), "QuantileLoss: quantiles must lie in (0, 1)"),
        (lambda: CharbonnierLoss(eps=0.0), "CharbonnierLoss: eps must be a finite number > 0"),
        (lambda: PoissonLoss(eps=-1.0), "PoissonLoss: eps must be a finite number > 0"),
        (
            lambda: LogCoshLoss(reduction="avg"),  # type: ignore[arg-type]
            "LogCoshLoss: reduction must be 'mean', 'sum' or 'none', got 'avg'",
        ),
    ],
)
def test_config_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("poisson", PoissonLoss),
        ("log_cosh", LogCoshLoss),
        ("logcosh", LogCoshLoss),
        ("quantile", QuantileLoss),
        ("pinball", QuantileLoss),
        ("charbonnier", CharbonnierLoss),
    ],
)
def test_registered_names(name: str, cls: type) -> None:
    assert type(losses.get(name)) is cls
    assert losses.resolve(name).family == "regression"
