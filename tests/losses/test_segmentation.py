"""Segmentation losses: hand-derived gradients, laws, input contracts and the field-note cases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit as lk
from losskit import losses
from losskit.losses import _overlap
from losskit.losses._lovasz import LovaszHingeLoss, LovaszSoftmaxLoss
from losskit.losses._segmentation import (
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    TverskyLoss,
)

Factory = Callable[..., torch.nn.Module]

# Every loss of the module with the modes it supports.
OVERLAP: dict[str, Factory] = {
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "tversky": lambda *a, **k: TverskyLoss(*a, alpha=0.3, beta=0.7, **k),
    "focal_tversky": FocalTverskyLoss,
    "generalized_dice": GeneralizedDiceLoss,
}
BOUNDED = ("dice", "jaccard", "tversky", "focal_tversky", "generalized_dice")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from intra-op threads, and on a busy machine every parallel
    # region waits for a second core: this keeps the module's run time steady.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _targets(shape: tuple[int, ...], mode: str, g: torch.Generator) -> torch.Tensor:
    n, c, *spatial = shape
    if mode == "multiclass":
        return torch.randint(0, c, (n, *spatial), generator=g)
    return torch.randint(0, 2, shape, generator=g).to(torch.float64)


def _inputs(
    shape: tuple[int, ...], mode: str, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
    return logits, _targets(shape, mode, g)


def _naive_stats(
    x: torch.Tensor, y: torch.Tensor, mode: str, from_logits: bool, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The statistics by plain autograd with a one-hot target, for cross-checks."""
    c = x.shape[1]
    valid = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
    if mode == "multiclass":
        p = x.softmax(1) if from_logits else x
        t = F.one_hot(torch.where(valid, y, 0), c).movedim(-1, 1).to(p.dtype)
        m = valid.unsqueeze(1).to(p.dtype)
    else:
        p = x.sigmoid() if from_logits else x
        t = torch.where(valid, y, 0).to(p.dtype)
        m = valid.to(p.dtype)
    dims = tuple(range(2, x.ndim))
    return (p * t * m).sum(dims), (p * m).sum(dims), (t * m).sum(dims)


# --- registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("dice", DiceLoss),
        ("soft_dice", DiceLoss),
        ("generalized_dice", GeneralizedDiceLoss),
        ("gdl", GeneralizedDiceLoss),
        ("jaccard", JaccardLoss),
        ("iou", JaccardLoss),
        ("tversky", TverskyLoss),
        ("focal_tversky", FocalTverskyLoss),
        ("lovasz_hinge", LovaszHingeLoss),
        ("lovasz_softmax", LovaszSoftmaxLoss),
    ],
)
def test_registered_in_the_segmentation_family(name: str, cls: type) -> None:
    assert type(losses.get(name)) is cls
    assert losses.resolve(name).family == "segmentation"


@pytest.mark.parametrize("name", ["dice", "tversky"])
def test_defaults_take_logits_and_class_indices(name: str) -> None:
    # benchmarks/losses.py calls losses.get(name) with (N, C, H, W) logits and int64 targets.
    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    value = losses.get(name)(logits, torch.randint(0, 5, (2, 8, 8)))
    value.backward()
    assert value.shape == ()
    assert bool(torch.isfinite(value))
    assert logits.grad is not None


# --- the hand-derived gradient -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
@pytest.mark.parametrize("ignore_index", [None, 255])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("chunk", [7, 1 << 20])  # several blocks, part samples; one block
@pytest.mark.parametrize("shape", [(3, 4, 11), (2, 3, 5, 4), (2, 3, 3, 4, 2)])
def test_statistics_and_gradients_match_plain_autograd(
    mode: str,
    ignore_index: int | None,
    from_logits: bool,
    chunk: int,
    shape: tuple[int, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_overlap, "_CPU_CHUNK", chunk)
    x, y = _inputs(shape, mode)
    if not from_logits:
        x = x.softmax(1) if mode == "multiclass" else x.sigmoid()
    if ignore_index is not None:
        y[0, ..., :2] = ignore_index
    x.requires_grad_()
    stats = _overlap.overlap_stats(
        x,
        y,
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,  # type: ignore[arg-type]
    )
    ours = (stats.intersection, stats.mass, stats.count)
    reference = _naive_stats(x, y, mode, from_logits, ignore_index)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)
    g = torch.Generator().manual_seed(1)
    up_i, up_p = (torch.randn(shape[:2], generator=g, dtype=x.dtype) for _ in range(2))
    (grad,) = torch.autograd.grad((ours[0] * up_i + ours[1] * up_p).sum(), x)
    (expected,) = torch.autograd.grad((reference[0] * up_i + reference[1] * up_p).sum(), x)
    torch.testing.assert_close(grad, expected)


def test_nothing_full_size_is_saved_for_backward_but_the_logits() -> None:
    # The naive Dice keeps the softmax, the one-hot target and their products for backward.
    logits = torch.randn(2, 4, 16, 16, requires_grad=True)
    target = torch.randint(0, 4, (2, 16, 16))
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        DiceLoss(ignore_index=3)(logits, target)
    large = [t for t in saved if t.numel() >= target.numel()]
    assert large
    assert all(t.data_ptr() in (logits.data_ptr(), target.data_ptr()) for t in large)


def _gradcheck_cases() -> list[Any]:
    cases = []
    for name, factory in OVERLAP.items():
        for reduction in ("mean", "sum", "none"):
            cases.append(pytest.param(name, factory, "multiclass", {}, reduction))
        cases.append(pytest.param(name, factory, "multilabel", {"batch": True}, "none"))
        cases.append(pytest.param(name, factory, "multiclass", {"ignore_index": 255}, "mean"))
        cases.append(pytest.param(name, factory, "multilabel", {"ignore_index": 255}, "none"))
        cases.append(pytest.param(name, factory, "binary", {"from_logits": False}, "mean"))
    for opts in ({"weight": [0.5, 1.0, 2.0]}, {"include_background": False}, {"batch": True}):
        cases.append(pytest.param("dice", DiceLoss, "multiclass", opts, "mean"))
    cases.append(pytest.param("dice", DiceLoss, "multiclass", {"classes": "present"}, "sum"))
    for reduction in ("mean", "sum", "none"):
        cases.append(pytest.param("lovasz_hinge", LovaszHingeLoss, "multilabel", {}, reduction))
        cases.append(pytest.param("lovasz_softmax", None, "multiclass", {}, reduction))
    cases.append(
        pytest.param(
            "lovasz_softmax", None, "multiclass", {"ignore_index": 255, "batch": True}, "mean"
        )
    )
    return cases


@pytest.mark.parametrize(("name", "factory", "mode", "options", "reduction"), _gradcheck_cases())
def test_gradcheck_float64(
    name: str, factory: Factory | None, mode: str, options: dict[str, Any], reduction: str
) -> None:
    shape = (2, 1, 4, 3) if mode == "binary" else (2, 3, 4, 3)
    x, y = _inputs(shape, mode, seed=len(name))
    if options.get("ignore_index") is not None:
        y[0, ..., 0] = 255
    if options.get("from_logits") is False:
        x = 0.1 + 0.8 * torch.rand(shape, dtype=torch.float64)
    if factory is None:  # Lovász-softmax takes no mode
        loss = LovaszSoftmaxLoss(reduction=reduction, check="off", **options)  # type: ignore[arg-type]
    else:
        loss = factory(mode, reduction=reduction, check="off", **options)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (x,))


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
# 5: blocks cut samples into pieces, the softmax backward scales one class at a time; 384: one
# block, the softmax backward scales two classes, then the one left (narrower than its temporary)
@pytest.mark.parametrize("chunk", [5, 384])
def test_gradcheck_across_blocks(mode: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_overlap, "_CPU_CHUNK", chunk)
    x, y = _inputs((2, 3, 4, 3), mode, seed=5)
    y[1, ..., 1] = 255
    loss = TverskyLoss(mode, alpha=0.2, beta=0.8, ignore_index=255, reduction="none")  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (x.requires_grad_(),))


# --- laws --------------------------------------------------------------------------------------


@st.composite
def _problem(draw: st.DrawFn) -> tuple[tuple[int, ...], str, int]:
    n = draw(st.integers(1, 3))
    c = draw(st.integers(2, 4))
    spatial = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    mode = draw(st.sampled_from(["multiclass", "multilabel"]))
    return (n, c, *spatial), mode, draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None)
@given(_problem(), st.sampled_from([*OVERLAP, "lovasz"]), st.booleans())
def test_loss_is_zero_at_a_perfect_saturated_prediction(
    problem: tuple[tuple[int, ...], str, int], name: str, batch: bool
) -> None:
    shape, mode, seed = problem
    _, y = _inputs(shape, mode, seed=seed, dtype=torch.float32)
    if mode == "multiclass":
        logits = 40.0 * F.one_hot(y, shape[1]).movedim(-1, 1).float()
        loss: torch.nn.Module = (
            LovaszSoftmaxLoss(batch=batch) if name == "lovasz" else OVERLAP[name](batch=batch)
        )
    else:
        y = y.float()
        logits = 40.0 * (2.0 * y - 1.0)
        loss = (
            LovaszHingeLoss("multilabel", batch=batch)
            if name == "lovasz"
            else OVERLAP[name]("multilabel", batch=batch)
        )
    assert float(loss(logits, y)) == pytest.approx(0.0, abs=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    _problem(),
    st.sampled_from(BOUNDED),
    st.floats(0.1, 30.0),
    st.sampled_from(["all", "present"]),
    st.booleans(),
)
def test_overlap_losses_lie_in_unit_interval(
    problem: tuple[tuple[int, ...], str, int],
    name: str,
    scale: float,
    classes: str,
    batch: bool,
) -> None:
    shape, mode, seed = problem
    x, y = _inputs(shape, mode, seed=seed, dtype=torch.float32)
    options: dict[str, Any] = {"batch": batch, "reduction": "none"}
    if name != "generalized_dice":
        options["classes"] = classes
    values = OVERLAP[name](mode, **options)(
        scale * x, y.to(torch.long if mode == "multiclass" else torch.float32)
    )
    assert bool((values >= -1e-6).all())
    assert bool((values <= 1 + 1e-6).all())


@settings(max_examples=25, deadline=None)
@given(_problem(), st.sampled_from([*OVERLAP, "lovasz"]), st.sampled_from(["mean", "sum", "none"]))
def test_permuting_the_samples_permutes_the_losses(
    problem: tuple[tuple[int, ...], str, int], name: str, reduction: str
) -> None:
    shape, mode, seed = problem
    x, y = _inputs(shape, mode, seed=seed, dtype=torch.float32)
    if mode == "multilabel":
        y = y.float()
    if name == "lovasz":
        loss = (
            LovaszSoftmaxLoss(reduction=reduction)  # type: ignore[arg-type]
            if mode == "multiclass"
            else LovaszHingeLoss("multilabel", reduction=reduction)  # type: ignore[arg-type]
        )
    else:
        loss = OVERLAP[name](mode, reduction=reduction)
    perm = torch.randperm(shape[0], generator=torch.Generator().manual_seed(seed))
    expected = loss(x, y)
    permuted = loss(x[perm], y[perm])
    torch.testing.assert_close(permuted, expected[perm] if reduction == "none" else expected)


@pytest.mark.parametrize("name", [*OVERLAP, "lovasz_softmax"])
def test_any_spatial_rank_flattens_to_the_same_loss(name: str) -> None:
    x, y = _inputs((2, 3, 4, 5, 3), "multiclass", dtype=torch.float32)
    loss = LovaszSoftmaxLoss() if name == "lovasz_softmax" else OVERLAP[name]()
    torch.testing.assert_close(loss(x, y), loss(x.flatten(2), y.flatten(1)))
    torch.testing.assert_close(loss(x, y), loss(x.flatten(2)[..., None, :], y.flatten(1)[:, None]))


def test_tversky_special_cases() -> None:
    x, y = _inputs((2, 3, 6, 5), "multiclass", dtype=torch.float32)
    s = 1e-3
    torch.testing.assert_close(
        TverskyLoss(alpha=0.5, beta=0.5, smooth_nr=s, smooth_dr=s)(x, y),
        DiceLoss(smooth_nr=2 * s, smooth_dr=2 * s)(x, y),
    )
    torch.testing.assert_close(TverskyLoss(alpha=1.0, beta=1.0)(x, y), JaccardLoss()(x, y))
    torch.testing.assert_close(
        FocalTverskyLoss(gamma=1.0, reduction="none")(x, y),
        TverskyLoss(alpha=0.3, beta=0.7, reduction="none")(x, y),
    )
    # beta weighs false negatives: predicting nothing costs more with a larger beta
    empty = torch.full((1, 1, 4), -5.0)
    target = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    recall = TverskyLoss("binary", alpha=0.1, beta=0.9)(empty, target)
    precision = TverskyLoss("binary", alpha=0.9, beta=0.1)(empty, target)
    assert float(recall) > float(precision)


def test_focal_tversky_gradient_is_finite_at_a_perfect_class() -> None:
    # (1 - TI)^gamma has an infinite slope at TI = 1 for gamma < 1 (kornia/kornia#918's NaN).
    probs = torch.tensor([[[1.0, 0.0, 0.3], [0.0, 1.0, 0.7]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    FocalTverskyLoss("multilabel", from_logits=False, smooth_nr=0, smooth_dr=0)(
        probs, target
    ).backward()
    assert probs.grad is not None
    assert bool(torch.isfinite(probs.grad).all())
    loss = FocalTverskyLoss("multilabel", gamma=0.5, from_logits=False, reduction="none")
    perfect = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    value = loss(perfect, torch.tensor([[[1.0, 0.0]]]))
    value.sum().backward()
    assert value.sum().item() == 0.0
    assert perfect.grad is not None
    assert bool(torch.isfinite(perfect.grad).all())


# --- reductions, weights, class selection ------------------------------------------------------


@pytest.mark.parametrize("name", [*OVERLAP, "lovasz_softmax"])
def test_reductions_and_shapes(name: str) -> None:
    x, y = _inputs((3, 4, 5, 5), "multiclass", dtype=torch.float32)

    def make(**k: Any) -> torch.nn.Module:
        return LovaszSoftmaxLoss(**k) if name == "lovasz_softmax" else OVERLAP[name](**k)

    none = make(reduction="none")(x, y)
    pooled = make(reduction="none", batch=True)(x, y)
    per_sample = (3,) if name == "generalized_dice" else (3, 4)
    assert none.shape == per_sample
    assert pooled.shape == per_sample[1:]
    torch.testing.assert_close(make(reduction="sum")(x, y), 3 * make(reduction="mean")(x, y))
    torch.testing.assert_close(make(batch=True, reduction="sum")(x, y), make(batch=True)(x, y))
    if name != "generalized_dice":
        mean = make(classes="all")(x, y)
        torch.testing.assert_close(mean, none.mean())


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "lovasz_softmax"])
def test_weight_has_one_meaning(name: str) -> None:
    x, y = _inputs((3, 4, 5, 5), "multiclass", dtype=torch.float32)
    y[0][y[0] == 2] = 1  # class 2 absent from sample 0

    def make(**k: Any) -> torch.nn.Module:
        if name == "lovasz_softmax":
            return LovaszSoftmaxLoss(**{"classes": "all", **k})
        return OVERLAP[name](**k)

    w = torch.tensor([0.0, 1.0, 2.0, 5.0])
    per_class = make(reduction="none")(x, y)
    expected = ((per_class * w).sum(1) / w.sum()).mean()
    torch.testing.assert_close(make(weight=w)(x, y), expected)
    torch.testing.assert_close(make(weight=10 * w)(x, y), expected)  # scale-free
    torch.testing.assert_close(
        make(weight=[1.0, 1.0, 2.0, 5.0], include_background=False)(x, y), expected
    )
    present = make(classes="present", reduction="none")(x, y)
    torch.testing.assert_close(present, per_class)  # "none" reports every class
    mask = torch.ones(3, 4)
    mask[0, 2] = 0.0
    expected_present = ((per_class * mask).sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(make(classes="present")(x, y), expected_present)


def test_generalized_dice_weights_do_not_cancel() -> None:
    # Project-MONAI/MONAI#6765: weighting each class's ratio cancels the weights; the classes
    # must be summed before dividing.
    x, y = _inputs((2, 3, 6, 6), "multiclass", dtype=torch.float64)
    i, p, t = (s.sum(0) for s in _naive_stats(x, y, "multiclass", True, None))
    w = 1.0 / t**2
    expected = 1.0 - 2.0 * (w * i).sum() / (w * (p + t)).sum()
    value = GeneralizedDiceLoss(batch=True, smooth_nr=0.0, smooth_dr=0.0)(x, y)
    torch.testing.assert_close(value, expected)
    uniform = GeneralizedDiceLoss(batch=True, smooth_nr=0.0, smooth_dr=0.0, w_type="uniform")
    assert abs(float(uniform(x, y)) - float(value)) > 1e-3


def test_generalized_dice_absent_class_is_finite() -> None:
    # Project-MONAI/MONAI#371: an absent class has weight 1/0^2.
    x, y = _inputs((2, 4, 6, 6), "multiclass", dtype=torch.float32)
    y[y == 3] = 0
    y[1][y[1] == 2] = 1
    x.requires_grad_()
    for smooth in (0.0, 1e-5):
        value = GeneralizedDiceLoss(smooth_nr=smooth, smooth_dr=smooth)(x, y)
        (grad,) = torch.autograd.grad(value, x)
        assert bool(torch.isfinite(value))
        assert bool(torch.isfinite(grad).all())
        assert float(grad[:, 3].abs().max()) > 0  # predicted mass of the absent class is punished


# --- defined values: empty and ignored ---------------------------------------------------------

ALL_LOSSES: dict[str, Callable[..., torch.nn.Module]] = {
    **OVERLAP,
    "lovasz_softmax": lambda mode="multiclass", **k: LovaszSoftmaxLoss(**k),
}


@pytest.mark.parametrize("name", OVERLAP)
@pytest.mark.parametrize("smooth", [(1e-5, 1e-5), (1.0, 1.0), (0.0, 1e-5), (0.0, 0.0)])
def test_empty_target_and_empty_prediction_score_zero(
    name: str, smooth: tuple[float, float]
) -> None:
    # open-mmlab/mmocr#408: an empty target scored 1 whatever was predicted.
    target = torch.zeros(2, 1, 8, 8)
    snr, sdr = smooth
    probabilities = OVERLAP[name]("binary", from_logits=False, smooth_nr=snr, smooth_dr=sdr)
    assert probabilities(torch.zeros(2, 1, 8, 8), target).item() == 0.0  # P + T = 0: defined
    logits = OVERLAP[name]("binary", smooth_nr=snr, smooth_dr=sdr)
    nearly_empty = logits(torch.full((2, 1, 8, 8), -60.0), target).item()
    if snr > 0:
        assert nearly_empty == pytest.approx(0.0, abs=1e-5)
    else:  # documented: without numerator smoothing an empty class scores 1 once P > 0
        assert nearly_empty == pytest.approx(1.0)
    # a false positive on an empty target is close to the worst loss, not 0
    assert logits(torch.full((2, 1, 8, 8), 3.0), target).item() > 0.9


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("batch", [False, True])
def test_all_ignored_batch_scores_zero_with_zero_gradient(name: str, batch: bool) -> None:
    # open-mmlab/mmsegmentation#2996 (0.5), pytorch/pytorch#70348 (NaN for cross-entropy).
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    value = ALL_LOSSES[name](ignore_index=255, batch=batch)(x, target)
    value.backward()
    assert value.item() == 0.0
    assert x.grad is not None
    assert float(x.grad.abs().max()) == 0.0


def test_lovasz_hinge_all_ignored_scores_zero() -> None:
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    value = LovaszHingeLoss(ignore_index=255)(x, torch.full((2, 1, 4, 4), 255.0))
    value.backward()
    assert value.item() == 0.0
    assert x.grad is not None
    assert float(x.grad.abs().max()) == 0.0


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_ignore_index_leaves_positions_out(name: str) -> None:
    # segmentation_models.pytorch#366: an ignore_index without effect. Ignored columns must act
    # as if cropped away, and differ from counting them as background. An ignore label outside
    # the classes (255) is never one-hot encoded (kornia/kornia#839).
    x, y = _inputs((2, 3, 5, 6), "multiclass", dtype=torch.float32)
    x = x.requires_grad_()
    ignored = y.clone()
    ignored[..., -2:] = 255
    loss = ALL_LOSSES[name](ignore_index=255)
    value = loss(x, ignored)
    torch.testing.assert_close(value, ALL_LOSSES[name]()(x[..., :-2], y[..., :-2]))
    as_background = ignored.masked_fill(ignored == 255, 0)
    assert abs(value.item() - ALL_LOSSES[name]()(x, as_background).item()) > 1e-4
    (grad,) = torch.autograd.grad(value, x)
    assert float(grad[..., -2:].abs().max()) == 0.0
    # an ignore_index inside the class range leaves its positions out too (one sample, so
    # that the positions can be cropped: every loss here is invariant to reordering them)
    one, labels = x[:1].flatten(2), y[:1].flatten(1)
    keep = labels[0] != 0
    torch.testing.assert_close(
        ALL_LOSSES[name](ignore_index=0)(one, labels),
        ALL_LOSSES[name]()(one[..., keep], labels[..., keep]),
    )


def test_lovasz_with_ignore_index_equals_the_cropped_problem() -> None:
    # kornia/kornia#3034: Lovász losses without ignore_index.
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 1, 6, 7, generator=g, requires_grad=True)
    target = torch.randint(0, 2, (2, 1, 6, 7), generator=g).float()
    marked = target.clone()
    marked[..., :, :3] = 255.0
    value = LovaszHingeLoss(ignore_index=255)(logits, marked)
    torch.testing.assert_close(value, LovaszHingeLoss()(logits[..., 3:], target[..., 3:]))
    pooled = LovaszHingeLoss(ignore_index=255, batch=True)(logits, marked)
    torch.testing.assert_close(
        pooled, LovaszHingeLoss(batch=True)(logits[..., 3:], target[..., 3:])
    )


def test_lovasz_softmax_in_3d_pools_the_batch() -> None:
    x, y = _inputs((2, 3, 4, 3, 5), "multiclass", dtype=torch.float32)
    pooled = LovaszSoftmaxLoss(batch=True, reduction="none")(x, y)
    one_volume = torch.cat(list(x), dim=-1).unsqueeze(0)  # (1, C, 4, 3, 10)
    torch.testing.assert_close(
        pooled, LovaszSoftmaxLoss(reduction="none")(one_volume, torch.cat(list(y), -1)[None])[0]
    )


@pytest.mark.parametrize("name", [*OVERLAP, "lovasz_softmax"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name: str, dtype: torch.dtype) -> None:
    x, y = _inputs((2, 3, 8, 8), "multiclass", dtype=dtype)
    x = (4 * x).requires_grad_()
    loss = ALL_LOSSES[name]()
    value = loss(x, y)
    (grad,) = torch.autograd.grad(value, x)
    upcast = x.detach().float().requires_grad_()
    expected = loss(upcast, y)
    (expected_grad,) = torch.autograd.grad(expected, upcast)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad, expected_grad.to(dtype))


# --- contracts ---------------------------------------------------------------------------------


CONTRACT_CASES = [
    (
        DiceLoss(),
        torch.randn(2, 3, 4, 4),
        torch.zeros(2, 1, 4, 4, dtype=torch.long),
        "DiceLoss ('dice'): target has shape (2, 1, 4, 4), expected (2, 4, 4) for input "
        "(2, 3, 4, 4) (N, C, ...) with class indices; drop the singleton class dim with "
        "target.squeeze(1)",
    ),
    (
        DiceLoss(),
        torch.randn(2, 3, 4, 4),
        torch.zeros(2, 4, 4),
        "DiceLoss ('dice'): target has dtype float32, expected integer class indices (int64); "
        "cast with target.long()",
    ),
    (
        TverskyLoss(),
        torch.randn(2, 3, 4, 4),
        torch.zeros(2, 3, 4, 4),
        "TverskyLoss ('tversky'): target is a float tensor of the input's shape (2, 3, 4, 4) and "
        "mode='multiclass' expects int64 class indices (N, *spatial); pass target.argmax(1) for "
        "one-hot targets, or mode='multilabel' for independent 0/1 channels",
    ),
    (
        JaccardLoss(),
        torch.randn(2, 3, 4),
        torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]]),
        "JaccardLoss ('jaccard'): class index 3 out of range for 3 classes (input has 3 along "
        "dim 1); if 3 marks pixels to leave out, pass ignore_index=3",
    ),
    (
        LovaszSoftmaxLoss(),
        torch.randn(2, 3, 4),
        torch.tensor([[0, 1, 255, 2], [0, 0, 0, 0]]),
        "LovaszSoftmaxLoss ('lovasz_softmax'): class index 255 out of range for 3 classes "
        "(input has 3 along dim 1); if 255 marks pixels to leave out, pass ignore_index=255",
    ),
    (
        DiceLoss(ignore_index=255),
        torch.randn(2, 3, 4),
        torch.tensor([[0, 1, 255, 4], [0, 0, 0, 0]]),
        "DiceLoss ('dice'): class index 4 out of range for 3 classes (input has 3 along dim 1) "
        "(ignore_index=255 is excluded)",
    ),
    (
        FocalTverskyLoss(),
        torch.randn(2, 1, 4, 4),
        torch.zeros(2, 4, 4, dtype=torch.long),
        "FocalTverskyLoss ('focal_tversky'): input has 1 channel along dim 1 and "
        "mode='multiclass': a softmax over one class is 1 everywhere, so the loss would be "
        "constant with zero gradient; for a binary task use mode='binary' (sigmoid, float target "
        "of the input's shape) or give the background a channel (C=2)",
    ),
    (
        LovaszSoftmaxLoss(),
        torch.randn(2, 1, 4, 4),
        torch.zeros(2, 4, 4, dtype=torch.long),
        "LovaszSoftmaxLoss ('lovasz_softmax'): input has 1 channel along dim 1",
    ),
    (
        DiceLoss("binary"),
        torch.randn(2, 3, 4, 4),
        torch.zeros(2, 3, 4, 4),
        "DiceLoss ('dice'): mode='binary' expects one logit channel (N, 1, *spatial), got 3 "
        "channels; use mode='multilabel' for independent channels or mode='multiclass' for a "
        "softmax over them",
    ),
    (
        DiceLoss("multilabel"),
        torch.randn(2, 3, 4, 4),
        torch.full((2, 3, 4, 4), 3),
        "DiceLoss ('dice'): target has dtype int64 with values in [3, 3], expected binary "
        "targets 0 or 1 (integers are cast to the input's dtype); class indices belong to a "
        "multi-class loss (mode='multiclass', softmax_focal, cross_entropy); if 3 marks "
        "elements to leave out, pass ignore_index=3",
    ),
    (
        LovaszHingeLoss(),
        torch.randn(2, 1, 4, 4),
        torch.zeros(2, 4, 4),
        "LovaszHingeLoss ('lovasz_hinge'): target has shape (2, 4, 4) and input (2, 1, 4, 4): "
        "the loss would broadcast them to (2, 2, 4, 4); give both the same shape "
        "(e.g. target.unsqueeze(1))",
    ),
    (
        GeneralizedDiceLoss("multilabel"),
        torch.randn(2, 3, 4),
        torch.full((2, 3, 4), 2.0),
        "GeneralizedDiceLoss ('generalized_dice'): target values lie in [2, 2], expected binary "
        "targets in [0, 1]",
    ),
    (
        DiceLoss(weight=[1.0, 2.0]),
        torch.randn(2, 3, 4),
        torch.zeros(2, 4, dtype=torch.long),
        "DiceLoss ('dice'): weight has 2 values and the input 3 classes along dim 1; give one "
        "weight per class, the background included",
    ),
    (
        DiceLoss(),
        torch.randn(2, 3, 4).softmax(1),
        torch.zeros(2, 4, dtype=torch.long),
        "DiceLoss ('dice'): inputs look like probabilities (all in [0, 1], rows sum to 1 along "
        "dim 1): this loss expects raw logits; drop the softmax",
    ),
    (
        DiceLoss("multilabel", from_logits=False),
        torch.randn(2, 3, 4),
        torch.zeros(2, 3, 4),
        "DiceLoss ('dice'): input values lie in",
    ),
    (
        DiceLoss(),
        torch.tensor([[[float("nan"), 0.0], [0.0, 0.0]]]),
        torch.zeros(1, 2, dtype=torch.long),
        "DiceLoss ('dice'): input has 1 NaN and 0 infinite values",
    ),
    (
        DiceLoss(),
        torch.zeros(2, 3, 4, dtype=torch.long),
        torch.zeros(2, 4, dtype=torch.long),
        "DiceLoss ('dice'): input has dtype int64, expected a floating-point tensor of logits",
    ),
    (
        DiceLoss(),
        torch.randn(3),
        torch.zeros(3, dtype=torch.long),
        "DiceLoss ('dice'): input has shape (3,), expected (N, C, *spatial)",
    ),
]


@pytest.mark.parametrize(("loss", "input", "target", "message"), CONTRACT_CASES)
def test_contract_errors_say_what_and_how(
    loss: torch.nn.Module, input: torch.Tensor, target: torch.Tensor, message: str
) -> None:
    with pytest.raises(lk.LossInputError) as info:
        loss(input, target)
    assert message in str(info.value)


def test_binary_targets_may_carry_the_ignore_label() -> None:
    loss = DiceLoss("binary", ignore_index=255)
    target = torch.tensor([[[1.0, 0.0, 255.0]]])
    assert bool(torch.isfinite(loss(torch.randn(1, 1, 3), target)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DiceLoss("softmax"), "mode must be one of"),  # type: ignore[arg-type]
        (lambda: LovaszHingeLoss("multiclass"), "mode must be one of ('binary', 'multilabel')"),
        (lambda: DiceLoss(reduction="avg"), "reduction must be one of"),  # type: ignore[arg-type]
        (lambda: DiceLoss(classes="some"), "classes must be one of"),  # type: ignore[arg-type]
        (lambda: DiceLoss(weight=[1.0, -1.0]), "weight must hold finite values >= 0"),
        (lambda: DiceLoss(weight=[[1.0]]), "weight must be a 1-D sequence"),
        (lambda: DiceLoss(weight=[0.0, 0.0]), "every class weight is 0"),
        (
            lambda: DiceLoss(weight=[1.0, 0.0], include_background=False),
            "every class but the background has weight 0",
        ),
        (lambda: DiceLoss("binary", include_background=False), "only channel in mode='binary'"),
        (lambda: DiceLoss(smooth_dr=-1.0), "smooth_nr and smooth_dr must be >= 0"),
        (lambda: TverskyLoss(alpha=0.0, beta=0.0), "alpha and beta must be >= 0 and not both 0"),
        (lambda: FocalTverskyLoss(gamma=0.0), "gamma must be > 0"),
        (lambda: GeneralizedDiceLoss(w_type="cube"), "w_type must be"),  # type: ignore[arg-type]
        (lambda: DiceLoss(check="never"), "check must be"),  # type: ignore[arg-type]
    ],
)
def test_configuration_errors(build: Callable[[], object], message: str) -> None:
    with pytest.raises(lk.ConfigError, match=None) as info:
        build()
    assert message in str(info.value)


def test_value_checks_run_on_the_first_calls_only() -> None:
    loss = DiceLoss()
    x = torch.randn(1, 3, 4)
    for _ in range(3):
        loss(x, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises((RuntimeError, IndexError)):  # no silent result: gather refuses
        loss(x, torch.tensor([[0, 1, 2, 7]]))
    with pytest.raises(lk.LossInputError, match="out of range"):
        DiceLoss(check="always")(x, torch.tensor([[0, 1, 2, 7]]))


@pytest.mark.parametrize("ignore_index", [None, 255])
def test_softmax_statistics_backward_twice_and_double_backward(ignore_index: int | None) -> None:
    # The backward pass turns the kept softmax into the gradient; a second backward
    # (retain_graph) and a graph-building one (create_graph) must recompute it.
    x, y = _inputs((2, 3, 4, 3), "multiclass", seed=7)
    if ignore_index is not None:
        y[0, 0] = ignore_index
    loss = TverskyLoss(alpha=0.3, beta=0.7, ignore_index=ignore_index, check="off")
    x.requires_grad_()
    value = loss(x, y)
    (first,) = torch.autograd.grad(value, x, retain_graph=True)
    (second,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(first, second)
    assert torch.autograd.gradgradcheck(lambda t: loss(t, y), (x,))
