"""Parameter-level aggregation through either Gramian engine: torchjd's autojac (the Jacobian in
memory) and autogram (never holds it) give the same update; ``engine="auto"`` holds a small
Jacobian (autojac), takes autogram for a large one where it can serve the call and checks it
once against autograd."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import losskit as lk

from .conftest import HEADS, Net, grads, make_batch, terms

pytest.importorskip("qpsolvers")


def _run(
    net: nn.Module, balancer: lk.balancers.Gradient, steps: int = 3, scale: float = 1.0
) -> list[tuple[list[Tensor], Tensor]]:
    """Per step: the parameters' gradients and the reported weights (SGD between steps)."""
    crit = lk.Criterion(terms(), balancer=balancer)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    seen = []
    for step in range(steps):
        batch = make_batch(seed=step)
        res = crit(net(batch["x"]), batch)
        opt.zero_grad(set_to_none=True)
        res.backward(scale=scale)
        seen.append((grads(net), torch.stack([res.weights[f"k{i}"] for i in range(HEADS)])))
        opt.step()
    return seen


@pytest.mark.parametrize("method", ["upgrad", "mgda", "imtl_g"])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_autogram_gives_the_update_of_autojac(net: Net, method: str, scale: float) -> None:
    other = copy.deepcopy(net)
    autogram = lk.balancers.Gradient(method, shared=net.trunk, engine="autogram")
    autojac = lk.balancers.Gradient(method, shared=other.trunk, engine="autojac")
    with_autogram, with_autojac = (
        _run(net, autogram, scale=scale),
        _run(other, autojac, scale=scale),
    )
    assert autogram.last_engine == "autogram"
    assert autojac.last_engine == "autojac"
    for (ga, wa), (gb, wb) in zip(with_autogram, with_autojac):
        torch.testing.assert_close(wa, wb, rtol=1e-4, atol=1e-6)
        for x, y in zip(ga, gb):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def _wide_trunk() -> nn.Module:
    """A trunk whose Jacobian over the keys (3 x 1.07 M numbers) is above auto's autojac bound."""
    return nn.Sequential(nn.Linear(5, 1024), nn.Tanh(), nn.Linear(1024, 1024), nn.Linear(1024, 8))


def test_auto_takes_autojac_for_a_small_jacobian_and_autogram_for_a_large_one(net: Net) -> None:
    small = lk.balancers.Gradient("upgrad", shared=net.trunk)  # 3 keys x 120 parameters
    _run(net, small, steps=2)
    assert small.last_engine == "autojac"
    net.trunk = _wide_trunk()  # type: ignore[assignment]
    large = lk.balancers.Gradient("upgrad", shared=net.trunk)
    _run(net, large, steps=1)
    assert large.last_engine == "autogram"  # from the first step: hooked when built
    # The two trunks sit on either side of the bound.
    wide = sum(p.numel() for p in net.trunk.parameters())
    assert HEADS * wide > 1 << 21 >= HEADS * 120


def test_auto_takes_autogram_for_modules_and_autojac_otherwise(net: Net) -> None:
    net.trunk = _wide_trunk()  # type: ignore[assignment]
    modules = lk.balancers.Gradient("upgrad", shared=net.trunk)
    _run(net, modules, steps=1)
    assert modules.last_engine == "autogram"  # from the first step: hooked when built
    params = lk.balancers.Gradient("upgrad", shared=list(net.trunk.parameters()), features="h")
    _run(net, params, steps=2)
    assert params.last_engine == "autojac"
    needs_rows = lk.balancers.Gradient("graddrop", shared=net.trunk)
    _run(net, needs_rows, steps=2)
    assert needs_rows.last_engine == "autojac"


class Borrowing(nn.Module):
    """A trunk that uses its child's parameters without calling the child: autogram's hooks
    never see them, so its Gramian misses their part."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(5, 8)
        # wide enough for engine="auto" to try autogram (a Jacobian above 2**21 numbers)
        self.outer = nn.Sequential(nn.Linear(8, 1024), nn.Tanh(), nn.Linear(1024, 1024))
        self.out = nn.Linear(1024, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.outer(torch.tanh(F.linear(x, self.inner.weight, self.inner.bias))))


def test_auto_checks_autogram_once_and_keeps_to_autojac_when_it_misses_parameters(
    net: Net,
) -> None:
    net.trunk = Borrowing()  # type: ignore[assignment]
    auto = lk.balancers.Gradient("upgrad", shared=net.trunk)
    with pytest.warns(lk.errors.LossKitWarning, match="keeps to autojac"):
        _run(net, auto, steps=1)
    other = copy.deepcopy(net)
    seen = _run(net, auto, steps=2)
    assert auto.last_engine == "autojac"
    reference = _run(other, lk.balancers.Gradient("upgrad", shared=other.trunk, engine="autojac"))
    for (ga, wa), (gb, wb) in zip(seen, reference):
        torch.testing.assert_close(wa, wb)
        for x, y in zip(ga, gb):
            torch.testing.assert_close(x, y)


def test_autogram_raises_when_it_misses_parameters(net: Net) -> None:
    net.trunk = Borrowing()  # type: ignore[assignment]
    forced = lk.balancers.Gradient("upgrad", shared=net.trunk, engine="autogram")
    with pytest.raises(lk.errors.ConfigError, match="use engine='autojac' for this model"):
        _run(net, forced, steps=1)


def test_autogram_is_refused_where_it_cannot_serve(net: Net) -> None:
    with pytest.raises(lk.errors.ConfigError, match="shared=<module"):
        lk.balancers.Gradient("upgrad", shared=list(net.trunk.parameters()), engine="autogram")
    with pytest.raises(lk.errors.ConfigError, match="'graddrop' needs the gradients"):
        lk.balancers.Gradient("graddrop", shared=net.trunk, engine="autogram")
    with pytest.raises(lk.errors.ConfigError, match="leave engine='auto'"):
        lk.balancers.Gradient("upgrad", shared=net.trunk, level="features", engine="autojac")
    with pytest.raises(lk.errors.ConfigError, match="'auto', 'autojac' or 'autogram', got 'x'"):
        lk.balancers.Gradient("upgrad", shared=net.trunk, engine="x")  # type: ignore[arg-type]
