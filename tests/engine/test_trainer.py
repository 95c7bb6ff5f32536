"""The Trainer: accumulation, resume, AMP, routing, checkpoints, early stopping."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit as lk
from losskit.engine._checkpoint import load_checkpoint


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 8)
        self.cls = nn.Linear(8, 3)
        self.reg = nn.Linear(8, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(batch["x"]))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1)}


def _data(n: int, batch: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
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


def _hand_loss(model: TwoHeads, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(batch)
    return F.cross_entropy(out["logits"], batch["label"]) + 0.5 * F.mse_loss(
        out["value"], batch["y"]
    )


def test_accumulation_equals_the_large_batch_gradient_with_a_short_last_window() -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    reference = copy.deepcopy(model)
    micro = _data(26, 4)  # sizes 4,4,4,4,4,4,2: windows of 3 -> (4,4,4), (4,4,4), (2,)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        accumulate=3,
        progress=False,
    )
    trainer.fit(micro, epochs=1)
    assert trainer.global_step == 3

    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for start, stop in ((0, 12), (12, 24), (24, 26)):
        big = {k: torch.cat([b[k] for b in micro])[start:stop] for k in micro[0]}
        opt.zero_grad()
        _hand_loss(reference, big).backward()
        opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)


def test_logged_train_means_are_weighted_by_batch_size() -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    before = copy.deepcopy(model)
    data = _data(10, 4)  # sizes 4, 4, 2
    trainer = lk.engine.Trainer(
        model, _criterion(), torch.optim.SGD(model.parameters(), lr=0.0), progress=False
    )
    summary = trainer.fit(data, epochs=1)
    with torch.no_grad():
        values = [float(_hand_loss(before, b)) for b in data]
    expected = (4 * values[0] + 4 * values[1] + 2 * values[2]) / 10
    assert summary.train["loss"] == pytest.approx(expected, rel=1e-5)


def _fit(tmp: Path, epochs: int, resume: Path | None = None) -> tuple[lk.engine.Trainer, Any]:
    torch.manual_seed(1)
    model = TwoHeads()
    data = torch.utils.data.DataLoader(
        [{k: v[i] for k, v in b.items()} for b in _data(40, 40) for i in range(40)],
        batch_size=8,
        shuffle=True,
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term(
                "mse",
                input="value",
                target="y",
                weight=lk.schedules.LinearWarmup(0.0, 1.0, steps=12),
            ),
        }
    )
    trainer = lk.engine.Trainer(
        model,
        crit,
        opt,
        schedulers=torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        run_dir=tmp,
        progress=False,
        seed=3,
    )
    summary = trainer.fit(data, data, epochs=epochs, resume=resume)
    return trainer, summary


def test_resume_continues_exactly(tmp_path: Path) -> None:
    whole, whole_summary = _fit(tmp_path / "whole", epochs=4)
    _fit(tmp_path / "part", epochs=2)
    resumed, resumed_summary = _fit(tmp_path / "part", epochs=4, resume=tmp_path / "part/last.pt")
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)
    assert resumed.global_step == whole.global_step
    assert resumed.criterion.step_count == whole.criterion.step_count
    # Every logged mean but the wall-clock ones (speed/step_s, speed/samples_per_s) repeats.
    timed = {k for k in whole_summary.train if k.startswith("speed/")}
    assert timed == {"speed/step_s", "speed/samples_per_s"}
    assert {k: v for k, v in resumed_summary.train.items() if k not in timed} == pytest.approx(
        {k: v for k, v in whole_summary.train.items() if k not in timed}
    )
    assert resumed_summary.val == pytest.approx(whole_summary.val)
    whole_log = lk.tracking.load(tmp_path / "whole")
    part_log = lk.tracking.load(tmp_path / "part")
    for key in ("loss", "loss/cls", "loss/reg"):
        a = whole_log.series(key, "val", kind="epoch")
        b = part_log.series(key, "val", kind="epoch")
        assert list(a.steps) == list(b.steps)
        assert list(a.values) == pytest.approx(list(b.values))


def test_bf16_autocast_on_cpu() -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    seen: list[torch.dtype] = []

    def forward(m: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        out = m(batch)
        seen.append(out["logits"].dtype)
        return out

    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=forward,
        amp="bf16",
        progress=False,
    )
    summary = trainer.fit(_data(16, 8), _data(8, 8, seed=1), epochs=2)
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(torch.tensor(summary.val["loss"]))


class TinyGAN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(2, 3)
        self.discriminator = nn.Linear(3, 1)
        self.disc_only = nn.Parameter(torch.zeros(1))  # reached by the disc keys alone


def test_routing_steps_each_optimizer_on_its_own_keys_only() -> None:
    torch.manual_seed(0)
    gan = TinyGAN()
    g_opt = torch.optim.SGD(gan.generator.parameters(), lr=0.1)
    d_opt = torch.optim.SGD([*gan.discriminator.parameters(), gan.disc_only], lr=0.1)

    def d_forward(m: TinyGAN, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fake = m.generator(batch["z"]).detach()
        return {"real": m.discriminator(batch["x"]) + m.disc_only, "fake": m.discriminator(fake)}

    def g_forward(m: TinyGAN, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"fake": m.discriminator(m.generator(batch["z"]))}

    crit = lk.Criterion(
        {
            "adv_d": lk.Term(
                lambda o, b: F.softplus(-o["real"]).mean() + F.softplus(o["fake"]).mean()
            ),
            "adv_g": lk.Term(lambda o, b: F.softplus(-o["fake"]).mean()),
        }
    )
    trainer = lk.engine.Trainer(
        gan,
        crit,
        {"disc": d_opt, "gen": g_opt},
        routes={"disc": ["adv_d"], "gen": ["adv_g"]},
        forward={"disc": d_forward, "gen": g_forward},
        progress=False,
    )
    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(8, 3, generator=g), "z": torch.randn(8, 2, generator=g)}]
    d_before = [p.detach().clone() for p in gan.discriminator.parameters()]
    g_before = [p.detach().clone() for p in gan.generator.parameters()]

    # The discriminator steps first, on adv_d only; the generator then steps against the
    # updated discriminator, on adv_g only.
    ref = copy.deepcopy(gan)
    r_d = torch.optim.SGD([*ref.discriminator.parameters(), ref.disc_only], lr=0.1)
    r_g = torch.optim.SGD(ref.generator.parameters(), lr=0.1)
    batch = data[0]
    crit_ref = {k: crit.term(k).loss for k in ("adv_d", "adv_g")}
    r_d.zero_grad()
    crit_ref["adv_d"](d_forward(ref, batch), batch).backward()
    r_d.step()
    r_g.zero_grad()
    crit_ref["adv_g"](g_forward(ref, batch), batch).backward()
    r_g.step()

    trainer.fit(data, epochs=1)
    for a, b in zip(gan.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    assert gan.disc_only.item() != 0.0
    assert any(not torch.equal(a, b) for a, b in zip(gan.discriminator.parameters(), d_before))
    assert any(not torch.equal(a, b) for a, b in zip(gan.generator.parameters(), g_before))
    for p in (*gan.generator.parameters(), *gan.discriminator.parameters(), gan.disc_only):
        assert p.grad is None  # zeroed after every step: nothing leaks to the next window


def test_a_parameter_reached_only_by_disc_keys_is_never_stepped_by_gen() -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    cls_opt = torch.optim.SGD([*model.trunk.parameters(), *model.cls.parameters()], lr=0.1)
    reg_opt = torch.optim.SGD([*model.reg.parameters()], lr=0.1)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        {"cls": cls_opt, "reg": reg_opt},
        routes={"cls": ["cls"], "reg": ["reg"]},
        progress=False,
    )
    trunk_before = [p.detach().clone() for p in model.trunk.parameters()]
    only_cls = copy.deepcopy(model)
    opt = torch.optim.SGD([*only_cls.trunk.parameters(), *only_cls.cls.parameters()], lr=0.1)
    batch = _data(8, 8)[0]
    opt.zero_grad()
    out = only_cls(batch)
    F.cross_entropy(out["logits"], batch["label"]).backward()
    opt.step()
    trainer.fit([batch], epochs=1)
    # The trunk belongs to "cls": the regression loss's gradient never reaches its step.
    for a, b in zip(model.trunk.parameters(), only_cls.trunk.parameters()):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(model.trunk.parameters(), trunk_before))


def test_best_checkpoint_and_early_stopping(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    data = _data(16, 8)
    crit = _criterion()
    values = iter([5.0, 3.0, 4.0, 3.5, 3.2, 1.0])

    def score(outputs: Any, batch: Any) -> torch.Tensor:
        return torch.tensor(next(values))

    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.SGD(model.parameters(), lr=0.01),
        metrics={"score": score},
        monitor="val/metric/score",
        mode="min",
        patience=3,
        run_dir=tmp_path,
        progress=False,
    )
    summary = trainer.fit(data, [data[0]], epochs=10)
    assert summary.best_epoch == 1
    assert summary.best_value == 3.0
    assert summary.stopped_early
    assert summary.epochs == 5  # epochs 2, 3, 4 did not improve on epoch 1
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 2
    assert best["best_value"] == 3.0
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 5
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizers": "two"}, "several optimizers"),
        ({"routes": {"a": ["cls"], "b": ["nope"]}}, "names loss keys \\['nope'\\]"),
        ({"routes": {"a": ["cls"]}}, "routes must name every optimizer"),
        ({"accumulate": 0}, "accumulate must be a positive integer"),
        ({"amp": "fp8"}, "amp must be"),
        ({"monitor": "loss"}, "split/name"),
    ],
)
def test_trainer_configuration_errors(kwargs: dict[str, Any], match: str) -> None:
    model = TwoHeads()
    optimizers: Any = torch.optim.SGD(model.parameters(), lr=0.1)
    if kwargs.pop("optimizers", None) == "two" or "routes" in kwargs:
        optimizers = {"a": optimizers, "b": torch.optim.SGD(model.parameters(), lr=0.1)}
    with pytest.raises(lk.ConfigError, match=match):
        lk.engine.Trainer(model, _criterion(), optimizers, **kwargs)


def _famo_criterion() -> lk.Criterion:
    return lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("mse", input="value", target="y", weight=0.5),
        },
        balancer="famo",
    )


def test_the_trainer_teaches_famo_as_the_hand_written_loop_does() -> None:
    """FAMO learns from the terms recomputed after each step: the Trainer calls its update, so
    its logits and the model end where the documented hand loop ends, with no warning."""
    torch.manual_seed(0)
    model = TwoHeads()
    reference = copy.deepcopy(model)
    data = _data(48, 8)
    crit = _famo_criterion()
    trainer = lk.engine.Trainer(
        model, crit, torch.optim.SGD(model.parameters(), lr=0.1), progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", lk.errors.LossKitWarning)
        trainer.fit(data, epochs=2)

    hand = _famo_criterion()
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(2):
        for batch in data:
            hand(reference(batch), batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                hand.balancer.update(hand(reference(batch), batch))
            hand.step()
    learned = crit.balancer.state_dict()["scalarizer.logits"]
    assert learned.abs().min() > 0  # the logits moved from 0
    torch.testing.assert_close(learned, hand.balancer.state_dict()["scalarizer.logits"])
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs)
