"""What a Trainer run logs and where: learning rates, the gradient norm before clipping, step
time and throughput, validation metrics, every sink with the same keys, and the run folder's
config.json, summary.json and report.html."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import losskit as lk
from losskit.run import run
from losskit.tracking import load, sinks


def _data(n: int, batch: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return [{"x": x[i : i + batch], "y": y[i : i + batch]} for i in range(0, n, batch)]


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor]:
    return (model(batch["x"]).squeeze(-1),)


def _criterion() -> lk.Criterion:
    return lk.Criterion({"mse": lk.Term("mse", input=0, target="y")})


def _abs_error(outputs: tuple[torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return (outputs[0] - batch["y"]).abs().mean()


def test_lr_of_every_group_and_the_norm_before_clipping_match_a_hand_loop(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    reference = copy.deepcopy(model)
    train = _data(24, 4)

    def optimizer(m: nn.Module) -> torch.optim.SGD:
        # Two param groups with their own learning rates, halved every step.
        return torch.optim.SGD([{"params": [m.weight]}, {"params": [m.bias], "lr": 0.05}], lr=0.1)

    opt = optimizer(model)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        opt,
        forward=_forward,
        schedulers=torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        scheduler_interval="step",
        clip_grad_norm=0.5,
        progress=False,
        run_dir=tmp_path,
        report=False,
    )
    trainer.fit(train, epochs=1)

    ref_opt = optimizer(reference)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=1, gamma=0.5)
    norms, lrs = [], []
    for batch in train:
        lrs.append([g["lr"] for g in ref_opt.param_groups])
        F.mse_loss(reference(batch["x"]).squeeze(-1), batch["y"]).backward()
        norms.append(float(nn.utils.clip_grad_norm_(reference.parameters(), 0.5)))
        ref_opt.step()
        ref_opt.zero_grad()
        ref_sched.step()

    history = load(tmp_path)
    assert history.series("lr/default/0").values == pytest.approx([lr[0] for lr in lrs])
    assert history.series("lr/default/1").values == pytest.approx([lr[1] for lr in lrs])
    assert "lr/default" not in history.keys("train")  # several groups: one key per group
    logged = history.series("total_grad_norm/default").values
    assert_close(torch.tensor(logged), torch.tensor(norms), rtol=1e-5, atol=1e-6)
    assert max(norms) > 0.5  # clipping was active, and the logged norm is the one before it
    for a, b in zip(model.parameters(), reference.parameters()):
        assert_close(a, b)


def test_one_group_per_optimizer_logs_lr_by_optimizer_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    crit = lk.Criterion(
        {"a": lk.Term("mse", input=0, target="y"), "b": lk.Term("l1", input=0, target="y")}
    )
    trainer = lk.engine.Trainer(
        model,
        crit,
        {
            "first": torch.optim.SGD(model[0].parameters(), lr=0.01),
            "second": torch.optim.Adam(model[1].parameters(), lr=0.002),
        },
        routes={"first": ["a"], "second": ["b"]},
        forward=_forward,
        progress=False,
        run_dir=tmp_path,
        report=False,
    )
    trainer.fit(_data(12, 4), epochs=1)
    history = load(tmp_path)
    assert history.series("lr/first").values == (0.01, 0.01, 0.01)
    assert history.series("lr/second").values == (0.002, 0.002, 0.002)
    assert not [k for k in history.keys("train") if k.startswith("total_grad_norm/")]  # no clipping


def test_step_time_and_samples_per_second(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=_forward,
        accumulate=2,
        progress=False,
        run_dir=tmp_path,
        report=False,
    )
    trainer.fit(_data(20, 4), epochs=1)  # windows of 8, 8 and 4 samples
    history = load(tmp_path)
    seconds = history.series("speed/step_s")
    rate = history.series("speed/samples_per_s")
    assert len(seconds.values) == 3
    assert all(0 < s < 60 for s in seconds.values)
    samples = [r * s for r, s in zip(rate.values, seconds.values)]
    assert samples == pytest.approx([8.0, 8.0, 4.0])


def test_every_sink_gets_the_same_keys_and_validation_metrics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    board, table = sinks.TensorBoard(tmp_path), sinks.CSV(tmp_path)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=_forward,
        metrics={"abs_error": _abs_error},
        clip_grad_norm=10.0,
        progress=False,
        run_dir=tmp_path,
        sinks=[board, table],
        report=False,
    )
    trainer.fit(_data(16, 4), _data(8, 4, seed=1), epochs=2)
    history = load(tmp_path)
    assert set(history.keys("val")) == {"loss", "loss/mse", "weight/mse", "metric/abs_error"}
    expected_train = {
        "loss", "loss/mse", "weight/mse", "lr/default", "total_grad_norm/default",
        "speed/step_s", "speed/samples_per_s",
    }  # fmt: skip
    assert set(history.keys("train")) == expected_train
    events = EventAccumulator(str(board.path), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {f"train/{k}" for k in expected_train} | {f"val/{k}" for k in history.keys("val")}
    expected |= {f"epoch/{tag}" for tag in expected}
    assert tags == expected
    # Validation sits at the step the training reached, beside the training loss.
    val = history.series("metric/abs_error", "val", kind="interval")
    board_val = [(e.step, e.value) for e in events.Scalars("val/metric/abs_error")]
    assert [s for s, _ in board_val] == list(val.steps) == [4, 8]
    assert_close([v for _, v in board_val], list(val.values))
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(header[6:]) == expected_train | set(history.keys("val"))


def test_run_dir_holds_what_losskit_run_writes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=_forward,
        metrics={"abs_error": _abs_error},
        progress=False,
        run_dir=tmp_path / "mine",
    )
    fit = trainer.fit(_data(16, 4), _data(8, 4, seed=1), epochs=2)
    folder = tmp_path / "mine"
    assert fit.report == folder / "report.html"
    assert {p.name for p in folder.iterdir()} >= {
        "config.json", "summary.json", "report.html", "metrics.jsonl", "last.pt", "best.pt",
    }  # fmt: skip
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == trainer.summary
    assert summary["name"] == "mine"
    assert (summary["epochs"], summary["steps"], summary["monitor"]) == (2, 8, "val/loss")
    assert summary["final"]["val"]["metric/abs_error"] == pytest.approx(fit.val["metric/abs_error"])
    assert summary["val_abs_error"] == pytest.approx(fit.val["metric/abs_error"])
    config = json.loads((folder / "config.json").read_text())
    assert config["optimizers"]["default"]["name"] == "SGD"
    assert config["optimizers"]["default"]["lr"] == 0.1
    assert config["trainer"]["metrics"] == ["abs_error"]
    page = (folder / "report.html").read_text()
    assert "metric/abs_error" in page  # the validation metric in the report's summary
    assert "SGD" in page  # and the trainer's config.json in its configuration section


DIGITS = {
    "run": {"epochs": 1, "name": "logged"},
    "model": {"source": "torch.nn:Linear", "options": {"in_features": 64, "out_features": 10}},
    "model_input": None,
    "data": {"source": "digits", "batch_size": 256},
    "terms": {"cls": {"loss": "cross_entropy", "target": "label"}},
    "optimizer": {"name": "sgd", "lr": 0.1},
}


def _digits(**sections: object) -> dict[str, object]:
    cfg = {k: v for k, v in DIGITS.items() if k != "model_input"}
    cfg["model"] = {**DIGITS["model"], "input": "pixels"}  # type: ignore[dict-item]
    cfg["trainer"] = {"monitor": "train/loss"}
    return {**cfg, **sections}


def test_logging_section_builds_its_sinks(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is optional")
    cfg = lk.config.load_config(
        _digits(
            logging={
                "console": False,
                "jsonl": {"fsync_every": 0},
                "csv": {"filename": "table.csv"},
                "tensorboard": True,
            }
        )
    )
    assert cfg.logging == {"console": False, "jsonl": {"fsync_every": 0},
                           "csv": {"filename": "table.csv"}, "tensorboard": True}  # fmt: skip
    result = run(cfg, out=tmp_path, report=False)
    history = load(tmp_path)
    # One JSONL log, the [logging.jsonl] one: the trainer did not add a second writer.
    assert [(r.kind, r.split) for r in history.records] == [
        ("interval", "train"), ("interval", "val"), ("epoch", "train"), ("epoch", "val"),
    ]  # fmt: skip
    rows = (tmp_path / "table.csv").read_text().splitlines()
    # The header, one row per training step, the validation, an epoch row per split.
    assert len(rows) == 1 + len(history.series("loss").values) + 1 + 2
    events = list((tmp_path / "tensorboard").iterdir())
    assert [e.name[:10] for e in events] == ["events.out"]
    assert json.loads((tmp_path / "config.json").read_text())["logging"]["tensorboard"] is True
    assert result.summary == json.loads((tmp_path / "summary.json").read_text())
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("logging", "message"),
    [
        ({"tensorbord": True}, r"logging\.tensorbord: unknown sink 'tensorbord'.*tensorboard"),
        ({"csv": {"file": "x.csv"}}, r"logging\.csv: unknown field 'file'.*filename"),
        ({"csv": {"run_dir": "x"}}, r"logging\.csv: field 'run_dir' is not set here"),
        ({"jsonl": False}, r"logging\.jsonl: the JSONL log is the run's source of truth"),
        ({"jsonl": {"fsync_every": "often"}}, r"logging\.jsonl\.fsync_every: .*'often'"),
    ],
)
def test_logging_section_errors_name_the_sink(logging: dict[str, object], message: str) -> None:
    with pytest.raises(lk.errors.ConfigError, match=message):
        lk.config.load_config(_digits(logging=logging))


def test_a_sink_failing_in_a_fit_warns_once_and_the_fit_ends(tmp_path: Path) -> None:
    class Full:
        def write(self, record: object) -> None:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    trainer = lk.engine.Trainer(
        model,
        _criterion(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=_forward,
        progress=False,
        run_dir=tmp_path,
        sinks=[Full()],
        log_every=1,
        report=False,
    )
    with pytest.warns(lk.errors.LossKitWarning, match="failed to write") as caught:
        fit = trainer.fit(_data(16, 4), epochs=2)
    assert len(caught) == 1
    assert fit.steps == 8
    assert len(load(tmp_path).series("loss").values) == 8
    assert math.isfinite(fit.train["loss"])


def test_sinks_must_be_sinks() -> None:
    model = nn.Linear(3, 1)
    with pytest.raises(lk.errors.ConfigError, match=r"sinks: 'board' is not a sink"):
        lk.engine.Trainer(
            model, _criterion(), torch.optim.SGD(model.parameters(), lr=0.1), sinks=["board"]
        )
