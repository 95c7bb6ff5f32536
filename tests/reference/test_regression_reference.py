"""Poisson, log-cosh, quantile and Charbonnier against ``torch.nn``, kornia and their formulas:
values and gradients (input and target), every reduction, float32."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from losskit.losses._regression import CharbonnierLoss, LogCoshLoss, PoissonLoss, QuantileLoss

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()


def _grads(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor) -> tuple[Tensor, ...]:
    x = x.detach().clone().requires_grad_()
    t = t.detach().clone().requires_grad_()
    value = fn(x, t)
    cotangent = torch.randn(value.shape, generator=torch.Generator().manual_seed(1))
    gx, gt = torch.autograd.grad(value, (x, t), cotangent.to(value.dtype))
    return value.detach(), gx, gt


def _assert_same(
    ours: Callable[[Tensor, Tensor], Tensor],
    theirs: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    t: Tensor,
) -> None:
    for got, expected in zip(_grads(ours, x, t), _grads(theirs, x, t)):
        torch.testing.assert_close(got, expected.to(got.dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_matches_torch(reduction: str, log_input: bool, full: bool) -> None:
    g = torch.Generator().manual_seed(0)
    rate = torch.rand(7, 4, generator=g) * 5 + 0.1
    counts = torch.poisson(rate * 1.3, generator=g)
    x = rate.log() if log_input else rate
    ours = PoissonLoss(log_input=log_input, full=full, reduction=reduction)  # type: ignore[arg-type]
    theirs = torch.nn.PoissonNLLLoss(log_input=log_input, full=full, reduction=reduction)
    value, gx, gt = _grads(ours, x, counts)
    ref_value, ref_gx, ref_gt = _grads(theirs, x, counts)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(gx, ref_gx)
    # torch's Stirling term differentiates t log t at a count of 0 (NaN); losskit's stays finite.
    assert bool(torch.isfinite(gt).all())
    finite = torch.isfinite(ref_gt)
    assert full or bool(finite.all())
    torch.testing.assert_close(gt[finite], ref_gt[finite])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("scale", [0.5, 3.0, 60.0])
def test_log_cosh_matches_formula(reduction: str, scale: float) -> None:
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 5, generator=g) * scale, torch.randn(6, 5, generator=g)
    ours = LogCoshLoss(reduction=reduction, impl="eager")  # type: ignore[arg-type]
    # In float64 cosh does not overflow below |d| = 710.
    _assert_same(
        ours,
        lambda x, t: _reduce(torch.log(torch.cosh(x.double() - t.double())), reduction),
        x,
        t,
    )


def test_log_cosh_far_from_zero_is_absolute_error_minus_log_2() -> None:
    d = torch.tensor([-1e4, -200.0, 200.0, 3e4])
    torch.testing.assert_close(
        LogCoshLoss(reduction="none", impl="eager")(d, torch.zeros(4)), d.abs() - math.log(2)
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [1e-3, 0.1, 1.0])
def test_charbonnier_matches_formula(reduction: str, eps: float) -> None:
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ours = CharbonnierLoss(eps=eps, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    _assert_same(ours, lambda x, t: _reduce(torch.sqrt((x - t) ** 2 + eps**2), reduction), x, t)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_charbonnier_with_eps_one_is_kornia_plus_one(reduction: str) -> None:
    kornia_losses = pytest.importorskip("kornia.losses")
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    ours = CharbonnierLoss(eps=1.0, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    offset = {"mean": 1.0, "sum": float(x.numel()), "none": 1.0}[reduction]
    _assert_same(
        lambda x, t: ours(x, t) - offset,
        lambda x, t: kornia_losses.charbonnier_loss(x, t, reduction=reduction),
        x,
        t,
    )


def pinball(x: Tensor, t: Tensor, q: float) -> Tensor:
    d = t - x
    return torch.where(d >= 0, q * d, (q - 1) * d)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("q", [0.1, 0.5, 0.95])
def test_one_quantile_matches_formula(reduction: str, q: float) -> None:
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ours = QuantileLoss(q, reduction=reduction)  # type: ignore[arg-type]
    _assert_same(ours, lambda x, t: _reduce(pinball(x, t, q), reduction), x, t)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_several_quantiles_match_formula(reduction: str) -> None:
    g = torch.Generator().manual_seed(0)
    quantiles = [0.1, 0.5, 0.9]
    x, t = torch.randn(6, 5, 3, generator=g), torch.randn(6, 5, generator=g)
    ours = QuantileLoss(quantiles, reduction=reduction)  # type: ignore[arg-type]

    def theirs(x: Tensor, t: Tensor) -> Tensor:
        loss = torch.stack([pinball(x[..., i], t, q) for i, q in enumerate(quantiles)], -1)
        return _reduce(loss, reduction)

    _assert_same(ours, theirs, x, t)
