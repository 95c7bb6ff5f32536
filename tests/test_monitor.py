"""Monitor-only terms: logged like the others, never part of the total or its gradient."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit as lk
from losskit.config import load_config
from losskit.run import build


def _graph_nodes(tensor: torch.Tensor) -> int:
    """How many autograd nodes the backward of ``tensor`` would visit."""
    seen: set[int] = set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def _criteria(balancer: str = "sum") -> tuple[lk.Criterion, lk.Criterion]:
    trained = {
        "fit": lk.Term("mse", input="pred", target="y"),
        "aux": lk.Term("l1", input="pred", target="y", weight=0.3),
    }
    plain = lk.Criterion(trained, balancer=balancer)
    watched = lk.Criterion(
        {
            **copy.deepcopy(trained),
            "mae": lk.Term("l1", input="pred", target="y", monitor=True),
            "huber": lk.Term("huber", input="pred", target="y", monitor=True, delta=0.5),
        },
        balancer=balancer,
    )
    return plain, watched


@pytest.mark.parametrize("balancer", ["sum", "mean", "magnitude", "uncertainty"])
def test_total_gradient_and_graph_are_bit_identical_with_a_monitored_term(balancer: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 5), torch.randn(16)
    plain, watched = _criteria(balancer)
    for _ in range(3):  # adaptive balancers move with the steps: they must move alike
        res_plain = plain({"pred": model(x).squeeze(-1)}, {"y": y})
        res_watched = watched({"pred": twin(x).squeeze(-1)}, {"y": y})
        plain.step()
        watched.step()
    assert torch.equal(res_plain.total, res_watched.total)
    for key in ("fit", "aux"):
        assert torch.equal(res_plain.weights[key], res_watched.weights[key])
    # the monitored terms add no node to the graph the backward walks
    assert _graph_nodes(res_watched.total) == _graph_nodes(res_plain.total)
    res_plain.backward()
    res_watched.backward()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert a.grad is not None
        assert b.grad is not None
        assert torch.equal(a.grad, b.grad)


def test_monitored_values_equal_the_losses_computed_separately() -> None:
    pred = torch.randn(32, requires_grad=True)
    y = torch.randn(32) * 3
    _, watched = _criteria()
    res = watched({"pred": pred}, {"y": y})
    expected_mae = F.l1_loss(pred.detach(), y)
    expected_huber = F.huber_loss(pred.detach(), y, delta=0.5)
    torch.testing.assert_close(res.monitored["mae"], expected_mae, rtol=0, atol=0)
    torch.testing.assert_close(res["huber"], expected_huber, rtol=0, atol=0)
    log = res.log("val/")
    torch.testing.assert_close(log["val/loss/mae"], expected_mae, rtol=0, atol=0)
    assert "val/weight/mae" not in log
    assert "val/weight/huber" not in log
    expected_total = F.mse_loss(pred.detach(), y) + 0.3 * expected_mae
    torch.testing.assert_close(log["val/loss"], expected_total)  # the trained terms alone
    for value in res.monitored.values():
        assert value.grad_fn is None
        assert not value.requires_grad


def test_monitored_terms_stay_out_of_keys_weights_and_balancer() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", input="p", target="y"),
            "b": lk.Term("l1", input="p", target="y"),
            "watch": lk.Term("huber", input="p", target="y", monitor=True),
        },
        balancer="magnitude",
    )
    assert crit.keys == ("a", "b")
    assert crit.monitored_keys == ("watch",)
    res = crit({"p": torch.zeros(4, requires_grad=True)}, {"y": torch.ones(4)})
    assert set(res.weights) == {"a", "b"}
    assert tuple(res) == ("a", "b")
    assert set(res.monitored) == {"watch"}
    with pytest.raises(KeyError, match="watch"):
        crit.disable("watch")


def test_a_monitored_term_refuses_a_weight_and_a_criterion_needs_a_trained_term() -> None:
    with pytest.raises(lk.ConfigError, match="monitor-only term takes no weight"):
        lk.Term("l1", monitor=True, weight=0.5)
    with pytest.raises(lk.ConfigError, match="monitor-only"):
        lk.Criterion({"only": lk.Term("l1", monitor=True)})


def test_trainer_validation_reports_monitored_terms() -> None:
    torch.manual_seed(1)
    model = nn.Linear(3, 1)
    x, y = torch.randn(40, 3), torch.randn(40)
    xv, yv = torch.randn(10, 3), torch.randn(10)
    train = [{"x": x[i : i + 8], "y": y[i : i + 8]} for i in range(0, 40, 8)]
    val = [{"x": xv, "y": yv}]
    crit = lk.Criterion(
        {
            "fit": lk.Term("mse", input=0, target="y"),
            "mae": lk.Term("l1", input=0, target="y", monitor=True),
        }
    )
    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.SGD(model.parameters(), lr=0.05),
        forward=lambda m, b: (m(b["x"]).squeeze(-1),),
        progress=False,
    )
    summary = trainer.fit(train, val, epochs=2)
    assert "loss/mae" in summary.train
    assert "weight/mae" not in summary.train
    with torch.no_grad():
        expected = F.l1_loss(model(xv).squeeze(-1), yv).item()
    assert summary.val["loss/mae"] == pytest.approx(expected, rel=1e-6)


def test_config_monitor_flag_builds_a_monitored_term() -> None:
    from importlib import resources

    cfg = load_config(resources.files("losskit").joinpath("demo.toml"))  # type: ignore[arg-type]
    raw = cfg.model_dump(mode="json")
    raw["terms"]["ink_l1"] = {"loss": "l1", "input": "ink", "target": "ink", "monitor": True}
    trainer, _, _ = build(load_config(raw), progress=False)
    assert trainer.criterion.monitored_keys == ("ink_l1",)
    assert "ink_l1" not in trainer.criterion.keys
