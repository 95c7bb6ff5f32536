"""Checkpoints are data: loaded with ``weights_only=True``, refused with a clear error when
damaged, foreign or carrying code."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app
from losskit.engine._checkpoint import load_checkpoint
from losskit.errors import CheckpointError

runner = CliRunner()


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 8)
        self.cls = nn.Linear(8, 3)
        self.reg = nn.Linear(8, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(batch["x"]))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1)}


def _data() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x, label, y = torch.randn(24, 5, generator=g), torch.randint(0, 3, (24,), generator=g), None
    y = torch.randn(24, generator=g)
    return [{"x": x[i : i + 8], "label": label[i : i + 8], "y": y[i : i + 8]} for i in (0, 8, 16)]


def _trainer(run_dir: Path, balancer: str | dict[str, Any] = "sum") -> lk.engine.Trainer:
    torch.manual_seed(0)
    model = TwoHeads()
    criterion = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term(
                "mse", input="value", target="y", weight=lk.schedules.LinearWarmup(0.0, 1.0, 4)
            ),
        },
        balancer=lk.balancers.from_config(balancer, model),
    )
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=0.01)
    return lk.engine.Trainer(
        model,
        criterion,
        optimizer,
        schedulers=torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
        run_dir=run_dir,
        progress=False,
        seed=1,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    _trainer(folder).fit(_data(), _data(), epochs=2)
    return folder


# -- item 7: weights_only ------------------------------------------------------------------------
BALANCERS: list[str | dict[str, Any]] = [
    "sum",
    "uncertainty",
    {"name": "dwa", "every": 1},
    {"name": "upgrad", "shared": "trunk"},
]


@pytest.mark.parametrize("balancer", BALANCERS, ids=str)
def test_what_the_trainer_saves_loads_with_weights_only(
    tmp_path: Path, balancer: str | dict[str, Any]
) -> None:
    _trainer(tmp_path, balancer).fit(_data(), _data(), epochs=2)
    for name in ("last.pt", "best.pt"):
        torch.load(tmp_path / name, weights_only=True)
    resumed = _trainer(tmp_path, balancer)
    resumed.fit(_data(), _data(), epochs=3, resume=tmp_path / "last.pt")
    assert resumed.epoch == 3


def test_a_checkpoint_of_an_earlier_version_still_resumes(tmp_path: Path, run_dir: Path) -> None:
    import numpy as np

    state = torch.load(run_dir / "last.pt", weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()  # earlier versions kept numpy's array
    torch.save(state, tmp_path / "last.pt")
    resumed = _trainer(tmp_path)
    resumed.fit(_data(), epochs=3, resume=tmp_path / "last.pt")
    assert resumed.epoch == 3


def test_a_config_run_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    from importlib import resources

    from losskit.config import load_config
    from losskit.run import run

    cfg = load_config(resources.files("losskit").joinpath("demo.toml"))  # type: ignore[arg-type]
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"epochs": 1})})
    run(cfg, out=tmp_path, progress=False)
    torch.load(tmp_path / "last.pt", weights_only=True)


class _Mkdir:
    """Unpickling this calls ``os.mkdir(path)``: a visible side effect of running code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("payload", ["callable", "reduce"])
def test_a_checkpoint_carrying_code_is_refused_and_runs_nothing(
    tmp_path: Path, run_dir: Path, payload: str
) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "last.pt"
    state: dict[str, Any] = torch.load(run_dir / "last.pt", weights_only=True)
    state["x"] = os.system if payload == "callable" else _Mkdir(marker)
    torch.save(state, evil)
    with pytest.raises(CheckpointError, match=str(evil)) as caught:
        load_checkpoint(evil)
    assert "not plain data" in str(caught.value)
    with pytest.raises(CheckpointError, match=str(evil)):
        _trainer(tmp_path / "fresh").fit(_data(), epochs=3, resume=evil)
    assert not marker.exists()


def test_recommend_reads_targets_as_data(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    targets = tmp_path / "y.pt"
    torch.save({"y": _Mkdir(marker)}, targets)
    result = runner.invoke(app, ["recommend", "--task", "multiclass", "--targets", str(targets)])
    assert result.exit_code == 2, result.output
    assert str(targets) in result.stderr
    assert not marker.exists()


# -- item 4: damaged checkpoints ------------------------------------------------------------------
def _damage(kind: str, good: Path, path: Path) -> None:
    data = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "pickle":  # a plain pickle, not a torch file
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "foreign":
        torch.save({"weights": torch.ones(3)}, path)
    elif kind == "tensor":
        torch.save(torch.ones(3), path)
    elif kind == "old_version":
        state = torch.load(good, weights_only=True)
        state["version"] = 99
        torch.save(state, path)


DAMAGE = {
    "empty": "empty",
    "truncated": "truncated",
    "random": "not a checkpoint",
    "pickle": "not a checkpoint",
    "foreign": "not a losskit checkpoint",
    "tensor": "not a losskit checkpoint",
    "old_version": "version",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_checkpoint_names_the_file_the_fault_and_the_way_out(
    tmp_path: Path, run_dir: Path, kind: str
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "best.pt").write_bytes((run_dir / "best.pt").read_bytes())
    _damage(kind, run_dir / "last.pt", folder / "last.pt")
    with pytest.raises(CheckpointError) as caught:
        _trainer(folder).fit(_data(), epochs=3, resume=folder / "last.pt")
    message = str(caught.value)
    assert str(folder / "last.pt") in message
    assert DAMAGE[kind] in message
    assert "best.pt" in message  # the way out: a checkpoint beside it
    assert "\n" not in message


def test_without_best_pt_the_advice_is_to_start_afresh(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="start afresh"):
        _trainer(tmp_path).fit(_data(), epochs=1, resume=tmp_path / "last.pt")


_CONFIG = (
    '[run]\nepochs = 1\n[model]\nsource = "digits_mlp"\ninput = "pixels"\n'
    '[data]\nsource = "digits"\nbatch_size = 512\n'
    '[terms.cls]\nloss = "cross_entropy"\ninput = "logits"\ntarget = "label"\n'
    "[optimizer]\nlr = 0.01\n"
)


@pytest.fixture(scope="module")
def config_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config file and the run folder ``losskit run`` wrote for it."""
    folder = tmp_path_factory.mktemp("config_run")
    config = folder / "run.toml"
    config.write_text(_CONFIG)
    out = folder / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return config, out


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "foreign"])
def test_losskit_run_resume_reports_a_damaged_checkpoint_on_one_line(
    tmp_path: Path, config_run: tuple[Path, Path], kind: str
) -> None:
    config, done = config_run
    out = tmp_path / "out"
    shutil.copytree(done, out)
    _damage(kind, done / "last.pt", out / "last.pt")
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert str(out / "last.pt") in lines[0]
    assert DAMAGE[kind] in lines[0]
    assert "best.pt" in lines[0]
    assert "--resume" in lines[0]
