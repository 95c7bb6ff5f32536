"""Properties every registered balancer must satisfy, run over ``lk.balancers.available()``.

A balancer is built the way its constructor allows: without arguments, else with the small
model's shared trunk (``shared=``), else with its shared representation (``features=``). What
each property expects comes from the balancer's declared :class:`~losskit.balancers.Capabilities`.
A balancer whose constructor needs other arguments is out of these tests;
``test_a_balancer_left_out_needs_an_argument`` checks that this is what keeps it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor

import losskit as lk
from losskit.errors import ConfigError, MissingDependencyError

from .conftest import Net, make_batch

TERM_WEIGHTS = {"k0": 1.0, "k1": 0.5, "k2": 2.0}  # unequal, so weights show which key they are
CALLS = 3  # training calls before a property is checked: stateful balancers have moved

# How a balancer may be built, tried in this order; "trunk" stands for the model's trunk.
WAYS: tuple[Mapping[str, str], ...] = ({}, {"shared": "trunk"}, {"features": "h"})


def _resolve(options: Mapping[str, str], net: Net) -> dict[str, Any]:
    return {k: net.trunk if v == "trunk" else v for k, v in options.items()}


def _way(name: str) -> tuple[Mapping[str, str], lk.balancers.Capabilities | None] | None:
    """The first way in ``WAYS`` that builds ``name``, with what the balancer declares."""
    for options in WAYS:
        try:
            balancer = lk.balancers.create(name, **_resolve(options, Net()))
        except MissingDependencyError:
            return options, None  # every test builds it again, and fails there
        except ConfigError:
            continue
        return options, lk.balancers.capabilities(balancer)
    return None


NAMES = list(lk.balancers.available())
BUILT = {name: way for name in NAMES if (way := _way(name)) is not None}


def _declaring(flag: str, value: bool = True) -> list[str]:
    """The balancers built here whose capabilities set ``flag`` to ``value`` (or are unknown)."""
    return sorted(
        n for n, (_, caps) in BUILT.items() if caps is None or getattr(caps, flag) == value
    )


def _criterion(name: str, net: Net, order: tuple[str, ...] = tuple(TERM_WEIGHTS)) -> lk.Criterion:
    terms = {
        k: lk.Term("mse", input=f"y{k[1:]}", target=f"t{k[1:]}", weight=TERM_WEIGHTS[k])
        for k in order
    }
    balancer = lk.balancers.create(name, **_resolve(BUILT[name][0], net))
    return lk.Criterion(terms, balancer=balancer)


def _caps(crit: lk.Criterion) -> lk.balancers.Capabilities:
    return lk.balancers.capabilities(crit.balancer)


def _train(crit: lk.Criterion, net: Net, seeds: range) -> list[dict[str, Tensor]]:
    """Training calls (backward, step) on batches ``seeds``; the weights each reported."""
    reported = []
    for seed in seeds:
        batch = make_batch(seed)
        net.zero_grad()
        torch.manual_seed(seed)  # balancers that draw random numbers draw the same
        res = crit(net(batch["x"]), batch)
        res.backward()
        reported.append({k: w.detach().clone() for k, w in res.weights.items()})
        crit.step()
        update = getattr(crit.balancer, "update", None)
        if callable(update):
            # A balancer that learns from the terms recomputed after the step (FAMO) documents
            # this call; without it the weights never move.
            with torch.no_grad():
                update(crit(net(batch["x"]), batch))
    return reported


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(BUILT)))
def test_a_balancer_left_out_needs_an_argument(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        lk.balancers.create(name)
    assert isinstance(caught.value.__cause__, TypeError)
    assert "required" in str(caught.value.__cause__)


@pytest.mark.parametrize("name", _declaring("derivative_weights"))
def test_reported_weights_are_the_derivatives_of_the_total(name: str) -> None:
    net = _net()
    crit = _criterion(name, net)
    _train(crit, net, range(CALLS))
    batch = make_batch(CALLS)
    res = crit(net(batch["x"]), batch)
    derivatives = torch.autograd.grad(res.total, [res[k] for k in res])
    for key, derivative in zip(res.keys(), derivatives):
        torch.testing.assert_close(derivative, res.weights[key].to(derivative.dtype))


@pytest.mark.parametrize("name", sorted(BUILT))
def test_permuting_the_keys_permutes_the_weights(name: str) -> None:
    forward, backward = _net(), _net()
    first = _train(_criterion(name, forward), forward, range(CALLS + 1))
    permuted = _criterion(name, backward, order=("k2", "k0", "k1"))
    second = _train(permuted, backward, range(CALLS + 1))
    caps = _caps(permuted)
    if caps.random_draws and caps.rank_consistent:
        # Draws by position (PCGrad's order of projections, shared across ranks): with the keys
        # permuted the draw lands elsewhere; re-seeded in the same order, it is the same.
        again = _net()
        repeated = _train(_criterion(name, again), again, range(CALLS + 1))
        torch.testing.assert_close(repeated, first, rtol=0, atol=0)
        return
    if caps.rank_consistent:
        # float32 sums in another order: a few ulps apart, compounded over the calls
        torch.testing.assert_close(second, first, rtol=1e-4, atol=1e-5)
        return
    # It draws its weights at random, by position: re-seeded, both draw the same numbers, which
    # the permuted criterion hands to other keys. Per key, the weights agree in distribution.
    for ours, theirs in zip(first, second):
        draws = sorted(float(w) / TERM_WEIGHTS[k] for k, w in ours.items())
        torch.testing.assert_close(
            sorted(float(w) / TERM_WEIGHTS[k] for k, w in theirs.items()), draws
        )


@pytest.mark.parametrize("name", sorted(BUILT))
def test_state_dict_round_trip_gives_the_same_next_call(name: str) -> None:
    trained, fresh = _net(), _net()
    crit = _criterion(name, trained)
    _train(crit, trained, range(CALLS))
    fresh.load_state_dict(trained.state_dict())
    resumed = _criterion(name, fresh)
    resumed.load_state_dict(crit.state_dict())
    batch = make_batch(CALLS)
    results = []
    for c, net in ((crit, trained), (resumed, fresh)):
        net.zero_grad()
        torch.manual_seed(CALLS)
        res = c(net(batch["x"]), batch)
        res.backward()  # a gradient-level balancer reports its weights now
        results.append((res.total.detach(), res.weights, [p.grad for p in net.parameters()]))
    (total, weights, grads), (total_r, weights_r, grads_r) = results
    torch.testing.assert_close(total_r, total)
    torch.testing.assert_close(weights_r, weights)
    torch.testing.assert_close(grads_r, grads)


def _flat_grads(value: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
    ).double()


@pytest.mark.parametrize("name", _declaring("owns_backward"))
def test_gradient_balancers_report_the_weights_of_the_shared_update(name: str) -> None:
    net = _net()
    crit = _criterion(name, net)
    _train(crit, net, range(CALLS))
    batch = make_batch(CALLS)
    net.zero_grad()
    res = crit(net(batch["x"]), batch)
    shared = list(net.trunk.parameters())
    per_key = torch.stack([_flat_grads(res[k], shared) for k in res])  # keys x params
    heads = {k: _flat_grads(res[k], list(net.heads[int(k[1:])].parameters())) for k in res}
    res.backward()
    weights = torch.stack([res.weights[k] for k in res]).double()
    assert weights.shape == (len(res.keys()),)
    assert torch.isfinite(weights).all()
    update = torch.cat([p.grad.reshape(-1) for p in shared]).double()
    # Documented (Gradient): the weight of each key's gradient in the shared update; for an
    # aggregator that is not a weighting, the least-squares weights of the update in the span
    # of the key gradients. Both are the coefficients of the update's projection on that span.
    gramian = per_key @ per_key.T
    coefficients = torch.linalg.solve(gramian, per_key @ update)
    torch.testing.assert_close(weights, coefficients, rtol=1e-3, atol=1e-5)
    # Every other parameter gets its ordinary gradient: the term weight times d part / d p.
    for key, expected in heads.items():
        head = torch.cat([p.grad.reshape(-1) for p in net.heads[int(key[1:])].parameters()])
        torch.testing.assert_close(
            head.double(), TERM_WEIGHTS[key] * expected, rtol=1e-4, atol=1e-6
        )
