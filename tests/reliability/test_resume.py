"""A resumed run ends as the run never interrupted (shuffled data included), and resuming a
finished run changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app
from losskit.tracking import load

KILLER = Path(__file__).with_name("killed_run.py")
runner = CliRunner()

# 1437 training digits in batches of 512: 3 optimizer steps per epoch; shuffled, with dropout.
_CONFIG = """
[run]
name = "tiny"
seed = 3
epochs = {epochs}
threads = 1
[model]
source = "digits_mlp"
input = "pixels"
options = {{ hidden = 16, bottleneck = 8, dropout = 0.2 }}
[data]
source = "digits"
batch_size = 512
shuffle = true
[terms.cls]
loss = "cross_entropy"
input = "logits"
target = "label"
[terms.recon]
loss = "mse"
input = "recon"
target = "pixels"
[optimizer]
name = "adamw"
lr = 0.01
[trainer]
log_every = 1
"""


def _config(folder: Path, epochs: int = 3) -> Path:
    path = folder / f"tiny{epochs}.toml"
    path.write_text(_CONFIG.format(epochs=epochs))
    return path


def _killed(config: Path, out: Path, step: int) -> None:
    """``losskit run CONFIG --out OUT`` SIGKILLed right after optimizer step ``step``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, str(KILLER), str(step), "run", str(config), "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


def _cli(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def _timeless(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values but the wall-clock ones (``speed/step_s``, ``speed/samples_per_s``)."""
    return {k: v for k, v in values.items() if not k.startswith("speed/")}


def _logged(run_dir: Path) -> list[tuple[Any, ...]]:
    """Every logged value of a run, without wall-clock times."""
    return [
        (r.kind, r.split, r.step, r.epoch, _timeless(r.values), r.steps, _timeless(r.points))
        for r in load(run_dir).records
    ]


def _assert_same_state(a: Path, b: Path) -> None:
    left = torch.load(a, weights_only=True)
    right = torch.load(b, weights_only=True)
    assert (left["epoch"], left["global_step"]) == (right["epoch"], right["global_step"])
    for name, tensor in left["model"].items():
        assert torch.equal(tensor, right["model"][name]), name
    opt_left, opt_right = left["optimizers"]["default"], right["optimizers"]["default"]
    for index, state in opt_left["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_right["state"][index][key]), (index, key)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run never interrupted."""
    folder = tmp_path_factory.mktemp("whole")
    _cli("run", str(_config(folder)), "--out", str(folder / "out"))
    return folder / "out"


@pytest.mark.parametrize("step", [5, 6], ids=["mid-epoch", "at-epoch-end"])
def test_losskit_run_killed_and_resumed_equals_the_whole_run(
    tmp_path: Path, whole: Path, step: int
) -> None:
    config, out = _config(tmp_path), tmp_path / "out"
    _killed(config, out, step)
    assert (out / "last.pt").is_file()  # epoch 0's checkpoint at least
    _cli("run", str(config), "--out", str(out), "--resume")
    _assert_same_state(out / "last.pt", whole / "last.pt")
    _assert_same_state(out / "best.pt", whole / "best.pt")
    assert _logged(out) == _logged(whole)


def _dicts(n: int = 40) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    return [{"x": x[i], "y": x[i].sum() + 0.1 * torch.randn((), generator=g)} for i in range(n)]


class _CrashError(Exception):
    pass


def _trainer(run_dir: Path, crash_at: int | None = None) -> lk.engine.Trainer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    criterion = lk.Criterion({"mse": lk.Term("mse", input=0, target="y")})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    trainer = lk.engine.Trainer(
        model,
        criterion,
        optimizer,
        forward=lambda m, b: (m(b["x"]).squeeze(-1),),
        run_dir=run_dir,
        progress=False,
        seed=2,
        log_every=1,
    )
    if crash_at is not None:

        def crash(*_: Any) -> None:
            if trainer.global_step + 1 == crash_at:
                raise _CrashError

        optimizer.register_step_post_hook(crash)
    return trainer


@pytest.mark.parametrize("explicit_generator", [True, False])
def test_fit_resumed_with_a_shuffled_loader_equals_the_whole_fit(
    tmp_path: Path, explicit_generator: bool
) -> None:
    def loader() -> torch.utils.data.DataLoader[Any]:
        generator = torch.Generator().manual_seed(7) if explicit_generator else None
        return torch.utils.data.DataLoader(
            _dicts(), batch_size=8, shuffle=True, generator=generator
        )

    whole = _trainer(tmp_path / "whole")
    whole.fit(loader(), loader(), epochs=4)
    with pytest.raises(_CrashError):
        _trainer(tmp_path / "cut", crash_at=12).fit(loader(), loader(), epochs=4)  # epoch 2
    resumed = _trainer(tmp_path / "cut")
    resumed.fit(loader(), loader(), epochs=4, resume=tmp_path / "cut" / "last.pt")
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert _logged(tmp_path / "cut") == _logged(tmp_path / "whole")


# -- item 2: resuming a finished run --------------------------------------------------------------
def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_resuming_a_finished_run_changes_nothing(tmp_path: Path, whole: Path) -> None:
    out = tmp_path / "out"

    shutil.copytree(whole, out)
    config = _config(tmp_path)
    before = _files(out)
    result = _cli("run", str(config), "--out", str(out), "--resume")
    assert _files(out) == before
    assert "complete" in result.output


def test_a_run_killed_after_its_last_record_resumes_to_its_summary(
    tmp_path: Path, whole: Path
) -> None:
    out = tmp_path / "out"

    shutil.copytree(whole, out)
    for name in ("summary.json", "report.html"):
        (out / name).unlink()  # killed after the last checkpoint, before the summary
    _cli("run", str(_config(tmp_path)), "--out", str(out), "--resume")

    written = json.loads((out / "summary.json").read_text())
    expected = json.loads((whole / "summary.json").read_text())
    for key in ("final", "weights", "epochs", "steps", "best_value", "best_epoch"):
        assert written[key] == expected[key], key
    assert written["final"]["train"]
    assert written["final"]["val"]
