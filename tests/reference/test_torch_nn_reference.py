"""Every wrapped torch.nn loss equals torch.nn itself: value and gradient, every reduction."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from losskit import losses

Case = Callable[[torch.Generator], tuple[Tensor, ...]]


def _values(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)


def _class_indices(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)


def _log_probs(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, 4, generator=g).log_softmax(1), torch.randint(0, 4, (6,), generator=g)


def _binary_logits(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, 3, generator=g), torch.randint(0, 2, (6, 3), generator=g).float()


def _probabilities(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.rand(6, 3, generator=g).clamp(0.01, 0.99), torch.rand(6, 3, generator=g)


def _signs(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, generator=g), torch.randint(0, 2, (6,), generator=g).float() * 2 - 1


def _kl(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, 4, generator=g).log_softmax(1), torch.randn(6, 4, generator=g).softmax(1)


def _poisson(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, generator=g), torch.poisson(torch.full((6,), 3.0), generator=g)


def _gaussian(g: torch.Generator) -> tuple[Tensor, ...]:
    x, y = _values(g)
    return x, y, torch.rand(6, 3, generator=g) + 0.1


def _pairs(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g), _signs(g)[1]


def _ranking(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(6, generator=g), torch.randn(6, generator=g), _signs(g)[1]


def _triplets(g: torch.Generator) -> tuple[Tensor, ...]:
    return tuple(torch.randn(6, 5, generator=g) for _ in range(3))


def _multilabel_margin(g: torch.Generator) -> tuple[Tensor, ...]:
    return torch.randn(3, 4, generator=g), torch.tensor(
        [[3, 0, -1, 1], [0, -1, 1, 2], [1, -1, 0, 0]]
    )


def _ctc(g: torch.Generator) -> tuple[Tensor, ...]:
    log_probs = torch.randn(12, 2, 5, generator=g).log_softmax(2)
    targets = torch.randint(1, 5, (2, 4), generator=g)
    return log_probs, targets, torch.tensor([12, 10]), torch.tensor([4, 3])


CASES: dict[str, Case] = {
    "l1": _values,
    "mse": _values,
    "huber": _values,
    "smooth_l1": _values,
    "gaussian_nll": _gaussian,
    "poisson_nll": _poisson,
    "cross_entropy": _class_indices,
    "nll": _log_probs,
    "binary_cross_entropy": _probabilities,
    "binary_cross_entropy_with_logits": _binary_logits,
    "kl_div": _kl,
    "multilabel_soft_margin": _binary_logits,
    "multilabel_margin": _multilabel_margin,
    "multi_margin": _class_indices,
    "soft_margin": _signs,
    "hinge_embedding": _signs,
    "cosine_embedding": _pairs,
    "margin_ranking": _ranking,
    "triplet_margin": _triplets,
    "triplet_margin_with_distance": _triplets,
    "ctc": _ctc,
}


def test_every_wrapped_loss_has_a_case() -> None:
    wrapped = {
        spec.name
        for spec in losses.available()
        if spec.factory.__module__ == "losskit.losses._torch_nn"
    }
    assert wrapped - set(CASES) == {"linear_cross_entropy_head"}  # see test_linear_cross_entropy


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_gradient_equal_torch_nn(name: str, reduction: str) -> None:
    ours = losses.get(name, reduction=reduction, check="always")
    reference_cls = next(c for c in type(ours).__mro__ if c.__module__.startswith("torch.nn"))
    reference = reference_cls(reduction=reduction)
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    tensors = CASES[name](g)
    first_a = tensors[0].clone().requires_grad_(True)
    first_b = tensors[0].clone().requires_grad_(True)
    a = ours(first_a, *tensors[1:])
    b = reference(first_b, *tensors[1:])
    torch.testing.assert_close(a, b)
    upstream = torch.randn(a.shape, generator=g)
    (ga,) = torch.autograd.grad(a, first_a, upstream)
    (gb,) = torch.autograd.grad(b, first_b, upstream)
    torch.testing.assert_close(ga, gb)


def test_linear_cross_entropy() -> None:
    torch.manual_seed(0)
    ours = losses.get("linear_cross_entropy_head", in_features=8, num_classes=5)
    reference = nn.LinearCrossEntropyLoss(8, 5)
    reference.load_state_dict(ours.state_dict())
    h, y = torch.randn(6, 8), torch.randint(0, 5, (6,))
    torch.testing.assert_close(ours(h, y), reference(h, y))
