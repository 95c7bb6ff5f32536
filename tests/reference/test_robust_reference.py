"""The robust family against kornia and against Barron's paper, formula by formula.

kornia 0.9.0's ``cauchy_loss``, ``geman_mcclure_loss``, ``welsch_loss`` and ``charbonnier_loss``
are Barron's loss at ``alpha = 0, -2, -inf, 1`` with scale 1 (kornia's ``charbonnier_loss`` is
losskit's ``CharbonnierLoss(eps=1) - 1``, and so ``BarronLoss(alpha=1)``). The partition
function is checked against closed forms and against scipy's adaptive quadrature.
"""

from __future__ import annotations

import math

import pytest
import torch

kornia_losses = pytest.importorskip("kornia.losses")

from losskit.losses._robust import (  # noqa: E402
    AdaptiveRobustLoss,
    BarronLoss,
    CauchyLoss,
    GemanMcClureLoss,
    WelschLoss,
    barron_rho,
    log_partition,
)


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(4, 3, 5, generator=g), torch.randn(4, 3, 5, generator=g)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (CauchyLoss, "cauchy_loss"),
        (GemanMcClureLoss, "geman_mcclure_loss"),
        (WelschLoss, "welsch_loss"),
        (lambda reduction: BarronLoss(alpha=1.0, reduction=reduction), "charbonnier_loss"),
    ],
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_kornia(ours, theirs, reduction: str) -> None:  # type: ignore[no-untyped-def]
    x, y = _pair()
    xo, xk = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = getattr(kornia_losses, theirs)(xk, y, reduction=reduction)
    actual = ours(reduction=reduction)(xo, y)
    torch.testing.assert_close(actual, expected)
    actual.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(xo.grad, xk.grad)


def _paper(d: float, alpha: float, c: float) -> float:
    """Barron 2019, eq. 1 and its limits (eq. 3-8), in plain Python floats."""
    z = (d / c) ** 2
    if alpha == 2:
        return z / 2
    if alpha == 0:
        return math.log(z / 2 + 1)
    if alpha == -math.inf:
        return 1 - math.exp(-z / 2)
    if alpha == math.inf:
        return math.exp(z / 2) - 1
    b = abs(alpha - 2)
    return b / alpha * ((z / b + 1) ** (alpha / 2) - 1)


@pytest.mark.parametrize("alpha", [-math.inf, -10.0, -2.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_barron_follows_the_paper(alpha: float, scale: float) -> None:
    d = torch.tensor([-4.0, -1.0, -0.1, 0.0, 0.3, 2.5], dtype=torch.float64)
    expected = torch.tensor([_paper(float(v), alpha, scale) for v in d], dtype=torch.float64)
    actual = BarronLoss(alpha=alpha, scale=scale, reduction="none")(d, torch.zeros_like(d))
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("special", [0.0, 2.0])
def test_the_special_cases_are_the_limits_of_the_general_formula(special: float) -> None:
    z = torch.linspace(0, 30, 31, dtype=torch.float64)
    # A tensor alpha is kept 1e-5 from 0 and 2: the value moves by about that much.
    near = barron_rho(z, torch.tensor(special + 1e-7, dtype=torch.float64))
    torch.testing.assert_close(near, barron_rho(z, special), rtol=1e-4, atol=1e-5)
    # -inf: the general formula approaches Welsch as alpha decreases
    far = barron_rho(z, -1e6)
    torch.testing.assert_close(far, barron_rho(z, -math.inf), rtol=1e-4, atol=1e-5)


def test_log_partition_closed_forms() -> None:
    scipy_special = pytest.importorskip("scipy.special")
    alpha = torch.tensor([1e-9, 1.0, 2.0 - 1e-9], dtype=torch.float64)
    expected = torch.tensor(
        [
            math.log(math.pi * math.sqrt(2)),  # Z(0): Cauchy
            math.log(2 * math.e * float(scipy_special.k1(1.0))),  # Z(1): 2 e K1(1)
            math.log(math.sqrt(2 * math.pi)),  # Z(2): Gaussian
        ],
        dtype=torch.float64,
    )
    # alpha is kept 1e-5 from 0 and 2 (see barron_rho): log Z moves by about that much there
    torch.testing.assert_close(log_partition(alpha), expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("alpha", [0.01, 0.3, 1.3, 1.999, 2.5, 4.0])
def test_log_partition_against_adaptive_quadrature(alpha: float) -> None:
    integrate = pytest.importorskip("scipy.integrate")
    density = lambda x: math.exp(-_paper(x, alpha, 1.0))  # noqa: E731
    z, _ = integrate.quad(density, 0, math.inf, limit=500, epsabs=1e-13, epsrel=1e-12)
    actual = log_partition(torch.tensor(alpha, dtype=torch.float64))
    torch.testing.assert_close(actual, torch.tensor(math.log(2 * z), dtype=torch.float64))


def test_adaptive_nll_is_rho_plus_log_scale_plus_log_z() -> None:
    loss = AdaptiveRobustLoss(alpha_init=0.7, scale_init=1.5, reduction="none").double()
    x, y = _pair(1)
    x, y = x.double(), y.double()
    alpha, scale = loss.alpha.detach(), loss.scale.detach()
    torch.testing.assert_close(alpha, torch.tensor(0.7, dtype=torch.float64))
    torch.testing.assert_close(scale, torch.tensor(1.5, dtype=torch.float64))
    expected = (
        torch.tensor(
            [_paper(float(d), 0.7, 1.5) for d in (x - y).flatten()], dtype=torch.float64
        ).view_as(x)
        + math.log(1.5)
        + float(log_partition(alpha))
    )
    torch.testing.assert_close(loss(x, y), expected)
