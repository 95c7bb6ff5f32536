"""The worker of test_tracking_distributed.py, in its own module so that spawned processes can
import it by name (the test adds this folder to ``sys.path``)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from losskit.errors import MissingDependencyError, RankMismatchError
from losskit.result import LossResult
from losskit.tracking import Tracker, _buffer, sinks

_reads_on_host = _buffer.reads_on_host

WORLD = 2
# Rank r logs these (value, batch size) pairs for "loss" in the train split, then one val batch.
TRAIN = {0: [(1.0, 10), (2.0, 10), (3.0, 20)], 1: [(5.0, 30), (7.0, 10), (0.0, 40)]}
VAL = {0: (4.0, 8), 1: (8.0, 24)}
# Rank r logs results whose "a" averages its own labelled samples: (value, count) per update,
# with batch size 4; "b" has no labelled sample anywhere.
COUNTED = {0: [(1.0, 3.0), (0.0, 0.0)], 1: [(5.0, 1.0), (3.0, 2.0)]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scenarios(rank: int, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(_means(rank, root))
    # Again through the accelerator's path (values stacked on the device), forced on the CPU.
    _buffer.reads_on_host = lambda device: False
    try:
        out["stacked"] = _means(rank, root / "stacked")
    finally:
        _buffer.reads_on_host = _reads_on_host
    out.update(_mismatches(rank))
    return out


def _means(rank: int, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    written: list[sinks.Sink] = [sinks.JSONL(root / f"run-rank{rank}")]
    # A metrics service's sink gets the same global means, from rank 0 alone (the tensorboard
    # extra is optional; the test says so).
    with contextlib.suppress(MissingDependencyError):
        written.append(sinks.TensorBoard(root / f"run-rank{rank}"))
    tracker = Tracker(written, every=None)
    for value, size in TRAIN[rank]:
        tracker.update(
            {"loss": torch.tensor(value), "rank": torch.tensor(float(rank))}, batch_size=size
        )
    value, size = VAL[rank]
    tracker.update({"loss": torch.tensor(value)}, split="val", batch_size=size)
    records = tracker.flush()
    out["interval"] = {
        r.split: {"values": dict(r.values), "points": dict(r.points), "world": r.world}
        for r in records
    }
    out["epoch"] = {r.split: dict(r.values) for r in tracker.end_epoch()}
    tracker.close()
    out["counted"] = _counted(rank)
    return out


def _counted(rank: int) -> dict[str, Any]:
    tracker = Tracker()
    for value, count in COUNTED[rank]:
        res = LossResult(
            torch.tensor(value),
            ("a", "b"),
            (torch.tensor(value), torch.tensor(0.0)),
            torch.ones(2),
            counts=(torch.tensor(count), torch.tensor(0.0)),
        )
        tracker.update(res, batch_size=4)
    (record,) = tracker.flush()
    return {"values": dict(record.values), "points": dict(record.points), "count": record.count}


def _mismatches(rank: int) -> dict[str, Any]:
    out: dict[str, Any] = {}

    # A key logged on one rank only: every rank raises instead of hanging.
    tracker = Tracker()
    values = {"loss": torch.tensor(1.0)}
    if rank == 1:
        values["loss/aux"] = torch.tensor(2.0)
    tracker.update(values)
    try:
        tracker.flush()
        out["mismatch"] = None
    except RankMismatchError as exc:
        out["mismatch"] = str(exc)

    # The same, declared: the absent rank counts with weight 0.
    tracker = Tracker(keys=["loss/aux"])
    tracker.update(values, batch_size=2)
    out["declared"] = dict(tracker.flush()[0].values)

    # A rank with nothing buffered still joins the flush's collective.
    tracker = Tracker(points=False)
    if rank == 0:
        tracker.update({"loss": torch.tensor(3.0)})
    try:
        tracker.flush()
        out["one_sided"] = None
    except RankMismatchError as exc:
        out["one_sided"] = str(exc)
    return out


def worker(rank: int, root: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        result: dict[str, Any] = _scenarios(rank, Path(root))
    except BaseException:
        result = {"error": traceback.format_exc()}
    finally:
        # Every rank past its last collective before teardown: gloo aborts (SIGABRT) a rank
        # whose peer destroyed the group while it was still tearing down.
        dist.barrier()
        dist.destroy_process_group()
    (Path(root) / f"result-{rank}.json").write_text(json.dumps(result))
