"""A sweep of wrong inputs across the catalogue: each is refused with a LossInputError that names
the term's key, the loss and the tensor at fault, before any number is computed."""

from __future__ import annotations

import pytest
import torch

import losskit as lk

_G = torch.Generator().manual_seed(0)


def _probabilities(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=_G)


def _binary(*shape: int) -> torch.Tensor:
    return (torch.rand(*shape, generator=_G) > 0.5).float()


NAN = float("nan")
INF = float("inf")

# name -> (loss, input, target, the tensor the message must name, a phrase of the diagnosis)
CASES: dict[str, tuple[str, torch.Tensor, torch.Tensor, str, str]] = {
    "mse-broadcast": ("mse", torch.zeros(8), torch.zeros(8, 1), "target", "broadcast"),
    "l1-broadcast": ("l1", torch.zeros(8), torch.zeros(8, 1), "target", "broadcast"),
    "huber-transposed": ("huber", torch.zeros(8, 2), torch.zeros(2, 8), "target", "same shape"),
    "smooth_l1-int-target": (
        "smooth_l1",
        torch.zeros(8),
        torch.zeros(8, dtype=torch.long),
        "target",
        "dtype int64",
    ),
    "mse-int-input": ("mse", torch.zeros(8, dtype=torch.long), torch.zeros(8), "input", "int64"),
    "l1-bool-target": ("l1", torch.zeros(4), torch.zeros(4, dtype=torch.bool), "target", "bool"),
    "bce_logits-probabilities": (
        "bce_logits",
        _probabilities(32),
        _binary(32),
        "input",
        "like probabilities",
    ),
    "bce_logits-target-range": (
        "bce_logits",
        torch.randn(8, generator=_G),
        torch.full((8,), 2.0),
        "target",
        "[0, 1]",
    ),
    "bce-logits-given": (
        "bce",
        3 * torch.randn(32, generator=_G),
        _binary(32),
        "input",
        "probabilities",
    ),
    "ce-class-out-of-range": (
        "cross_entropy",
        torch.randn(4, 3),
        torch.tensor([0, 1, 2, 5]),
        "class index",
        "range",
    ),
    "ce-negative-class": (
        "cross_entropy",
        torch.randn(4, 3),
        torch.tensor([0, 1, -2, 1]),
        "class index",
        "range",
    ),
    "ce-softmaxed-input": (
        "cross_entropy",
        torch.softmax(torch.randn(4, 3, generator=_G), 1),
        torch.tensor([0, 1, 2, 1]),
        "input",
        "logits",
    ),
    "ce-short-target": (
        "cross_entropy",
        torch.randn(4, 3),
        torch.tensor([0, 1, 2]),
        "target",
        "shape (3,)",
    ),
    "ce-float-target-of-another-shape": (
        "cross_entropy",
        torch.randn(4, 3),
        _probabilities(4, 2),
        "target",
        "dtype float32",
    ),
    "ce-nan-input": (
        "cross_entropy",
        torch.tensor([[NAN, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        torch.tensor([0, 1]),
        "input",
        "1 NaN",
    ),
    "nll-probabilities": (
        "nll",
        _probabilities(4, 3),
        torch.tensor([0, 1, 2, 1]),
        "input",
        "log-probabilities",
    ),
    "kl-negative-target": (
        "kl_div",
        torch.log_softmax(torch.randn(4, 3, generator=_G), 1),
        torch.full((4, 3), -0.5),
        "target",
        "[0, 1]",
    ),
    "focal-probabilities": ("focal", _probabilities(32, 1), _binary(32, 1), "input", "logits"),
    "focal-target-range": ("focal", torch.randn(8, 1), torch.full((8, 1), 3.0), "target", "[0, 1]"),
    "softmax_focal-class": (
        "softmax_focal",
        torch.randn(4, 3),
        torch.tensor([0, 1, 7, 1]),
        "class index",
        "range",
    ),
    "asymmetric-probabilities": (
        "asymmetric",
        _probabilities(32, 2),
        _binary(32, 2),
        "input",
        "logits",
    ),
    "dice-extra-dim": (
        "dice",
        torch.randn(2, 3, 4, 4),
        torch.zeros(2, 4, 4, 1, dtype=torch.long),
        "target",
        "shape (2, 4, 4, 1)",
    ),
    "dice-class-out-of-range": (
        "dice",
        torch.randn(2, 3, 4, 4),
        torch.full((2, 4, 4), 9),
        "class index",
        "ignore_index",
    ),
    "tversky-class-out-of-range": (
        "tversky",
        torch.randn(2, 3, 4, 4),
        torch.full((2, 4, 4), 9),
        "class index",
        "range",
    ),
    "jaccard-batch-mismatch": (
        "jaccard",
        torch.randn(2, 3, 4, 4),
        torch.zeros(3, 4, 4, dtype=torch.long),
        "target",
        "expected (2, 4, 4)",
    ),
    "lovasz_softmax-class": (
        "lovasz_softmax",
        torch.randn(2, 3, 4, 4),
        torch.full((2, 4, 4), 9),
        "class index",
        "range",
    ),
    "poisson-negative-counts": (
        "poisson",
        torch.randn(8),
        torch.full((8,), -1.0),
        "target",
        "non-negative",
    ),
    "quantile-broadcast": ("quantile", torch.zeros(8), torch.zeros(8, 1), "target", "shape"),
    "log_cosh-length": ("log_cosh", torch.zeros(8), torch.zeros(4), "target", "same shape"),
    "charbonnier-missing-dim": (
        "charbonnier",
        torch.zeros(8, 2),
        torch.zeros(8),
        "target",
        "same shape",
    ),
    "hinge-soft-target": ("hinge", torch.randn(8), torch.full((8,), 0.5), "target", "0 or 1"),
    "multi_margin-class": (
        "multi_margin",
        torch.randn(4, 3),
        torch.tensor([0, 1, 4, 1]),
        "class index",
        "range",
    ),
    "soft_margin-not-a-sign": (
        "soft_margin",
        torch.randn(8),
        torch.full((8,), 0.3),
        "target",
        "-1 or 1",
    ),
    "mse-inf-target": (
        "mse",
        torch.zeros(4),
        torch.tensor([0.0, INF, 0.0, 0.0]),
        "target",
        "1 infinite",
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_wrong_input_names_the_key_the_loss_and_the_tensor(
    case: tuple[str, torch.Tensor, torch.Tensor, str, str],
) -> None:
    loss, x, y, tensor, diagnosis = case
    crit = lk.Criterion({"myhead": lk.Term(loss, input="p", target="y")})
    with pytest.raises(lk.LossInputError) as info:
        crit({"p": x}, {"y": y})
    message = str(info.value)
    assert message.startswith("term 'myhead': ")
    assert f"('{lk.losses.resolve(loss).name}')" in message  # the loss, by its registry name
    assert tensor in message
    assert diagnosis in message
