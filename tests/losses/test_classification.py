"""The classification losses: hand-derived gradients (gradcheck), the fused and eager paths,
mathematical properties, every contract error, and the catalogue's field-note failures."""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import losskit as lk
import losskit.losses._classification
from losskit import losses
from losskit.errors import ConfigError, LossInputError, LossKitWarning
from losskit.losses import _elementwise
from losskit.losses._classification import (
    AsymmetricLoss,
    DistillationKLLoss,
    FocalLoss,
    HingeLoss,
    MulticlassHingeLoss,
    SoftmaxFocalLoss,
    SoftTargetCrossEntropyLoss,
    SquaredHingeLoss,
    ZLoss,
)

REDUCTIONS = ("mean", "sum", "none")
GEN = torch.Generator


def _binary(
    shape: tuple[int, ...], soft: bool, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    g = GEN().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    t = torch.rand(shape, generator=g) if soft else torch.randint(0, 2, shape, generator=g).float()
    return x, t.to(dtype)


def _multiclass(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    g = GEN().manual_seed(0)
    n, c, *spatial = shape
    x = (torch.randn(shape, generator=g) * 2).to(dtype)
    y = torch.randint(0, c, (n, *spatial), generator=g)
    y.view(-1)[::4] = -100
    return x, y


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.5, None), (0.0, 0.7), (3.0, None)])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_gradcheck(
    reduction: str, gamma: float, alpha: float | None, soft: bool, weighted: bool
) -> None:
    x, t = _binary((3, 4, 5), soft)
    weight = torch.tensor([0.5, 1.0, 2.0, 0.0]) if weighted else None
    loss = FocalLoss(gamma, alpha, weight=weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (x.requires_grad_(),))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("gamma_pos", "gamma_neg", "clip"),
    [(0.0, 4.0, 0.05), (1.0, 4.0, 0.0), (0.5, 0.5, 0.2), (0.0, 0.0, 0.0)],
)
@pytest.mark.parametrize("soft", [False, True])
def test_asymmetric_gradcheck(
    reduction: str, gamma_pos: float, gamma_neg: float, clip: float, soft: bool
) -> None:
    x, t = _binary((4, 6), soft)
    loss = AsymmetricLoss(gamma_pos, gamma_neg, clip, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (x.requires_grad_(),))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 2)])
def test_softmax_focal_gradcheck(
    reduction: str, gamma: float, weighted: bool, shape: tuple[int, ...]
) -> None:
    x, y = _multiclass(shape)
    weight = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    loss = SoftmaxFocalLoss(gamma, weight=weight, reduction=reduction, impl="eager")  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (x.requires_grad_(),))


@pytest.mark.parametrize(
    "make",
    [
        lambda: (FocalLoss(1.5, 0.25, impl="eager", check="off"), *_binary((4, 3), soft=True)),
        lambda: (AsymmetricLoss(1.0, 3.0, 0.1, impl="eager"), *_binary((4, 3), soft=False)),
        lambda: (SoftmaxFocalLoss(1.5, impl="eager"), *_multiclass((4, 3))),
    ],
    ids=["focal", "asymmetric", "softmax_focal"],
)
def test_double_backward(make: Callable[[], tuple[Any, Tensor, Tensor]]) -> None:
    loss, x, t = make()
    assert torch.autograd.gradgradcheck(lambda x: loss(x, t), (x.requires_grad_(),))


def test_a_target_that_requires_grad_gets_its_gradient() -> None:
    x, t = _binary((3, 4), soft=True)
    loss = FocalLoss(2.0, 0.25, impl="eager")
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(), t.requires_grad_()))


def test_per_sample_gradients_under_vmap() -> None:
    x, t = _binary((5, 4), soft=False, dtype=torch.float32)
    loss = FocalLoss(impl="eager", check="off")
    per_sample = torch.func.vmap(torch.func.grad(loss))(x, t)
    for i in range(5):
        xi = x[i].clone().requires_grad_()
        (expected,) = torch.autograd.grad(loss(xi, t[i]), xi)
        torch.testing.assert_close(per_sample[i], expected)


# --- fused (compiled) and eager paths -------------------------------------------------------------


def _compare_impls(make: Callable[[str], Any], x: Tensor, t: Tensor) -> None:
    results = []
    for impl in ("eager", "compiled"):
        xi = x.clone().requires_grad_()
        value = make(impl)(xi, t)
        cotangent = torch.rand(value.shape, generator=GEN().manual_seed(1))
        (grad,) = torch.autograd.grad(value, xi, cotangent)
        results.append((value, grad))
    (value, grad), (compiled_value, compiled_grad) = results
    torch.testing.assert_close(compiled_value, value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled_grad, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compiled_focal_equals_eager(reduction: str) -> None:
    x, t = _binary((4, 8, 16, 16), soft=False, dtype=torch.float32)
    weight = torch.linspace(0.5, 2.0, 8)
    _compare_impls(
        lambda impl: FocalLoss(2.0, 0.25, weight=weight, reduction=reduction, impl=impl),  # type: ignore[arg-type]
        x,
        t,
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compiled_asymmetric_equals_eager(reduction: str) -> None:
    x, t = _binary((64, 80), soft=False, dtype=torch.float32)
    _compare_impls(
        lambda impl: AsymmetricLoss(reduction=reduction, impl=impl),  # type: ignore[arg-type]
        x,
        t,
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compiled_softmax_focal_equals_eager(reduction: str) -> None:
    x, y = _multiclass((4, 5, 16, 16), dtype=torch.float32)
    weight = torch.tensor([0.2, 1.0, 1.0, 2.0, 1.0])
    _compare_impls(
        lambda impl: SoftmaxFocalLoss(2.0, weight=weight, reduction=reduction, impl=impl),  # type: ignore[arg-type]
        x,
        y,
    )


def _fresh_compile_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_elementwise, "_ready", set())
    monkeypatch.setattr(_elementwise, "_compiling", {})
    monkeypatch.setattr(_elementwise, "_compile_failure", [])
    monkeypatch.setattr(_elementwise, "_failure_warned", [])


def test_auto_compiles_large_inputs_only_and_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled: list[str] = []
    calls: list[str] = []

    def fake_compile(fn: Callable[..., Any]) -> Callable[..., Any]:
        compiled.append(fn.__name__)

        def run(*args: Any) -> Any:
            calls.append(fn.__name__)
            return fn(*args)

        return run

    _fresh_compile_state(monkeypatch)
    monkeypatch.setattr(_elementwise, "_compiled", fake_compile)
    loss = FocalLoss(check="off")
    small = torch.randn(_elementwise.COMPILE_MIN_NUMEL - 1, requires_grad=True)
    loss(small, torch.zeros_like(small)).backward()
    assert compiled == []
    large = torch.randn(_elementwise.COMPILE_MIN_NUMEL, requires_grad=True)
    t = torch.zeros_like(large)
    eager = loss(large, t)  # eager while the compiled kernels build in the background
    eager.backward()
    assert _elementwise.wait_for_compiled_kernels(timeout=60)
    assert sorted(compiled) == ["focal_gradient", "focal_reduced"]
    assert sorted(calls) == ["focal_gradient", "focal_reduced"]  # the background warm-up runs
    grad = large.grad
    large.grad = None
    value = loss(large, t)  # now the compiled kernels, same values
    value.backward()
    assert sorted(calls) == ["focal_gradient"] * 2 + ["focal_reduced"] * 2
    torch.testing.assert_close(value, eager)
    torch.testing.assert_close(large.grad, grad)
    FocalLoss(check="off", impl="eager")(large, t)
    assert len(calls) == 4


def test_a_failed_compile_warns_once_and_runs_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    release.set()  # impl="compiled" fails at once

    def broken(fn: Callable[..., Any]) -> Callable[..., Any]:
        def fail(*args: Any) -> Any:
            release.wait(60)
            raise RuntimeError("no C++ compiler")

        return fail

    _fresh_compile_state(monkeypatch)
    monkeypatch.setattr(_elementwise, "_compiled", broken)
    x, t = _binary((8, 16), soft=False, dtype=torch.float32)
    expected = FocalLoss(impl="eager")(x, t)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        FocalLoss(impl="compiled")(x, t)
    large_x, large_t = x.repeat(4096, 1), t.repeat(4096, 1)
    release.clear()
    got = FocalLoss(impl="auto")(large_x, large_t)  # eager; the compile fails in the background
    torch.testing.assert_close(got, expected)
    release.set()
    assert _elementwise.wait_for_compiled_kernels(timeout=60)
    with pytest.warns(LossKitWarning, match="could not compile .* no C\\+\\+ compiler"):
        got = FocalLoss(impl="auto")(large_x, large_t)
    torch.testing.assert_close(got, expected)
    got = FocalLoss(impl="auto")(large_x, large_t)  # no second warning
    torch.testing.assert_close(got, expected)


def test_a_bad_class_index_raises_after_the_first_calls_too() -> None:
    """The compiled CPU kernel would abort the process on it (an exception in an OpenMP region);
    the loss checks the indices itself, one pass over the targets."""
    x, y = _multiclass((4, 5, 16), dtype=torch.float32)
    y[0, 3] = 7
    with pytest.raises(LossInputError, match=r"class index 7 out of range for 5 classes"):
        SoftmaxFocalLoss(impl="compiled", check="off")(x, y)


def test_inside_an_outer_torch_compile() -> None:
    """A Criterion compiles its forward with fullgraph=True: the kernels must trace."""
    x, t = _binary((16, 8), soft=False, dtype=torch.float32)
    y = torch.randint(0, 8, (16,), generator=GEN().manual_seed(2))
    focal, softmax_focal = FocalLoss(), SoftmaxFocalLoss()

    def total(x: Tensor) -> Tensor:
        return focal(x, t) + softmax_focal(x, y)

    results = []
    for fn in (total, torch.compile(total, fullgraph=True)):
        xi = x.clone().requires_grad_()
        value = fn(xi)
        results.append((value, *torch.autograd.grad(value, xi)))
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager)


# --- field notes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
@pytest.mark.parametrize("magnitude", [100.0, 1e4])
def test_focal_at_extreme_logits_is_finite_and_right(gamma: float, magnitude: float) -> None:
    """kornia#2115 (NaN at logit 100 from 0 * -inf) and kornia#918 (gamma < 1 gradients)."""
    x = torch.tensor([magnitude, -magnitude, magnitude, -magnitude], requires_grad=True)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0])  # two saturated right, two saturated wrong
    loss = FocalLoss(gamma, alpha=None, reduction="none", check="off", impl="eager")(x, t)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert bool(torch.isfinite(loss).all())
    assert bool(torch.isfinite(grad).all())
    torch.testing.assert_close(loss, torch.tensor([0.0, 0.0, magnitude, magnitude]))
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0, -1.0]))


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
def test_gamma_below_one_with_saturated_probabilities(gamma: float) -> None:
    """kornia#918: (1 - p)^(gamma - 1) is infinite where p saturates; no NaN may come of it."""
    x = torch.linspace(-60, 60, 49).repeat(2)
    t = torch.cat([torch.ones(49), torch.zeros(49)])
    for loss, target in (
        (FocalLoss(gamma, check="off", impl="eager"), t),
        (AsymmetricLoss(gamma, gamma, clip=0.0, impl="eager"), t),
        (AsymmetricLoss(gamma, gamma, clip=0.05, impl="eager"), t),
    ):
        xi = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(loss(xi, target), xi)
        assert bool(torch.isfinite(grad).all()), type(loss).__name__
    logits = torch.tensor([[80.0, 0.0, -80.0], [0.0, 0.0, 300.0]], requires_grad=True)
    value = SoftmaxFocalLoss(gamma, impl="eager")(logits, torch.tensor([0, 2]))
    (grad,) = torch.autograd.grad(value, logits)
    assert bool(torch.isfinite(grad).all())
    assert float(value.detach()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "make",
    [
        lambda: (FocalLoss(), "binary"),
        lambda: (AsymmetricLoss(), "binary"),
        lambda: (SoftmaxFocalLoss(), "classes"),
        lambda: (MulticlassHingeLoss(), "classes"),
        lambda: (SoftTargetCrossEntropyLoss(0.1), "distribution"),
        lambda: (DistillationKLLoss(4.0), "teacher"),
    ],
    ids=["focal", "asymmetric", "softmax_focal", "multiclass_hinge", "soft_ce", "kd"],
)
def test_half_precision_is_computed_in_float32(
    dtype: torch.dtype, make: Callable[[], tuple[Any, str]]
) -> None:
    """kornia#1362, mmcv#1488 (fp16 logit 9.39), ASL#53: finite, and as float32 would give."""
    loss, kind = make()
    g = GEN().manual_seed(0)
    x = (torch.randn(16, 5, generator=g) * 8).to(dtype)
    x[0, 0] = 9.39
    x[1, :2] = torch.tensor([-60.0, 60.0])
    if kind == "binary":
        t: Tensor = torch.randint(0, 2, (16, 5), generator=g).to(dtype)
    elif kind == "classes":
        t = torch.randint(0, 5, (16,), generator=g)
    elif kind == "distribution":
        t = torch.rand(16, 5, generator=g).softmax(1).to(dtype)
    else:
        t = (torch.randn(16, 5, generator=g) * 5).to(dtype)
    xi = x.clone().requires_grad_()
    value = loss(xi, t)
    (grad,) = torch.autograd.grad(value, xi)
    assert value.dtype == torch.float32
    assert grad.dtype == dtype
    assert bool(torch.isfinite(value))
    assert bool(torch.isfinite(grad).all())
    x32 = x.float().requires_grad_()
    expected = loss(x32, t.float() if t.is_floating_point() else t)
    (expected_grad,) = torch.autograd.grad(expected, x32)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad.to(dtype))
    loss.reduction = "none"
    assert loss(x, t).dtype == dtype


def test_asymmetric_under_autocast_is_finite() -> None:
    """Alibaba-MIIL/ASL#53: NaN under AMP."""
    model = torch.nn.Linear(8, 20)
    with torch.no_grad():
        model.weight.mul_(20)
    x = torch.randn(32, 8, generator=GEN().manual_seed(0))
    y = (torch.rand(32, 20, generator=GEN().manual_seed(1)) < 0.1).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        value = AsymmetricLoss()(logits, y)
    value.backward()
    assert logits.dtype == torch.bfloat16
    assert value.dtype == torch.float32
    assert bool(torch.isfinite(value))
    assert model.weight.grad is not None
    assert bool(torch.isfinite(model.weight.grad).all())


# --- properties -----------------------------------------------------------------------------------

_logits = st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=16, max_size=40).filter(
    lambda v: min(v) < 0 or max(v) > 1
)  # not mistaken for probabilities
_unit = st.floats(0, 1, allow_nan=False, width=32)


@st.composite
def _binary_pairs(draw: st.DrawFn, hard: bool = False) -> tuple[Tensor, Tensor]:
    x = draw(_logits)
    labels = st.sampled_from([0.0, 1.0]) if hard else _unit
    t = draw(st.lists(labels, min_size=len(x), max_size=len(x)))
    return torch.tensor(x, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(pair=_binary_pairs(), gamma=st.floats(0, 5), alpha=st.none() | _unit)
def test_focal_is_non_negative_and_at_most_bce(
    pair: tuple[Tensor, Tensor], gamma: float, alpha: float | None
) -> None:
    x, t = pair
    loss = FocalLoss(gamma, alpha, reduction="none", impl="eager")(x, t)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    scale = 1.0 if alpha is None else max(alpha, 1 - alpha)
    assert bool((loss >= 0).all())
    assert bool((loss <= scale * bce + 1e-12).all())


@settings(max_examples=40, deadline=None)
@given(pair=_binary_pairs())
def test_focal_at_gamma_zero_is_bce(pair: tuple[Tensor, Tensor]) -> None:
    x, t = pair
    torch.testing.assert_close(
        FocalLoss(0.0, None, reduction="none", impl="eager")(x, t),
        F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    )
    torch.testing.assert_close(
        AsymmetricLoss(0.0, 0.0, clip=0.0, reduction="none", impl="eager")(x, t),
        F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    )


@settings(max_examples=60, deadline=None)
@given(
    pair=_binary_pairs(hard=True),
    gamma_pos=st.floats(0, 4),
    gamma_neg=st.floats(0, 6),
    clip=st.floats(0, 0.5),
)
def test_asymmetric_is_non_negative_and_clip_discards_easy_negatives(
    pair: tuple[Tensor, Tensor], gamma_pos: float, gamma_neg: float, clip: float
) -> None:
    x, t = pair
    loss = AsymmetricLoss(gamma_pos, gamma_neg, clip, reduction="none", impl="eager")(x, t)
    assert bool((loss >= 0).all())
    easy_negative = (t == 0) & (torch.sigmoid(x) <= clip)
    assert bool((loss[easy_negative] == 0).all())


@st.composite
def _class_scores(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    n, c = draw(st.integers(1, 6)), draw(st.integers(2, 6))
    flat = draw(st.lists(st.floats(-30, 30, width=32), min_size=n * c, max_size=n * c))
    x = torch.tensor(flat, dtype=torch.float64).reshape(n, c)
    y = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return x, y


@settings(max_examples=60, deadline=None)
@given(case=_class_scores(), gamma=st.floats(0, 4), more=st.floats(0, 3))
def test_softmax_focal_is_non_negative_decreasing_in_gamma_and_ce_at_zero(
    case: tuple[Tensor, Tensor], gamma: float, more: float
) -> None:
    x, y = case
    low = SoftmaxFocalLoss(gamma, reduction="none", impl="eager", check="off")(x, y)
    high = SoftmaxFocalLoss(gamma + more, reduction="none", impl="eager", check="off")(x, y)
    assert bool((low >= 0).all())
    assert bool((high <= low + 1e-12).all())
    torch.testing.assert_close(
        SoftmaxFocalLoss(0.0, reduction="none", impl="eager", check="off")(x, y),
        F.cross_entropy(x, y, reduction="none"),
    )


@settings(max_examples=60, deadline=None)
@given(case=_class_scores(), margin=st.floats(0.1, 3))
def test_multiclass_hinge_is_zero_exactly_when_the_margin_holds(
    case: tuple[Tensor, Tensor], margin: float
) -> None:
    x, y = case
    loss = MulticlassHingeLoss(margin, reduction="none", check="off")(x, y)
    true = x.gather(1, y[:, None]).squeeze(1)
    others = x.scatter(1, y[:, None], -math.inf).amax(1)
    assert bool((loss >= 0).all())
    assert torch.equal(loss == 0, true - others >= margin)


@settings(max_examples=60, deadline=None)
@given(pair=_binary_pairs(hard=True), margin=st.floats(0.1, 3))
def test_binary_hinge_is_zero_exactly_when_the_margin_holds(
    pair: tuple[Tensor, Tensor], margin: float
) -> None:
    x, t = pair
    for cls in (HingeLoss, SquaredHingeLoss):
        loss = cls(margin, reduction="none")(x, t)
        assert bool((loss >= 0).all())
        assert torch.equal(loss == 0, (2 * t - 1) * x >= margin)


@settings(max_examples=60, deadline=None)
@given(case=_class_scores(), shift=st.floats(-20, 20), temperature=st.floats(0.5, 8))
def test_distillation_is_non_negative_zero_on_itself_and_shift_invariant(
    case: tuple[Tensor, Tensor], shift: float, temperature: float
) -> None:
    student, _ = case
    teacher = student.flip(1) * 0.5
    kd = DistillationKLLoss(temperature, reduction="none", check="off")
    value = kd(student, teacher)
    assert bool((value >= -1e-12).all())
    torch.testing.assert_close(kd(student, student), torch.zeros(len(student), dtype=student.dtype))
    torch.testing.assert_close(kd(student + shift, teacher - shift), value)


@settings(max_examples=60, deadline=None)
@given(case=_class_scores())
def test_soft_target_cross_entropy_is_at_least_the_target_entropy(
    case: tuple[Tensor, Tensor],
) -> None:
    x, _ = case
    t = (x.flip(1) / 3).softmax(1)
    ce = SoftTargetCrossEntropyLoss(reduction="none", check="off")
    entropy = -(t * t.log()).sum(1)
    assert bool((ce(x, t) >= entropy - 1e-9).all())
    torch.testing.assert_close(ce(t.log(), t), entropy)


@settings(max_examples=40, deadline=None)
@given(case=_class_scores())
def test_z_loss_is_non_negative_and_zero_for_normalised_logits(
    case: tuple[Tensor, Tensor],
) -> None:
    x, _ = case
    z = ZLoss(reduction="none", check="off")
    assert bool((z(x) >= 0).all())
    torch.testing.assert_close(z(x.log_softmax(1)), torch.zeros(len(x), dtype=x.dtype))


# --- contract errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "input", "target", "message"),
    [
        (
            FocalLoss(),
            torch.randn(8),
            torch.zeros(8, 1),
            "FocalLoss ('focal'): target has shape (8, 1) and input (8,): the loss would "
            "broadcast them to (8, 8); give both the same shape (e.g. target.squeeze(1))",
        ),
        (
            FocalLoss(),
            torch.randn(4, 3),
            torch.tensor([[0, 1, 2]] * 4),
            "FocalLoss ('focal'): target has dtype int64 with values in [0, 2], expected binary "
            "targets 0 or 1 (integers are cast to the input's dtype); class indices belong to a "
            "multi-class loss (mode='multiclass', softmax_focal, cross_entropy); if 2 marks "
            "elements to leave out, pass ignore_index=2",
        ),
        (
            FocalLoss(),
            torch.rand(4, 8, generator=GEN().manual_seed(0)),
            torch.zeros(4, 8),
            "FocalLoss ('focal'): inputs look like probabilities (all 32 values in [0, 1]): this "
            "loss expects raw logits; drop the sigmoid (check='off' if they really are logits: "
            "Term(..., check='off'), or the loss's own check='off')",
        ),
        (
            FocalLoss(),
            torch.tensor([-1.0, 2.0]),
            torch.tensor([0.0, 2.0]),
            "FocalLoss ('focal'): target values lie in [0, 2], expected binary targets in [0, 1]",
        ),
        (
            FocalLoss(weight=[1.0, 2.0]),
            torch.randn(4, 3),
            torch.zeros(4, 3),
            "FocalLoss ('focal'): weight has 2 entries (one per class), but the input of shape "
            "(4, 3) has 3 classes along dim 1; give weight of shape (C,) for input (N, C, ...)",
        ),
        (
            SoftmaxFocalLoss(),
            torch.randn(4, 3),
            torch.zeros(4),
            "SoftmaxFocalLoss ('softmax_focal'): target has dtype float32, expected integer "
            "class indices (int64); cast with target.long()",
        ),
        (
            SoftmaxFocalLoss(),
            torch.randn(4, 3),
            torch.zeros(4, 3, dtype=torch.long),
            "SoftmaxFocalLoss ('softmax_focal'): target has shape (4, 3), expected (4,) for input "
            "(4, 3) (N, C, ...) with class indices; it has the input's shape: is it one-hot? use "
            "target.argmax(1)",
        ),
        (
            SoftmaxFocalLoss(),
            torch.randn(4, 3, generator=GEN().manual_seed(0)).softmax(1),
            torch.zeros(4, dtype=torch.long),
            "SoftmaxFocalLoss ('softmax_focal'): inputs look like probabilities (all in [0, 1], "
            "rows sum to 1 along dim 1): this loss expects raw logits; drop the softmax",
        ),
        (
            SoftmaxFocalLoss(),
            torch.randn(4, 1),
            torch.zeros(4, dtype=torch.long),
            "SoftmaxFocalLoss ('softmax_focal'): input of shape (4, 1) has 1 class along dim 1; "
            "a softmax over one class is always 1 and the loss would be 0: for a binary problem "
            "use 'focal' (sigmoid) with a float 0/1 target of the input's shape, or give two "
            "logits per position",
        ),
        (
            AsymmetricLoss(),
            torch.randn(3, 5),
            torch.full((3, 5), -1),
            "AsymmetricLoss ('asymmetric'): target has dtype int64 with values in [-1, -1], "
            "expected binary targets 0 or 1 (integers are cast to the input's dtype); class "
            "indices belong to a multi-class loss (mode='multiclass', softmax_focal, "
            "cross_entropy)",
        ),
        (
            HingeLoss(),
            torch.randn(6),
            torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0]),
            "HingeLoss ('hinge'): target values must be exactly 0 or 1, got values in [-1, 1]; "
            "map -1/1 labels with (y + 1) / 2",
        ),
        (
            SquaredHingeLoss(),
            torch.randn(3),
            torch.tensor([0.0, 0.5, 1.0]),
            "SquaredHingeLoss ('squared_hinge'): target values must be exactly 0 or 1, got "
            "values in [0, 1]",
        ),
        (
            MulticlassHingeLoss(),
            torch.randn(4, 1),
            torch.zeros(4, dtype=torch.long),
            "MulticlassHingeLoss ('multiclass_hinge'): input of shape (4, 1) has 1 class along "
            "dim 1; a multi-class hinge needs at least two classes",
        ),
        (
            SoftTargetCrossEntropyLoss(),
            torch.randn(4, 3),
            torch.tensor([0, 1, 2, 1]),
            "SoftTargetCrossEntropyLoss ('soft_target_cross_entropy'): target has dtype int64, "
            "expected float distributions of the input's shape; for class indices use "
            "'cross_entropy', or one-hot them: F.one_hot(target, C).movedim(-1, 1).float()",
        ),
        (
            SoftTargetCrossEntropyLoss(),
            torch.randn(2, 3),
            torch.tensor([[0.5, 0.2, 0.2], [1.0, 0.0, 0.0]]),
            "SoftTargetCrossEntropyLoss ('soft_target_cross_entropy'): target does not sum to 1 "
            "along dim 1 (sums lie in [0.9, 1]), expected a distribution over classes",
        ),
        (
            SoftTargetCrossEntropyLoss(),
            torch.randn(2, 3),
            torch.tensor([[0.5, 0.5], [1.0, 0.0]]),
            "SoftTargetCrossEntropyLoss ('soft_target_cross_entropy'): target has shape (2, 2) "
            "and input (2, 3): give both the same shape",
        ),
        (
            DistillationKLLoss(),
            torch.randn(2, 3),
            torch.randn(2, 3, generator=GEN().manual_seed(0)).softmax(1),
            "DistillationKLLoss ('distillation_kl'): target looks like probabilities (all in "
            "[0, 1], rows sum to 1 along dim 1): this loss expects raw logits; drop the softmax",
        ),
        (
            DistillationKLLoss(),
            torch.randn(2, 3),
            torch.randn(2, 4),
            "DistillationKLLoss ('distillation_kl'): target has shape (2, 4) and input (2, 3): "
            "give both the same shape",
        ),
        (
            ZLoss(dim=-1),
            torch.randn(2, 5, 7, generator=GEN().manual_seed(0)).softmax(-1),
            None,
            "ZLoss ('z_loss'): inputs look like probabilities (all in [0, 1], rows sum to 1 "
            "along dim -1): this loss expects raw logits; drop the softmax",
        ),
        (
            ZLoss(dim=2),
            torch.randn(4, 6),
            None,
            "ZLoss ('z_loss'): input has shape (4, 6), expected logits with the classes along "
            "dim 2 and at least one other dim",
        ),
    ],
)
def test_contract_errors(loss: Any, input: Tensor, target: Tensor | None, message: str) -> None:
    args = (input,) if target is None else (input, target)
    with pytest.raises(LossInputError) as info:
        loss(*args)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("loss", "target", "match"),
    [
        (
            SoftmaxFocalLoss(),
            [0, 7, -100, 1],
            r"^SoftmaxFocalLoss \('softmax_focal'\): class "
            r"index 7 out of range for 5 classes \(input has 5 along dim 1\)",
        ),
        (
            MulticlassHingeLoss(),
            [0, 7, -100, 1],
            r"^MulticlassHingeLoss \('multiclass_hinge'\): "
            r"class index 7 out of range for 5 classes",
        ),
        (SoftmaxFocalLoss(ignore_index=None), [0, 1, -100, 1], r"class index -100 out of range"),
    ],
)
def test_class_index_out_of_range(loss: Any, target: list[int], match: str) -> None:
    with pytest.raises(LossInputError, match=match):
        loss(torch.randn(4, 5), torch.tensor(target))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: SoftmaxFocalLoss(alpha=0.25),  # type: ignore[arg-type]
            "SoftmaxFocalLoss: alpha is the sigmoid focal loss's positive/negative balance and "
            "has no meaning across softmax classes; pass per-class weights weight=(C,) instead "
            "(kornia's and MONAI's softmax alpha=0.25 is weight=[1 - alpha, alpha, ..., alpha], "
            "class 0 being the background)",
        ),
        (lambda: FocalLoss(gamma=-1), "FocalLoss: gamma must lie in [0, inf), got -1.0"),
        (lambda: FocalLoss(alpha=1.5), "FocalLoss: alpha must lie in [0, 1], got 1.5"),
        (
            lambda: FocalLoss(reduction="batchmean"),  # type: ignore[arg-type]
            "FocalLoss: reduction must be 'mean', 'sum' or 'none', got 'batchmean'",
        ),
        (
            lambda: FocalLoss(impl="triton"),  # type: ignore[arg-type]
            "FocalLoss: impl must be 'auto', 'compiled' or 'eager', got 'triton'",
        ),
        (
            lambda: SoftmaxFocalLoss(weight=[[1.0, 2.0]]),
            "SoftmaxFocalLoss: weight must be a 1-D float tensor of per-class weights (C,), got "
            "shape (1, 2) and dtype float32",
        ),
        (
            lambda: SoftmaxFocalLoss(weight=[1.0, -2.0]),
            "SoftmaxFocalLoss: weight must be finite and non-negative, got [1.0, -2.0]",
        ),
        (lambda: AsymmetricLoss(clip=1.0), "AsymmetricLoss: clip must be below 1"),
        (lambda: HingeLoss(margin=0.0), "HingeLoss: margin must lie in (0, inf), got 0.0"),
        (
            lambda: DistillationKLLoss(temperature=0),
            "DistillationKLLoss: temperature must lie in (0, inf), got 0.0",
        ),
    ],
)
def test_config_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value).startswith(message)


# --- semantics, registry, criterion ---------------------------------------------------------------


def test_an_all_ignored_batch_gives_zero_with_zero_gradient() -> None:
    """F.cross_entropy returns NaN here (pytorch#70348); losskit defines 0."""
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.full((3,), -100)
    for loss in (SoftmaxFocalLoss(impl="eager"), MulticlassHingeLoss()):
        value = loss(x, y)
        (grad,) = torch.autograd.grad(value, x)
        assert float(value.detach()) == 0.0
        assert bool((grad == 0).all())


def test_ignore_index_has_an_effect() -> None:
    """qubvel-org/segmentation_models.pytorch#366: ignore_index that did nothing."""
    x, y = _multiclass((5, 4, 3, 3), dtype=torch.float32)
    kept = y != -100
    ours = SoftmaxFocalLoss(reduction="none")(x, y)
    assert bool((ours[~kept] == 0).all())
    assert bool((ours[kept] > 0).all())
    torch.testing.assert_close(SoftmaxFocalLoss()(x, y), ours[kept].mean())


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("focal", FocalLoss),
        ("sigmoid_focal", FocalLoss),
        ("softmax_focal", SoftmaxFocalLoss),
        ("asl", AsymmetricLoss),
        ("hinge", HingeLoss),
        ("squared_hinge", SquaredHingeLoss),
        ("multiclass_hinge", MulticlassHingeLoss),
        ("soft_ce", SoftTargetCrossEntropyLoss),
        ("kd", DistillationKLLoss),
        ("z_loss", ZLoss),
    ],
)
def test_registered_names(name: str, cls: type) -> None:
    assert type(losses.get(name)) is cls
    assert losses.resolve(name).family == "classification"


def test_terms_in_a_criterion() -> None:
    g = GEN().manual_seed(0)
    outputs = {"logits": torch.randn(6, 4, generator=g, requires_grad=True)}
    batch = {
        "labels": (torch.rand(6, 4, generator=g) < 0.3).float(),
        "valid": torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0]),
    }
    crit = lk.Criterion(
        {
            "focal": lk.Term("focal", input="logits", target="labels", mask="valid", gamma=1.0),
            "z": lk.Term("z_loss", input="logits", weight=1e-2),
        }
    )
    res = crit(outputs, batch)
    focal = FocalLoss(gamma=1.0, reduction="none")(outputs["logits"], batch["labels"])
    expected_focal = focal[batch["valid"].bool()].mean()
    torch.testing.assert_close(res["focal"], expected_focal)
    torch.testing.assert_close(res["z"], ZLoss()(outputs["logits"]))
    res.backward()
    assert outputs["logits"].grad is not None


def test_modules_pickle_and_move_their_weights() -> None:
    loss = SoftmaxFocalLoss(weight=[1.0, 2.0, 3.0])
    clone = pickle.loads(pickle.dumps(loss))
    x, y = _multiclass((4, 3), dtype=torch.float32)
    torch.testing.assert_close(clone(x, y), loss(x, y))
    assert "weight" in loss.state_dict()
    assert loss.double().weight is not None
    assert loss.weight.dtype == torch.float64
