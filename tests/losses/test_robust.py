"""The robust family: gradients (gradcheck in float64, the adaptive latents included), what the
adaptive loss learns, laws every fixed-shape loss obeys, and the configuration errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from losskit import losses
from losskit.errors import ConfigError, LossInputError
from losskit.losses._robust import AdaptiveRobustLoss, BarronLoss

FIXED = ["cauchy", "geman_mcclure", "welsch", "barron"]


def _pair(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return tuple(3 * torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2))  # type: ignore[return-value]


@pytest.mark.parametrize("name", FIXED)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_fixed_shapes(name: str, reduction: str) -> None:
    x, t = _pair(3, 4)
    loss = losses.get(name, scale=0.7, reduction=reduction)
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(), t.requires_grad_()))


@pytest.mark.parametrize("alpha", [-math.inf, -3.0, 0.0, 0.5, 2.0, 4.0, math.inf])
def test_gradcheck_barron_special_and_general_shapes(alpha: float) -> None:
    x, t = _pair(5)
    x = x / 3  # keep exp(z / 2) of alpha = inf moderate
    loss = BarronLoss(alpha=alpha, scale=1.3)
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(), t.requires_grad_() / 3))


@pytest.mark.parametrize("num_dims", [None, 3])
def test_gradcheck_adaptive_input_shape_and_scale(num_dims: int | None) -> None:
    loss = AdaptiveRobustLoss(alpha_init=0.6, scale_init=0.8, num_dims=num_dims).double()
    x, t = _pair(4, 3)
    shape = () if num_dims is None else (num_dims,)
    latent_alpha = torch.full(shape, 0.3, dtype=torch.float64, requires_grad=True)
    latent_scale = torch.full(shape, -0.2, dtype=torch.float64, requires_grad=True)

    def nll(x: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return functional_call(loss, {"latent_alpha": a, "latent_scale": s}, (x, t))

    assert torch.autograd.gradcheck(nll, (x.requires_grad_(), latent_alpha, latent_scale))


@pytest.mark.parametrize(("draw", "low", "high"), [("normal", 1.8, 2.0), ("cauchy", 0.0, 0.3)])
def test_adaptive_loss_learns_the_shape_of_the_residuals(
    draw: str, low: float, high: float
) -> None:
    g = torch.Generator().manual_seed(0)
    if draw == "normal":
        residuals = 2.0 * torch.randn(4000, generator=g)
        true_nll = (residuals**2 / 8 + math.log(2.0 * math.sqrt(2 * math.pi))).mean()
    else:
        residuals = 2.0 * torch.tan(math.pi * (torch.rand(4000, generator=g) - 0.5))
        true_nll = (torch.log1p(residuals**2 / 4) + math.log(2.0 * math.pi)).mean()
    loss = AdaptiveRobustLoss()
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        nll = loss(residuals, torch.zeros_like(residuals))
        nll.backward()
        optimizer.step()
    assert low <= loss.alpha.item() <= high
    # The fitted law explains the sample about as well as the law that drew it (the family
    # holds both: alpha -> 2 is the Gaussian, alpha -> 0 the Cauchy of scale sqrt(2) c); the
    # approach to a bound of the sigmoid-mapped shape is slow, hence the wider upper margin.
    assert float(true_nll) - 0.05 <= nll.item() <= float(true_nll) + 0.03


@settings(max_examples=40, deadline=None)
@given(
    d=st.lists(st.floats(-50, 50), min_size=2, max_size=6),
    alpha=st.sampled_from([-math.inf, -2.0, 0.0, 1.0, 1.5, 2.0]),
)
def test_fixed_shape_losses_are_zero_at_zero_and_grow_with_the_residual(
    d: list[float], alpha: float
) -> None:
    x = torch.tensor(d, dtype=torch.float64)
    loss = BarronLoss(alpha=alpha, reduction="none")
    values = loss(x, torch.zeros_like(x))
    assert float(loss(torch.zeros(1), torch.zeros(1))) == 0.0
    assert (values >= 0).all()
    order = x.abs().argsort()
    assert (values[order].diff() >= -1e-12).all()


def test_adaptive_parameters_reach_a_criterion() -> None:
    import losskit as lk

    crit = lk.Criterion({"robust": lk.Term("adaptive_robust", input="y_hat", target="y")})
    names = {name for name, _ in crit.named_parameters()}
    assert any(name.endswith("latent_alpha") for name in names)
    assert any(name.endswith("latent_scale") for name in names)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha_lo": -0.5}, "0 <= alpha_lo < alpha_hi"),
        ({"alpha_lo": 1.0, "alpha_hi": 1.0}, "0 <= alpha_lo < alpha_hi"),
        ({"alpha_init": 1.999}, r"alpha_init must lie strictly inside \(0.001, 1.999\)"),
        ({"scale_init": 1e-6}, "scale_init must exceed scale_lo"),
        ({"num_dims": 0}, "num_dims must be None or an int >= 1"),
    ],
)
def test_adaptive_configuration_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AdaptiveRobustLoss(**kwargs)  # type: ignore[arg-type]


def test_input_errors_name_the_loss() -> None:
    with pytest.raises(
        LossInputError, match=r"AdaptiveRobustLoss \('adaptive_robust'\).*num_dims=3"
    ):
        AdaptiveRobustLoss(num_dims=3)(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(LossInputError, match=r"CauchyLoss \('cauchy'\): target has shape \(4, 1\)"):
        losses.get("cauchy")(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ConfigError, match="BarronLoss: scale must be a finite number > 0"):
        BarronLoss(scale=0.0)
    with pytest.raises(ConfigError, match="alpha must be a number or"):
        BarronLoss(alpha=math.nan)
