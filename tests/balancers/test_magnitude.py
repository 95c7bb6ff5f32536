"""Magnitude: terms on scales 10^4 apart contribute alike after warm-up, without host syncs."""

from __future__ import annotations

import pytest
import torch

import losskit as lk


def _noisy_criterion(balancer: object) -> lk.Criterion:
    return lk.Criterion(
        {
            "tiny": lk.Term(lambda out, batch: 1e-2 * out["a"].pow(2).mean()),
            "unit": lk.Term(lambda out, batch: out["b"].pow(2).mean()),
            "huge": lk.Term(lambda out, batch: 1e2 * out["c"].pow(2).mean()),
        },
        balancer=balancer,  # type: ignore[arg-type]
    )


def test_scales_ten_thousand_apart_contribute_within_a_factor_of_two() -> None:
    g = torch.Generator().manual_seed(0)
    crit = _noisy_criterion(lk.balancers.Magnitude(beta=0.98, warmup=50))
    contributions: dict[str, list[float]] = {k: [] for k in crit.keys}
    for step in range(300):
        outputs = {k: 1.0 + 0.3 * torch.randn(64, generator=g) for k in "abc"}
        res = crit(outputs, None)
        crit.step()
        if step >= 50:  # after warm-up
            for key in crit.keys:
                contributions[key].append(float(res[key] * res.weights[key]))
    raw = [float(crit(outputs, None)[k]) for k in crit.keys]
    assert max(raw) / min(raw) > 5e3  # the raw terms really are 10^4 apart
    means = {k: sum(v) / len(v) for k, v in contributions.items()}
    assert max(means.values()) / min(means.values()) < 2.0
    for values in contributions.values():  # and step by step, not only on average
        assert min(values) > 0.5
        assert max(values) < 2.0


def test_term_weights_become_relative_importance() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term(lambda out, batch: 1e3 * out.pow(2).mean(), weight=2.0),
            "b": lk.Term(lambda out, batch: 1e-3 * out.pow(2).mean()),
        },
        balancer="magnitude",
    )
    res = crit(torch.ones(3), None)
    torch.testing.assert_close(res["a"] * res.weights["a"], torch.tensor(2.0))
    torch.testing.assert_close(res["b"] * res.weights["b"], torch.tensor(1.0))


def test_the_estimate_is_the_running_mean_during_warmup_then_an_ema() -> None:
    crit = lk.Criterion(
        {"a": lk.Term(lambda out, batch: out.sum())},
        balancer=lk.balancers.Magnitude(beta=0.5, warmup=2),
    )
    balancer = crit.balancer
    assert isinstance(balancer, lk.balancers.Magnitude)
    for value, expected in ((2.0, 2.0), (4.0, 3.0), (7.0, 5.0), (1.0, 3.0)):
        crit(torch.tensor([value]), None)
        torch.testing.assert_close(balancer.magnitude, torch.tensor([expected]))


@pytest.mark.parametrize("value", [0.0, float("nan")])
def test_a_zero_or_non_finite_term_leaves_the_estimate_alone(value: float) -> None:
    crit = lk.Criterion(
        {"a": lk.Term(lambda out, batch: out.sum())}, balancer="magnitude", check="off"
    )
    crit(torch.tensor([5.0]), None)
    res = crit(torch.tensor([value]), None)
    assert crit.balancer.magnitude.item() == 5.0  # type: ignore[union-attr]
    torch.testing.assert_close(res.weights["a"], torch.tensor(0.2))


def test_a_key_without_an_estimate_keeps_its_term_weight() -> None:
    crit = lk.Criterion(
        {"a": lk.Term(lambda out, batch: out.sum(), weight=3.0)}, balancer="magnitude"
    )
    torch.testing.assert_close(crit(torch.tensor([0.0]), None).weights["a"], torch.tensor(3.0))


def test_validation_reads_the_estimate_without_changing_it() -> None:
    crit = lk.Criterion({"a": lk.Term(lambda out, batch: out.sum())}, balancer="magnitude")
    crit(torch.tensor([4.0]), None)
    with torch.no_grad():
        res = crit(torch.tensor([100.0]), None)
    assert crit.balancer.magnitude.item() == 4.0  # type: ignore[union-attr]
    torch.testing.assert_close(res.weights["a"], torch.tensor(0.25))


def test_disabled_terms_keep_their_estimate_and_state_round_trips() -> None:
    crit = _noisy_criterion("magnitude")
    outputs = {"a": torch.ones(4), "b": torch.ones(4), "c": torch.ones(4)}
    crit(outputs, None)
    crit.disable("unit")
    res = crit({"a": 2 * torch.ones(4), "c": torch.ones(4)}, None)
    assert "unit" not in res
    state = crit.state_dict()
    torch.testing.assert_close(state["balancer.magnitude"], torch.tensor([0.025, 1.0, 100.0]))
    restored = _noisy_criterion("magnitude")
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.balancer.magnitude, crit.balancer.magnitude)  # type: ignore[union-attr]
    assert restored.enabled == ("tiny", "huge")


def test_magnitude_compiles_without_graph_breaks() -> None:
    """Device-side state only: no .item(), no Python branching on values (no host sync)."""
    balancer = lk.balancers.Magnitude()
    balancer.bind(("a", "b"))
    combine = torch.compile(balancer.combine, fullgraph=True)
    total, weights = combine(torch.tensor([2.0, 8.0]), torch.ones(2), ("a", "b"))
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.125]))
    torch.testing.assert_close(total, torch.tensor(2.0))
