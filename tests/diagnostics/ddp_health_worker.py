"""The worker of test_gradients_distributed.py, importable by name in spawned processes."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import losskit as lk

WORLD = 2


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 8)
        self.cls = nn.Linear(8, 3)
        self.reg = nn.Linear(8, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = torch.tanh(self.trunk(x))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1)}


def _train(rank: int, diagnostics: bool) -> tuple[list[Tensor], list[dict[str, float]]]:
    torch.manual_seed(0)
    model = DistributedDataParallel(TwoHeads())
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("mse", input="value", target="y", weight=0.5),
        }
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    logged = []
    for _ in range(4):
        batch = {
            "x": torch.randn(8, 5, generator=g),
            "label": torch.randint(0, 3, (8,), generator=g),
            "y": torch.randn(8, generator=g),
        }
        res = crit(model(batch["x"]), batch)
        if diagnostics:
            logged.append(
                {k: v.item() for k, v in lk.diagnostics.gradient_health(model, res).items()}
            )
        opt.zero_grad()
        res.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], logged


def worker(rank: int, root: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    out: dict[str, object] = {}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=WORLD)
        plain, _ = _train(rank, False)
        checked, logged = _train(rank, True)
        out["max_difference"] = max(float((p - q).abs().max()) for p, q in zip(plain, checked))
        out["logged"] = logged
        out["parameters"] = [p.flatten().tolist() for p in checked]
    except Exception:
        out["error"] = traceback.format_exc()
    finally:
        if dist.is_initialized():
            # Every rank past its last collective before teardown: gloo aborts (SIGABRT) a rank
            # whose peer destroyed the group while it was still tearing down.
            dist.barrier()
            dist.destroy_process_group()
    (Path(root) / f"result-{rank}.json").write_text(json.dumps(out))
