"""Balancers and absent keys: an optional term missing from a batch, or present with nothing to
average (count 0, an empty mask), takes no part in the balancer's state or weights.

Every balancer the property tests build is run over a criterion whose ``k1`` is optional and
masked; what a call without ``k1`` does is compared with a criterion built without ``k1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

import losskit as lk

from .conftest import Net, make_batch
from .test_balancer_properties import BUILT, TERM_WEIGHTS, _declaring, _resolve

NAMES = sorted(BUILT)
# Nash-MTL's solver is sized for every key: it always aggregates every row (docs/balancing.md).
SUBSET_NAMES = [n for n in NAMES if n != "nash_mtl"]
# Balancers that leave a count-0 key out: those told which keys are present, and the
# gradient-level ones (skip_zero drops its zero gradient).
COUNT_ZERO_NAMES = sorted(
    set(_declaring("handles_absence")) | set(_declaring("owns_backward")) - {"nash_mtl"}
)
WARM = 3  # calls with every key before k1 goes missing: stateful balancers have moved
CALLS = 4


def _criterion(name: str, net: Net, keys: tuple[str, ...] = tuple(TERM_WEIGHTS)) -> lk.Criterion:
    terms = {
        k: lk.Term(
            "mse",
            input=f"y{k[1:]}",
            target=f"t{k[1:]}",
            weight=TERM_WEIGHTS[k],
            mask=f"m{k[1:]}",
            optional=k == "k1",
        )
        for k in keys
    }
    balancer = lk.balancers.create(name, **_resolve(BUILT[name][0], net))
    return lk.Criterion(terms, balancer=balancer)


def _batch(seed: int, k1: str = "present") -> dict[str, Tensor]:
    """``k1``: ``"present"``, ``"absent"`` (no target) or ``"empty"`` (an all-False mask)."""
    batch = make_batch(seed)
    for i in range(3):
        batch[f"m{i}"] = torch.ones(16, dtype=torch.bool)
    if k1 == "absent":
        del batch["t1"], batch["m1"]
    elif k1 == "empty":
        batch["m1"] = torch.zeros(16, dtype=torch.bool)
    return batch


def _call(crit: lk.Criterion, net: Net, seed: int, k1: str) -> dict[str, Any]:
    """One training call (backward, step, FAMO's update): what it reported and wrote."""
    batch = _batch(seed, k1)
    net.zero_grad()
    crit.zero_grad()
    torch.manual_seed(seed)  # balancers that draw random numbers draw the same
    res = crit(net(batch["x"]), batch)
    res.backward()
    seen = {
        "weights": {k: w.detach().clone() for k, w in res.weights.items()},
        "grads": [p.grad.clone() for p in net.parameters() if p.grad is not None],
        "balancer_grads": {
            n: p.grad.clone() for n, p in crit.balancer.named_parameters() if p.grad is not None
        },
    }
    crit.step()
    update = getattr(crit.balancer, "update", None)
    if callable(update):
        with torch.no_grad():
            update(crit(net(batch["x"]), batch))
    return seen


def _tensors(state: Any, path: str = "") -> Iterator[tuple[str, Tensor]]:
    """Every tensor in a state dict, extra state and optimizer state included."""
    if isinstance(state, Tensor):
        yield path, state.detach().clone()
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from _tensors(value, f"{path}/{key}")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from _tensors(value, f"{path}/{i}")


def _entries_of_k1(crit: lk.Criterion) -> dict[str, Tensor]:
    """The balancer's per-key state entries of ``k1`` (tensors with one entry per key)."""
    state = crit.balancer.state_dict()
    # FAMO's "seen" flags which keys the last call held (for update()): not state of a key
    return {
        p: t[..., 1]
        for p, t in _tensors(state)
        if t.dim() and t.shape[-1] == 3 and not p.endswith("/seen")
    }


# Every balancer is checked with k1 absent from the batch; a count-0 k1 (an empty mask) only
# where the balancer is told of it (the others see it as a term of value 0, documented).
CASES = [(name, "absent") for name in SUBSET_NAMES] + [
    (name, "empty") for name in SUBSET_NAMES if name in COUNT_ZERO_NAMES
]


def _nets() -> tuple[Net, Net]:
    torch.manual_seed(0)
    first = Net()
    second = Net()
    second.load_state_dict(first.state_dict())
    return first, second


@pytest.mark.parametrize(("name", "k1"), CASES)
def test_a_missing_key_keeps_its_state_and_gets_no_gradient(name: str, k1: str) -> None:
    net, _ = _nets()
    crit = _criterion(name, net)
    for seed in range(WARM):
        _call(crit, net, seed, "present")
    before = _entries_of_k1(crit)
    for seed in range(WARM, WARM + CALLS):
        seen = _call(crit, net, seed, k1)
        if k1 == "absent":
            assert "k1" not in seen["weights"]
        else:
            assert seen["weights"]["k1"].item() == 0.0
        for param, grad in seen["balancer_grads"].items():
            assert grad[..., 1].abs().max().item() == 0.0, param
    after = _entries_of_k1(crit)
    assert after.keys() == before.keys()
    for path, entry in before.items():
        torch.testing.assert_close(after[path], entry, rtol=0, atol=0, msg=path)


@pytest.mark.parametrize(("name", "k1"), CASES)
def test_without_k1_the_others_train_as_in_a_criterion_without_it(name: str, k1: str) -> None:
    net, reference_net = _nets()
    crit = _criterion(name, net)
    reference = _criterion(name, reference_net, keys=("k0", "k2"))
    for seed in range(CALLS):
        seen = _call(crit, net, seed, k1)
        expected = _call(reference, reference_net, seed, "absent")
        weights = {k: w for k, w in seen["weights"].items() if k != "k1"}
        # float32 in another order (a masked softmax, a pseudo-inverse): a few ulps apart
        torch.testing.assert_close(weights, expected["weights"], rtol=1e-4, atol=1e-5)
        # the k1 head gets no gradient (None) in one and zeros in the other: compare the rest
        grads = [g for g in seen["grads"] if g.abs().sum() > 0]
        torch.testing.assert_close(grads, expected["grads"], rtol=1e-4, atol=1e-5)


def test_nash_mtl_refuses_a_call_without_every_key() -> None:
    net, _ = _nets()
    crit = _criterion("nash_mtl", net)
    batch = _batch(0, "absent")
    res = crit(net(batch["x"]), batch)
    with pytest.raises(lk.ConfigError, match=r"nash_mtl.*every key"):
        res.backward()


# -- by hand ----------------------------------------------------------------------------------
def _two(balancer: object) -> lk.Criterion:
    return lk.Criterion(
        {
            "a": lk.Term("mse", input="x", target="ya"),
            "b": lk.Term("mse", input="x", target="yb", mask="mb", optional=True),
        },
        balancer=balancer,  # type: ignore[arg-type]
    )


def _inputs(b: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    x = torch.zeros(2, requires_grad=True)
    batch = {"ya": torch.full((2,), 2.0), "yb": torch.ones(2), "mb": torch.ones(2).bool()}
    if b == "absent":
        del batch["yb"], batch["mb"]
    elif b == "empty":
        batch["mb"] = torch.zeros(2, dtype=torch.bool)
    return {"x": x}, batch


@pytest.mark.parametrize("b", ["absent", "empty"])
def test_uncertainty_leaves_the_missing_summand_out_by_hand(b: str) -> None:
    crit = _two("uncertainty")
    with torch.no_grad():
        crit.balancer.scalarizer.log_var.copy_(torch.tensor([0.5, -1.0]))  # type: ignore[union-attr]
    res = crit(*_inputs(b))
    # 0.5 exp(-s_a) L_a + 0.5 s_a, with L_a = 4: "b" adds nothing, regulariser included
    expected = 0.5 * torch.exp(torch.tensor(-0.5)) * 4.0 + 0.25
    torch.testing.assert_close(res.total.detach(), expected)
    res.total.backward()
    grad = crit.balancer.scalarizer.log_var.grad  # type: ignore[union-attr]
    torch.testing.assert_close(
        grad, torch.tensor([0.5 - 0.5 * torch.exp(torch.tensor(-0.5)) * 4, 0])
    )


def test_dwa_holds_the_history_of_a_key_absent_for_a_period() -> None:
    crit = _two({"name": "dwa", "every": 1, "temperature": 1.0})
    dwa = crit.balancer
    for ya, b in ((4.0, "present"), (2.0, "present"), (1.0, "absent")):
        outputs, batch = _inputs(b)
        batch["ya"] = torch.full((2,), ya)
        crit(outputs, batch)
        crit.step()
    # "a": averages 16, 4, 1 (the last two kept); "b": 1, 1 held through the period it missed
    torch.testing.assert_close(dwa.averages, torch.tensor([[4.0, 1.0], [1.0, 1.0]]))
    torch.testing.assert_close(dwa.periods, torch.tensor([2.0, 2.0]))
    res = crit(*_inputs("present"))
    rates = torch.tensor([1.0 / 4.0, 1.0])  # 2 * softmax(rates / T)
    torch.testing.assert_close(torch.stack(list(res.weights.values())), 2 * rates.softmax(0))
    res = crit(*_inputs("empty"))
    torch.testing.assert_close(res.weights["a"], torch.tensor(1.0))  # one key: 1 * softmax
    torch.testing.assert_close(res.weights["b"], torch.tensor(0.0))


@pytest.mark.parametrize("b", ["absent", "empty"])
def test_famo_holds_the_logit_and_adam_moments_of_a_missing_key(b: str) -> None:
    crit = _two("famo")
    famo = crit.balancer.scalarizer  # type: ignore[union-attr]
    for ya in (4.0, 3.0):  # both present: the logits and moments move
        outputs, batch = _inputs("present")
        batch["ya"] = torch.full((2,), ya)
        crit(outputs, batch)
        batch["ya"] = torch.full((2,), ya - 1)
        with torch.no_grad():
            crit.balancer.update(crit(outputs, batch))  # type: ignore[operator]
    held = famo.logits.detach().clone()
    moments = {k: v.clone() for k, v in famo.optimizer.state[famo.logits].items()}
    outputs, batch = _inputs(b)
    res = crit(outputs, batch)
    if b == "empty":
        torch.testing.assert_close(res.weights["b"], torch.tensor(0.0))
    # one key left: softmax over it alone gives it the whole weight, c = L_a
    torch.testing.assert_close(res.weights["a"], torch.tensor(1.0))
    batch["ya"] = torch.full((2,), 1.0)
    with torch.no_grad():
        crit.balancer.update(crit(outputs, batch))  # type: ignore[operator]
    assert famo.logits[1].item() == held[1].item()
    for name in ("exp_avg", "exp_avg_sq"):
        state = famo.optimizer.state[famo.logits][name]
        assert state[1].item() == moments[name][1].item()


def test_magnitude_reports_zero_for_a_count_zero_key_and_keeps_its_estimate() -> None:
    crit = _two("magnitude")
    crit(*_inputs("present"))
    estimate = crit.balancer.magnitude.clone()  # type: ignore[union-attr]
    res = crit(*_inputs("empty"))
    torch.testing.assert_close(res.weights["b"], torch.tensor(0.0))
    torch.testing.assert_close(res.weights["a"], torch.tensor(1.0 / 4.0))
    torch.testing.assert_close(crit.balancer.magnitude[1], estimate[1])  # type: ignore[index]
    torch.testing.assert_close(crit.balancer.count, torch.tensor([2.0, 1.0]))  # type: ignore[union-attr]


# -- the call the criterion makes -------------------------------------------------------------
class _Recording(lk.balancers.BalancerBase):
    def __init__(self, aware: bool) -> None:
        super().__init__()
        self.capabilities = lk.balancers.Capabilities(handles_absence=aware)
        self.seen: list[Tensor | None] = []

    def combine(
        self,
        losses: Tensor,
        weights: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        self.seen.append(present)
        return torch.dot(losses, weights), weights


def test_presence_goes_only_to_balancers_that_ask_for_it() -> None:
    aware, plain = _Recording(True), _Recording(False)
    for balancer in (aware, plain):
        _two(balancer)(*_inputs("empty"))
        _two(balancer)(*_inputs("absent"))
    assert plain.seen == [None, None]  # today's call: three arguments
    present, subset = aware.seen
    assert present is not None
    assert present.tolist() == [True, False]
    assert subset is None  # "a" reports no count, "b" is not in the call


def test_presence_with_a_count_left_to_compute_is_computed_once() -> None:
    balancer = _Recording(True)
    crit = lk.Criterion(
        {
            # class weights: a count computed when asked; every target ignored: 0
            "a": lk.Term(
                lk.losses.get("cross_entropy", weight=torch.ones(3)),
                input="x",
                target="y",
                optional=True,
            ),
            "b": lk.Term("mse", input="z", target="t"),
        },
        balancer=balancer,
    )
    res = crit(
        {"x": torch.zeros(2, 3), "z": torch.zeros(2)},
        {"y": torch.full((2,), -100), "t": torch.ones(2)},
    )
    assert balancer.seen[0] is not None
    assert balancer.seen[0].tolist() == [False, True]
    torch.testing.assert_close(res.counts["a"], torch.tensor(0.0))


def test_a_term_skipped_as_non_finite_is_out_of_the_call_too() -> None:
    balancer = _Recording(True)
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", input="x", target="y"),
            "bad": lk.Term(lambda out, batch: torch.log(torch.tensor(-1.0))),
        },
        balancer=balancer,
        nonfinite="skip",
    )
    with pytest.warns(lk.LossKitWarning, match="'bad'"):
        crit({"x": torch.zeros(2)}, {"y": torch.ones(2)})
    assert balancer.seen[0] is not None
    assert balancer.seen[0].tolist() == [True, False]
