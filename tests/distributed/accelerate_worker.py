"""The demo model in a hand-written Accelerate loop with AcceleratedCriterion, on one process and
on two (spawned with torchrun's environment, gloo). Run as a script by test_accelerate.py:
``python accelerate_worker.py OUT_DIR``; saves the tracker's epoch means of every run."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate import Accelerator
from torch.utils.data import DataLoader, Subset

import losskit as lk
from losskit.demo import DigitsNet, digits_data
from losskit.integrations.accelerate import AcceleratedCriterion

GLOBAL_BATCH = 32
RUNS = {"sum": ("sum", 2), "upgrad": ("upgrad", 2)}  # name: (balancer, accumulation steps)


def train(balancer: str, accumulate: int, world: int) -> dict[str, Any]:
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulate)
    model = DigitsNet(hidden=32, bottleneck=16, dropout=0.0)
    spec: Any = balancer
    if balancer == "upgrad":
        spec = lk.balancers.Gradient("upgrad", shared=model.trunk)
    criterion = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "recon": lk.Term(
                "mse",
                input="recon",
                target="pixels",
                weight=lk.schedules.LinearWarmup(0.0, 2.0, steps=3),
            ),
            "ink": lk.Term("huber", input="ink", target="ink", weight=0.5, delta=0.5),
        },
        balancer=spec,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    train_set, val_set = digits_data()
    batch = GLOBAL_BATCH // world // accumulate
    # Accelerate shards a prepared loader by whole batches of the original loader: rank r takes
    # batches r, r + world, ... Their union per optimizer step is the single process's batch
    # when the single process reads the same samples in the same order.
    loader = DataLoader(Subset(train_set, range(128)), batch_size=batch)
    val = DataLoader(Subset(val_set, range(64)), batch_size=GLOBAL_BATCH // world)
    model, optimizer, loader, val = accelerator.prepare(model, optimizer, loader, val)
    crit = AcceleratedCriterion(accelerator, model, criterion)
    history = []
    for _ in range(2):
        model.train()
        for b in loader:
            with crit.accumulate():
                res = crit(model(b["pixels"]), b, batch_size=len(b["label"]))
                crit.backward(res)
                crit.step(optimizer)
        model.eval()
        with torch.no_grad():
            for b in val:
                crit(model(b["pixels"]), b, split="val", batch_size=len(b["label"]))
        history.append({r.split: dict(r.values) for r in crit.tracker.end_epoch()})
    params = {
        k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()
    }
    return {"history": history, "params": params, "steps": crit.criterion.step_count}


def worker(rank: int, out: str, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results = {name: train(b, acc, world=2) for name, (b, acc) in RUNS.items()}
    torch.save(results, Path(out) / f"ddp-{rank}.pt")
    if dist.is_initialized():
        # Every rank past its last collective before teardown: gloo aborts (SIGABRT) a rank
        # whose peer destroyed the group while it was still tearing down.
        dist.barrier()
        dist.destroy_process_group()


def main(out: Path) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mp.spawn(worker, args=(str(out), port), nprocs=2)
    single = {name: train(b, 1, world=1) for name, (b, _) in RUNS.items()}
    torch.save(single, out / "single.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
