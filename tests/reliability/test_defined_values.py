"""Defined values where torch gives NaN or an obscure error, over the whole catalogue.

Empty batches, 0-dim targets, meta tensors and mismatched devices are refused with a
LossInputError (keyed under a Term); a batch whose every target is ``ignore_index`` gives 0 with
a zero gradient; a mask protects what it masks (NaN and inf there change nothing).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor

import losskit as lk


def _catalogue_helpers() -> ModuleType:
    """tests/losses/test_catalogue_properties.py: inputs drawn from each loss's contract."""
    path = Path(__file__).parents[1] / "losses" / "test_catalogue_properties.py"
    name = "_catalogue_properties_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


P = _catalogue_helpers()
NAMES: list[str] = P.NAMES
DECLARED = [n for n in NAMES if n not in P.UNDECLARED_INPUTS]
# Losses of this set that take a target: the target checks apply to them.
WITH_TARGET = [n for n in DECLARED if P._case(n).target]
IGNORING = [n for n in NAMES if P._accepts(n, "ignore_index")]


def _empty(name: str, tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    if name == "ctc":  # log_probs (T, N, C): the batch is dim 1
        return (tensors[0][:, :0], *(t[:0] for t in tensors[1:]))
    return tuple(t[:0] for t in tensors)


# --- item 12: empty batches, 0-dim targets, meta tensors, mismatched devices ----------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", NAMES)
def test_an_empty_batch_is_refused_naming_it(name: str, reduction: str) -> None:
    case = P._case(name)
    kwargs = {"reduction": reduction} if P._accepts(name, "reduction") else {}
    loss = P._build(name, case, **kwargs)
    with pytest.raises(lk.LossInputError, match="empty"):
        loss(*_empty(name, case.tensors))


def test_an_empty_batch_under_a_term_names_the_key() -> None:
    term = lk.Term("dice", input="x", target="y")
    with pytest.raises(lk.LossInputError, match=r"term 'seg'.*empty"):
        term.compute("seg", {"x": torch.zeros(0, 3, 4)}, {"y": torch.zeros(0, 4).long()})


@pytest.mark.parametrize("name", WITH_TARGET)
def test_a_0_dim_target_is_refused_naming_the_expected_shape(name: str) -> None:
    case = P._case(name)
    *inputs, target = case.tensors
    expected = "|".join(
        re.escape(str(s)) for s in {tuple(target.shape), (target.shape[0],), tuple(inputs[0].shape)}
    )
    with pytest.raises(lk.LossInputError, match=rf"target has shape \(\).*({expected})"):
        P._build(name, case)(*inputs, target.flatten()[0])


@pytest.mark.parametrize("name", WITH_TARGET)
def test_a_target_on_another_device_is_refused_naming_both(name: str) -> None:
    case = P._case(name)
    *inputs, target = case.tensors
    with pytest.raises(lk.LossInputError, match=r"(?s)device.*(meta.*cpu|cpu.*meta)"):
        P._build(name, case)(*inputs, target.to("meta"))


@pytest.mark.parametrize("name", NAMES)
def test_meta_tensors_are_refused_naming_the_meta_device(name: str) -> None:
    case = P._case(name)
    with pytest.raises(lk.LossInputError, match="meta"):
        P._build(name, case)(*(t.to("meta") for t in case.tensors))


def test_mismatched_devices_under_a_term_name_the_key() -> None:
    term = lk.Term("mse", input="x", target="y")
    with pytest.raises(lk.LossInputError, match=r"term 'reg'.*cpu.*meta"):
        term.compute("reg", {"x": torch.zeros(3)}, {"y": torch.zeros(3, device="meta")})


# --- item 16: every target ignored ------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", IGNORING)
def test_every_target_ignored_gives_zero_and_a_zero_gradient(name: str, reduction: str) -> None:
    case = P._case(name)
    tensors = list(case.tensors)
    tensors[-1] = torch.full_like(tensors[-1], -100)
    loss = P._build(name, case, ignore_index=-100, reduction=reduction)
    leaves = P._leaves(P.Case(tuple(tensors), grad=case.grad))
    value = loss(*leaves)
    grads = torch.autograd.grad(value, [leaves[i] for i in case.grad])
    assert value.item() == 0.0
    for grad in grads:
        torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=0)


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"weight": [1.0, 2.0, 3.0]}])
def test_cross_entropy_on_padding_only_is_zero(options: dict[str, object]) -> None:
    if "weight" in options:
        options = {"weight": torch.tensor(options["weight"])}
    loss = lk.losses.get("cross_entropy", **options)
    logits = torch.randn(4, 3, requires_grad=True)
    value = loss(logits, torch.full((4,), -100))
    value.backward()
    assert value.item() == 0.0
    torch.testing.assert_close(logits.grad, torch.zeros(4, 3), rtol=0, atol=0)
    # a batch with labels is unchanged: torch's own value
    y = torch.tensor([0, -100, 2, 1])
    torch.testing.assert_close(
        loss(logits, y), torch.nn.functional.cross_entropy(logits, y, **options)
    )


def test_real_nan_logits_with_labels_stay_nan() -> None:
    loss = lk.losses.get("cross_entropy", check="off")
    assert loss(torch.full((2, 3), float("nan")), torch.tensor([0, -100])).isnan()


def test_a_required_term_with_every_target_ignored_gives_zero() -> None:
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="x", target="y")})
    x = torch.randn(2, 3, requires_grad=True)
    res = crit({"x": x}, {"y": torch.full((2,), -100)})
    res.total.backward()
    torch.testing.assert_close(res["cls"], torch.tensor(0.0))
    torch.testing.assert_close(x.grad, torch.zeros(2, 3), rtol=0, atol=0)


def test_the_all_ignored_guard_holds_under_compile() -> None:
    # The guard writes into the loss's detached value; AOT autograd must keep that write.
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="x", target="y")})
    compiled = torch.compile(crit, backend="aot_eager", fullgraph=True)
    for y in (torch.full((4,), -100), torch.tensor([0, 2, -100, 1])):
        x = torch.randn(4, 3, requires_grad=True)
        ref = x.detach().clone().requires_grad_()
        res = compiled({"x": x}, {"y": y})
        res.total.backward()
        expected = torch.nn.functional.cross_entropy(ref, y)
        expected = expected if bool((y != -100).any()) else (ref * 0).sum()
        expected.backward()
        torch.testing.assert_close(res["cls"], expected.detach())
        torch.testing.assert_close(x.grad, ref.grad, rtol=0, atol=0)


# --- item 14: a mask protects what it masks ---------------------------------------------------

BAD = [float("nan"), float("inf")]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("where", ["input", "target", "both"])
def test_a_per_sample_mask_protects_the_masked_samples(where: str, bad: float) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    mask = torch.tensor([True, False, True, False])
    if where in ("input", "both"):
        x[~mask] = bad
    if where in ("target", "both"):
        y[~mask] = bad
    x.requires_grad_(True)
    term = lk.Term("mse", input="x", target="y", mask="m")
    value = term.compute("reg", {"x": x}, {"y": y, "m": mask})
    (grad,) = torch.autograd.grad(value, x)
    xk, yk = x.detach()[mask], y[mask]
    torch.testing.assert_close(value, ((xk - yk) ** 2).mean())
    expected = torch.zeros_like(x)
    expected[mask] = 2 * (xk - yk) / xk.numel()
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", BAD)
def test_a_per_element_mask_protects_the_masked_elements(bad: float) -> None:
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.rand(4, 3, dtype=torch.float64)
    mask = torch.rand(4, 3) > 0.4
    mask[0, 0] = True
    logits[~mask] = bad
    target[~mask] = bad
    logits.requires_grad_(True)
    term = lk.Term("bce_with_logits", input="x", target="y", mask="m")
    value = term.compute("bin", {"x": logits}, {"y": target, "m": mask})
    (grad,) = torch.autograd.grad(value, logits)
    xk, yk = logits.detach()[mask], target[mask]
    torch.testing.assert_close(value, torch.nn.functional.binary_cross_entropy_with_logits(xk, yk))
    expected = torch.zeros_like(logits)
    expected[mask] = (torch.sigmoid(xk) - yk) / xk.numel()
    torch.testing.assert_close(grad, expected)


def test_a_masked_out_class_index_target_need_not_be_a_class() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    target = torch.tensor([1, 99, 2])  # 99: garbage where masked out
    mask = torch.tensor([True, False, True])
    term = lk.Term("cross_entropy", input="x", target="y", mask="m")
    value = term.compute("cls", {"x": logits}, {"y": target, "m": mask})
    value.backward()
    idx = mask.nonzero().flatten()
    torch.testing.assert_close(
        value, torch.nn.functional.cross_entropy(logits.detach()[idx], target[idx])
    )
    torch.testing.assert_close(logits.grad[1], torch.zeros(4), rtol=0, atol=0)


@pytest.mark.parametrize("name", P.REDUCING)
def test_every_maskable_loss_ignores_nan_in_masked_inputs(name: str) -> None:
    case = P._case(name)
    inputs = list(case.tensors[:-1] if case.target else case.tensors)
    mask = torch.arange(case.batch) % 2 == 0
    for i in case.grad:
        if i < len(inputs) and inputs[i].shape[:1] == (case.batch,):
            inputs[i] = inputs[i].clone()
            inputs[i][~mask] = float("nan")
    leaves = [t.requires_grad_(True) if i in case.grad else t for i, t in enumerate(inputs)]
    outputs = {f"x{i}": t for i, t in enumerate(leaves)}
    batch = {"m": mask, **({"y": case.tensors[-1]} if case.target else {})}
    selector: str | tuple[str, ...] = "x0" if len(leaves) == 1 else tuple(outputs)
    if getattr(P._build(name, case), "couples_samples", False):  # a mask is refused for these
        with pytest.raises(lk.ConfigError, match="couples the samples of a batch"):
            lk.Term(name, input=selector, target="y", mask="m", **case.kwargs)
        return
    torch.manual_seed(0)
    term = lk.Term(
        name, input=selector, target="y" if case.target else None, mask="m", **case.kwargs
    ).to(P.DTYPE)
    value = term.compute("k", outputs, batch)
    assert torch.isfinite(value)
    grads = torch.autograd.grad(value, [t for t in leaves if t.requires_grad], allow_unused=True)
    for g in grads:
        if g is not None:
            assert torch.isfinite(g).all()


# --- class_weights takes counts ---------------------------------------------------------------


def test_class_weights_of_an_integer_count_tensor_gives_one_weight_per_class() -> None:
    weights = lk.class_weights(torch.tensor([1000, 100, 50]))
    assert weights.shape == (3,)
    torch.testing.assert_close(weights, lk.class_weights([1000.0, 100.0, 50.0]))


def test_targets_are_counted_by_class_counts() -> None:
    targets = torch.tensor([[0, 0, 1], [0, 2, 2]])
    torch.testing.assert_close(lk.class_counts(targets), torch.tensor([3, 1, 2]))
    torch.testing.assert_close(lk.class_counts(targets, num_classes=4), torch.tensor([3, 1, 2, 0]))
    with pytest.raises(lk.ConfigError, match=r"class_counts"):
        lk.class_weights(targets)  # a (N, ...) tensor is not counts: says to count it first
