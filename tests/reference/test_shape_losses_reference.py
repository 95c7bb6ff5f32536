"""MCC, Hausdorff (distance transform, erosion) and soft clDice against MONAI 1.6.1 and kornia
0.9.0, values and input gradients, and the distance transform against scipy's.

Mappings: MONAI's ``sigmoid=True`` is ``mode="multilabel"`` (or ``"binary"``), its
``softmax=True, to_onehot_y=True`` is ``mode="multiclass"`` with class indices; MONAI's
``reduction="none"`` per-class ``(N, C, 1, ...)`` of MCC and HausdorffDT is losskit's ``(N, C)``.
MONAI's ``SoftclDiceLoss`` pools every channel of a sample into one score, losskit scores each
class: they agree channel by channel. kornia's ``HausdorffERLoss`` takes probabilities and
class indices ``(N, 1, H, W)``: ``from_logits=False`` and ``target[:, 0]``; its ``'none'``
output ``(C, N, 1, H, W)`` averaged over positions is losskit's ``(N, C)`` transposed.
"""

from __future__ import annotations

import pytest
import torch

monai_losses = pytest.importorskip("monai.losses")
kornia_losses = pytest.importorskip("kornia.losses")
ndimage = pytest.importorskip("scipy.ndimage")

from losskit.losses import _distance  # noqa: E402
from losskit.losses._cldice import SoftClDiceLoss  # noqa: E402
from losskit.losses._distance import HausdorffDTLoss, HausdorffERLoss, distance_field  # noqa: E402
from losskit.losses._mcc import MCCLoss  # noqa: E402

SHAPES = {"2d": (2, 3, 12, 10), "3d": (2, 3, 7, 8, 6)}


def _logits_and_labels(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(*shape, generator=g)
    # Blobs rather than noise, so the distance fields and skeletons have structure.
    labels = torch.nn.functional.avg_pool2d(
        torch.randn(shape[0] * shape[1], 1, *shape[2:4], generator=g), 3, 1, 1
    )
    labels = labels.view(shape[0], shape[1], *shape[2:4]).argmax(1)
    if len(shape) == 5:
        labels = labels.unsqueeze(-1).expand(*labels.shape, shape[4]).contiguous()
    return logits, labels


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).movedim(-1, 1).float()


def _compare(
    ours: torch.Tensor, theirs: torch.Tensor, x_ours: torch.Tensor, x_theirs: torch.Tensor
) -> None:
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("include_background", [True, False])
def test_mcc_matches_monai(mode: str, dims: str, include_background: bool) -> None:
    logits, labels = _logits_and_labels(SHAPES[dims])
    target = _one_hot(labels, logits.shape[1])
    xo, xm = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    multiclass = mode == "multiclass"
    theirs = monai_losses.MCCLoss(
        include_background=include_background,
        softmax=multiclass,
        sigmoid=not multiclass,
        reduction="none",
    )(xm, target)
    ours = MCCLoss(mode, include_background=include_background, reduction="none")(  # type: ignore[arg-type]
        xo, labels if multiclass else target
    )
    if not include_background:
        ours = ours[:, 1:]
    _compare(ours, theirs.flatten(1), xo, xm)


def test_mcc_batch_matches_monai() -> None:
    logits, labels = _logits_and_labels(SHAPES["2d"], seed=3)
    theirs = monai_losses.MCCLoss(softmax=True, batch=True)(logits, _one_hot(labels, 3))
    torch.testing.assert_close(MCCLoss(batch=True)(logits, labels), theirs)


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_hausdorff_dt_matches_monai(dims: str, alpha: float) -> None:
    logits, labels = _logits_and_labels(SHAPES[dims], seed=1)
    xo, xm = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    theirs = monai_losses.HausdorffDTLoss(
        alpha=alpha, include_background=True, softmax=True, to_onehot_y=True, reduction="none"
    )(xm, labels.unsqueeze(1))
    ours = HausdorffDTLoss(alpha=alpha, reduction="none")(xo, labels)
    _compare(ours, theirs.flatten(1), xo, xm)


def test_hausdorff_dt_mean_without_background_matches_monai() -> None:
    logits, labels = _logits_and_labels(SHAPES["2d"], seed=2)
    theirs = monai_losses.HausdorffDTLoss(sigmoid=True)(logits, _one_hot(labels, 3))
    ours = HausdorffDTLoss("multilabel", include_background=False)(logits, _one_hot(labels, 3))
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("chunk", [1, 25, 1 << 16])  # one image, a few, the whole stack a group
@pytest.mark.parametrize("shape", [(3, 9, 11), (6, 5, 4), (1, 13), (2, 3, 4, 5)])
def test_distance_field_matches_scipy(
    shape: tuple[int, ...], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_distance, "_IMAGES_CHUNK", chunk)
    g = torch.Generator().manual_seed(sum(shape))
    mask = torch.rand(*shape, generator=g) > 0.6
    ndim = len(shape) - 1
    expected = torch.zeros(shape, dtype=torch.float64)
    for i, image in enumerate(mask.numpy()):
        if image.any() and not image.all():
            expected[i] = torch.from_numpy(
                ndimage.distance_transform_edt(image) + ndimage.distance_transform_edt(~image)
            )
    torch.testing.assert_close(distance_field(mask, ndim).double(), expected)


@pytest.mark.parametrize("shape", [(3, 40, 33), (2, 9, 17, 12)])
def test_distance_field_matches_scipy_far_from_sparse_sources(shape: tuple[int, ...]) -> None:
    # Few sources: distances up to the image's diagonal, the longest each pass must search.
    g = torch.Generator().manual_seed(len(shape))
    mask = torch.rand(*shape, generator=g) > 0.997
    mask[0] = False
    mask[0, (0,) * (len(shape) - 1)] = True  # one pixel in a corner
    ndim = len(shape) - 1
    expected = torch.zeros(shape, dtype=torch.float64)
    for i, image in enumerate(mask.numpy()):
        if image.any() and not image.all():
            expected[i] = torch.from_numpy(
                ndimage.distance_transform_edt(image) + ndimage.distance_transform_edt(~image)
            )
    torch.testing.assert_close(distance_field(mask, ndim).double(), expected)


@pytest.mark.parametrize(("dims", "cls"), [("2d", "HausdorffERLoss"), ("3d", "HausdorffERLoss3D")])
@pytest.mark.parametrize(("alpha", "k"), [(2.0, 10), (1.5, 3)])
def test_hausdorff_er_matches_kornia(dims: str, cls: str, alpha: float, k: int) -> None:
    logits, labels = _logits_and_labels(SHAPES[dims], seed=4)
    probs = logits.softmax(1)
    xo, xk = probs.clone().requires_grad_(), probs.clone().requires_grad_()
    theirs = getattr(kornia_losses, cls)(alpha=alpha, k=k, reduction="none")(
        xk, labels.unsqueeze(1)
    )
    ours = HausdorffERLoss(alpha=alpha, k=k, from_logits=False, reduction="none")(xo, labels)
    _compare(ours, theirs.flatten(2).mean(-1).T, xo, xk)
    mean = getattr(kornia_losses, cls)(alpha=alpha, k=k)(probs, labels.unsqueeze(1))
    torch.testing.assert_close(
        HausdorffERLoss(alpha=alpha, k=k, from_logits=False)(probs, labels), mean
    )


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("iterations", [0, 3, 5])
def test_cldice_matches_monai_channel_by_channel(dims: str, iterations: int) -> None:
    logits, labels = _logits_and_labels(SHAPES[dims], seed=5)
    target = _one_hot(labels, 3)
    xo, xm = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = SoftClDiceLoss("multilabel", iterations=iterations, reduction="none")(xo, target)
    monai = monai_losses.SoftclDiceLoss(iter_=iterations, sigmoid=True, reduction="none")
    theirs = torch.stack([monai(xm[:, [c]], target[:, [c]]) for c in range(3)], 1)
    _compare(ours, theirs, xo, xm)


def test_cldice_binary_mean_matches_monai() -> None:
    logits, labels = _logits_and_labels(SHAPES["2d"], seed=6)
    target = (labels == 1).float().unsqueeze(1)
    x = logits[:, :1]
    theirs = monai_losses.SoftclDiceLoss(iter_=4, sigmoid=True)(x, target)
    torch.testing.assert_close(SoftClDiceLoss("binary", iterations=4)(x, target), theirs)
