"""Properties every catalogue loss must satisfy, run over every registered name.

The inputs of each loss are drawn from its declared :class:`~losskit.losses.Contract` (input
kind, target kind, shape relation, class dim) and the parameters of its ``forward``, so a loss
registered with a contract is tested here with no edit to this file. A loss whose contract does
not describe its inputs (several tensors, or a target of kind ``"any"``) needs an entry in
``UNDECLARED_INPUTS``; without one, ``test_inputs_follow_from_the_contract`` fails and names it.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import losskit as lk
from losskit import losses

N, C = 4, 3  # samples and classes: tiny on purpose
DTYPE = torch.float64


@dataclass(frozen=True)
class Case:
    """A loss's inputs: ``tensors`` in call order, the last one the target when ``target``.

    ``grad``: positions of the tensors that are predictions (they get gradients); ``batch``:
    the number of samples; ``mean``: the documented ``reduction="mean"`` from the unreduced
    values, when it is not their plain mean; ``kwargs``: constructor arguments the loss needs.
    """

    tensors: tuple[Tensor, ...]
    grad: tuple[int, ...] = (0,)
    target: bool = True
    batch: int = N
    mean: Callable[[Tensor, tuple[Tensor, ...]], Tensor] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _randn(g: torch.Generator, count: int, *shape: int) -> tuple[Tensor, ...]:
    return tuple(torch.randn(shape, generator=g, dtype=DTYPE) for _ in range(count))


def _signs(g: torch.Generator, n: int = N) -> Tensor:
    return torch.randint(0, 2, (n,), generator=g).to(DTYPE) * 2 - 1


def _ctc(g: torch.Generator) -> Case:
    lengths = torch.tensor([3, 2, 3, 1])
    return Case(
        (
            torch.randn(6, N, 5, generator=g, dtype=DTYPE).log_softmax(2),
            torch.randint(1, 5, (N, 3), generator=g),
            torch.full((N,), 6),
            lengths,
        ),
        # torch.nn.CTCLoss: 'mean' divides each loss by its target length, then averages.
        mean=lambda none, tensors: (none / tensors[3].clamp_min(1)).mean(),
    )


# Last resort: losses whose contract does not say what they take (several input tensors, or a
# target of kind "any"). Nothing declared lets the tests build these; each entry is a loss of
# torch.nn (or losskit's linear_cross_entropy) with inputs as its documentation describes.
UNDECLARED_INPUTS: dict[str, Callable[[torch.Generator], Case]] = {
    "cosine_embedding": lambda g: Case(
        (*_randn(g, 2, N, 5), _signs(g)),
        grad=(0, 1),
    ),
    "margin_ranking": lambda g: Case(
        (*_randn(g, 2, N), _signs(g)),
        grad=(0, 1),
    ),
    "triplet_margin": lambda g: Case(
        _randn(g, 3, N, 5),
        grad=(0, 1, 2),
        target=False,
    ),
    "triplet_margin_with_distance": lambda g: Case(
        _randn(g, 3, N, 5),
        grad=(0, 1, 2),
        target=False,
    ),
    "gaussian_nll": lambda g: Case(
        (
            torch.randn(N, C, generator=g, dtype=DTYPE),
            torch.randn(N, C, generator=g, dtype=DTYPE),
            torch.rand(N, C, generator=g, dtype=DTYPE) + 0.1,
        ),
        grad=(0, 2),
        target=False,  # torch's argument order: (input, target, var)
    ),
    "multilabel_margin": lambda g: Case(
        (
            torch.randn(N, C + 1, generator=g, dtype=DTYPE),
            torch.tensor([[3, 0, -1, 1], [0, -1, 1, 2], [1, -1, 0, 0], [2, 1, 3, -1]]),
        )
    ),
    "ctc": _ctc,
    "linear_cross_entropy": lambda g: Case(
        (
            torch.randn(N, 6, generator=g, dtype=DTYPE),
            torch.randn(C, 6, generator=g, dtype=DTYPE),
            torch.randint(0, C, (N,), generator=g),
        ),
        grad=(0, 1),
    ),
    "linear_cross_entropy_head": lambda g: Case(
        (torch.randn(N, 6, generator=g, dtype=DTYPE), torch.randint(0, C, (N,), generator=g)),
        kwargs={"in_features": 6, "num_classes": C},
    ),
}


def _maps(g: torch.Generator, *spatial: int) -> Case:
    """Logits ``(N, C, *spatial)`` and class indices: the losses that need spatial maps."""
    return Case(
        (
            2 * torch.randn(N, C, *spatial, generator=g, dtype=DTYPE),
            torch.randint(0, C, (N, *spatial), generator=g),
        )
    )


def _images(g: torch.Generator, size: int, **kwargs: Any) -> Case:
    return Case(
        tuple(torch.rand(N, 2, size, size, generator=g, dtype=DTYPE) for _ in range(2)),
        kwargs=kwargs,
    )


# Losses of images and maps: a contract cannot say how large their spatial dims must be.
UNDECLARED_INPUTS.update(
    {
        "mcc": lambda g: _maps(g, 5),
        "hausdorff_dt": lambda g: _maps(g, 5, 5),
        "hausdorff_er": lambda g: _maps(g, 5, 5),
        "cldice": lambda g: _maps(g, 6, 6),
        "ssim": lambda g: _images(g, 12),
        "ms_ssim": lambda g: _images(g, 12, weights=(0.5, 0.5), window_size=5),
        "total_variation": lambda g: Case(_randn(g, 1, N, 2, 4, 4), target=False),
        # Contrastive: two embeddings of one batch (both trained), or features and labels.
        "info_nce": lambda g: Case(_randn(g, 2, N, 5), grad=(0, 1), target=False),
        "clip": lambda g: Case(_randn(g, 2, N, 5), grad=(0, 1), target=False),
        "supervised_contrastive": lambda g: Case(
            (torch.randn(N, 5, generator=g, dtype=DTYPE), torch.tensor([1, 0, 1, 0]))
        ),
    }
)


def _names() -> list[str]:
    # list[LossSpec] today; a Registry's available() may return names: accept either.
    return sorted(getattr(entry, "name", entry) for entry in losses.available())


def _constructor_arguments(factory: Callable[..., Any]) -> set[str]:
    """The named arguments of a loss's constructor, through wrappers that pass ``**kwargs`` on."""
    if not isinstance(factory, type):
        return set(inspect.signature(factory).parameters)
    names: set[str] = set()
    for klass in factory.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _accepts(name: str, argument: str) -> bool:
    """Whether the loss's constructor takes ``argument`` (read from its signature)."""
    return argument in _constructor_arguments(losses.resolve(name).factory)


def _tensor_count(cls: type) -> int | None:
    """How many tensors ``forward`` takes (through ``*args`` wrappers), None if it varies."""
    for klass in cls.__mro__:
        if "forward" not in vars(klass):
            continue
        params = list(inspect.signature(vars(klass)["forward"]).parameters.values())[1:]
        if not any(p.kind is p.VAR_POSITIONAL for p in params):
            return len(params)
    return None


ELEMENTWISE = {"continuous", "binary", "hard_binary", "non_negative", "sign"}


def _draw_input(kind: str, shape: tuple[int, ...], dim: int, g: torch.Generator) -> Tensor:
    x = torch.randn(shape, generator=g, dtype=DTYPE)
    return {
        "values": x,
        "logits": 2 * x,
        "probabilities": torch.rand(shape, generator=g, dtype=DTYPE).clamp(0.05, 0.95),
        "log_probabilities": x.log_softmax(dim),
        "non_negative": torch.rand(shape, generator=g, dtype=DTYPE) + 0.1,
    }[kind]


def _draw_target(kind: str, shape: tuple[int, ...], dim: int, g: torch.Generator) -> Tensor:
    if kind in ("class_indices", "class_indices_or_probabilities"):
        return torch.randint(0, shape[dim], shape[:dim] + shape[dim + 1 :], generator=g)
    x = torch.randn(shape, generator=g, dtype=DTYPE)
    if kind == "one_hot":
        index = torch.randint(0, shape[dim], shape[:dim] + shape[dim + 1 :], generator=g)
        return nn.functional.one_hot(index, shape[dim]).movedim(-1, dim).to(DTYPE)
    return {
        "continuous": x,
        "logits": 2 * x,
        "binary": torch.rand(shape, generator=g, dtype=DTYPE),
        "hard_binary": torch.randint(0, 2, shape, generator=g).to(DTYPE),
        "non_negative": torch.randint(0, 5, shape, generator=g).to(DTYPE),
        "probabilities": x.softmax(dim),
        "log_probabilities": x.log_softmax(dim),
        "sign": torch.randint(0, 2, shape, generator=g).to(DTYPE) * 2 - 1,
    }[kind]


def _case(name: str) -> Case:
    """The inputs of ``name``: from its contract, or from ``UNDECLARED_INPUTS``."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name in UNDECLARED_INPUTS:
        return UNDECLARED_INPUTS[name](g)
    loss = losses.get(name)
    contract = getattr(loss, "contract", None)  # per instance: a mode may change it
    count = _tensor_count(type(loss))
    if contract is None or count not in (1, 2) or (count == 2) == (contract.target == "any"):
        pytest.fail(
            f"loss {name!r}: its contract ({contract}) and forward do not say what tensors it "
            "takes; give it a contract of one input and one target, or add it to "
            "UNDECLARED_INPUTS in this file"
        )
    # Element-wise targets take any layout, one channel included (what a loss in a binary mode
    # needs); targets over classes need several along the class dim.
    shape = (N, 1, 3) if contract.target in ELEMENTWISE else (N, C)
    x = _draw_input(contract.input, shape, contract.class_dim, g)
    if count == 1:
        return Case((x,), target=False)
    return Case((x, _draw_target(contract.target, shape, contract.class_dim, g)))


def _per_class(name: str, case: Case, none: Tensor) -> bool:
    """Whether ``reduction="none"`` kept the class dim of a class-dim contract (per class)."""
    contract = getattr(losses.get(name, **case.kwargs), "contract", None)
    return (
        contract is not None
        and contract.shape == "class_dim"
        and none.shape == case.tensors[0].shape[:2]  # (N, C), spatial dims or not
    )


def _build(name: str, case: Case, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)  # losses that own parameters (a projection) start alike
    return losses.get(name, **case.kwargs, **kwargs).to(DTYPE)


def _leaves(case: Case) -> tuple[Tensor, ...]:
    return tuple(
        t.clone().requires_grad_(True) if i in case.grad else t for i, t in enumerate(case.tensors)
    )


def _value_and_grads(loss: nn.Module, case: Case) -> tuple[Tensor, tuple[Tensor, ...]]:
    tensors = _leaves(case)
    value = loss(*tensors)
    grads = torch.autograd.grad(value, [tensors[i] for i in case.grad])
    return value.detach(), grads


NAMES = _names()
REDUCING = [n for n in NAMES if _accepts(n, "reduction")]


@pytest.mark.parametrize("name", NAMES)
def test_inputs_follow_from_the_contract(name: str) -> None:
    case = _case(name)
    loss = _build(name, case, check="always")
    value = loss(*case.tensors)
    assert value.ndim == 0
    assert torch.isfinite(value)


@pytest.mark.parametrize("name", REDUCING)
def test_mean_and_sum_reduce_the_unreduced_values(name: str) -> None:
    case = _case(name)
    none = _build(name, case, reduction="none")(*case.tensors)
    mean = _build(name, case, reduction="mean")(*case.tensors)
    total = _build(name, case, reduction="sum")(*case.tensors)
    assert none.ndim >= 1, f"reduction='none' gave a scalar {none}"
    if case.mean is not None:
        torch.testing.assert_close(mean, case.mean(none, case.tensors))
        return
    if _per_class(name, case, none):
        # Documented for the segmentation losses: 'none' gives the per-class losses (N, C);
        # 'mean' and 'sum' reduce over samples their mean over the scored classes: every class
        # by default, those present in the sample's target with classes="present".
        scored = torch.ones_like(none)
        if getattr(_build(name, case), "classes", "all") == "present":
            target = case.tensors[1].reshape(case.batch, -1)
            scored = (target.unsqueeze(1) == torch.arange(none.shape[1]).view(1, -1, 1)).any(2)
        none = (none * scored).sum(1) / scored.sum(1)
    torch.testing.assert_close(mean, none.mean())
    torch.testing.assert_close(total, none.sum())


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite(name: str) -> None:
    case = _case(name)
    value, grads = _value_and_grads(_build(name, case), case)
    assert torch.isfinite(value)
    for i, grad in zip(case.grad, grads):
        assert grad.shape == case.tensors[i].shape
        assert torch.isfinite(grad).all(), f"non-finite gradient for tensor {i}: {grad}"
    assert any(bool(grad.ne(0).any()) for grad in grads), "every gradient is zero"


@pytest.mark.parametrize("name", [n for n in NAMES if _accepts(n, "check")])
def test_checks_change_neither_value_nor_gradient(name: str) -> None:
    case = _case(name)
    off, off_grads = _value_and_grads(_build(name, case, check="off"), case)
    on, on_grads = _value_and_grads(_build(name, case, check="always"), case)
    torch.testing.assert_close(off, on, rtol=0, atol=0)
    torch.testing.assert_close(off_grads, on_grads, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_pickled_and_deep_copied_losses_compute_the_same(name: str) -> None:
    case = _case(name)
    loss = _build(name, case)
    expected = loss(*case.tensors)
    for twin in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
        assert type(twin) is type(loss)
        torch.testing.assert_close(twin(*case.tensors), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", REDUCING)
def test_a_masked_term_averages_the_selected_samples(name: str) -> None:
    case = _case(name)
    none = _build(name, case, reduction="none")(*case.tensors)
    if none.ndim == 0 or none.shape[0] != case.batch:
        pytest.fail(f"reduction='none' gave shape {tuple(none.shape)}, not per sample")
    mask = torch.arange(case.batch) % 2 == 0  # samples 0, 2, ... count
    inputs = case.tensors[:-1] if case.target else case.tensors
    outputs = {f"x{i}": t for i, t in enumerate(inputs)}
    batch = {"m": mask, **({"y": case.tensors[-1]} if case.target else {})}
    selector: str | tuple[str, ...] = "x0" if len(inputs) == 1 else tuple(outputs)
    if getattr(_build(name, case), "couples_samples", False):  # declared: refused, with why
        with pytest.raises(lk.ConfigError, match="couples the samples of a batch"):
            lk.Term(name, input=selector, target="y", mask="m", **case.kwargs)
        return
    torch.manual_seed(0)
    term = lk.Term(
        name, input=selector, target="y" if case.target else None, mask="m", **case.kwargs
    )
    res = lk.Criterion({"k": term.to(DTYPE)})(outputs, batch)
    torch.testing.assert_close(res["k"], none[mask].mean())
    torch.testing.assert_close(res.total, none[mask].mean())
