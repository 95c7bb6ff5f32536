"""The segmentation losses against MONAI and kornia: values and input gradients, float32.

Each peer's conventions are mapped onto losskit's arguments explicitly (activation flags,
smoothing constants, reductions, class averaging). Where losskit's documented semantics differ
on purpose, the difference itself is asserted, with the issue that motivated it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

monai_losses = pytest.importorskip("monai.losses")
kornia_losses = pytest.importorskip("kornia.losses")

from losskit.losses._lovasz import LovaszHingeLoss, LovaszSoftmaxLoss  # noqa: E402
from losskit.losses._segmentation import (  # noqa: E402
    DiceLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    TverskyLoss,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SHAPES = {"1d": (3, 4, 17), "2d": (3, 4, 6, 7), "3d": (2, 3, 4, 5, 3)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from intra-op threads, and on a busy machine every parallel
    # region waits for a second core: this keeps the module's run time steady.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _multiclass(shape: tuple[int, ...], case: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Logits and class indices; ``case`` makes a class absent or the whole target background."""
    g = torch.Generator().manual_seed(seed)
    n, c, *spatial = shape
    logits = torch.randn(*shape, generator=g)
    target = torch.randint(0, c, (n, *spatial), generator=g)
    if case == "absent":
        target[0][target[0] == c - 1] = 0  # class c-1 absent from sample 0
    elif case == "empty":
        target.zero_()  # only background: every foreground class absent
    return logits, target


def _multilabel(shape: tuple[int, ...], case: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g)
    target = torch.randint(0, 2, shape, generator=g).float()
    if case == "absent":
        target[0, -1] = 0.0
    elif case == "empty":
        target.zero_()
    return logits, target


def _assert_same(
    ours: LossFn,
    peer: LossFn,
    logits: torch.Tensor,
    target: torch.Tensor,
    peer_target: torch.Tensor | None = None,
    *,
    view: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> None:
    """Values (through ``view``) and input gradients of both losses agree."""
    peer_target = target if peer_target is None else peer_target
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    va, vb = ours(a, target), view(peer(b, peer_target))
    torch.testing.assert_close(va, vb)
    va.sum().backward()
    vb.sum().backward()
    assert a.grad is not None
    assert b.grad is not None
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


# --- MONAI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", SHAPES)
@pytest.mark.parametrize("case", ["random", "absent", "empty"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_multiclass_matches_monai(
    rank: str, case: str, batch: bool, include_background: bool
) -> None:
    logits, target = _multiclass(SHAPES[rank], case)
    peer = monai_losses.DiceLoss(
        softmax=True, to_onehot_y=True, batch=batch, include_background=include_background
    )
    ours = DiceLoss(batch=batch, include_background=include_background)
    _assert_same(ours, peer, logits, target, target.unsqueeze(1))


@pytest.mark.parametrize("rank", SHAPES)
def test_dice_none_reduction_matches_monai_per_class(rank: str) -> None:
    logits, target = _multiclass(SHAPES[rank], "absent")
    n, c = logits.shape[:2]
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, reduction="none")
    ours = DiceLoss(reduction="none")
    _assert_same(ours, peer, logits, target, target.unsqueeze(1), view=lambda t: t.view(n, c))
    # without the background: MONAI drops the column, losskit keeps every class's column
    peer = monai_losses.DiceLoss(
        softmax=True, to_onehot_y=True, reduction="none", include_background=False
    )
    ours = DiceLoss(reduction="none", include_background=False)
    _assert_same(
        lambda x, y: ours(x, y)[:, 1:],
        peer,
        logits,
        target,
        target.unsqueeze(1),
        view=lambda t: t.view(n, c - 1),
    )


@pytest.mark.parametrize("smooth", [(1e-5, 1e-5), (0.0, 1e-5), (1.0, 1.0)])
@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_dice_sigmoid_modes_and_smoothing_match_monai(
    smooth: tuple[float, float], mode: str
) -> None:
    shape = (3, 1, 6, 7) if mode == "binary" else (3, 4, 6, 7)
    logits, target = _multilabel(shape, "absent")
    snr, sdr = smooth
    peer = monai_losses.DiceLoss(sigmoid=True, smooth_nr=snr, smooth_dr=sdr)
    _assert_same(DiceLoss(mode, smooth_nr=snr, smooth_dr=sdr), peer, logits, target)


@pytest.mark.parametrize("rank", ["2d", "3d"])
def test_dice_ignore_index_matches_monai(rank: str) -> None:
    logits, target = _multiclass(SHAPES[rank], "random")
    target[0, ..., :2] = 255
    target[1].view(-1)[::3] = 255
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, ignore_index=255)
    _assert_same(DiceLoss(ignore_index=255), peer, logits, target, target.unsqueeze(1))


def test_jaccard_matches_monai_with_halved_smoothing() -> None:
    # MONAI's jaccard=True computes 1 - (2 I + s_nr) / (2 (P + T - I) + s_dr).
    logits, target = _multiclass(SHAPES["2d"], "absent")
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, jaccard=True)
    ours = JaccardLoss(smooth_nr=0.5e-5, smooth_dr=0.5e-5)
    _assert_same(ours, peer, logits, target, target.unsqueeze(1))


def test_dice_class_weights_and_sum_differ_from_monai_by_documented_factors() -> None:
    # One meaning of `weight` across the catalogue: sum_c w_c l_c / sum_c w_c. MONAI multiplies
    # and then takes the plain mean over classes (so a uniform weight of 2 doubles its loss), and
    # its weight length depends on include_background (Project-MONAI/MONAI#7729).
    logits, target = _multiclass(SHAPES["2d"], "random")
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, weight=w)(
        logits, target.unsqueeze(1)
    )
    ours = DiceLoss(weight=w)(logits, target)
    torch.testing.assert_close(ours, peer * len(w) / w.sum())
    doubled = DiceLoss(weight=2 * w)(logits, target)
    torch.testing.assert_close(doubled, ours)
    # "sum" sums the per-sample losses (each a class average); MONAI sums over samples and classes.
    peer_sum = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, reduction="sum")(
        logits, target.unsqueeze(1)
    )
    torch.testing.assert_close(DiceLoss(reduction="sum")(logits, target) * 4, peer_sum)


@pytest.mark.parametrize("rank", SHAPES)
@pytest.mark.parametrize("case", ["random", "absent"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("w_type", ["square", "simple", "uniform"])
def test_generalized_dice_matches_monai(rank: str, case: str, batch: bool, w_type: str) -> None:
    # An absent class takes the largest weight of the present classes in both libraries.
    logits, target = _multiclass(SHAPES[rank], case)
    peer = monai_losses.GeneralizedDiceLoss(
        softmax=True, to_onehot_y=True, batch=batch, w_type=w_type
    )
    ours = GeneralizedDiceLoss(batch=batch, w_type=w_type)
    _assert_same(ours, peer, logits, target, target.unsqueeze(1))


def test_generalized_dice_none_and_include_background_match_monai() -> None:
    logits, target = _multiclass(SHAPES["3d"], "absent")
    n = logits.shape[0]
    for include_background in (True, False):
        peer = monai_losses.GeneralizedDiceLoss(
            softmax=True,
            to_onehot_y=True,
            reduction="none",
            include_background=include_background,
        )
        ours = GeneralizedDiceLoss(reduction="none", include_background=include_background)
        _assert_same(ours, peer, logits, target, target.unsqueeze(1), view=lambda t: t.view(n))


def test_generalized_dice_with_no_class_present_differs_from_monai() -> None:
    # Project-MONAI/MONAI#371: empty classes have infinite weights 1/0^2. MONAI replaces them by
    # the largest finite weight of the sample, which is 0 when no class is present: every weight
    # is 0, the loss is the constant 1 - s_nr / s_dr = 0 and predicted mass goes unpunished.
    # losskit gives every class weight 1 there (a one-voxel class's weight), so the loss is the
    # Dice loss of an empty target: positive, with a gradient that shrinks the prediction.
    logits, target = _multilabel((2, 3, 5, 5), "empty")
    logits = logits + 2.0  # a confident, wrong foreground
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ours = GeneralizedDiceLoss("multilabel")(a, target)
    peer = monai_losses.GeneralizedDiceLoss(sigmoid=True)(b, target)
    ours.backward()
    peer.backward()
    assert peer.item() == 0.0
    assert b.grad is not None
    assert float(b.grad.abs().max()) == 0.0
    assert ours.item() > 0.99
    assert a.grad is not None
    assert bool((a.grad > 0).all())


@pytest.mark.parametrize("rank", SHAPES)
@pytest.mark.parametrize("case", ["random", "absent", "empty"])
@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.7), (0.9, 0.1)])
def test_tversky_matches_monai(rank: str, case: str, alpha: float, beta: float) -> None:
    logits, target = _multiclass(SHAPES[rank], case)
    peer = monai_losses.TverskyLoss(softmax=True, to_onehot_y=True, alpha=alpha, beta=beta)
    ours = TverskyLoss(alpha=alpha, beta=beta)
    _assert_same(ours, peer, logits, target, target.unsqueeze(1))


def test_tversky_multilabel_ignore_and_batch_match_monai() -> None:
    logits, target = _multilabel((3, 4, 6, 7), "absent")
    peer = monai_losses.TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7, batch=True)
    _assert_same(TverskyLoss("multilabel", alpha=0.3, beta=0.7, batch=True), peer, logits, target)
    labels = torch.randint(0, 4, (3, 6, 7))
    labels[:, :2] = 255
    peer = monai_losses.TverskyLoss(
        softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7, ignore_index=255
    )
    ours = TverskyLoss(alpha=0.3, beta=0.7, ignore_index=255)
    _assert_same(ours, peer, logits, labels, labels.unsqueeze(1))


# --- kornia ------------------------------------------------------------------------------------
# kornia takes logits (N, C, H, W) and class indices, and averages over the classes present in
# each sample's target (`average="macro"`), with eps in the denominator only. Its default
# ignore_index is -100.


@pytest.mark.parametrize("case", ["random", "absent", "empty"])
@pytest.mark.parametrize("size", [(6, 7), (64, 200)])  # the second takes kornia's CPU path
def test_dice_macro_matches_kornia(case: str, size: tuple[int, int]) -> None:
    logits, target = _multiclass((3, 4, *size), case)
    target[1, :2] = -100
    ours = DiceLoss(smooth_nr=0.0, smooth_dr=1e-8, classes="present", ignore_index=-100)
    peer = kornia_losses.DiceLoss(average="macro", eps=1e-8)
    _assert_same(ours, peer, logits, target)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ours = DiceLoss(smooth_nr=0.0, smooth_dr=1e-8, classes="present", ignore_index=-100, weight=w)
    _assert_same(ours, kornia_losses.DiceLoss(average="macro", eps=1e-8, weight=w), logits, target)


def test_fully_ignored_sample_scores_zero_where_kornia_scores_one() -> None:
    # open-mmlab/mmsegmentation#2996: an all-ignored batch must not produce a made-up loss.
    # kornia enters a fully ignored sample as loss 1 (zero gradient); losskit as 0.
    logits, target = _multiclass((2, 3, 5, 5), "random")
    target[0] = -100
    ours = DiceLoss(smooth_nr=0.0, smooth_dr=1e-8, classes="present", ignore_index=-100)
    peer = kornia_losses.dice_loss(logits, target, average="macro", eps=1e-8)
    per_sample = DiceLoss(
        smooth_nr=0.0, smooth_dr=1e-8, classes="present", ignore_index=-100, reduction="sum"
    )
    torch.testing.assert_close(2 * ours(logits, target), per_sample(logits, target))
    torch.testing.assert_close(2 * peer - 1.0, per_sample(logits, target))


@pytest.mark.parametrize("case", ["random", "absent"])
@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.7), (1.0, 1.0)])
def test_tversky_matches_kornia(case: str, alpha: float, beta: float) -> None:
    logits, target = _multiclass((3, 4, 6, 7), case)
    target[2, 0] = -100
    ours = TverskyLoss(
        alpha=alpha,
        beta=beta,
        smooth_nr=0.0,
        smooth_dr=1e-8,
        classes="present",
        ignore_index=-100,
    )
    peer = kornia_losses.TverskyLoss(alpha=alpha, beta=beta, eps=1e-8)
    _assert_same(ours, peer, logits, target)


@pytest.mark.parametrize("size", [(1, 1), (6, 7), (32, 33)])
@pytest.mark.parametrize("case", ["random", "empty"])
def test_lovasz_hinge_matches_kornia(size: tuple[int, int], case: str) -> None:
    # kornia: one logit channel (N, 1, H, W), labels (N, H, W), the mean over images.
    logits, target = _multilabel((3, 1, *size), case, seed=1)
    peer = kornia_losses.LovaszHingeLoss()
    _assert_same(LovaszHingeLoss(), peer, 3 * logits, target, target.squeeze(1).long())


@pytest.mark.parametrize("size", [(1, 1), (6, 7), (32, 33)])
@pytest.mark.parametrize("case", ["random", "absent", "empty"])
def test_lovasz_softmax_matches_kornia(size: tuple[int, int], case: str) -> None:
    # kornia averages over all classes, absent ones included: classes="all".
    logits, target = _multiclass((3, 4, *size), case, seed=2)
    peer = kornia_losses.LovaszSoftmaxLoss()
    _assert_same(LovaszSoftmaxLoss(classes="all"), peer, logits, target)


def test_lovasz_softmax_weights_differ_from_kornia_by_the_weight_sum() -> None:
    # kornia multiplies each class's term by its weight and still divides by C.
    logits, target = _multiclass((3, 4, 6, 7), "random", seed=3)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ours = LovaszSoftmaxLoss(classes="all", weight=w)(logits, target)
    peer = kornia_losses.lovasz_softmax_loss(logits, target, weight=w)
    torch.testing.assert_close(ours, peer * len(w) / w.sum())
