"""Every metrics-service sink read back by the service's own reader: TensorBoard's
EventAccumulator, MLflow's MlflowClient (a local store and a real ``mlflow server``), and W&B's
``wandb leet inspect`` of an offline run. No mocks: the values must arrive, at their steps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from torch.testing import assert_close

from losskit.errors import LossKitWarning
from losskit.tracking import Record, Tracker, load, sinks
from losskit.tracking.sinks import Sink

Scalars = dict[tuple[str, int], float]

# What the run below logs, by (tag, step): every sink must hold exactly these.
EXPECTED: Scalars = {
    **{("train/loss", s): float(s) for s in (1, 2, 3, 4)},
    **{("train/loss/cls", s): s / 2 for s in (1, 2, 3, 4)},
    **{("train/lr/default", s): 0.1 for s in (1, 2, 3, 4)},
    ("val/loss", 4): 9.0,
    ("val/metric/acc", 4): 0.75,
    ("epoch/train/loss", 4): 2.5,
    ("epoch/train/loss/cls", 4): 1.25,
    ("epoch/train/lr/default", 4): 0.1,
    ("epoch/val/loss", 4): 9.0,
    ("epoch/val/metric/acc", 4): 0.75,
}


def log_a_run(sink: Sink, run_dir: Path) -> None:
    """Two training intervals, a validation, an epoch; the JSONL log beside the sink."""
    with Tracker([sinks.JSONL(run_dir), sink], every=2) as tracker:
        for step in (1, 2, 3, 4):
            tracker.update({"loss": float(step), "loss/cls": step / 2, "lr/default": 0.1})
        tracker.update({"loss": 9.0, "metric/acc": 0.75}, split="val")
        tracker.end_epoch()


def assert_same(found: Scalars, run_dir: Path) -> None:
    assert sorted(found) == sorted(EXPECTED)
    for key, value in EXPECTED.items():
        assert_close(found[key], value, msg=f"{key}")
    # The JSONL log holds the same values (the source of truth the sinks mirror).
    history = load(run_dir)
    assert history.series("loss").values == (1.0, 2.0, 3.0, 4.0)


def test_tensorboard_event_accumulator_reads_every_scalar(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = sinks.TensorBoard(tmp_path)
    log_a_run(board, tmp_path)
    events = EventAccumulator(str(board.path), size_guidance={"scalars": 0})
    events.Reload()
    found = {
        (tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)
    }
    assert_same(found, tmp_path)


def mlflow_scalars(sink: sinks.MLflow) -> Scalars:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=sink.tracking_uri)
    assert sink.run_id is not None
    run = client.get_run(sink.run_id)
    assert run.info.status == "FINISHED"
    return {
        (key, m.step): m.value
        for key in run.data.metrics
        for m in client.get_metric_history(sink.run_id, key)
    }


def test_mlflow_default_store_in_the_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is optional")
    sink = sinks.MLflow(tmp_path, experiment="readback", run_name="local")
    log_a_run(sink, tmp_path)
    assert (tmp_path / "mlflow.db").is_file()
    assert_same(mlflow_scalars(sink), tmp_path)


def test_mlflow_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is optional")
    # MLflow 3 keeps the mlruns/ file store behind this opt-in.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    sink = sinks.MLflow(tmp_path, tracking_uri=store.as_uri(), experiment="readback")
    log_a_run(sink, tmp_path)
    assert len(list(store.glob("*/*/metrics/train.loss"))) == 1
    # A file store cannot hold train/loss beside train/loss/cls: '/' is written as '.'.
    found = {(tag.replace(".", "/"), step): v for (tag, step), v in mlflow_scalars(sink).items()}
    assert_same(found, tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on the loopback address with a sqlite backend; stopped after."""
    pytest.importorskip("mlflow", reason="the mlflow extra is optional")
    pytest.importorskip("flask", reason="mlflow server needs the mlflow extra's flask")
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--default-artifact-root", str(folder / "artifacts"),
    ]  # fmt: skip
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_mlflow_server_reads_every_metric(tmp_path: Path, mlflow_server: str) -> None:
    sink = sinks.MLflow(tmp_path, tracking_uri=mlflow_server, experiment="server")
    log_a_run(sink, tmp_path)
    assert not (tmp_path / "mlflow.db").exists()  # all went to the server
    assert_same(mlflow_scalars(sink), tmp_path)


def test_wandb_offline_run_read_back_by_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is optional")
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_SILENT": "true",
    }.items():
        monkeypatch.setenv(name, value)
    sink = sinks.WandB(tmp_path, project="readback", mode="offline", settings={"console": "off"})
    log_a_run(sink, tmp_path)
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    wandb_cli = shutil.which("wandb", path=str(Path(sys.executable).parent)) or "wandb"
    # wandb's own reader of a run's transaction log: one JSON record per line.
    out = subprocess.run(
        [wandb_cli, "leet", "inspect", "--json", str(run_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    found: Scalars = {}
    for line in out.splitlines():
        record = json.loads(line)
        if record.get("type") != "history":
            continue
        item = record["history"]["item"]
        step = int(item.pop("step"))
        for tag, value in item.items():
            if not tag.startswith("_"):
                assert (tag, step) not in found
                found[tag, step] = float(value)
    assert_same(found, tmp_path)


class Broken:
    """A sink whose disk is full."""

    def __init__(self) -> None:
        self.calls = 0

    def write(self, record: Record) -> None:
        self.calls += 1
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "Broken()"


def test_a_failing_sink_warns_once_and_training_goes_on(tmp_path: Path) -> None:
    broken = Broken()
    with pytest.warns(LossKitWarning, match=r"Broken\(\) failed to write .*No space") as caught:
        log_a_run(broken, tmp_path)
    assert len([w for w in caught if issubclass(w.category, LossKitWarning)]) == 1
    assert broken.calls == 1
    assert load(tmp_path).series("loss").values == (1.0, 2.0, 3.0, 4.0)


def test_an_mlflow_server_down_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is optional")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    sink = sinks.MLflow(tmp_path, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_a_run(sink, tmp_path)
    ours = [w for w in caught if issubclass(w.category, LossKitWarning)]
    assert len(ours) == 1
    assert "MLflow('http://127.0.0.1:" in str(ours[0].message)
    assert load(tmp_path).series("loss").values == (1.0, 2.0, 3.0, 4.0)


def test_the_jsonl_log_is_critical(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").mkdir()  # a folder where the log should be: it cannot open
    tracker = Tracker([sinks.JSONL(tmp_path)])
    tracker.update({"loss": 1.0})
    with pytest.raises(IsADirectoryError, match=r"metrics\.jsonl"):
        tracker.flush()
    tracker.close()
