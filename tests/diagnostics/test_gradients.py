"""Per-key gradient health in a hand-written loop, in the Trainer, in the log and the report."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import losskit as lk
from losskit.diagnostics import key_gradients
from losskit.report import gradient_norm_charts
from losskit.report._plots import conflict_history, conflict_matrix
from losskit.tracking import Tracker, load, sinks


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 8)
        self.cls = nn.Linear(8, 3)
        self.reg = nn.Linear(8, 1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        h = torch.tanh(self.trunk(batch["x"]))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1)}


def _data(n: int, batch: int, seed: int = 0) -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    label = torch.randint(0, 3, (n,), generator=g)
    y = torch.randn(n, generator=g)
    return [
        {"x": x[i : i + batch], "label": label[i : i + batch], "y": y[i : i + batch]}
        for i in range(0, n, batch)
    ]


def _criterion() -> lk.Criterion:
    return lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("mse", input="value", target="y", weight=0.5),
        }
    )


def _hand(model: TwoHeads, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The figures computed by hand: weighted norms on the trunk and the cosine there."""
    out = model(batch)
    parts = {
        "cls": F.cross_entropy(out["logits"], batch["label"]),
        "reg": 0.5 * F.mse_loss(out["value"], batch["y"]),
    }
    trunk = list(model.trunk.parameters())
    grads = {
        k: torch.cat([g.flatten() for g in torch.autograd.grad(v, trunk, retain_graph=True)])
        for k, v in parts.items()
    }
    return {
        "grad_norm/cls": grads["cls"].norm(),
        "grad_norm/reg": grads["reg"].norm(),
        "cos/cls/reg": F.cosine_similarity(grads["cls"], grads["reg"], dim=0),
    }


def test_gradient_health_matches_a_hand_computation_and_keeps_the_graph() -> None:
    torch.manual_seed(0)
    model, crit = TwoHeads(), _criterion()
    batch = _data(16, 16)[0]
    res = crit(model(batch), batch)
    health = lk.diagnostics.gradient_health(model, res)
    expected = _hand(model, batch)
    assert list(health) == list(expected)
    for name, value in health.items():
        assert value.shape == ()
        assert not value.requires_grad
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-7)
    # The graph is still there, and the ordinary gradient is unchanged.
    res.backward()
    reference = copy.deepcopy(model)
    reference.zero_grad()
    out = reference(batch)
    (
        F.cross_entropy(out["logits"], batch["label"]) + 0.5 * F.mse_loss(out["value"], batch["y"])
    ).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_shared_parameters_can_be_named() -> None:
    torch.manual_seed(0)
    model, crit = TwoHeads(), _criterion()
    batch = _data(16, 16)[0]
    auto = lk.diagnostics.gradient_health(model, crit(model(batch), batch))
    named = lk.diagnostics.gradient_health(model, crit(model(batch), batch), shared=model.trunk)
    for name in auto:
        torch.testing.assert_close(named[name], auto[name])
    # Named by hand, a head only one key reaches: the other key's gradient there is zero.
    head = lk.diagnostics.gradient_health(model, crit(model(batch), batch), shared=model.cls)
    assert head["grad_norm/reg"].item() == 0.0
    assert head["cos/cls/reg"].item() == 0.0


def test_key_gradients_mark_what_a_part_does_not_reach() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    v = torch.tensor([3.0], requires_grad=True)
    grads = key_gradients([(w * w).sum(), (v * 4).sum(), torch.tensor(1.0)], [w, v])
    torch.testing.assert_close(grads[0][0], torch.tensor([2.0, 4.0]))
    assert grads[0][1] is None
    assert grads[1][0] is None
    assert grads[2] == (None, None)
    torch.testing.assert_close(grads[1][1], torch.tensor([4.0]))


def test_a_hand_written_loop_logs_them_and_the_report_draws_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, crit = TwoHeads(), _criterion()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    logged: dict[int, dict[str, float]] = {}
    with Tracker([sinks.JSONL(tmp_path)], every=4, criterion=crit) as tracker:
        for step, batch in enumerate(_data(160, 16), start=1):
            res = crit(model(batch), batch)
            health = lk.diagnostics.gradient_health(model, res) if step % 3 == 1 else None
            if health is not None:
                logged[step] = {k: v.item() for k, v in health.items()}
            opt.zero_grad()
            res.backward()
            opt.step()
            tracker.update(res, batch_size=16, extra=health)
    history = load(tmp_path)
    series = history.series("cos/cls/reg", "train", "step")
    assert series.steps == tuple(logged)
    torch.testing.assert_close(series.values, tuple(v["cos/cls/reg"] for v in logged.values()))
    titles = [
        p.title
        for p in (
            *gradient_norm_charts(history),
            *conflict_matrix(history),
            *conflict_history(history),
        )
    ]
    assert {"gradient norms", "conflict matrix", "conflicts over time"} <= set(titles)
    (plot,) = conflict_history(history)
    image = plot.figure.axes[0].get_images()[0].get_array()
    torch.testing.assert_close(
        torch.as_tensor(image.tolist()), torch.tensor([[v["cos/cls/reg"] for v in logged.values()]])
    )


def test_conflicts_over_time_need_two_steps(tmp_path: Path) -> None:
    with Tracker([sinks.JSONL(tmp_path)]) as tracker:
        tracker.update({"loss": torch.tensor(1.0), "cos/a/b": torch.tensor(-0.5)})
    assert conflict_history(load(tmp_path)) == []


def _train(diagnostics_every: int | None, run_dir: Path | None, **kwargs: object) -> TwoHeads:
    torch.manual_seed(0)
    model = TwoHeads()
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        progress=False,
        run_dir=run_dir,
        diagnostics_every=diagnostics_every,
        **kwargs,  # type: ignore[arg-type]
    )
    trainer.fit(_data(112, 16), epochs=1)
    return model


def test_trainer_logs_diagnostics_every_n_steps_without_changing_training(tmp_path: Path) -> None:
    model = _train(3, tmp_path)
    history = load(tmp_path)
    for name in ("grad_norm/cls", "grad_norm/reg", "cos/cls/reg"):
        series = history.series(name, "train", "step")
        assert series.steps == (1, 4, 7)  # optimizer steps 0, 3 and 6, logged after the step
        low = -1.0 if name.startswith("cos/") else 1e-6
        assert all(low <= v <= 1.0 for v in series.values), series
    plain = _train(None, None)
    for p, q in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q)


def test_trainer_diagnostics_with_accumulation_use_the_first_micro_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    expected = _hand(copy.deepcopy(model), _data(112, 16)[0])
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        progress=False,
        run_dir=tmp_path,
        accumulate=2,
        diagnostics_every=10,
    )
    trainer.fit(_data(112, 16), epochs=1)
    history = load(tmp_path)
    for name, value in expected.items():
        series = history.series(name, "train", "step")
        assert series.steps == (1,)
        torch.testing.assert_close(series.values[0], value.item(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_trainer_refuses_a_bad_interval(bad: object) -> None:
    model = TwoHeads()
    with pytest.raises(lk.ConfigError, match="diagnostics_every"):
        lk.engine.Trainer(
            model, _criterion(), torch.optim.SGD(model.parameters(), lr=0.1), diagnostics_every=bad
        )  # type: ignore[arg-type]


def test_pairs_follow_the_key_order() -> None:
    torch.manual_seed(0)
    trunk = nn.Linear(3, 4)
    crit = lk.Criterion(
        {k: lk.Term(lambda out, b, i=i: out[:, i].pow(2).mean()) for i, k in enumerate("xyz")}
    )
    health = lk.diagnostics.gradient_health(trunk, crit(trunk(torch.randn(8, 3)), None))
    assert [k for k in health if k.startswith("cos/")] == [
        f"cos/{a}/{b}" for a, b in itertools.combinations("xyz", 2)
    ]


def test_a_gradient_balancer_trains_the_same_with_diagnostics(tmp_path: Path) -> None:
    def train(every: int | None) -> TwoHeads:
        torch.manual_seed(0)
        model = TwoHeads()
        crit = lk.Criterion(
            {
                "cls": lk.Term("cross_entropy", input="logits", target="label"),
                "reg": lk.Term("mse", input="value", target="y"),
            },
            balancer={"name": "mgda", "shared": model.trunk},
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = lk.engine.Trainer(
            model, crit, opt, progress=False, run_dir=tmp_path / str(every), diagnostics_every=every
        )
        trainer.fit(_data(48, 16), epochs=1)
        return model

    checked, plain = train(1), train(None)
    for p, q in zip(checked.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q)
    assert load(tmp_path / "1").series("cos/cls/reg", "train", "step").steps == (1, 2, 3)
