"""SSIM, MS-SSIM, total variation, MCC, Hausdorff and clDice: gradients (gradcheck in float64),
values at a perfect prediction, and the input and configuration errors."""

from __future__ import annotations

import pytest
import torch

from losskit import losses
from losskit.errors import ConfigError, LossInputError

F64 = torch.float64


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _labels(*shape: int, classes: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("ssim", {"window_size": 3}, (2, 2, 6, 5)),
        ("ssim", {"window_size": 3, "padding": "same", "window": "uniform"}, (1, 1, 4, 4, 4)),
        ("ms_ssim", {"window_size": 3, "weights": (0.3, 0.7)}, (2, 1, 7, 6)),
    ],
)
def test_gradcheck_structural_similarity(
    name: str, kwargs: dict[str, object], shape: tuple[int, ...]
) -> None:
    loss = losses.get(name, **kwargs)
    x, y = _rand(*shape), _rand(*shape, seed=1)
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(), y.requires_grad_()))


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("ssim", {"window_size": 3}, (1, 2, 5, 4)),
        ("ms_ssim", {"window_size": 3, "weights": (0.3, 0.7)}, (1, 1, 6, 6)),
    ],
)
def test_structural_similarity_second_derivatives(
    name: str, kwargs: dict[str, object], shape: tuple[int, ...]
) -> None:
    # The hand-derived backward must itself be differentiable (create_graph=True).
    loss = losses.get(name, **kwargs)
    x, y = _rand(*shape), _rand(*shape, seed=1)
    assert torch.autograd.gradgradcheck(loss, (x.requires_grad_(), y.requires_grad_()))


@pytest.mark.parametrize("name", ["ssim", "ms_ssim"])
def test_structural_similarity_gradient_in_the_input_only(name: str) -> None:
    # The backward skips the target's adjoint map when only the input needs a gradient.
    kwargs = {"window_size": 3} if name == "ssim" else {"window_size": 3, "weights": (0.4, 0.6)}
    loss = losses.get(name, **kwargs)
    x, y = _rand(2, 2, 8, 7), _rand(2, 2, 8, 7, seed=1)
    (both,) = torch.autograd.grad(loss(x.requires_grad_(), y.requires_grad_()), x)
    (alone,) = torch.autograd.grad(loss(x, y.detach()), x)
    torch.testing.assert_close(alone, both, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("normalize", [False, True])
def test_gradcheck_total_variation(normalize: bool) -> None:
    x = _rand(2, 2, 3, 4)
    loss = losses.get("total_variation", normalize=normalize)
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(),))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mcc", {}),
        ("mcc", {"batch": True, "include_background": False}),
        ("hausdorff_dt", {}),
        ("hausdorff_er", {"k": 3}),
        ("cldice", {"iterations": 2}),
    ],
)
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_gradcheck_shape_losses(name: str, kwargs: dict[str, object], mode: str) -> None:
    logits = 2 * torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    labels = _labels(2, 5, 6)
    target = (
        labels
        if mode == "multiclass"
        else torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).to(F64)
    )
    loss = losses.get(name, mode=mode, **kwargs)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits.requires_grad_(),))


@pytest.mark.parametrize("name", ["hausdorff_dt", "hausdorff_er"])
def test_gradcheck_shape_losses_in_a_soft_target(name: str) -> None:
    # A float target that needs a gradient (multilabel) gets one, as through plain autograd.
    g = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(2, 3, 5, 6, generator=g, dtype=F64)
    target = torch.rand(2, 3, 5, 6, generator=g, dtype=F64).round()
    loss = losses.get(name, mode="multilabel", check="off")
    inputs = (logits.requires_grad_(), target.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, t: loss(x, t), inputs)


@pytest.mark.parametrize("name", ["mcc", "hausdorff_dt", "hausdorff_er"])
@pytest.mark.parametrize("dims", [(6, 7), (4, 5, 3)])
def test_a_perfect_prediction_scores_zero(name: str, dims: tuple[int, ...]) -> None:
    labels = _labels(2, *dims)
    probabilities = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).to(F64)
    loss = losses.get(name, from_logits=False)
    assert float(loss(probabilities, labels)) == 0.0


def test_ssim_and_tv_of_identical_and_constant_images() -> None:
    x = _rand(2, 3, 12, 13)
    assert float(losses.get("ssim")(x, x)) == pytest.approx(0.0, abs=1e-12)
    assert float(losses.get("ms_ssim", weights=(0.5, 0.5), window_size=5)(x, x)) == pytest.approx(
        0.0, abs=1e-12
    )
    assert float(losses.get("total_variation")(torch.full((2, 3, 4, 4), 0.3))) == 0.0


def test_hausdorff_dt_weighs_errors_far_from_the_boundary() -> None:
    target = torch.zeros(1, 1, 1, 9, dtype=F64)
    target[..., :3] = 1.0
    near, far = target.clone(), target.clone()
    near[..., 3] = 1.0  # one pixel past the edge
    far[..., 8] = 1.0  # a spurious pixel five past it
    loss = losses.get("hausdorff_dt", mode="binary", from_logits=False)
    assert float(loss(far, target)) > 4 * float(loss(near, target)) > 0


@pytest.mark.parametrize(
    ("name", "kwargs", "input", "message"),
    [
        ("ssim", {}, torch.rand(1, 1, 8, 8), r"SSIMLoss \('ssim'\).*each at least 11 long"),
        ("ms_ssim", {}, torch.rand(1, 1, 100, 100), r"at least 176 long .* and 5 scales"),
        ("total_variation", {}, torch.rand(4, 3), r"at least one spatial dim"),
        ("hausdorff_dt", {}, torch.rand(2, 3, 8), r"HausdorffDTLoss \('hausdorff_dt'\).*2D"),
        ("cldice", {}, torch.rand(2, 3), r"SoftClDiceLoss \('cldice'\).*2D"),
        ("mcc", {}, torch.rand(4, 3), r"MCCLoss \('mcc'\).*batch=True"),
    ],
)
def test_input_errors_name_the_loss_and_the_fix(
    name: str, kwargs: dict[str, object], input: torch.Tensor, message: str
) -> None:
    loss = losses.get(name, **kwargs)
    args = (input,) if name == "total_variation" else (input, input)
    if name in ("hausdorff_dt", "cldice", "mcc"):
        args = (input, torch.zeros((input.shape[0], *input.shape[2:]), dtype=torch.long))
    with pytest.raises(LossInputError, match=message):
        loss(*args)


def test_mismatched_images_are_never_broadcast() -> None:
    with pytest.raises(LossInputError, match=r"target has shape \(2, 1, 12, 12\) and input"):
        losses.get("ssim")(torch.rand(2, 3, 12, 12), torch.rand(2, 1, 12, 12))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("ssim", {"window_size": 4}, "window_size must be an odd int"),
        ("ssim", {"padding": "full"}, "padding must be 'valid' or 'same'"),
        ("ssim", {"data_range": 0}, "data_range must be a finite number > 0"),
        ("ms_ssim", {"weights": ()}, "weights must be one or more"),
        ("hausdorff_dt", {"alpha": 0.0}, "alpha must be > 0"),
        ("hausdorff_er", {"k": 0}, "k must be an int >= 1"),
        ("cldice", {"iterations": -1}, "iterations must be an int >= 0"),
        ("mcc", {"mode": "binary", "include_background": False}, "include_background=False"),
    ],
)
def test_configuration_errors(name: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        losses.get(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("ssim", (torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12))),
        ("total_variation", (torch.rand(1, 1, 4, 4),)),
        ("mcc", (torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))),
        ("hausdorff_dt", (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))),
        ("hausdorff_er", (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))),
        ("cldice", (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))),
    ],
)
def test_a_non_finite_input_is_refused_by_name(name: str, args: tuple[torch.Tensor, ...]) -> None:
    bad = args[0].clone()
    bad.view(-1)[1] = float("inf")
    loss = losses.get(name)
    with pytest.raises(LossInputError, match=rf"\('{name}'\): input has .*(inf|non-finite)"):
        loss(bad, *args[1:])
