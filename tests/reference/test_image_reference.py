"""SSIM, MS-SSIM and total variation against MONAI 1.6.1 and kornia 0.9.0.

Mappings: MONAI's ``SSIMLoss(spatial_dims)`` is ``SSIMLoss()`` (valid windows, ``1 - SSIM`` per
sample); kornia's ``ssim_loss(x, y, w, padding="same")`` is ``SSIMLoss(window_size=w,
padding="same") / 2``; MONAI's ``compute_ms_ssim`` is ``1 - MSSSIMLoss(reduction="none")``;
kornia's ``total_variation(img, reduction)`` per channel ``(N, C)``, summed over channels, is
``TotalVariationLoss(normalize=reduction == "mean", reduction="none")``.
"""

from __future__ import annotations

import pytest
import torch

monai_losses = pytest.importorskip("monai.losses")
monai_regression = pytest.importorskip("monai.metrics.regression")
kornia_losses = pytest.importorskip("kornia.losses")

from losskit.losses._smoothness import TotalVariationLoss  # noqa: E402
from losskit.losses._ssim import MSSSIMLoss, SSIMLoss  # noqa: E402


def _images(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g)
    return x, (x + 0.2 * torch.randn(*shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((2, 3, 20, 18), {}),
        ((2, 1, 16, 17, 15), {}),  # 3D
        ((3, 2, 14, 14), {"win_size": 7, "kernel_sigma": 1.0, "data_range": 2.0}),
        ((2, 2, 13, 13), {"kernel_type": "uniform", "win_size": 5}),
    ],
)
def test_ssim_matches_monai(shape: tuple[int, ...], kwargs: dict[str, object]) -> None:
    x, y = _images(*shape)
    xm, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    theirs = monai_losses.SSIMLoss(spatial_dims=len(shape) - 2, reduction="none", **kwargs)
    expected = theirs(xm, y).view(-1)
    ours = SSIMLoss(
        window_size=int(kwargs.get("win_size", 11)),  # type: ignore[call-overload]
        sigma=float(kwargs.get("kernel_sigma", 1.5)),  # type: ignore[arg-type]
        window=kwargs.get("kernel_type", "gaussian"),  # type: ignore[arg-type]
        data_range=float(kwargs.get("data_range", 1.0)),  # type: ignore[arg-type]
        reduction="none",
    )
    actual = ours(xo, y)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    actual.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(xo.grad, xm.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("window", [5, 11])
def test_ssim_is_twice_kornias(padding: str, window: int) -> None:
    x, y = _images(2, 3, 16, 19, seed=1)
    expected = kornia_losses.ssim_loss(x, y, window, padding=padding)
    actual = SSIMLoss(window_size=window, padding=padding)(x, y)  # type: ignore[arg-type]
    torch.testing.assert_close(actual / 2, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "weights", "window"),
    [
        ((2, 2, 180, 176), (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11),
        ((2, 1, 40, 44), (0.2, 0.3, 0.5), 7),
        ((1, 2, 24, 24, 24), (0.5, 0.5), 5),
    ],
)
def test_ms_ssim_matches_monai(
    shape: tuple[int, ...], weights: tuple[float, ...], window: int
) -> None:
    x, y = _images(*shape, seed=2)
    expected = monai_regression.compute_ms_ssim(
        x, y, spatial_dims=len(shape) - 2, kernel_size=window, weights=weights
    ).view(-1)
    actual = MSSSIMLoss(weights=weights, window_size=window, reduction="none")(x, y)
    torch.testing.assert_close(1 - actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_total_variation_matches_kornia(reduction: str) -> None:
    x, _ = _images(3, 2, 7, 9)
    xk, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = kornia_losses.total_variation(xk, reduction=reduction).sum(1)
    actual = TotalVariationLoss(normalize=reduction == "mean", reduction="none")(xo)
    torch.testing.assert_close(actual, expected)
    actual.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(xo.grad, xk.grad)
