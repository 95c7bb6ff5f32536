"""The keyed criterion against hand-written PyTorch."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit as lk
from losskit.schedules import Cyclical, LinearWarmup


class ThreeHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 16)
        self.cls = nn.Linear(16, 3)
        self.reg = nn.Linear(16, 1)
        self.emb = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(x))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "z": self.emb(h)}


def _batch(n: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(n, 6, generator=g),
        "label": torch.randint(0, 3, (n,), generator=g),
        "y": torch.randn(n, generator=g),
    }


def _criterion(**kwargs: object) -> lk.Criterion:
    return lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term(nn.HuberLoss(delta=0.5), input="value", target="y", weight=0.3),
            "l2": lk.Term(lambda out, batch: out["z"].pow(2).mean(), weight=1e-2),
        },
        **kwargs,  # type: ignore[arg-type]
    )


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def test_total_and_gradients_equal_hand_written_weighted_sum() -> None:
    torch.manual_seed(0)
    model, batch = ThreeHeads(), _batch()
    res = _criterion()(model(batch["x"]), batch)
    res.backward()
    ours = _grads(model)

    model.zero_grad()
    out = model(batch["x"])
    cls = F.cross_entropy(out["logits"], batch["label"])
    reg = F.huber_loss(out["value"], batch["y"], delta=0.5)
    l2 = out["z"].pow(2).mean()
    total = cls + 0.3 * reg + 1e-2 * l2
    total.backward()

    torch.testing.assert_close(res.total, total)
    torch.testing.assert_close(res["cls"], cls)
    torch.testing.assert_close(res["reg"], reg)
    torch.testing.assert_close(res["l2"], l2)
    for a, b in zip(ours, _grads(model)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("terms", "match"),
    [
        ([("a", "mse"), ("a", "l1")], "duplicate term key 'a'"),
        ({"loss/a": "mse"}, "invalid term key 'loss/a'"),
        ({"": "mse"}, "invalid term key ''"),
        ({"a.b": "mse"}, "invalid term key 'a.b'"),
        ({}, "at least one term"),
        ({"a": "no_such_loss"}, "unknown loss 'no_such_loss'"),
    ],
)
def test_bad_construction_is_refused(terms: object, match: str) -> None:
    with pytest.raises(lk.ConfigError, match=match):
        lk.Criterion(terms)  # type: ignore[arg-type]


def test_scheduled_weight_shows_in_log_the_same_step() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", weight=LinearWarmup(0.0, 1.0, steps=4)),
            "b": lk.Term("l1", weight=Cyclical(0.0, 1.0, period=4, ratio=0.5)),
        }
    )
    x, y = torch.zeros(3), torch.ones(3)
    seen = []
    for _ in range(6):
        res = crit(x, y)
        log = res.log()
        seen.append((float(log["weight/a"]), float(log["weight/b"])))
        torch.testing.assert_close(res.total, log["weight/a"] * 1.0 + log["weight/b"] * 1.0)
        crit.step()
    assert seen == [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.75, 1.0), (1.0, 0.0), (1.0, 0.5)]


def test_state_dict_round_trip_resumes_schedules_and_enabled_set() -> None:
    def make() -> lk.Criterion:
        return lk.Criterion(
            {
                "a": lk.Term("mse", weight=LinearWarmup(0.0, 1.0, steps=10)),
                "b": lk.Term("l1", weight=Cyclical(0.0, 2.0, period=6)),
                "c": lk.Term("huber"),
            }
        )

    first = make()
    for _ in range(7):
        first.step()
    first.disable("c")
    restored = make()
    restored.load_state_dict(first.state_dict())
    assert restored.step_count == 7
    assert restored.enabled == ("a", "b")
    x, y = torch.zeros(3), torch.ones(3)
    for _ in range(5):
        a, b = first(x, y), restored(x, y)
        assert a.weights.keys() == b.weights.keys()
        for key in a.weights:
            torch.testing.assert_close(a.weights[key], b.weights[key])
        torch.testing.assert_close(a.total, b.total)
        first.step()
        restored.step()


def test_loss_module_buffers_are_in_state_dict() -> None:
    class_weighted = lk.losses.get("cross_entropy", weight=torch.tensor([1.0, 3.0]))
    weighted = lk.Criterion({"cls": lk.Term(class_weighted, weight=2.0)})
    torch.testing.assert_close(
        weighted.state_dict()["terms.cls.loss.weight"], torch.tensor([1.0, 3.0])
    )


def test_enable_and_disable_at_run_time() -> None:
    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", weight=3.0, enabled=False)})
    x, y = torch.zeros(3), torch.full((3,), 2.0)
    res = crit(x, y)
    assert res.keys() == ("a",)
    assert "loss/b" not in res.log()
    with pytest.raises(KeyError, match="disabled"):
        res["b"]
    crit.enable("b")
    torch.testing.assert_close(crit(x, y).total, torch.tensor(4.0 + 3 * 2.0))
    crit.disable("a")
    torch.testing.assert_close(crit(x, y).total, torch.tensor(6.0))
    with pytest.raises(KeyError, match="no term 'z'"):
        crit.disable("z")
    crit.disable("b")
    with pytest.raises(lk.ConfigError, match="every term selected is disabled"):
        crit(x, y)


def test_mean_balancer_divides_by_enabled_terms() -> None:
    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", weight=2.0)}, balancer="mean")
    x, y = torch.zeros(3), torch.full((3,), 2.0)
    res = crit(x, y)
    torch.testing.assert_close(res.total, (4.0 + 2 * 2.0) / 2 * torch.ones(()))
    torch.testing.assert_close(res.weights["b"], torch.tensor(1.0))
    with pytest.raises(lk.ConfigError, match="balancer"):
        lk.Criterion({"a": "mse"}, balancer="magic")  # type: ignore[arg-type]


def _nan_batch() -> tuple[ThreeHeads, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model, batch = ThreeHeads(), _batch()
    out = model(batch["x"])
    out["value"] = out["value"].clone()
    out["value"][2] = float("nan")
    return model, out, batch


def test_nan_in_one_head_raises_naming_that_key_only() -> None:
    _, out, batch = _nan_batch()
    with pytest.raises(lk.NonFiniteLossError) as info:
        _criterion()(out, batch)
    message = str(info.value)
    assert "'reg'" in message
    assert "'cls'" not in message
    assert "'l2'" not in message
    assert "input: shape (8,), dtype float32" in message
    assert "1 NaN, 0 inf" in message


def test_nonfinite_warn_returns_the_result() -> None:
    _, out, batch = _nan_batch()
    with pytest.warns(lk.LossKitWarning, match="'reg'"):
        res = _criterion(nonfinite="warn")(out, batch)
    assert torch.isnan(res.total)


def test_nonfinite_skip_drops_the_term_and_keeps_gradients_finite() -> None:
    model, out, batch = _nan_batch()
    with pytest.warns(lk.LossKitWarning, match="'reg'"):
        res = _criterion(nonfinite="skip")(out, batch)
    torch.testing.assert_close(res.weights["reg"], torch.tensor(0.0))
    expected = res["cls"] + 1e-2 * res["l2"]
    torch.testing.assert_close(res.total, expected)
    res.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_lazy_check_after_the_first_steps_reports_at_check_finite() -> None:
    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, check_steps=2)
    x, y = torch.zeros(3), torch.ones(3)
    for _ in range(3):
        crit(x, y)
        crit.step()
    bad = torch.tensor([0.0, float("inf"), 0.0])
    crit(bad, y)  # no sync: accepted now, flagged later
    crit.step()
    crit(x, y)
    with pytest.raises(lk.NonFiniteLossError, match=r"between step 1 and step 4"):
        crit.check_finite()
    crit.check_finite()  # flags are cleared once reported


def test_check_off_never_looks() -> None:
    crit = lk.Criterion({"a": lk.Term(lambda x, y: (x - y).mean())}, check="off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = crit(torch.tensor([float("nan")]), torch.ones(1))
    crit.check_finite()
    assert torch.isnan(res.total)


def test_compile_fullgraph_matches_eager() -> None:
    torch.manual_seed(0)
    model, batch = ThreeHeads(), _batch()
    out = model(batch["x"])
    eager = _criterion(check="off")
    compiled_crit = _criterion(check="off")
    compiled = torch.compile(compiled_crit, fullgraph=True)
    for _ in range(3):
        a, b = eager(out, batch), compiled(out, batch)
        torch.testing.assert_close(a.total, b.total)
        for key in ("cls", "reg", "l2"):
            torch.testing.assert_close(a[key], b[key])
            torch.testing.assert_close(a.weights[key], b.weights[key])
        eager.step()
        compiled_crit.step()


def test_compile_with_schedule_does_not_recompile() -> None:
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    crit = lk.Criterion({"a": lk.Term("mse", weight=LinearWarmup(0.0, 1.0, steps=5))})
    compiled = torch.compile(crit, backend=counter, fullgraph=True)
    x, y = torch.zeros(3), torch.ones(3)
    for step in range(6):
        torch.testing.assert_close(compiled(x, y).total, torch.tensor(min(step / 5, 1.0)))
        crit.step()
    assert counter.frame_count == 1


def test_a_subset_of_keys_uses_the_same_weights() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", weight=2.0),
            "b": lk.Term("l1", weight=LinearWarmup(0.0, 1.0, steps=2)),
            "c": lk.Term("huber", weight=0.5),
        }
    )
    crit.step()
    x, y = torch.zeros(3), torch.full((3,), 2.0)
    full = crit(x, y)
    part = crit(x, y, keys=["c", "b"])
    assert part.keys() == ("b", "c")
    torch.testing.assert_close(part.total, 0.5 * full["b"] + 0.5 * full["c"])
    torch.testing.assert_close(part.weights["b"], torch.tensor(0.5))
    crit.disable("b")
    assert crit(x, y, keys=["b", "c"]).keys() == ("c",)
    with pytest.raises(lk.ConfigError, match="disabled"):
        crit(x, y, keys=["b"])
    with pytest.raises(KeyError, match="no term 'z'"):
        crit(x, y, keys=["z"])


def test_lazy_check_on_a_subset_names_the_right_key() -> None:
    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", check="off")}, check_steps=0)
    crit(torch.tensor([float("nan")]), torch.ones(1), keys=["b"])
    with pytest.raises(lk.NonFiniteLossError, match=r"'b' became non-finite") as info:
        crit.check_finite()
    assert "'a'" not in str(info.value)


def test_hooks_on_a_loss_and_on_the_criterion_still_run() -> None:
    # The hot path calls forward directly only when __call__ would add nothing (no hooks).
    crit = lk.Criterion({"reg": lk.Term(nn.MSELoss(), input="p", target="y")})
    seen: list[str] = []
    handles = [
        crit.term("reg").loss.register_forward_hook(  # type: ignore[union-attr]
            lambda module, args, out: seen.append("loss")
        ),
        crit.register_forward_pre_hook(lambda module, args: seen.append("criterion")),
    ]
    res = crit({"p": torch.zeros(3)}, {"y": torch.ones(3)})
    assert seen == ["criterion", "loss"]
    torch.testing.assert_close(res.total, torch.tensor(1.0))
    for handle in handles:
        handle.remove()
    crit({"p": torch.zeros(3)}, {"y": torch.ones(3)})
    assert seen == ["criterion", "loss"]


def test_compile_in_place_is_honoured() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="p", target="y")})
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    crit.compile(backend=counter, fullgraph=True)
    p = torch.randn(5, requires_grad=True)
    res = crit({"p": p}, {"y": torch.zeros(5)})
    assert counter.frame_count == 1  # the call went through the compiled module
    torch.testing.assert_close(res.total, p.detach().pow(2).mean())


def test_a_subclass_overriding_forward_is_called() -> None:
    class Doubled(lk.Criterion):
        def forward(
            self, outputs: object, batch: object = None, *, keys: object = None
        ) -> lk.LossResult:  # type: ignore[override]
            res = super().forward(outputs, batch)
            return lk.LossResult(
                res.total * 2, res.keys(), tuple(res.parts.values()), torch.ones(1)
            )

    crit = Doubled({"reg": lk.Term("mse", input="p", target="y")})
    res = crit({"p": torch.zeros(3)}, {"y": torch.ones(3)})
    torch.testing.assert_close(res.total, torch.tensor(2.0))


def _settled(crit: lk.Criterion, outputs: dict[str, torch.Tensor], batch: object) -> None:
    """Run ``crit`` past its synchronous checks and its losses' value checks."""
    for _ in range(max(crit.check_steps, 3) + 1):
        crit(outputs, batch)
        crit.step()


def test_past_the_first_checks_equals_the_checked_path() -> None:
    # Past the first calls the criterion and its torch.nn losses skip their settled checks:
    # the same total, parts and gradients as a criterion that checks every call.
    torch.manual_seed(0)
    model, batch = ThreeHeads(), _batch()
    fast, checked = _criterion(), _criterion(check="always")
    _settled(fast, model(batch["x"]), batch)
    _settled(checked, model(batch["x"]), batch)
    a, b = fast(model(batch["x"]), batch), checked(model(batch["x"]), batch)
    torch.testing.assert_close(a.total, b.total, rtol=0, atol=0)
    assert a.log().keys() == b.log().keys()
    for key in ("cls", "reg", "l2"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    model.zero_grad()
    a.backward()
    grads = _grads(model)
    model.zero_grad()
    b.backward()
    for got, expected in zip(grads, _grads(model)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_past_the_first_checks_a_new_shape_is_checked_and_new_hooks_run() -> None:
    crit = lk.Criterion(
        {
            "reg": lk.Term("mse", input="p", target="y"),
            "cls": lk.Term("cross_entropy", input="logits", target="label", check="always"),
        }
    )
    outputs = {"p": torch.zeros(4), "logits": torch.randn(4, 3)}
    batch = {"y": torch.ones(4), "label": torch.tensor([0, 1, 2, 0])}
    _settled(crit, outputs, batch)
    # A shape that never passed: the contract looks again and names the term.
    with pytest.raises(lk.LossInputError, match=r"term 'reg': MSELoss \('mse'\): target has shape"):
        crit(outputs, {**batch, "y": torch.ones(4, 1)})
    # check="always" keeps checking values: probabilities passed as logits.
    probabilities = {**outputs, "logits": torch.full((4, 3), 1 / 3)}
    with pytest.raises(lk.LossInputError, match=r"term 'cls'.*like probabilities"):
        crit(probabilities, batch)
    # Hooks registered now, on a loss, on the criterion and on every module, all run.
    seen: list[str] = []
    handles = [
        crit.term("reg").loss.register_forward_hook(  # type: ignore[union-attr]
            lambda module, args, out: seen.append("loss")
        ),
        crit.register_forward_hook(lambda module, args, out: seen.append("criterion")),
        nn.modules.module.register_module_forward_pre_hook(
            lambda module, args: seen.append(type(module).__name__)
        ),
    ]
    try:
        res = crit(outputs, batch)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == ["Criterion", "MSELoss", "loss", "CrossEntropyLoss", "criterion"]
    torch.testing.assert_close(res["reg"], torch.tensor(1.0))
    seen.clear()
    crit(outputs, batch)
    assert seen == []


def test_past_the_first_checks_a_nan_is_flagged_by_key() -> None:
    torch.manual_seed(0)
    model, batch = ThreeHeads(), _batch()
    crit = _criterion()
    _settled(crit, model(batch["x"]), batch)
    out = model(batch["x"])
    out["value"] = out["value"].clone()
    out["value"][2] = float("nan")
    crit(out, batch)  # past the first calls: no host sync, flagged for the next check
    with pytest.raises(lk.NonFiniteLossError, match=r"term\(s\) 'reg' became non-finite") as info:
        crit.check_finite()
    assert "'cls'" not in str(info.value)
    assert "'l2'" not in str(info.value)


def test_a_deep_copy_runs_the_copys_hooks() -> None:
    # The steady state holds the hook registries of the criterion and its losses: a copy must
    # hold its own, so a hook on the copy runs and the original stays untouched.
    import copy

    crit = lk.Criterion({"reg": lk.Term(nn.L1Loss(), input="p", target="y")})
    outputs, batch = {"p": torch.zeros(4)}, {"y": torch.ones(4)}
    _settled(crit, outputs, batch)
    clone = copy.deepcopy(crit)
    seen: list[str] = []
    clone.term("reg").loss.register_forward_hook(  # type: ignore[union-attr]
        lambda module, args, out: seen.append("loss")
    )
    clone.register_forward_pre_hook(lambda module, args: seen.append("criterion"))
    torch.testing.assert_close(clone(outputs, batch).total, torch.tensor(1.0))
    assert seen == ["criterion", "loss"]
    crit(outputs, batch)
    assert seen == ["criterion", "loss"]


def test_changing_check_at_run_time() -> None:
    crit = lk.Criterion({"a": lk.Term("mse", input="p", target="y")}, nonfinite="skip")
    with pytest.raises(lk.ConfigError, match="nonfinite='skip' needs checking"):
        crit.check = "off"
    crit.nonfinite = "raise"
    outputs, batch = {"p": torch.zeros(4)}, {"y": torch.ones(4)}
    _settled(crit, outputs, batch)
    crit.check = "always"  # from now on every call is checked synchronously
    with pytest.raises(lk.NonFiniteLossError, match="'a' are non-finite"):
        crit({"p": torch.full((4,), float("nan"))}, batch)


def test_a_nonfinite_term_is_reported_at_the_step_the_log_records() -> None:
    """The log numbers the first optimizer step 1 (the Trainer's global_step after it); the
    criterion's error names the same number, so the message and `losskit lint` agree."""
    crit = lk.Criterion({"a": lk.Term(lambda x, y: (x / y).sum())}, check="always")
    x = torch.ones(3)
    crit(x, torch.ones(3))  # step 1
    crit.step()
    with pytest.raises(lk.NonFiniteLossError, match=r"'a' are non-finite at step 2:"):
        crit(x, torch.tensor([1.0, 0.0, 1.0]))  # 1 / 0
