"""Through losskit, every adapter gives the update torchjd gives when called directly."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchjd import aggregation, scalarization
from torchjd.autojac import jac_to_grad, mtl_backward

import losskit as lk

from .conftest import HEADS, Net, grads, make_batch, terms

pytest.importorskip("qpsolvers")
pytest.importorskip("cvxpy")

AGGREGATORS: dict[str, Callable[[], aggregation.Aggregator]] = {
    "upgrad": aggregation.UPGrad,
    "mgda": aggregation.MGDA,
    "pcgrad": aggregation.PCGrad,
    "cagrad": lambda: aggregation.CAGrad(c=0.4),
    "imtl_g": aggregation.IMTLG,
    "aligned_mtl": aggregation.AlignedMTL,
    "dualproj": aggregation.DualProj,
    "nash_mtl": lambda: aggregation.NashMTL(n_tasks=HEADS),
    "config": aggregation.ConFIG,
}
SHARING = {
    "module": lambda net: {"shared": net.trunk},
    "features": lambda net: {"features": "h"},
    "parameters": lambda net: {"shared": list(net.trunk.parameters())},
}


def _torchjd_direct(net: Net, batch: dict[str, Tensor], aggregator: aggregation.Aggregator):
    out = net(batch["x"])
    losses = [F.mse_loss(out[f"y{i}"], batch[f"t{i}"]) for i in range(HEADS)]
    mtl_backward(losses, features=out["h"])
    return jac_to_grad(list(net.trunk.parameters()), aggregator)


@pytest.mark.filterwarnings("ignore:.*not DPP.*")
@pytest.mark.parametrize("sharing", list(SHARING))
@pytest.mark.parametrize("method", list(AGGREGATORS))
def test_gradient_balancer_update_equals_torchjd(net: Net, method: str, sharing: str) -> None:
    reference = copy.deepcopy(net)
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": method, **SHARING[sharing](net)})
    torch.manual_seed(1)  # PCGrad draws permutations
    res = crit(net(batch["x"]), batch)
    res.backward()
    torch.manual_seed(1)
    expected_weights = _torchjd_direct(reference, batch, AGGREGATORS[method]())
    for ours, theirs in zip(grads(net), grads(reference)):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    if expected_weights is not None:
        torch.testing.assert_close(torch.stack(list(res.weights.values())), expected_weights)
    # Through an optimizer step, the parameters agree too.
    for model in (net, reference):
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    for a, b in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


SCALARIZERS: dict[str, tuple[object, Callable[[], scalarization.Scalarizer]]] = {
    "uncertainty": ("uncertainty", lambda: scalarization.UW(HEADS)),
    "imtl_l": ("imtl_l", lambda: scalarization.IMTLL(HEADS)),
    "geometric_mean": ("geometric_mean", scalarization.GeometricMean),
    "random": ("random", scalarization.Random),
    "stch": ({"name": "stch", "mu": 0.5}, lambda: scalarization.STCH(0.5)),
    "famo": ("famo", lambda: scalarization.FAMO(HEADS)),
    "dwa": ({"name": "dwa", "every": 1}, scalarization.DWA),
}


@pytest.mark.parametrize("name", list(SCALARIZERS))
def test_scalarizer_update_equals_torchjd(net: Net, name: str) -> None:
    spec, make = SCALARIZERS[name]
    reference = copy.deepcopy(net)
    scalarizer = make()
    crit = lk.Criterion(terms(), balancer=spec)  # type: ignore[arg-type]
    if list(scalarizer.parameters()):  # learnable: start both from the same non-trivial point
        with torch.no_grad():
            for ours, theirs in zip(crit.parameters(), scalarizer.parameters()):
                theirs.copy_(torch.linspace(-0.5, 0.7, theirs.numel()))
                ours.copy_(theirs)
    for step in range(3):  # several steps: DWA's and FAMO's history matters
        batch = make_batch(seed=step)
        for model in (net, reference):
            model.zero_grad()
        crit.zero_grad()
        scalarizer.zero_grad()
        torch.manual_seed(step)
        res = crit(net(batch["x"]), batch)
        res.backward()
        torch.manual_seed(step)
        out = reference(batch["x"])
        losses = torch.stack([F.mse_loss(out[f"y{i}"], batch[f"t{i}"]) for i in range(HEADS)])
        total = scalarizer(losses)
        total.backward()
        torch.testing.assert_close(res.total.detach(), total.detach())
        for ours, theirs in zip(grads(net), grads(reference)):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        for ours, theirs in zip(crit.parameters(), scalarizer.parameters()):
            torch.testing.assert_close(ours.grad, theirs.grad)
        for model in (net, reference):
            torch.optim.SGD(model.parameters(), lr=0.05).step()
        crit.step()
        if isinstance(scalarizer, scalarization.DWA):
            scalarizer.step()
        if isinstance(scalarizer, scalarization.FAMO):
            with torch.no_grad():
                crit.balancer.update(crit(net(batch["x"]), batch))  # type: ignore[operator]
                out = reference(batch["x"])
                again = [F.mse_loss(out[f"y{i}"], batch[f"t{i}"]) for i in range(HEADS)]
                scalarizer.update(torch.stack(again))


def test_reported_weight_is_the_slope_of_the_total(net: Net) -> None:
    """For a nonlinear scalarizer, weight/<key> is d total / d term at the current values."""
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "stch", "mu": 1.0})
    res = crit(net(batch["x"]), batch)
    parts = [res[k] for k in res]
    slopes = torch.autograd.grad(res.total, parts)
    for key, slope in zip(res, slopes):
        torch.testing.assert_close(res.weights[key], slope)
