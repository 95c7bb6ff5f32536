"""One writer per run folder: a second run on a folder in use is refused at once with the
holder's PID; a crashed holder's lock is taken over; compare workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app
from losskit.errors import RunInUseError

KILLER = Path(__file__).with_name("killed_run.py")
DEMO = Path(lk.__file__).with_name("demo.toml")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
runner = CliRunner()

_CONFIG = (
    '[run]\nepochs = {epochs}\nthreads = 1\n[model]\nsource = "digits_mlp"\ninput = "pixels"\n'
    "options = {{ hidden = 8, bottleneck = 4 }}\n"
    '[data]\nsource = "digits"\nbatch_size = 512\n'
    '[terms.cls]\nloss = "cross_entropy"\ninput = "logits"\ntarget = "label"\n'
    "[optimizer]\nlr = 0.01\n"
)


def _config(folder: Path, epochs: int) -> Path:
    path = folder / f"run{epochs}.toml"
    path.write_text(_CONFIG.format(epochs=epochs))
    return path


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A ``losskit run`` busy in ``tmp_path/out`` (a long run, killed at the end)."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "losskit", "run", str(_config(tmp_path, 100000))]
    process = subprocess.Popen(
        [*command, "--out", str(out), "--quiet"], env=ENV, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.jsonl").exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield process, out
    finally:
        process.kill()
        process.wait()


def test_a_second_run_on_a_folder_in_use_is_refused_with_the_holders_pid(
    tmp_path: Path, holder: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, out = holder
    started = time.monotonic()
    result = runner.invoke(app, ["run", str(_config(tmp_path, 1)), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"process {process.pid}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    model = torch.nn.Linear(3, 1)
    trainer = lk.engine.Trainer(
        model,
        lk.Criterion({"mse": lk.Term("mse", input=0, target="y")}),
        torch.optim.SGD(model.parameters(), lr=0.1),
        forward=lambda m, b: (m(b["x"]).squeeze(-1),),
        run_dir=out,
        progress=False,
    )
    with pytest.raises(RunInUseError, match=f"process {process.pid}"):
        trainer.fit([{"x": torch.randn(2, 3), "y": torch.randn(2)}], epochs=1)
    assert time.monotonic() - started < 10  # refused at once, not after waiting
    assert process.poll() is None  # the holder goes on


def test_a_crashed_holders_lock_is_taken_over(
    tmp_path: Path, holder: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, out = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = runner.invoke(
        app, ["run", str(_config(tmp_path, 1)), "--out", str(out), "--resume", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert not (out / ".lock").exists()  # released at the end


def test_a_lock_file_naming_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    (out / ".lock").write_text(dead.stdout.decode())
    result = runner.invoke(app, ["run", str(_config(tmp_path, 1)), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_compare_workers_die_with_their_parent(tmp_path: Path) -> None:
    config = _config(tmp_path, 100000)
    out = tmp_path / "grid"
    command = [sys.executable, "-m", "losskit", "compare", str(config), "--vary"]
    command += ["optimizer.lr=0.01,0.02", "--seeds", "1", "--jobs", "2", "--out", str(out)]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*/seed*/metrics.jsonl"))) < 2:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        workers = {pid for pid in _children(process.pid) if _alive(pid)}
        assert len(workers) >= 2
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived their parent"
    finally:
        process.kill()
        process.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
