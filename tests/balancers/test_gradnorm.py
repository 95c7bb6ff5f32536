"""GradNorm against a two-task case worked by hand (Chen et al., 2018, eq. 1-2)."""

from __future__ import annotations

import math

import pytest
import torch

import losskit as lk


def _criterion(w: torch.Tensor, alpha: float, lr: float) -> lk.Criterion:
    # L_a = 3 w0 has gradient (3, 0): norm 3. L_b = w1^2 has gradient (0, 2 w1): norm 2 w1.
    return lk.Criterion(
        {
            "a": lk.Term(lambda out, batch: 3 * out[0]),
            "b": lk.Term(lambda out, batch: out[1] ** 2),
        },
        balancer=lk.balancers.GradNorm(shared=[w], alpha=alpha, lr=lr),
    )


def test_two_tasks_by_hand() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    crit = _criterion(w, alpha=1.5, lr=0.01)
    balancer = crit.balancer
    assert isinstance(balancer, lk.balancers.GradNorm)

    # Step 1: L = (3, 4), L(0) = L so r = (1, 1); norms n = (3, 4); G = (3, 4), mean 3.5.
    # Targets 3.5 * 1 ** 1.5 = 3.5; gradients sign(G - target) * n = (-3, +4).
    # w <- (1, 1) - 0.01 (-3, 4) = (1.03, 0.96), renormalised to sum 2: x 2 / 1.99.
    res = crit(w, None)
    torch.testing.assert_close(res.weights["a"], torch.tensor(1.0))
    res.backward()
    torch.testing.assert_close(w.grad, torch.tensor([3.0, 4.0]))  # the model trains on sum w_k L_k
    crit.step()
    first = (1.03 * 2 / 1.99, 0.96 * 2 / 1.99)
    torch.testing.assert_close(balancer.task_weights, torch.tensor(first))

    # Step 2 at w = (0.5, 1.0): L = (1.5, 1.0); L / L(0) = (0.5, 0.25), mean 0.375, so
    # r = (4/3, 2/3) and r ** 1.5 = (1.5396, 0.5443); n = (3, 2); G = (3 w_a, 2 w_b).
    with torch.no_grad():
        w.copy_(torch.tensor([0.5, 1.0]))
    res = crit(w, None)
    torch.testing.assert_close(res.weights["b"], torch.tensor(first[1]))
    g = (3 * first[0], 2 * first[1])
    mean = (g[0] + g[1]) / 2
    target = (mean * (4 / 3) ** 1.5, mean * (2 / 3) ** 1.5)
    grad = (math.copysign(3, g[0] - target[0]), math.copysign(2, g[1] - target[1]))
    assert grad == (-3, 2)  # task a trains slower: its weight grows
    stepped = (first[0] - 0.01 * grad[0], first[1] - 0.01 * grad[1])
    crit.step()
    second = tuple(v * 2 / sum(stepped) for v in stepped)
    torch.testing.assert_close(balancer.task_weights, torch.tensor(second))


def test_alpha_zero_equalises_the_weighted_gradient_norms() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    crit = _criterion(w, alpha=0.0, lr=0.02)
    seen = []
    for _ in range(300):
        crit(w, None)
        crit.step()
        seen.append(crit.balancer.task_weights.clone())  # type: ignore[union-attr]
    # Equal G = w_k n_k with n = (3, 4): w = (8/7, 6/7); the sign steps chatter around it.
    settled = torch.stack(seen[-100:]).mean(0)
    torch.testing.assert_close(settled, torch.tensor([8 / 7, 6 / 7]), atol=0.02, rtol=0)


def test_accumulation_averages_the_weight_gradients_over_the_window() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    one = _criterion(w, alpha=1.5, lr=0.01)
    two = _criterion(w, alpha=1.5, lr=0.01)
    one(w, None)
    one.step()
    two(w, None)
    two(w, None)  # a second micro-batch with the same values
    two.step()
    torch.testing.assert_close(one.balancer.task_weights, two.balancer.task_weights)  # type: ignore[union-attr]


def test_validation_does_not_move_the_weights_and_state_round_trips() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    crit = _criterion(w, alpha=1.5, lr=0.01)
    crit(w, None)
    crit.step()
    with torch.no_grad():
        crit(w, None)
    crit.step()  # nothing pending: no change
    state = crit.state_dict()
    restored = _criterion(w, alpha=1.5, lr=0.01)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.balancer.task_weights, crit.balancer.task_weights)  # type: ignore[union-attr]
    assert "balancer.task_weights" in state
    assert not any("shared" in k for k in state)


def test_a_frozen_shared_layer_is_refused() -> None:
    w = torch.tensor([1.0, 2.0])
    x = torch.tensor([1.0], requires_grad=True)
    crit = lk.Criterion(
        {
            "a": lk.Term(lambda out, batch: out.sum() * x.sum()),
            "b": lk.Term(lambda out, batch: x.sum()),
        },
        balancer=lk.balancers.GradNorm(shared=[w]),
    )
    with pytest.raises(lk.ConfigError, match="frozen"):
        crit(w, None)
