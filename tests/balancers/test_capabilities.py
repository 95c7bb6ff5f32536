"""Balancers declare what they need; the criterion and the engine ask, never test the class."""

from __future__ import annotations

import pathlib
import re
from typing import ClassVar

import pytest
import torch
from torch import Tensor

import losskit as lk
from losskit.balancers import BalancerBase, Capabilities, capabilities

SRC = pathlib.Path(lk.__file__).parent


def _crit(balancer: object) -> lk.Criterion:
    return lk.Criterion(
        {"a": lk.Term("mse", input="p", target="y"), "b": lk.Term("l1", input="p", target="y")},
        balancer=balancer,  # type: ignore[arg-type]
    )


OUTPUTS, BATCH = {"p": torch.zeros(3)}, {"y": torch.full((3,), 2.0)}  # mse 4, l1 2


def test_a_user_balancer_declared_static_has_its_combine_honoured() -> None:
    class Squared(BalancerBase):
        static: ClassVar[bool] = True  # the flag earlier versions read to skip combine
        capabilities: ClassVar[Capabilities] = Capabilities(fixed_weights=True)

        def combine(
            self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
        ) -> tuple[Tensor, Tensor]:
            return (losses * weights).pow(2).sum(), 2 * losses.detach() * weights

    res = _crit(Squared())(OUTPUTS, BATCH)
    torch.testing.assert_close(res.total, torch.tensor(16.0 + 4.0))
    torch.testing.assert_close(res.weights["a"], torch.tensor(8.0))


def test_a_subclass_of_mean_that_overrides_combine_is_honoured() -> None:
    class Halved(lk.balancers.Mean):
        def combine(
            self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
        ) -> tuple[Tensor, Tensor]:
            total, effective = super().combine(losses, weights, keys)
            return total / 2, effective / 2

    res = _crit(Halved())(OUTPUTS, BATCH)
    torch.testing.assert_close(res.total, torch.tensor((4.0 + 2.0) / 2 / 2))
    torch.testing.assert_close(res.weights["b"], torch.tensor(0.25))


def test_a_duck_typed_balancer_without_capabilities_gets_the_defaults() -> None:
    class Plain:
        def bind(self, keys: tuple[str, ...]) -> None:
            self.keys = keys

        def combine(
            self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
        ) -> tuple[Tensor, Tensor]:
            return torch.dot(losses, 3 * weights), 3 * weights

        def step(self) -> None:
            self.stepped = True

    plain = Plain()
    assert capabilities(plain) == Capabilities()
    crit = _crit(plain)
    torch.testing.assert_close(crit(OUTPUTS, BATCH).total, torch.tensor(18.0))
    crit.step()  # not fixed weights: its step runs
    assert plain.stepped


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sum", Capabilities(fixed_weights=True)),
        ("mean", Capabilities(fixed_weights=True)),
        ("magnitude", Capabilities(handles_absence=True)),
        ("dwa", Capabilities(handles_absence=True)),
        ("random", Capabilities(rank_consistent=False, random_draws=True)),
    ],
)
def test_built_ins_declare_their_needs(name: str, expected: Capabilities) -> None:
    options = {"every": 1} if name == "dwa" else {}
    assert capabilities(lk.balancers.create(name, **options)) == expected


def test_gradient_level_balancers_declare_their_backward() -> None:
    trunk = torch.nn.Linear(2, 2)
    gradient = capabilities(lk.balancers.Gradient("mgda", shared=trunk))
    assert gradient == Capabilities(
        backward_per_key=True,
        owns_backward=True,
        synchronize=True,
        fsdp_safe=False,
        derivative_weights=False,
    )
    gradnorm = capabilities(lk.balancers.GradNorm(shared=trunk))
    assert gradnorm == Capabilities(backward_per_key=True, fsdp_safe=False, handles_absence=True)


def test_a_user_balancer_declaring_one_backward_per_key_refuses_a_single_backward_loss() -> None:
    class PerKey(lk.balancers.Sum):
        capabilities: ClassVar[Capabilities] = Capabilities(backward_per_key=True)

    term = lk.Term(
        "linear_cross_entropy", input=("h", "w"), target="y", chunked=True
    )  # torch's chunked path: one backward pass only
    with pytest.raises(lk.ConfigError, match="one backward pass"):
        lk.Criterion({"ce": term, "b": lk.Term("mse", input="p", target="y")}, balancer=PerKey())


def test_no_module_outside_balancers_tests_a_concrete_balancer_class() -> None:
    names = "|".join(
        name
        for name in lk.balancers.__all__
        if isinstance(getattr(lk.balancers, name), type)
        and issubclass(getattr(lk.balancers, name), BalancerBase)
    )
    pattern = re.compile(rf"isinstance\([^)]*\b({names})\b")
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        if "balancers" not in path.relative_to(SRC).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_no_private_fast_path_is_left() -> None:
    forbidden = re.compile(
        r"_Steady|unchecked_forward|_global_forward_hooks|_compiled_call_impl|_set_weights"
    )
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if forbidden.search(path.read_text())
    ]
    assert offenders == []
