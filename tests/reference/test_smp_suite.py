"""segmentation_models_pytorch's loss tests, ported: ``tests/test_losses.py``.

Source: qubvel-org/segmentation_models.pytorch at commit
5006616357631a48c7c8e11977cf5abb00803590, file ``tests/test_losses.py`` (MIT License). smp is
not installed (it pulls torchvision), so its literal expected values are the reference; each
test names the smp test it ports. ``test_binary_mcc_loss`` waits for losskit's MCC loss (#18
item 3); ``test_focal_loss_from_logits_false_multiclass`` compares smp's two focal paths with
each other and has no losskit counterpart (the softmax focal loss takes logits).

Mapping, where conventions differ (docs/coming_from.md):

- smp's ``smooth`` (numerator and denominator) is ``smooth_nr = smooth_dr = smooth``; its
  default 0 with ``eps`` clamping the denominator is ``smooth_nr = smooth_dr = 0`` here;
- smp scores the batch as one volume (its ``dims=(0, 2)``): ``batch=True``;
- smp leaves a class absent from the target out of the average (its ``mask``), so an empty
  target scores 0 whatever the prediction: ``classes="present"``;
- ``SoftBCEWithLogitsLoss(smooth_factor=f)``: ``label_smoothing=2 f`` (losskit's smoothed
  target is ``t (1 - s) + s / 2``, smp's ``t (1 - f) + (1 - t) f``);
- ``ignore_index`` with ``reduction="mean"``: smp divides by every element, ignored ones
  included; losskit by those that count: smp's mean is losskit's ``"sum"`` over ``numel``;
- ``SoftCrossEntropyLoss(smooth_factor)``: ``cross_entropy(label_smoothing=smooth_factor)``,
  with the same mean mapping.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from losskit import losses
from losskit.losses import DiceLoss, FocalLoss, JaccardLoss, SoftmaxFocalLoss, TverskyLoss

SMP = "qubvel-org/segmentation_models.pytorch@5006616357631a48c7c8e11977cf5abb00803590"
EPS = 1e-5  # smp's tolerance in these tests: pytest.approx(expected, abs=eps)


def _approx(actual: Tensor, expected: float, eps: float = EPS) -> None:
    torch.testing.assert_close(actual.float(), torch.tensor(expected), rtol=0.0, atol=eps)


def _score(loss_cls: type, y_pred: list[float], y_true: list[float], **options: object) -> Tensor:
    """smp's ``soft_*_score(y_pred, y_true, eps)``: 1 - the loss on probabilities, no
    smoothing, of one volume (a 1-D tensor is one sample with one channel)."""
    pred = torch.tensor(y_pred, dtype=torch.float32).reshape(1, 1, -1)
    true = torch.tensor(y_true, dtype=torch.float32).reshape(1, 1, -1)
    loss = loss_cls("binary", from_logits=False, smooth_nr=0.0, smooth_dr=0.0, **options)
    return 1 - loss(pred, true)


def test_focal_loss_with_logits() -> None:
    """test_focal_loss_with_logits: a good prediction scores below a bad one (integer 0/1
    targets, cast)."""
    target = torch.tensor([1, 0, 1])
    focal = FocalLoss()
    assert focal(torch.tensor([10, -10, 10]).float(), target) < focal(
        torch.tensor([-1, 2, 0]).float(), target
    )


def test_softmax_focal_loss_with_logits() -> None:
    """test_softmax_focal_loss_with_logits."""
    good = torch.tensor([[0, 10, 0], [10, 0, 0], [0, 0, 10]]).float()
    bad = torch.tensor([[0, -10, 0], [0, 10, 0], [0, 0, 10]]).float()
    target = torch.tensor([1, 0, 2]).long()
    focal = SoftmaxFocalLoss()
    assert focal(good, target) < focal(bad, target)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([1, 1, 1, 1], [1, 1, 1, 1], 1.0),
        ([0, 1, 1, 0], [0, 1, 1, 0], 1.0),
        ([1, 1, 1, 1], [1, 1, 0, 0], 0.5),
    ],
)
def test_soft_jaccard_score(y_true: list[float], y_pred: list[float], expected: float) -> None:
    """test_soft_jaccard_score."""
    _approx(_score(JaccardLoss, y_pred, y_true), expected)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([[1, 1, 0, 0], [0, 0, 1, 1]], [[1, 1, 0, 0], [0, 0, 1, 1]], 1.0),
        ([[1, 1, 0, 0], [0, 0, 1, 1]], [[0, 0, 1, 0], [0, 1, 0, 0]], 0.0),
        ([[1, 1, 0, 0], [0, 0, 0, 1]], [[1, 1, 0, 0], [0, 0, 0, 0]], 0.5),
    ],
)
def test_soft_jaccard_score_2(
    y_true: list[list[float]], y_pred: list[list[float]], expected: float
) -> None:
    """test_soft_jaccard_score_2: ``dims=[1]``, one score per row, then their mean: each row
    is a sample, and ``reduction="mean"`` averages them."""
    pred = torch.tensor(y_pred, dtype=torch.float32).unsqueeze(1)
    true = torch.tensor(y_true, dtype=torch.float32).unsqueeze(1)
    jaccard = JaccardLoss("binary", from_logits=False, smooth_nr=0.0, smooth_dr=0.0)
    _approx(1 - jaccard(pred, true), expected)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([1, 1, 1, 1], [1, 1, 1, 1], 1.0),
        ([0, 1, 1, 0], [0, 1, 1, 0], 1.0),
        ([1, 1, 1, 1], [1, 1, 0, 0], 2.0 / 3.0),
    ],
)
def test_soft_dice_score(y_true: list[float], y_pred: list[float], expected: float) -> None:
    """test_soft_dice_score."""
    _approx(_score(DiceLoss, y_pred, y_true), expected)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected", "alpha", "beta"),
    [
        ([1, 1, 1, 1], [1, 1, 1, 1], 1.0, 0.5, 0.5),
        ([0, 1, 1, 0], [0, 1, 1, 0], 1.0, 0.5, 0.5),
        ([1, 1, 1, 1], [1, 1, 0, 0], 2.0 / 3.0, 0.5, 0.5),
    ],
)
def test_soft_tversky_score(
    y_true: list[float], y_pred: list[float], expected: float, alpha: float, beta: float
) -> None:
    """test_soft_tversky_score."""
    _approx(_score(TverskyLoss, y_pred, y_true, alpha=alpha, beta=beta), expected)


# (y_pred, y_true, expected) of test_dice_loss_binary, test_tversky_loss_binary and
# test_binary_jaccard_loss (three values per position, one sample, one channel).
_BINARY_CASES = [
    pytest.param([1.0, 1.0, 1.0], [1, 1, 1], 0.0, id="ideal case"),
    pytest.param([1.0, 0.0, 1.0], [1, 0, 1], 0.0, id="ideal case 2"),
    pytest.param([0.0, 0.0, 0.0], [0, 0, 0], 0.0, id="ideal case 3"),
    pytest.param([1.0, 1.0, 1.0], [0, 0, 0], 0.0, id="worst case: empty target"),
    pytest.param([1.0, 0.0, 1.0], [0, 1, 0], 1.0, id="worst case 2"),
    pytest.param([0.0, 0.0, 0.0], [1, 1, 1], 1.0, id="worst case 3"),
]


def _smp_binary(loss_cls: type, **options: object) -> torch.nn.Module:
    """smp's ``<Loss>(mode="binary", from_logits=False)``: no smoothing, the batch as one
    volume, an empty target scoring 0 (``classes="present"``)."""
    return loss_cls(
        "binary",
        from_logits=False,
        smooth_nr=0.0,
        smooth_dr=0.0,
        batch=True,
        classes="present",
        **options,
    )


@pytest.mark.parametrize(("y_pred", "y_true", "expected"), _BINARY_CASES)
@pytest.mark.parametrize(
    ("loss_cls", "options"),
    [
        pytest.param(DiceLoss, {}, id="test_dice_loss_binary"),
        pytest.param(TverskyLoss, {"alpha": 0.5, "beta": 0.5}, id="test_tversky_loss_binary"),
        pytest.param(JaccardLoss, {}, id="test_binary_jaccard_loss"),
    ],
)
def test_binary_losses(
    loss_cls: type,
    options: dict[str, float],
    y_pred: list[float],
    y_true: list[int],
    expected: float,
) -> None:
    """Integer 0/1 targets, as smp's tests give them (cast)."""
    pred = torch.tensor(y_pred).view(1, 1, 1, -1)
    true = torch.tensor(y_true).view(1, 1, 1, -1)
    _approx(_smp_binary(loss_cls, **options)(pred, true), expected)


def _smp_multi(mode: str) -> JaccardLoss:
    return JaccardLoss(
        mode,  # type: ignore[arg-type]
        from_logits=False,
        smooth_nr=0.0,
        smooth_dr=0.0,
        batch=True,
        classes="present",
    )


@pytest.mark.parametrize(
    ("y_pred", "y_true", "expected"),
    [
        pytest.param(
            [[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], [[0, 0, 1, 1]], 0.0, id="ideal"
        ),
        pytest.param(
            [[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], [[1, 1, 0, 0]], 1.0, id="worst"
        ),
        pytest.param(
            [[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]],
            [[1, 1, 0, 0]],
            1.0 - 1.0 / 3.0,
            id="1 - 1/3",
        ),
    ],
)
def test_multiclass_jaccard_loss(
    y_pred: list[list[list[float]]], y_true: list[list[int]], expected: float
) -> None:
    """test_multiclass_jaccard_loss."""
    _approx(_smp_multi("multiclass")(torch.tensor(y_pred), torch.tensor(y_true)), expected)


def test_multilabel_jaccard_loss() -> None:
    """test_multilabel_jaccard_loss: ideal 0, worst (1 - y_pred) 1, and 1 - 1/3."""
    jaccard = _smp_multi("multilabel")
    y_pred = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])
    _approx(jaccard(y_pred, y_pred.clone()), 0.0)
    _approx(jaccard(y_pred, 1 - y_pred), 1.0)
    y_pred = torch.tensor([[[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]])
    y_true = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
    _approx(jaccard(y_pred, y_true), 1.0 - 1.0 / 3.0)


def test_soft_ce_loss() -> None:
    """test_soft_ce_loss: 1.0125 (abs=0.0001). smp's mean counts the ignored position."""
    y_pred = torch.tensor([[+9, -9, -9, -9], [-9, +9, -9, -9], [-9, -9, +9, -9], [-9, -9, -9, +9]])
    y_true = torch.tensor([0, 1, -100, 3]).long()
    ce = losses.get("cross_entropy", label_smoothing=0.1, ignore_index=-100, reduction="sum")
    _approx(ce(y_pred.float(), y_true) / y_true.numel(), 1.0125, eps=0.0001)


def test_soft_bce_loss() -> None:
    """test_soft_bce_loss: 0.7201 (abs=0.0001), integer targets with -100 ignored.
    ``smooth_factor=0.1`` is ``label_smoothing=0.2``; smp's mean counts the ignored element."""
    y_pred = torch.tensor([-9, 9, 1, 9, -9]).float()
    y_true = torch.tensor([0, 1, -100, 1, 0]).long()
    bce = losses.get("bce_with_logits", label_smoothing=0.2, ignore_index=-100, reduction="sum")
    _approx(bce(y_pred, y_true) / y_true.numel(), 0.7201, eps=0.0001)


def _weighted_cases() -> list[object]:
    return [
        pytest.param(cls, mode, id=f"{cls.__name__}-{mode}")
        for cls in (DiceLoss, JaccardLoss, TverskyLoss)
        for mode in ("multiclass", "multilabel")
    ]


def _random_batch(mode: str) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    y_pred = torch.randn(2, 3, 4, 4, generator=g)
    if mode == "multiclass":
        return y_pred, torch.randint(0, 3, (2, 4, 4), generator=g)
    return y_pred, torch.randint(0, 2, (2, 3, 4, 4), generator=g).float()


@pytest.mark.parametrize(("loss_cls", "mode"), _weighted_cases())
def test_class_weights(loss_cls: type, mode: str) -> None:
    """test_class_weights_uniform_equivalent_to_no_weights_{multiclass,multilabel},
    test_class_weights_nonuniform_changes_loss_multiclass and
    test_class_weights_scale_invariant_multiclass. smp's ``class_weights`` is ``weight``."""
    y_pred, y_true = _random_batch(mode)
    plain = loss_cls(mode)(y_pred, y_true)
    uniform = loss_cls(mode, weight=[1.0, 1.0, 1.0])(y_pred, y_true)
    weighted = loss_cls(mode, weight=[1.0, 2.0, 0.5])(y_pred, y_true)
    scaled = loss_cls(mode, weight=[10.0, 20.0, 5.0])(y_pred, y_true)
    torch.testing.assert_close(uniform, plain, rtol=0.0, atol=EPS)
    assert not torch.allclose(weighted, plain, atol=1e-6)
    torch.testing.assert_close(scaled, weighted, rtol=0.0, atol=EPS)


@pytest.mark.parametrize("loss_cls", [DiceLoss, JaccardLoss, TverskyLoss])
def test_class_weights_binary_mode_raises(loss_cls: type) -> None:
    """test_class_weights_binary_mode_raises: two weights for one channel. smp refuses them
    when the loss is built; losskit cannot know the channels then and refuses at the call."""
    loss = loss_cls("binary", weight=[1.0, 2.0])
    with pytest.raises(Exception, match="weight has 2 values and the input 1 classes"):
        loss(torch.randn(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))


def test_focal_class_weights() -> None:
    """test_focal_class_weights_uniform_equivalent_to_no_weights and
    test_focal_class_weights_scale_invariant (smp's multiclass focal: ``softmax_focal``)."""
    y_pred, y_true = _random_batch("multiclass")
    plain = SoftmaxFocalLoss()(y_pred, y_true)
    uniform = SoftmaxFocalLoss(weight=[1.0, 1.0, 1.0])(y_pred, y_true)
    weighted = SoftmaxFocalLoss(weight=[1.0, 2.0, 0.5])(y_pred, y_true)
    scaled = SoftmaxFocalLoss(weight=[10.0, 20.0, 5.0])(y_pred, y_true)
    torch.testing.assert_close(uniform, plain, rtol=0.0, atol=EPS)
    torch.testing.assert_close(scaled, weighted, rtol=0.0, atol=EPS)


def test_smp_option_names_get_their_equivalent() -> None:
    """smp's ``smooth``, ``class_weights`` and ``smooth_factor`` name losskit's options."""
    with pytest.raises(Exception, match="smooth_nr=s and smooth_dr=s"):
        losses.get("dice", smooth=1.0)
    with pytest.raises(Exception, match="is weight"):
        JaccardLoss(class_weights=[1.0, 2.0])
    with pytest.raises(Exception, match="label_smoothing=2"):
        losses.get("bce_with_logits", smooth_factor=0.1)
