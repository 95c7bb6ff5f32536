"""LossResult: the total, parts, weights and logs of one call, and its backward."""

from __future__ import annotations

import pytest
import torch

import losskit as lk
from losskit.schedules import LinearWarmup


def test_log_is_detached_with_stable_names() -> None:
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("huber", input="value", target="y", weight=0.3),
            "l2": lk.Term(lambda out, batch: out["z"].pow(2).mean(), weight=1e-2),
        }
    )
    outputs = {
        "logits": torch.randn(4, 3, requires_grad=True),
        "value": torch.randn(4, requires_grad=True),
        "z": torch.randn(4, 2, requires_grad=True),
    }
    res = crit(outputs, {"label": torch.tensor([0, 2, 1, 0]), "y": torch.zeros(4)})
    log = res.log()
    assert list(log) == [
        "loss",
        "loss/cls",
        "loss/reg",
        "loss/l2",
        "weight/cls",
        "weight/reg",
        "weight/l2",
    ]
    assert all(not v.requires_grad and v.ndim == 0 for v in log.values())
    torch.testing.assert_close(log["weight/reg"], torch.tensor(0.3))
    assert list(res.log("val/"))[1] == "val/loss/cls"


def test_weights_of_an_old_result_survive_a_step() -> None:
    crit = lk.Criterion({"a": lk.Term("mse", weight=LinearWarmup(1.0, 2.0, steps=1))})
    x = torch.zeros(3, requires_grad=True)
    res = crit(x, torch.ones(3))
    crit.step()
    res.backward()  # the graph keeps the weight tensor it was built with
    torch.testing.assert_close(res.weights["a"], torch.tensor(1.0))
    torch.testing.assert_close(x.grad, torch.full((3,), -2 / 3))


def test_a_backward_callable_replaces_total_backward_and_reports_its_weights() -> None:
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    parts = (p[0] * 3, p[1] ** 2)
    calls: list[tuple[float, bool]] = []

    def backward(
        result: lk.LossResult,
        *,
        scale: float,
        grad_scaler: torch.amp.GradScaler | None,
        retain_graph: bool,
    ) -> torch.Tensor:
        calls.append((scale, retain_graph))
        torch.autograd.backward(list(result.parts.values()), retain_graph=retain_graph)
        return torch.tensor([0.25, 0.75])

    res = lk.LossResult(parts[0] + parts[1], ("a", "b"), parts, torch.ones(2), backward=backward)
    res.backward(scale=0.5, retain_graph=True)
    torch.testing.assert_close(p.grad, torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(res.weights["b"], torch.tensor(0.75))
    res.backward()
    assert calls == [(0.5, True), (1.0, False)]
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        res.backward()  # what the backward captured is released after a final pass
    with pytest.raises(TypeError, match="retain_graph only"):
        lk.LossResult(parts[0], ("a",), parts[:1], torch.ones(1), backward=backward).backward(
            inputs=[p]
        )


def test_report_weights_sets_the_logged_weights() -> None:
    res = lk.LossResult(
        torch.tensor(3.0), ("a", "b"), (torch.tensor(1.0), torch.tensor(2.0)), torch.ones(2)
    )
    res.report_weights(torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(res.log()["weight/b"], torch.tensor(2.0))
    assert res.log()["weight/b"].requires_grad is False
