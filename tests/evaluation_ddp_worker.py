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


# Partial labels (NaN: none): rank 0 holds one labelled error of 1 and a batch without labels,
# rank 1 errors 2, 0 and 3; the mean is over the four labelled samples.
NAN = float("nan")
COUNTED = {
    0: [
        (torch.tensor([1.0, 3.0]), torch.tensor([0.0, NAN])),
        (torch.tensor([5.0]), torch.tensor([NAN])),
    ],
    1: [(torch.tensor([2.0, 2.0, 2.0]), torch.tensor([0.0, 2.0, 5.0]))],
}
COUNTED_MEAN = (1 + 2 + 0 + 3) / 4


def labelled_l1(outputs: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> lk.LossResult:
    """The L1 error "a" over the labelled samples, with their count; "c" is never labelled."""
    labelled = ~torch.isnan(batch[1])
    count = labelled.sum().float()
    a = (outputs - batch[1]).abs()[labelled].sum() / count.clamp(min=1)
    return lk.LossResult(
        a, ("a", "c"), (a, torch.zeros(())), torch.ones(2), counts=(count, torch.zeros(()))
    )


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
        out["counted"] = lk.evaluation.evaluate(torch.nn.Identity(), labelled_l1, COUNTED[rank])
        extra = (
            (lambda o, b: {"only0": o.sum()}) if rank == 0 else (lambda o, b: {"only1": o.sum()})
        )
        try:
            lk.evaluation.evaluate(torch.nn.Identity(), extra, batches)
        except RankMismatchError as exc:
            out["mismatch"] = str(exc)
        # Every rank past its last collective before teardown: gloo aborts (SIGABRT) a rank
        # whose peer destroyed the group while it was still tearing down.
        dist.barrier()
        dist.destroy_process_group()
    except Exception:  # reported to the test, which names the rank
        out["error"] = traceback.format_exc()
    Path(root, f"result-{rank}.json").write_text(json.dumps(out))
