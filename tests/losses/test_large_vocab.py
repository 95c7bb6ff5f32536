"""linear_cross_entropy against F.cross_entropy on materialised logits: values and gradients with
respect to the hidden states, the weight and the bias, every reduction, ignore_index, label
smoothing and z-loss; the Term selects the weight by key; contracts and the fallback message."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import losskit as lk
from losskit import losses
from losskit.errors import ConfigError, LossInputError, LossKitWarning
from losskit.losses._large_vocab import LinearCrossEntropyLoss

N, H, V = 24, 8, 37


def _data(seed: int, bias: bool = False) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, H, generator=g)
    w = torch.randn(V, H, generator=g) / 2
    b = torch.randn(V, generator=g) if bias else None
    y = torch.randint(0, V, (N,), generator=g)
    y[::5] = -100
    return h, w, b, y


def _reference(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    y: Tensor,
    reduction: str,
    smoothing: float,
    z_loss: float,
) -> Tensor:
    logits = F.linear(h, w, b)
    ce = F.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)
    valid = y != -100
    per_row = ce + z_loss * torch.where(valid, logits.logsumexp(-1), 0.0).square()
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if z_loss == 0.0:  # the mean exactly as F.cross_entropy takes it
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    return per_row.sum() / valid.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("smoothing", "z_loss", "bias"),
    [(0.0, 0.0, False), (0.1, 0.0, True), (0.0, 1e-2, False), (0.2, 1e-2, True)],
)
def test_value_and_gradients_equal_cross_entropy_on_logits(
    reduction: str, smoothing: float, z_loss: float, bias: bool
) -> None:
    h, w, b, y = _data(int(smoothing * 10 + z_loss * 1000) + bias, bias)
    ours_in = [t.clone().requires_grad_(True) for t in (h, w) + ((b,) if b is not None else ())]
    ref_in = [t.clone().requires_grad_(True) for t in ours_in]
    loss = LinearCrossEntropyLoss(label_smoothing=smoothing, z_loss=z_loss, reduction=reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it leaves the chunked path
        a = loss(*ours_in, y)
    bias_ref = ref_in[2] if bias else None
    r = _reference(ref_in[0], ref_in[1], bias_ref, y, reduction, smoothing, z_loss)
    torch.testing.assert_close(a, r)
    upstream = torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(a, ours_in, upstream)
    expected = torch.autograd.grad(r, ref_in, upstream)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def _graph_nodes(t: Tensor) -> set[str]:
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


@pytest.mark.parametrize("chunked", [True, False])
def test_takes_torch_chunked_path_unless_asked_not_to(chunked: bool) -> None:
    h, w, _, y = _data(0)
    loss = LinearCrossEntropyLoss(label_smoothing=0.1, z_loss=1e-3, chunked=chunked)
    nodes = _graph_nodes(loss(h.requires_grad_(), w, y))
    assert any("chunked" in n for n in nodes) == chunked
    assert ("MmBackward0" in nodes) == (not chunked)  # the (N, V) logits matmul


def test_batched_hidden_states_and_term_selects_weight_by_key() -> None:
    g = torch.Generator().manual_seed(3)
    head = torch.nn.Linear(H, V, bias=False)
    hidden = torch.randn(2, 6, H, generator=g, requires_grad=True)
    labels = torch.randint(0, V, (2, 6), generator=g)
    crit = lk.Criterion(
        {
            "lm": lk.Term(
                "linear_cross_entropy",
                input=("hidden", lambda out, batch: head.weight),
                target="labels",
                label_smoothing=0.1,
            )
        }
    )
    res = crit({"hidden": hidden}, {"labels": labels})
    expected = F.cross_entropy(head(hidden).flatten(0, 1), labels.flatten(), label_smoothing=0.1)
    torch.testing.assert_close(res["lm"], expected)
    res.backward()
    (grad_w,) = torch.autograd.grad(expected, head.weight)
    torch.testing.assert_close(head.weight.grad, grad_w)
    term = lk.Term("linear_cross_entropy", input=("hidden", "weight"), target="labels")
    value = term.compute("lm", {"hidden": hidden, "weight": head.weight}, {"labels": labels})
    torch.testing.assert_close(value, F.cross_entropy(head(hidden).flatten(0, 1), labels.flatten()))
    with pytest.raises(LossInputError, match=r"term 'lm': input\[1\] key 'weight' not found"):
        term.compute("lm", {"hidden": hidden}, {"labels": labels})


def test_every_target_ignored_gives_zero_and_zero_gradient() -> None:
    h, w, _, _ = _data(4)
    h.requires_grad_(True)
    value = losses.get("linear_cross_entropy")(h, w, torch.full((N,), -100))
    value.backward()
    assert value.item() == 0.0
    assert h.grad is not None
    assert not h.grad.any()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.randn(N, H), torch.randn(V, H + 1), torch.zeros(N, dtype=torch.long)), "H = "),
        ((torch.randn(N, H), torch.randn(V, H), torch.zeros(N)), "dtype float32, expected int"),
        ((torch.randn(N, H), torch.randn(V, H), torch.zeros(N, 1, dtype=torch.long)), r"\(24,\)"),
        ((torch.randn(N, H), torch.randn(V, H), torch.full((N,), V)), "class index 37 out of"),
        ((torch.randn(N, H), torch.randn(V, H), torch.randn(V + 1), torch.zeros(N).long()), "bias"),
        ((torch.randn(N, H), torch.randn(V, H).double(), torch.zeros(N).long()), "one dtype"),
    ],
)
def test_contract_errors(args: tuple[Tensor, ...], match: str) -> None:
    with pytest.raises(LossInputError, match=match):
        LinearCrossEntropyLoss()(*args)


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="label_smoothing"):
        LinearCrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ConfigError, match="z_loss"):
        LinearCrossEntropyLoss(z_loss=-1.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_fallback_under_tracing_says_so() -> None:
    h, w, _, y = _data(5)
    loss = LinearCrossEntropyLoss(check="off")
    with pytest.warns(LossKitWarning, match=r"jit.trace.*full \(N, V\) logits"):
        traced = torch.jit.trace(lambda a, b: loss(a, b, y), (h, w), check_trace=False)
    torch.testing.assert_close(traced(h, w), F.cross_entropy(h @ w.T, y))


def test_unchunked_path_supports_double_backward() -> None:
    h, w, _, y = _data(6)
    h.requires_grad_(True)
    value = LinearCrossEntropyLoss(chunked=False, z_loss=1e-3)(h, w, y)
    (g,) = torch.autograd.grad(value, h, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), h)
    assert torch.isfinite(gg).all()


def test_double_backward_on_the_chunked_path_says_what_to_do() -> None:
    h, w, _, y = _data(7)
    h.requires_grad_(True)
    value = LinearCrossEntropyLoss()(h, w, y)
    with pytest.raises(LossInputError, match=r"plain backward\(\) only.*chunked=False"):
        torch.autograd.grad(value, h, create_graph=True)


def test_a_second_backward_pass_on_the_chunked_path_says_what_to_do() -> None:
    h = torch.randn(6, 4, requires_grad=True)
    w = torch.randn(10, 4, requires_grad=True)
    y = torch.randint(0, 10, (6,))
    value = LinearCrossEntropyLoss()(h, w, y)
    (first,) = torch.autograd.grad(value, h, retain_graph=True)
    torch.testing.assert_close(first, torch.autograd.grad(F.cross_entropy(h @ w.T, y), h)[0])
    with pytest.raises(LossInputError, match=r"one backward pass.*chunked=False"):
        value.backward()


@pytest.mark.parametrize("balancer", ["gradnorm", "mgda"])
def test_balancers_needing_one_backward_per_key_refuse_a_chunked_term(balancer: str) -> None:
    terms = {
        "lm": lk.Term("linear_cross_entropy", input=("hidden", "weight"), target="labels"),
        "aux": lk.Term("mse", input="aux", target="y"),
    }
    spec = {"name": balancer, "shared": torch.nn.Linear(4, 4)}
    with pytest.raises(ConfigError, match=r"\['lm'\].*chunked=False"):
        lk.Criterion(terms, balancer=spec)
    terms["lm"] = lk.Term(
        "linear_cross_entropy", input=("hidden", "weight"), target="labels", chunked=False
    )
    lk.Criterion(terms, balancer=spec)  # the logits path takes any number of passes
