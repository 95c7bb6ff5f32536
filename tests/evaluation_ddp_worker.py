"""The worker of test_evaluation.py's distributed test, importable by name in spawned children."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

import losskit as lk
from losskit.errors import RankMismatchError

WORLD = 2
SIZES = {0: [5, 2], 1: [9]}  # rank 0 holds 7 samples in two batches, rank 1 holds 9


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g), torch.randint(0, 3, (16,), generator=g)


def worker(rank: int, root: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    out: dict[str, object] = {}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=WORLD)
        x, y = data()
        start = 0 if rank == 0 else 7
        batches = []
        for size in SIZES[rank]:
            batches.append((x[start : start + size], y[start : start + size]))
            start += size
        crit = lk.Criterion({"ce": lk.Term("cross_entropy", target=1)})
        out["means"] = lk.evaluation.evaluate(torch.nn.Identity(), crit, batches, chunk_size=3)
        out["local"] = lk.evaluation.evaluate(torch.nn.Identity(), crit, batches, sync=False)
        extra = (
            (lambda o, b: {"only0": o.sum()}) if rank == 0 else (lambda o, b: {"only1": o.sum()})
        )
        try:
            lk.evaluation.evaluate(torch.nn.Identity(), extra, batches)
        except RankMismatchError as exc:
            out["mismatch"] = str(exc)
        dist.destroy_process_group()
    except Exception:  # reported to the test, which names the rank
        out["error"] = traceback.format_exc()
    Path(root, f"result-{rank}.json").write_text(json.dumps(out))
