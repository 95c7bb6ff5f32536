"""Feature-level aggregation (MGDA-UB): weights from the Gramian of the representation's per-key
gradients, one weighted backward through the trunk; refused for aggregators needing more."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchjd import aggregation

import losskit as lk

from .conftest import HEADS, Net, grads, make_batch, terms

pytest.importorskip("qpsolvers")

# Every registered method whose weights depend on the Gramian alone (pcgrad draws: seeded).
SERVED = {
    "upgrad": aggregation.UPGrad,
    "mgda": aggregation.MGDA,
    "imtl_g": aggregation.IMTLG,
    "aligned_mtl": aggregation.AlignedMTL,
    "dualproj": aggregation.DualProj,
    "cagrad": lambda: aggregation.CAGrad(c=0.4),
    "pcgrad": aggregation.PCGrad,
}
TERM_WEIGHTS = (1.0, 0.5, 2.0)


def _criterion(net: Net, method: str, features: str | None = None) -> lk.Criterion:
    named = {
        k: lk.Term(t.loss, input=t.input, target=t.target, weight=w)
        for (k, t), w in zip(terms().items(), TERM_WEIGHTS)
    }
    shared = None if features else net.trunk
    balancer = lk.balancers.Gradient(method, shared=shared, features=features, level="features")
    return lk.Criterion(named, balancer=balancer)


def _by_hand(
    net: Net, batch: dict[str, Tensor], method: str, scale: float = 1.0
) -> tuple[Tensor, list[Tensor]]:
    """The keys' gradients w.r.t. h, their Gramian, the aggregator's Gramian weighting, and the
    trunk's backward of the weighted sum (heads: their ordinary gradients)."""
    out = net(batch["x"])
    h = out["h"]
    losses = [
        scale * w * F.mse_loss(out[f"y{i}"], batch[f"t{i}"]) for i, w in enumerate(TERM_WEIGHTS)
    ]
    rows = [torch.autograd.grad(loss, h, retain_graph=True)[0] for loss in losses]
    flat = torch.stack([r.reshape(-1) for r in rows])
    gramian = flat @ flat.T
    weights = SERVED[method]().gramian_weighting(gramian / scale**2)
    heads = [p for head in net.heads for p in head.parameters()]
    torch.autograd.backward(losses, inputs=heads, retain_graph=True)
    h.backward(torch.einsum("k,k...->...", weights, torch.stack(rows)))
    return weights * torch.tensor(TERM_WEIGHTS), grads(net)


@pytest.mark.parametrize("method", sorted(SERVED))
def test_weights_are_the_aggregator_on_the_gramian_of_the_feature_gradients(
    net: Net, method: str
) -> None:
    batch = make_batch()
    reference = copy.deepcopy(net)
    crit = _criterion(net, method)
    torch.manual_seed(3)
    res = crit(net(batch["x"]), batch)
    res.backward()
    torch.manual_seed(3)
    expected, expected_grads = _by_hand(reference, batch, method)
    got = torch.stack([res.weights[f"k{i}"] for i in range(HEADS)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # The trunk got the hand-written weighted backward, the heads their ordinary gradients.
    for x, y in zip(grads(net), expected_grads):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_the_weights_differ_from_the_plain_sum(net: Net) -> None:
    batch = make_batch()
    res = _criterion(net, "mgda")(net(batch["x"]), batch)
    res.backward()
    total = sum(float(res.weights[f"k{i}"]) / w for i, w in enumerate(TERM_WEIGHTS))
    assert total == pytest.approx(1.0, abs=1e-5)  # MGDA's weights on the rows sum to one


def test_a_named_feature_tensor_serves_as_the_representation(net: Net) -> None:
    batch = make_batch()
    hooked, named = copy.deepcopy(net), copy.deepcopy(net)
    for model, features in ((hooked, None), (named, "h")):
        res = _criterion(model, "upgrad", features)(model(batch["x"]), batch)
        res.backward()
    for x, y in zip(grads(hooked), grads(named)):
        torch.testing.assert_close(x, y)


def test_scale_scales_the_update_and_leaves_the_weights(net: Net) -> None:
    batch = make_batch()
    reference = copy.deepcopy(net)
    res = _criterion(net, "upgrad")(net(batch["x"]), batch)
    res.backward(scale=0.25)
    expected, expected_grads = _by_hand(reference, batch, "upgrad", scale=0.25)
    got = torch.stack([res.weights[f"k{i}"] for i in range(HEADS)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    for x, y in zip(grads(net), expected_grads):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["config", "graddrop"])
def test_an_aggregator_that_needs_the_gradients_is_refused(net: Net, method: str) -> None:
    with pytest.raises(lk.errors.ConfigError) as caught:
        lk.balancers.Gradient(method, shared=net.trunk, level="features")
    message = str(caught.value)
    assert f"level='features' cannot serve the gradient balancer {method!r}" in message
    assert "'upgrad'" in message  # what it can serve instead
    assert "'mgda'" in message
    assert "level='parameters'" in message


def test_bare_parameters_are_refused_at_feature_level(net: Net) -> None:
    with pytest.raises(lk.errors.ConfigError, match="shared=<module"):
        lk.balancers.Gradient("upgrad", shared=list(net.trunk.parameters()), level="features")


def test_an_unknown_level_is_refused(net: Net) -> None:
    with pytest.raises(lk.errors.ConfigError, match="'parameters' or 'features', got 'trunk'"):
        lk.balancers.Gradient("upgrad", shared=net.trunk, level="trunk")  # type: ignore[arg-type]


def test_a_non_finite_feature_gradient_names_the_key(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(
        {**terms(), "bad": lk.Term(lambda out, b: out["y0"].mean() * float("nan"))},
        balancer={"name": "upgrad", "shared": net.trunk, "level": "features"},  # a config table
        check="off",
    )
    res = crit(net(batch["x"]), batch)
    with pytest.raises(lk.NonFiniteLossError, match=r"'bad'.*shared representation"):
        res.backward()


def test_steps_of_changing_batch_size_reuse_the_rows_and_match_the_hand_written_step(
    net: Net,
) -> None:
    # The rows' storage is kept between steps: a smaller batch after a larger one, then a larger
    # one again, must each give that step's own weights and gradients.
    crit = _criterion(net, "upgrad")
    for n in (16, 5, 24):
        batch = make_batch(seed=n, n=n)
        reference = copy.deepcopy(net)
        net.zero_grad(set_to_none=True)
        res = crit(net(batch["x"]), batch)
        res.backward()
        expected, expected_grads = _by_hand(reference, batch, "upgrad")
        got = torch.stack([res.weights[f"k{i}"] for i in range(HEADS)])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
        for x, y in zip(grads(net), expected_grads):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_a_pickled_criterion_leaves_the_rows_storage_behind(net: Net) -> None:
    # The rows of a step are scratch space: a saved criterion does not carry them (3 keys x 512
    # samples x 8 features = 48 KiB here).
    crit = _criterion(net, "upgrad")
    small = make_batch(n=4)
    crit(net(small["x"]), small).backward()
    before = len(pickle.dumps(crit))
    large = make_batch(n=512)
    crit(net(large["x"]), large).backward()
    assert len(pickle.dumps(crit)) - before < HEADS * 512 * 8 * 4 // 4
