"""Balancers with accumulation, AMP, disabled and empty terms, frozen parameters, NaNs, solvers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchjd import aggregation
from torchjd.autojac import jac_to_grad, mtl_backward

import losskit as lk

from .conftest import HEADS, Net, grads, make_batch, terms

pytest.importorskip("qpsolvers")


def _direct(
    net: Net,
    batch: dict[str, Tensor],
    aggregator: aggregation.Aggregator,
    keys: range | list[int] = range(HEADS),
    scale: float = 1.0,
) -> None:
    """torchjd by hand: aggregate this batch and add ``scale`` times the update to ``.grad``."""
    out = net(batch["x"])
    losses = [scale * F.mse_loss(out[f"y{i}"], batch[f"t{i}"]) for i in keys]
    mtl_backward(losses, features=out["h"])
    shared = [p for p in net.trunk.parameters() if p.requires_grad]
    jac_to_grad(shared, aggregator)


def _assert_same_grads(a: Net, b: Net) -> None:
    for x, y in zip(grads(a), grads(b)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


# -- accumulation -------------------------------------------------------------------------------
def test_accumulation_aggregates_each_micro_batch_and_sums_them_by_scale(net: Net) -> None:
    reference = copy.deepcopy(net)
    crit = lk.Criterion(terms(), balancer={"name": "mgda", "shared": net.trunk})
    first, second = make_batch(1, n=12), make_batch(2, n=4)
    for batch, scale in ((first, 0.75), (second, 0.25)):
        crit(net(batch["x"]), batch).backward(scale=scale)
    # MGDA is scale-invariant, so the direct per-batch aggregation of scaled losses is the
    # scaled aggregation: the window's update is 0.75 A(J_1) + 0.25 A(J_2).
    _direct(reference, first, aggregation.MGDA(), scale=0.75)
    _direct(reference, second, aggregation.MGDA(), scale=0.25)
    _assert_same_grads(net, reference)


def test_trainer_accumulation_with_a_gradient_balancer_logs_weights(net: Net) -> None:
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    data = [make_batch(seed) for seed in range(6)]
    trainer = lk.engine.Trainer(
        net,
        crit,
        torch.optim.SGD(net.parameters(), lr=0.01),
        accumulate=2,
        forward=lambda m, b: m(b["x"]),
        progress=False,
    )
    summary = trainer.fit(data, data[:2], epochs=2)
    assert summary.steps == 6
    for key in crit.keys:
        assert 0.0 < summary.train[f"weight/{key}"] < 2.0  # aggregation weights, not all 1


# -- AMP ------------------------------------------------------------------------------------------
def test_grad_scaler_unscales_before_aggregating(net: Net) -> None:
    reference = copy.deepcopy(net)
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    res = crit(net(batch["x"]), batch)
    res.backward(grad_scaler=scaler)
    scaler.unscale_(opt)
    _direct(reference, batch, aggregation.UPGrad())
    _assert_same_grads(net, reference)
    plain = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": reference.trunk})
    weights = plain(reference(batch["x"]), batch)
    weights.backward()
    for key in res:
        torch.testing.assert_close(res.weights[key], weights.weights[key])


def test_an_overflow_under_a_scaler_skips_the_step_and_lowers_the_scale(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(
        {**terms(), "boom": lk.Term(lambda out, b: 1e36 * out["y0"].mean())},
        balancer={"name": "upgrad", "shared": net.trunk},
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    crit(net(batch["x"]), batch).backward(grad_scaler=scaler)
    scaler.step(opt)
    scaler.update()
    for p, q in zip(net.parameters(), before):
        torch.testing.assert_close(p, q)
    assert scaler.get_scale() < 2.0**16


def test_trainer_fp16_autocast_with_a_gradient_balancer(net: Net) -> None:
    crit = lk.Criterion(terms(), balancer={"name": "mgda", "shared": net.trunk})
    data = [make_batch(seed) for seed in range(4)]
    trainer = lk.engine.Trainer(
        net,
        crit,
        torch.optim.SGD(net.parameters(), lr=0.01),
        amp="fp16",
        forward=lambda m, b: m(b["x"]),
        progress=False,
    )
    summary = trainer.fit(data, epochs=1)
    assert torch.isfinite(torch.tensor(summary.train["loss"]))
    assert all(torch.isfinite(p).all() for p in net.parameters())


# -- terms disabled, empty, frozen --------------------------------------------------------------
def test_a_disabled_term_leaves_the_aggregation(net: Net) -> None:
    reference = copy.deepcopy(net)
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    crit.disable("k1")
    res = crit(net(batch["x"]), batch)
    res.backward()
    assert list(res.weights) == ["k0", "k2"]
    _direct(reference, batch, aggregation.UPGrad(), keys=[0, 2])
    _assert_same_grads(net, reference)


def test_a_term_zero_for_the_batch_does_not_stall_mgda(net: Net) -> None:
    reference = copy.deepcopy(net)
    batch = make_batch()
    batch["none"] = torch.zeros(16, dtype=torch.bool)
    crit = lk.Criterion(
        {**terms(), "masked": lk.Term("mse", input="y0", target="t1", mask="none")},
        balancer={"name": "mgda", "shared": net.trunk},
    )
    res = crit(net(batch["x"]), batch)
    assert res["masked"].item() == 0.0
    res.backward()
    assert res.weights["masked"].item() == 0.0
    _direct(reference, batch, aggregation.MGDA())  # the three real terms only
    _assert_same_grads(net, reference)
    # Without skipping, MGDA's minimum-norm point is the zero gradient: the step is lost.
    stalled = lk.Criterion(
        {**terms(), "masked": lk.Term("mse", input="y0", target="t1", mask="none")},
        balancer={"name": "mgda", "shared": reference.trunk, "skip_zero": False},
    )
    reference.zero_grad()
    stalled(reference(batch["x"]), batch).backward()
    assert max(p.grad.abs().max().item() for p in reference.trunk.parameters()) < 1e-6


def test_a_constant_term_without_a_graph_is_left_out(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(
        {**terms(), "const": lk.Term(lambda out, b: torch.tensor(0.0))},
        balancer={"name": "upgrad", "shared": net.trunk},
    )
    res = crit(net(batch["x"]), batch)
    res.backward()
    assert res.weights["const"].item() == 0.0


def test_frozen_shared_parameters_get_no_gradient(net: Net) -> None:
    reference = copy.deepcopy(net)
    for model in (net, reference):
        model.trunk[0].requires_grad_(False)
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    crit(net(batch["x"]), batch).backward()
    assert all(p.grad is None for p in net.trunk[0].parameters())
    _direct(reference, batch, aggregation.UPGrad())
    _assert_same_grads(net, reference)


def test_a_fully_frozen_trunk_trains_the_heads_as_usual(net: Net) -> None:
    reference = copy.deepcopy(net)
    for model in (net, reference):
        model.trunk.requires_grad_(False)
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    res = crit(net(batch["x"]), batch)
    res.backward()
    lk.Criterion(terms())(reference(batch["x"]), batch).backward()
    _assert_same_grads(net, reference)
    assert [w.item() for w in res.weights.values()] == [1.0, 1.0, 1.0]


def test_the_features_may_not_depend_on_parameters_outside_shared(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(
        terms(), balancer={"name": "upgrad", "shared": net.trunk[2], "features": "h"}
    )
    with pytest.raises(lk.ConfigError, match="outside shared"):
        crit(net(batch["x"]), batch).backward()


# -- non-finite terms -------------------------------------------------------------------------
def _with_nan(**options: object) -> lk.Criterion:
    return lk.Criterion(
        {**terms(), "bad": lk.Term(lambda out, b: out["y0"].mean() * float("nan"))},
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("balancer", ["magnitude", "uncertainty", "upgrad"])
def test_a_non_finite_term_is_named(net: Net, balancer: str) -> None:
    spec = {"name": balancer, "shared": net.trunk} if balancer == "upgrad" else balancer
    batch = make_batch()
    with pytest.raises(lk.NonFiniteLossError, match="'bad'"):
        _with_nan(balancer=spec)(net(batch["x"]), batch)


def test_a_non_finite_gradient_is_named_at_backward(net: Net) -> None:
    batch = make_batch()
    crit = _with_nan(balancer={"name": "upgrad", "shared": net.trunk}, check="off")
    res = crit(net(batch["x"]), batch)
    with pytest.raises(lk.NonFiniteLossError, match="'bad'"):
        res.backward()


@pytest.mark.parametrize("balancer", ["magnitude", "dwa", "upgrad"])
def test_skip_drops_the_non_finite_term_from_the_balancer(net: Net, balancer: str) -> None:
    spec: object = {"name": balancer, "shared": net.trunk} if balancer == "upgrad" else balancer
    if balancer == "dwa":
        spec = {"name": "dwa", "every": 1}
    batch = make_batch()
    crit = _with_nan(balancer=spec, nonfinite="skip")
    with pytest.warns(lk.LossKitWarning, match="'bad'"):
        res = crit(net(batch["x"]), batch)
    assert res.weights["bad"].item() == 0.0
    res.backward()
    assert all(torch.isfinite(g).all() for g in grads(net))
    assert res.weights["bad"].item() == 0.0


# -- loss-level balancers and key subsets ---------------------------------------------------------
def test_uncertainty_with_a_disabled_term_leaves_its_parameter_alone(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer="uncertainty")
    crit.disable("k1")
    crit(net(batch["x"]), batch).backward()
    log_var = crit.balancer.scalarizer.log_var  # type: ignore[union-attr]
    assert log_var.grad is not None
    assert log_var.grad[1].item() == 0.0
    assert log_var.grad[0].item() != 0.0


def test_history_keeping_balancers_take_a_subset_of_keys(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "dwa", "every": 1})
    crit.disable("k1")
    res = crit(net(batch["x"]), batch)
    assert res.keys() == ("k0", "k2")
    assert crit.balancer.calls.tolist() == [1.0, 0.0, 1.0]  # type: ignore[union-attr]


def test_an_unoptimised_uncertainty_parameter_is_reported(net: Net) -> None:
    crit = lk.Criterion(terms(), balancer="uncertainty")
    opt = torch.optim.SGD(net.parameters(), lr=0.01)  # the criterion's parameters forgotten
    batch = make_batch()

    def train(steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad()
            crit(net(batch["x"]), batch).backward()
            opt.step()
            crit.step()

    train(10)  # quiet while it could still be a few skipped AMP steps
    with pytest.warns(lk.LossKitWarning, match=r"criterion.parameters\(\)"):
        train(1)


def test_famo_without_update_is_reported(net: Net) -> None:
    crit = lk.Criterion(terms(), balancer="famo")
    batch = make_batch()
    crit(net(batch["x"]), batch).backward()
    crit.step()
    with pytest.warns(lk.LossKitWarning, match="update"):
        crit(net(batch["x"]), batch)


# -- gradient path misuse, solvers, extras --------------------------------------------------------
def test_backpropagating_the_total_directly_is_refused(net: Net) -> None:
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    res = crit(net(batch["x"]), batch)
    with pytest.raises(lk.balancers.BalancingError, match=r"res.backward\(\)"):
        res.total.backward()


def test_a_gradient_balancer_needs_the_shared_part() -> None:
    with pytest.raises(lk.ConfigError, match="shared="):
        lk.Criterion(terms(), balancer="upgrad")


@pytest.mark.filterwarnings("ignore:.*not DPP.*")
def test_a_nash_mtl_solver_fallback_is_warned(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cvxpy")
    import cvxpy

    def fail(self: object, *args: object, **kwargs: object) -> None:
        raise cvxpy.SolverError("Solver 'ECOS' failed")

    monkeypatch.setattr(cvxpy.Problem, "solve", fail)
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer={"name": "nash_mtl", "shared": net.trunk})
    res = crit(net(batch["x"]), batch)
    with pytest.warns(lk.LossKitWarning, match="solver failed .* fell back"):
        res.backward()


def test_a_solver_failure_names_the_method_and_keys(net: Net) -> None:
    class Broken(aggregation.UPGrad):
        pass

    broken = Broken()
    broken.gramian_weighting.forward = lambda g: (_ for _ in ()).throw(  # type: ignore[method-assign]
        ValueError("Failed to solve the quadratic programming problem.")
    )
    batch = make_batch()
    crit = lk.Criterion(terms(), balancer=lk.balancers.Gradient(broken, shared=net.trunk))
    res = crit(net(batch["x"]), batch)
    with pytest.raises(lk.balancers.BalancingError, match=r"Broken could not combine .*'k0'"):
        res.backward()


def test_a_missing_extra_names_the_losskit_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchjd._mixins

    real = torchjd._mixins.find_spec
    monkeypatch.setattr(
        torchjd._mixins, "find_spec", lambda name: None if name == "quadprog" else real(name)
    )
    with pytest.raises(ImportError, match=r"losskit\[balancing\]"):
        lk.balancers.Gradient("upgrad", features="h")


def test_a_dropped_criterion_stops_capturing_features(net: Net) -> None:
    import gc
    import weakref

    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    owner = weakref.ref(crit.balancer)
    del crit
    gc.collect()
    assert owner() is None  # the hook on the trunk does not keep it (nor its captures) alive
    net(make_batch()["x"])


def test_validation_captures_nothing_and_needs_no_backward(net: Net) -> None:
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    batch = make_batch()
    with torch.no_grad():
        res = crit(net(batch["x"]), batch)
    assert crit.balancer._captured == []  # type: ignore[union-attr]
    assert set(res.log()) == {
        "loss",
        *(f"loss/k{i}" for i in range(3)),
        *(f"weight/k{i}" for i in range(3)),
    }
